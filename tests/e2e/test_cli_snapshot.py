"""``replicator snapshot …`` as a user runs it: jobs, the repository commands, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from cli_harness import ROOT, Cli, json_lines
from icp_candid import Types

from canister_iface.candid_value import Rec, decode_single, encode_values
from canister_iface.principal import Principal
from replicator.repository import Repository

pytestmark = pytest.mark.e2e

PLAIN_WASM = ROOT / "canister_iface" / "wasm" / "plain_kv.wasm"


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
