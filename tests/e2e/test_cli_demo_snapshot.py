"""``replicator demo --snapshot`` end to end: a fresh process tours snapshots on its own IC."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cli_harness import ROOT, json_lines

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MiB = 1024 * 1024


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicator.cli", "demo", "--snapshot", *args],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_the_snapshot_tour_dedupes_the_second_backup_and_restores_a_new_canister() -> None:
    result = _demo("--mib", "2", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    events = json_lines(result.stdout)
    s = events[-1]
    assert s["event"] == "summary"
    assert (s["ok"], s["exit_code"]) == (True, 0)
    # 2 MiB of data: an eighth as 4 KiB entries on the heap, the rest in stable memory.
    assert s["entries"] == 64
    assert s["heap_bytes"] == 64 * 4096
    assert s["stable_bytes"] == 2 * MiB - 64 * 4096
    assert (s["changed_pages"], s["changed_entries"]) == (4, 1)  # 1 % of 448 pages, 64 entries
    # Each backup stopped the canister for a moment and says for how long.
    for n in (1, 2):
        assert 0 < s[f"backup_{n}_downtime_seconds"] < s[f"backup_{n}_seconds"]
        assert s[f"backup_{n}_snapshot_bytes"] > s["stable_bytes"]  # the whole canister
    # The first backup stores everything once (zero pages dedupe even then); the
    # second only what the change touched.
    assert 0 < s["backup_1_new_bytes"] < s["backup_1_snapshot_bytes"]
    assert 0 < s["backup_2_new_bytes"] < s["backup_1_new_bytes"] / 4
    assert s["backup_2_new_percent"] == round(
        100 * s["backup_2_new_bytes"] / s["backup_2_snapshot_bytes"], 2
    )
    logical = s["backup_1_snapshot_bytes"] + s["backup_2_snapshot_bytes"]
    assert s["repository_logical_bytes"] == logical
    assert s["repository_stored_bytes"] < logical / 2
    # The restored canister is a new one and answers what the source answers.
    assert s["restored_canister"] != s["canister"]
    assert s["canisters_created"] == 1
    assert s["fingerprint_restored"] == s["fingerprint_source"]
    assert s["fingerprint_source"] != s["fingerprint_first_backup"]  # the change is in it
    assert s["queries_compared"] >= 5

    kinds = [e["kind"] for e in events if e["event"] == "start"]
    assert kinds == ["generate", "snapshot-backup", "snapshot-backup", "snapshot-restore"]
    done = [e for e in events if e["event"] == "phase" and e["phase"] == "done"]
    assert len(done) == 4
    notes = " ".join(str(e["message"]) for e in events if e["event"] == "note")
    assert "deployed plain_kv (a Motoko canister without ICRP)" in notes
    assert "was new to the repository" in notes
    assert f"{s['restored_canister']} answers the same" in notes
