"""Fleet actions other than backup, on localnet over HTTP: snapshot-backup, verify, compact.

Three demo apps (the same generated data, so their snapshots share most
chunks) form a fleet listed in a file.  A backup run gives each its backup
canister; ``verify`` reads each back (a fourth member without a backup
canister fails as a usage error, the others go on); ``snapshot-backup``
stores one snapshot per member in one repository, where the members' common
chunks are stored once; ``compact`` reinstalls and restores each member in
place, its data intact.  Each action keeps its own rows in the member table
and its own series (label ``action``).  About a minute on the shared machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import COUNTER_WASM, NETWORK, World, world

from replicator.flows import fleet
from replicator.job import ArchiveRef, JobRequest, Phase
from replicator.repository import Repository

pytestmark = pytest.mark.integration

MEMBERS = 3


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as made:
        yield made


def runs(w: World, action: str, outcome: str) -> float:
    labels = {"name": "demos", "action": action, "outcome": outcome}
    return w.metrics.registry.get_sample_value("replicator_fleet_member_runs_total", labels) or 0.0


async def test_snapshot_backup_verify_and_compact_over_a_fleet(w: World, tmp_path: Path) -> None:
    demos = [await w.demo(mib=1, seed=7) for _ in range(MEMBERS)]
    prints = {d.to_text(): await w.fingerprint(d) for d in demos}
    listing = tmp_path / "members.txt"
    listing.write_text("\n".join(prints))
    source = ArchiveRef(str(listing))
    repo_dir = tmp_path / "repo"

    def run(
        action: str, *, members: str | None = None, repository: str | None = None
    ) -> JobRequest:
        return fleet.request(
            source,
            name="demos",
            network=NETWORK,
            action=action,
            members=members,
            repository=repository,
        )

    async with w.engine() as engine:
        table = engine.store.fleets  # type: ignore[attr-defined]
        backed = await engine.submit(fleet.request(source, name="demos", network=NETWORK))
        assert backed.details["members_ok"] == MEMBERS, backed.details

        # verify: each member's backup canister read back; one without fails alone.
        stray = await w.create(COUNTER_WASM)
        checked = await engine.submit(run("verify", members=stray.to_text()))
        assert checked.phase == Phase.DONE, checked.error
        assert (checked.details["members_ok"], checked.details["members_failed"]) == (MEMBERS, 1)
        assert checked.details["member_failures"] == {"usage": 1}
        rows = {r.member: r for r in await table.members("demos@verify")}
        assert "no backup canister to verify" in (rows[stray.to_text()].last_error or "")
        backups = {r.member: r for r in await table.members("demos")}
        assert stray.to_text() not in backups  # the backup rows are the backup action's
        assert all(r.runs == 1 for r in backups.values())
        assert (runs(w, "verify", "ok"), runs(w, "verify", "failed")) == (MEMBERS, 1)

        # snapshot-backup: one repository for the fleet; common chunks stored once.
        dry = await engine.dry_run(run("snapshot-backup", repository=str(repo_dir)))
        assert [a.verb for a in dry.actions] == ["stop", "move"]
        snapped = await engine.submit(run("snapshot-backup", repository=str(repo_dir)))
        assert snapped.details["members_ok"] == MEMBERS, snapped.details
        stats = Repository.open(repo_dir).stats()
        assert stats.snapshots == MEMBERS
        assert stats.dedup_ratio > 1.5, stats  # the members' shared data is stored once
        canisters = {s.manifest.canister for s in Repository.open(repo_dir).scan_manifests()[0]}
        assert canisters == set(prints)

        # compact: each member in place, its data intact; the backup canisters reused.
        compacted = await engine.submit(run("compact"))
        assert compacted.details["members_ok"] == MEMBERS, compacted.details
        for demo in demos:
            assert await w.fingerprint(demo) == prints[demo.to_text()]
        done = {r.member: r for r in await table.members("demos@compact")}
        assert {r.backup for r in done.values()} == {r.backup for r in backups.values()}

    with pytest.raises(Exception, match="needs a repository directory"):
        async with w.engine() as engine:
            await engine.submit(run("snapshot-backup"))
