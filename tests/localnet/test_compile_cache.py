"""Localnets share compiled modules through a folder: ``compile_cache=`` or
``LOCALNET_COMPILE_CACHE`` (what the test suite sets for every localnet it starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from localnet import LocalNet
from localnet.net import COMPILE_CACHE_ENV

COUNTER = (Path(__file__).resolve().parents[1] / "canisters" / "wasm" / "counter.wasm").read_bytes()
ME = b"\x05" * 29


async def _install(net: LocalNet) -> None:
    canister = await net.create_canister(controllers=[ME])
    await net.install_code(canister, COUNTER, caller=ME)


async def test_a_second_localnet_loads_what_the_first_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "compiled"
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(folder))
    async with LocalNet() as net:
        assert net.engine.cache_dir == folder
        await _install(net)
    (entry,) = folder.glob("*.cwasm")
    written = entry.stat().st_mtime_ns
    async with LocalNet() as net:
        await _install(net)  # loaded from the folder: the entry is not written again
    assert list(folder.glob("*.cwasm")) == [entry]
    assert entry.stat().st_mtime_ns == written


async def test_the_argument_wins_over_the_environment_and_neither_means_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(tmp_path / "from-env"))
    assert LocalNet(compile_cache=tmp_path / "given").engine.cache_dir == tmp_path / "given"
    monkeypatch.delenv(COMPILE_CACHE_ENV)
    assert LocalNet().engine.cache_dir is None
