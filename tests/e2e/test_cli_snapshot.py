"""``replicator snapshot …`` as a user runs it: jobs, the repository commands, exit codes.

The icp-cli round trip runs the real ``icp`` (pinned in tools/clients,
installed by tools/install-clients.sh; skipped without it, failed under CI).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from cli_harness import ROOT, UNPACED_LIMITS, Cli, json_lines
from icp_candid import Types

from canister_iface.candid_value import Rec, decode_single, encode_values
from canister_iface.principal import Principal
from replicator.repository import Repository

pytestmark = pytest.mark.e2e

PLAIN_WASM = ROOT / "canister_iface" / "wasm" / "plain_kv.wasm"


@pytest.fixture
def cli_config_extra() -> str:
    return UNPACED_LIMITS  # what these tests prove does not depend on the pace


def _app(cli: Cli, stable: int = 1_048_576) -> Principal:
    canister = cli.deploy_wasm(PLAIN_WASM)

    async def fill() -> None:
        async with cli.agent() as agent:
            arg = [(Types.Nat64, 0), (Types.Nat64, stable), (Types.Nat64, 9)]
            await agent.update(canister, "generate", encode_values(arg))  # type: ignore[arg-type]

    asyncio.run(fill())
    return canister


def _change(cli: Cli, canister: Principal, page: int) -> None:
    async def scatter() -> None:
        async with cli.agent() as agent:
            arg = [(Types.Vec(Types.Nat64), [page]), (Types.Nat64, page)]
            await agent.update(canister, "scatter", encode_values(arg))  # type: ignore[arg-type]

    asyncio.run(scatter())


def _fingerprint(cli: Cli, canister: Principal) -> int:
    async def stats() -> int:
        async with cli.agent() as agent:
            rec = Rec(decode_single(await agent.query(canister, "stats"), "stats"), "stats")
            return rec.nat("fingerprint")

    return asyncio.run(stats())


def _summary(result: object) -> dict[str, object]:
    out = json_lines(result.stdout)  # type: ignore[attr-defined]
    assert out, result
    assert out[-1]["event"] == "summary", result
    return out[-1]


def test_backup_list_prune_verify_export_import_restore(cli: Cli, tmp_path: Path) -> None:
    app = _app(cli)
    repo = str(tmp_path / "repo")
    original = _fingerprint(cli, app)

    first = cli.run("--json", "snapshot", "backup", str(app), "--repo", repo, "--tag", "first")
    assert first.returncode == 0, first.stdout + first.stderr
    one = _summary(first)
    assert one["kind"] == "snapshot-backup"
    assert one["route"] == "snapshot"
    assert one["downtime_seconds"] is not None
    _change(cli, app, 3)
    second = cli.run("--json", "snapshot", "backup", str(app), "--repo", repo)
    two = _summary(second)
    assert int(two["bytes_new"]) < int(one["bytes_new"]) / 4  # type: ignore[call-overload]

    listed = cli.run("--json", "snapshot", "list", "--repo", repo)
    rows = [e for e in json_lines(listed.stdout) if e["event"] == "note"]
    assert [r["id"] for r in rows] == [one["snapshot"], two["snapshot"]]
    assert rows[0]["tags"] == ["first"]
    text = cli.run("snapshot", "list", str(app), "--repo", repo)
    assert str(one["snapshot"])[:8] in text.stdout

    dry = cli.run("--json", "snapshot", "prune", "--keep-last", "1", "--dry-run", "--repo", repo)
    assert _summary(dry)["forgotten"] == 1
    assert len(Repository.open(repo).snapshot_ids()) == 2
    pruned = cli.run(
        "--json", "snapshot", "prune", "--keep-last", "1", "--keep-tag", "first", "--repo", repo
    )
    assert _summary(pruned)["forgotten"] == 0  # the tag keeps the first one
    pruned = cli.run("--json", "snapshot", "prune", "--keep-last", "1", "--repo", repo)
    assert _summary(pruned)["forgotten"] == 1
    assert Repository.open(repo).snapshot_ids() == [two["snapshot"]]
    verified = cli.run("--json", "snapshot", "verify", "--repo", repo)
    assert verified.returncode == 0, verified.stdout
    assert _summary(verified)["snapshots"] == 1

    out = tmp_path / "icp-dir"
    exported = cli.run(
        "snapshot", "export-dir", str(two["snapshot"])[:10], str(out), "--repo", repo
    )
    assert exported.returncode == 0, exported.stderr
    assert json.loads((out / "metadata.json").read_text())["stable_memory_size"] > 0
    other_repo = str(tmp_path / "other-repo")
    imported = cli.run("--json", "snapshot", "import-dir", str(out), str(app), "--repo", other_repo)
    assert imported.returncode == 0, imported.stderr
    assert (
        _summary(imported)["size"]
        == Repository.open(repo).load_manifest(str(two["snapshot"])).manifest.size
    )

    target = cli.deploy_wasm(PLAIN_WASM)
    refused = cli.run("snapshot", "restore", str(app), "--into", str(target), "--repo", repo)
    assert refused.returncode == 2  # replaces state: needs --yes in a script
    assert "--yes" in refused.stderr
    restored = cli.run(
        "--json", "snapshot", "restore", str(app), "--into", str(target), "--repo", other_repo,
        "--yes",
    )  # fmt: skip
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert _fingerprint(cli, target) == _fingerprint(cli, app) != original


def test_copy_and_the_documented_exit_codes(cli: Cli, tmp_path: Path) -> None:
    app = _app(cli, stable=65536)
    other = cli.deploy_wasm(PLAIN_WASM)
    copied = cli.run("--json", "snapshot", "copy", str(app), str(other), "--yes")
    assert copied.returncode == 0, copied.stdout + copied.stderr
    assert _summary(copied)["same_subnet"] is True
    assert _fingerprint(cli, other) == _fingerprint(cli, app)

    repo = tmp_path / "repo"
    missing = cli.run("snapshot", "restore", str(app), "--repo", str(repo), "--yes")
    assert missing.returncode == 2, missing.stderr  # no repository there
    assert "not a snapshot repository" in missing.stderr
    assert cli.run("snapshot", "backup", str(app), "--repo", str(repo)).returncode == 0
    unknown = cli.run("snapshot", "restore", str(app), "feedface", "--repo", str(repo), "--yes")
    assert unknown.returncode == 2
    assert "no snapshot 'feedface'" in unknown.stderr
    r = Repository.open(repo)
    (chunk,) = [p for p in (repo / "chunks").rglob("*") if p.is_file()][:1]
    os.chmod(chunk, 0o644)
    chunk.write_bytes(chunk.read_bytes()[:-1] + b"\x00")
    damaged = cli.run("--json", "snapshot", "verify", "--repo", str(repo))
    assert damaged.returncode == 5
    assert _summary(damaged)["damaged"] == 1
    assert r.snapshot_ids()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("not a repository")
    refused = cli.run("snapshot", "backup", str(app), "--repo", str(busy))
    assert refused.returncode == 2
    assert "neither a snapshot repository nor empty" in refused.stderr


# ------------------------------------------------------------------ icp-cli

ICP = ROOT / "tools" / "clients" / "node_modules" / "@icp-sdk" / "icp-cli-linux-x64" / "bin" / "icp"


class _Icp:
    """icp-cli (pinned in tools/clients) with a throw-away home and the harness's identity."""

    def __init__(self, cli: Cli, home: Path) -> None:
        if not ICP.exists():
            message = f"icp-cli is not installed ({ICP}); run tools/install-clients.sh"
            if os.environ.get("CI"):
                pytest.fail(f"{message}; CI must not skip this test")
            pytest.skip(message)
        home.mkdir()
        self.cli = cli
        self.env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "NO_COLOR": "1",
        }
        self("identity", "import", "me", "--from-pem", str(cli.pem), "--storage", "plaintext")
        self("identity", "default", "me")

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            [str(ICP), *args], env=self.env, capture_output=True, text=True, timeout=240
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"icp {' '.join(args)} exited {done.returncode}:\n{output}"
        return output

    def canister(self, *args: str) -> str:
        network = ["--network", self.cli.net.url, "--root-key", self.cli.net.root_key.hex()]
        return self("canister", *args, *network)

    def snapshot_id(self, printed: str, canister: str) -> str:
        """The hex snapshot id the command printed that ``snapshot list`` also shows."""
        listed = self.canister("snapshot", "list", canister)
        for candidate in re.findall(r"\b[0-9a-f]{20,}\b", printed):
            if candidate in listed:
                return candidate
        raise AssertionError(f"no snapshot id in:\n{printed}\nthat the list shows:\n{listed}")


