"""What provisioning installs ships with the package."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from canister_iface.principal import Principal
from replicator.errors import UsageError
from replicator.provision import ProvisionSettings, shipped_wasm

ROOT = Path(__file__).parents[2]


def test_the_backup_wasm_loads_from_the_package() -> None:
    module = shipped_wasm("backup")
    assert module.startswith(b"\x00asm")
    assert module == (ROOT / "canister_iface" / "wasm" / "backup.wasm").read_bytes()


def test_an_unknown_module_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="reinstall"):
        shipped_wasm("no-such-canister")


def test_the_wheel_ships_the_canister_wasm(tmp_path: Path) -> None:
    from hatchling.builders import wheel as builders  # a dev dependency: never skipped

    (wheel,) = builders.WheelBuilder(str(ROOT)).build(
        directory=str(tmp_path), versions=["standard"]
    )
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"canister_iface/wasm/backup.wasm", "canister_iface/wasm/demo_app.wasm"} <= names
    assert {"ic_did/ic.did", "canister_iface/icrp.did"} <= names  # the Candid types load from them


def test_a_created_canister_needs_controllers_and_cycles() -> None:
    with pytest.raises(UsageError, match="controller"):
        ProvisionSettings(controllers=(), initial_cycles=1, method="provisional")
    with pytest.raises(UsageError, match="cycles"):
        ProvisionSettings(controllers=(Principal.anonymous(),), initial_cycles=0, method="ledger")
