"""The built wheel's metadata: the orchestrator alone, the local IC as the ``localnet`` extra."""

from __future__ import annotations

import email.parser
import re
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[2]
LOCALNET_ONLY = {"wasmtime"}
DROPPED = {"aiolimiter", "asyncio-throttle"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    from hatchling.builders import wheel as builders  # a dev dependency: never skipped

    out = tmp_path_factory.mktemp("wheel")
    (path,) = builders.WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(wheel.read(name).decode())


def _requirements(wheel: zipfile.ZipFile) -> list[Requirement]:
    return [Requirement(line) for line in _metadata(wheel).get_all("Requires-Dist") or []]


def _extras_of(requirement: Requirement) -> set[str]:
    if requirement.marker is None:
        return set()
    return {m for m in ("localnet", "dev") if requirement.marker.evaluate({"extra": m})}


def test_the_core_install_has_no_local_ic(wheel: zipfile.ZipFile) -> None:
    requirements = _requirements(wheel)
    core = {r.name for r in requirements if r.marker is None}
    assert core, "no unconditional Requires-Dist at all"
    assert {"icp-py-core", "httpx", "msgpack", "aiohttp"} <= core  # aiohttp: replicator serve
    assert not core & LOCALNET_ONLY
    for requirement in requirements:
        if requirement.name in LOCALNET_ONLY:
            assert _extras_of(requirement) == {"localnet"}, str(requirement)
    assert {r.name for r in requirements if "localnet" in _extras_of(r)} >= LOCALNET_ONLY
    assert not {r.name for r in requirements} & DROPPED
    assert {"localnet", "dev"} <= set(_metadata(wheel).get_all("Provides-Extra") or [])


def test_the_wheel_ships_the_local_ic_code_and_the_command(wheel: zipfile.ZipFile) -> None:
    # The extra adds dependencies only: the localnet package itself is always there,
    # so `replicator localnet start` can say what to install instead of failing to import.
    names = set(wheel.namelist())
    assert {"localnet/net.py", "replicator/cli/localnet.py"} <= names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "replicator = replicator.cli.main:main" in wheel.read(entry_points).decode()


def test_exact_pins_carry_their_reason() -> None:
    # The rule for dependencies: compatible ranges, `==` only with a reason next to it.
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    project = tomllib.loads("\n".join(lines))["project"]
    declared = list(project["dependencies"])
    for group in project["optional-dependencies"].values():
        declared += group
    assert declared
    for spec in declared:
        if not re.search(r"===?", spec):
            continue
        (index,) = [i for i, line in enumerate(lines) if f'"{spec}"' in line]
        reason = lines[index].partition("#")[2] or lines[index - 1].strip().startswith("#")
        assert reason, f"{spec} is pinned exactly without a reason next to it"
