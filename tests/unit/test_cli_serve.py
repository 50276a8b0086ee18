"""replicator serve: which jobs it serves, and what the checkpoints say about them at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicator.checkpoints import JobSummary
from replicator.cli.main import main
from replicator.cli.serve import plan_jobs
from replicator.config import load_config
from replicator.errors import EXIT_USAGE, ConfigError, UsageError
from replicator.job import CanisterRef, Phase

APP = "sppxf-mqaaa-fake2-aaaaa-cai"
BACKUP = "kipf3-nqaaa-fake3-aaaaa-cai"
OTHER = "plfju-2iaaa-fake4-aaaaa-cai"

CONFIG = f"""
network = "local"
[canisters]
app = "{APP}"
[jobs.nightly]
kind = "backup"
source = "app"
target = "{BACKUP}"
schedule = "0 1 * * *"
[jobs.own]
kind = "backup"
source = "{OTHER}"
schedule = "every 1h"
[jobs.manual]
kind = "backup"
source = "{OTHER}"
target = "{BACKUP}"
"""


def _config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "replicator.toml"
    path.write_text(text)
    return path


def _summary(
    kind: str, source: str, target: str | None, phase: Phase, updated: float
) -> JobSummary:
    return JobSummary(
        id=f"{kind}-{updated}",
        kind=kind,
        phase=phase,
        source=source,
        target=target,
        created_at=updated - 1,
        updated_at=updated,
        chunks_acked=0,
        chunks_total=None,
        error=None,
    )


def test_only_scheduled_jobs_are_served(tmp_path: Path) -> None:
    plans = {p.name: p for p in plan_jobs(load_config(_config(tmp_path)))}
    assert set(plans) == {"nightly", "own"}
    nightly, own = plans["nightly"], plans["own"]
    assert nightly.request.target == CanisterRef(BACKUP, "local")
    assert nightly.network == "local"
    # No target: a backup into the source's own backup canister, planned at each run.
    assert own.request.target is None
    assert own.request.source == CanisterRef(OTHER, "local")


def test_resume_reads_the_newest_run_and_the_last_success(tmp_path: Path) -> None:
    plans = {p.name: p for p in plan_jobs(load_config(_config(tmp_path)))}
    app, backup, other = f"{APP}@local", f"{BACKUP}@local", f"{OTHER}@local"
    summaries = [
        _summary("backup", app, backup, Phase.DONE, 100.0),
        _summary("backup", app, backup, Phase.DONE, 200.0),
        _summary("backup", app, backup, Phase.CANCELLED, 300.0),
        _summary("verify", app, None, Phase.COPYING, 400.0),  # another kind
        _summary("backup", other, backup, Phase.DONE, 500.0),  # `manual`, not `own`
        _summary("backup", other, f"{APP}@local", Phase.FAILED, 600.0),  # own, created target
    ]
    nightly = plans["nightly"].resume(summaries)
    assert nightly.unfinished == Phase.CANCELLED
    assert nightly.last_success == 200.0
    assert nightly.now
    own = plans["own"].resume(summaries)
    assert own.unfinished == Phase.FAILED  # waits for its next run
    assert not own.now
    assert own.last_success == 500.0  # any backup of the source counts (it has no fixed target)
    fresh = plans["nightly"].resume([])
    assert (fresh.unfinished, fresh.last_success) == (None, None)


def test_nothing_scheduled_is_a_usage_error(tmp_path: Path) -> None:
    text = CONFIG.replace('schedule = "0 1 * * *"\n', "").replace('schedule = "every 1h"\n', "")
    with pytest.raises(UsageError, match=r"no job has a schedule.*schedule = "):
        plan_jobs(load_config(_config(tmp_path, text)))


def test_two_jobs_doing_the_same_are_refused(tmp_path: Path) -> None:
    text = CONFIG + (
        f'[jobs.again]\nkind = "backup"\nsource = "app"\ntarget = "{BACKUP}"\n'
        'schedule = "every 5m"\n'
    )
    with pytest.raises(UsageError, match="'nightly' and 'again' copy the same source"):
        plan_jobs(load_config(_config(tmp_path, text)))


def test_an_unresolvable_scheduled_job_names_its_key(tmp_path: Path) -> None:
    text = CONFIG.replace('source = "app"', 'source = "nosuch"')
    with pytest.raises(ConfigError, match=r"jobs\.nightly\.source"):
        plan_jobs(load_config(_config(tmp_path, text)))


def test_serve_without_schedules_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = CONFIG.replace('schedule = "0 1 * * *"\n', "").replace('schedule = "every 1h"\n', "")
    config = _config(tmp_path, text)
    state = tmp_path / "state.sqlite3"
    assert main(["--config", str(config), "--state", str(state), "serve"]) == EXIT_USAGE
    assert "no job has a schedule" in capsys.readouterr().err
