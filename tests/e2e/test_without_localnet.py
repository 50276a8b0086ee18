"""``pip install ic-replicator`` without the localnet extra: the orchestrator works, the
local IC's commands say how to install it.

Every command here runs in an environment where ``import wasmtime`` fails, as
it does without the extra: a ``sitecustomize`` on ``PYTHONPATH`` puts ``None``
in ``sys.modules`` for it (and for the rate limiters the project dropped, so
that a stray import of them fails in a virtualenv that still has them).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import ROOT, UNPACED_LIMITS, Cli, json_lines

from replicator.cli.main import build_parser

pytestmark = pytest.mark.e2e

INSTALL = "pip install 'ic-replicator[localnet]'"
NOT_INSTALLED = ("wasmtime", "asyncio_throttle", "aiolimiter")
ORCHESTRATOR_PACKAGES = ("replicator", "canister_iface")


@pytest.fixture
def cli_config_extra() -> str:
    return UNPACED_LIMITS  # what these tests prove does not depend on the pace


@pytest.fixture(scope="module")
def without_extra(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment variables under which the localnet extra is not installed."""
    shim = tmp_path_factory.mktemp("without-localnet")
    (shim / "sitecustomize.py").write_text(
        "import sys\n"
        f"for name in {NOT_INSTALLED!r}:\n"
        "    sys.modules[name] = None  # import fails: ModuleNotFoundError\n"
    )
    path = os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def _python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=ROOT,
    )


def _replicator(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _python(env, "-m", "replicator.cli", *args)


def test_the_environment_really_lacks_wasmtime(without_extra: dict[str, str]) -> None:
    result = _python(without_extra, "-c", "import wasmtime")
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr


@pytest.mark.parametrize(
    "command", [("demo",), ("demo", "--mib", "1"), ("localnet", "start", "--port", "0")]
)
def test_the_local_ic_commands_exit_2_with_the_install_command(
    without_extra: dict[str, str], command: tuple[str, ...]
) -> None:
    result = _replicator(without_extra, *command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "wasmtime" in result.stderr  # what is missing
    assert INSTALL in result.stderr  # and the exact command that installs it
    assert "localnet listening" not in result.stdout  # nothing was started


def test_the_demo_reports_the_missing_extra_as_json(without_extra: dict[str, str]) -> None:
    result = _replicator(without_extra, "--json", "demo")
    assert result.returncode == 2
    events = json_lines(result.stdout)
    assert [e["event"] for e in events] == ["error", "summary"]
    assert INSTALL in str(events[0]["message"])
    assert events[-1]["exit_code"] == 2


def _every_command_line() -> list[tuple[str, ...]]:
    """``--help`` of the program and of every command and sub-action it registers."""
    lines: list[tuple[str, ...]] = [("--help",), ("--version",)]
    for name, sub in _sub_commands(build_parser()).items():
        lines.append((name, "--help"))
        lines += [(name, action, "--help") for action in _sub_commands(sub)]
    return lines


def _sub_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


# Every command line through the program's ``main``, in one interpreter: one
# process per line would spend half a minute starting Python over and over.
_RUN_EACH = """
import contextlib, io, json, sys
from replicator.cli.main import main
for line in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(line)
    print(json.dumps([line, code, out.getvalue(), err.getvalue()]))
"""


def test_every_command_parses_and_helps_without_the_extra(
    without_extra: dict[str, str], tmp_path: Path
) -> None:
    lines = _every_command_line()
    assert ("localnet", "start", "--help") in lines
    assert ("backup", "--help") in lines
    result = _python(without_extra, "-c", _RUN_EACH, json.dumps(lines))
    assert result.returncode == 0, result.stderr
    answers = [json.loads(answer) for answer in result.stdout.splitlines()]
    assert [tuple(line) for line, *_ in answers] == lines
    for line, code, out, err in answers:
        assert code == 0, (line, err)
        assert out.strip(), line
    program = _replicator(without_extra, "--help")  # and the program as a user starts it
    assert program.returncode == 0, program.stderr
    assert program.stdout == answers[0][2]
    jobs = _replicator(without_extra, "--state", str(tmp_path / "state.sqlite3"), "jobs")
    assert jobs.returncode == 0, jobs.stderr
    assert "no jobs" in jobs.stdout


_IMPORT_ALL = """
import importlib, pkgutil, sys
failed, imported = [], 0
for package in sys.argv[1:]:
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if info.name.endswith(".__main__"):  # runs the program: imported by --help above
            continue
        try:
            importlib.import_module(info.name)
            imported += 1
        except Exception as exc:
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
print(imported, *failed, sep="\\n")
sys.exit(1 if failed else 0)
"""


def test_every_orchestrator_module_imports_without_the_extra(
    without_extra: dict[str, str],
) -> None:
    result = _python(without_extra, "-c", _IMPORT_ALL, *ORCHESTRATOR_PACKAGES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout.split()[0]) > 50  # every module, not an empty walk


def test_no_orchestrator_module_imports_wasmtime_even_lazily() -> None:
    offenders = []
    for package in ORCHESTRATOR_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                offenders += [
                    f"{path.relative_to(ROOT)}:{node.lineno}"
                    for name in names
                    if name.split(".")[0] in NOT_INSTALLED
                ]
    assert offenders == []


def test_a_backup_runs_without_the_extra(cli: Cli, without_extra: dict[str, str]) -> None:
    # localnet (the fixture's child process) has wasmtime; the orchestrator does not.
    app = cli.deploy_demo(mib=1)
    cli.env = without_extra
    backup = cli.run("--json", "backup", str(app))
    assert backup.returncode == 0, backup.stdout + backup.stderr
    summary = json_lines(backup.stdout)[-1]
    assert summary["phase"] == "done"
    target = str(summary["target"]).split("@")[0]
    verify = cli.run("verify", target, str(app))
    assert verify.returncode == 0, verify.stdout + verify.stderr