def test_icp_cli_uploads_what_export_dir_writes_and_import_dir_reads_its_downloads(
    cli: Cli, tmp_path: Path
) -> None:
    icp = _Icp(cli, tmp_path / "icp-home")
    app = _app(cli)
    state = _fingerprint(cli, app)
    repo = str(tmp_path / "repo")
    backup = _summary(cli.run("--json", "snapshot", "backup", str(app), "--repo", repo))

    # Ours → icp-cli: export-dir, then `icp canister snapshot upload` and restore.
    exported = tmp_path / "exported"
    done = cli.run("snapshot", "export-dir", str(backup["snapshot"]), str(exported), "--repo", repo)
    assert done.returncode == 0, done.stderr
    target = str(cli.deploy_wasm(PLAIN_WASM))
    assert _fingerprint(cli, Principal.from_text(target)) != state  # empty until restored
    icp.canister("stop", target)
    uploaded = icp.canister("snapshot", "upload", target, "--input", str(exported))
    icp.canister("snapshot", "restore", target, icp.snapshot_id(uploaded, target))
    icp.canister("start", target)
    assert _fingerprint(cli, Principal.from_text(target)) == state

    # icp-cli → ours: `icp canister snapshot download`, import-dir, restore with replicator.
    _change(cli, app, 5)
    changed = _fingerprint(cli, app)
    assert changed != state
    icp.canister("stop", str(app))
    created = icp.canister("snapshot", "create", str(app))
    downloaded = tmp_path / "downloaded"
    downloaded.mkdir()
    snapshot = icp.snapshot_id(created, str(app))
    icp.canister("snapshot", "download", str(app), snapshot, "--output", str(downloaded))
    icp.canister("start", str(app))
    other_repo = str(tmp_path / "other-repo")
    imported = cli.run(
        "--json", "snapshot", "import-dir", str(downloaded), str(app), "--repo", other_repo
    )
    assert imported.returncode == 0, imported.stderr
    into = cli.deploy_wasm(PLAIN_WASM)
    assert _fingerprint(cli, into) != changed
    restored = cli.run(
        "--json",
        "snapshot",
        "restore",
        str(app),
        "--into",
        str(into),
        "--repo",
        other_repo,
        "--yes",
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert _fingerprint(cli, into) == changed
