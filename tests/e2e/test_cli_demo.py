"""``replicator demo`` end to end: a fresh process starts its own local IC and tours it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cli_harness import ROOT, json_lines

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicator.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_a_small_demo_backs_up_wipes_and_restores() -> None:
    result = _demo("--mib", "4", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    events = json_lines(result.stdout)
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["ok"] is True
    assert summary["exit_code"] == 0
    assert summary["fingerprint"] == summary["fingerprint_after_restore"]
    assert int(str(summary["users"])) > 0
    assert 4 * 1024 * 1024 <= int(str(summary["image_bytes"])) < 5 * 1024 * 1024
    assert len(str(summary["digest"])) == 64
    assert summary["canisters_created"] == 1
    assert summary["backup_canister"] != summary["app"]
    assert summary["route"] == "direct"
    assert summary["limit_bytes_per_second"] == 8 * 1024 * 1024
    assert str(summary["metrics_url"]).startswith("http://127.0.0.1:")
    assert str(summary["metrics_url"]).endswith("/metrics")

    kinds = [e["kind"] for e in events if e["event"] == "start"]
    assert kinds == ["generate", "backup", "verify", "restore", "verify"]
    done = [e for e in events if e["event"] == "phase" and e["phase"] == "done"]
    assert len(done) == 5
    wiped = [e for e in events if e["event"] == "note" and "0 users" in str(e["message"])]
    assert wiped  # the app really was empty before the restore


def test_a_bad_demo_size_is_a_usage_error() -> None:
    result = _demo("--mib", "0")
    assert result.returncode == 2
    assert "--mib" in result.stderr


def test_the_split_tour_splits_routes_and_compacts() -> None:
    result = _demo("--mib", "4", "--split", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    events = json_lines(result.stdout)
    summary = events[-1]
    assert summary["ok"] is True
    routing = summary["routing"]
    assert isinstance(routing, list)
    assert len(routing) == 3
    assert routing[0]["canister"] == summary["app"]
    assert summary["source_after"][0] < summary["source_before"][0]  # type: ignore[index]
    assert summary["memory_after"] < summary["memory_before"]  # type: ignore[operator]
    assert summary["canisters_created"] == 3  # the backup canister and two shards
    kinds = [e["kind"] for e in events if e["event"] == "start"]
    assert kinds[-2:] == ["split", "compact"]
