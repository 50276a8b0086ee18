"""Schedules of named jobs in the TOML config (``replicator serve``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from replicator.config import load_config
from replicator.errors import ConfigError
from replicator.limits import Window
from replicator.schedule import Cron, Every, JobSchedule

APP = "sppxf-mqaaa-fake2-aaaaa-cai"
BACKUP = "kipf3-nqaaa-fake3-aaaaa-cai"
JOB = f'[jobs.nightly]\nkind = "backup"\nsource = "{APP}"\ntarget = "{BACKUP}"\n'


def _load(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "replicator.toml"
    path.write_text(JOB + extra)
    return path


def test_a_job_without_schedule_runs_on_demand_only(tmp_path: Path) -> None:
    config = load_config(_load(tmp_path, ""))
    assert config.jobs["nightly"].schedule is None


def test_cron_schedule_with_jitter_and_windows(tmp_path: Path) -> None:
    extra = 'schedule = "30 1 * * *"\njitter = "10m"\nwindows = ["01:00-05:00"]\n'
    schedule = load_config(_load(tmp_path, extra)).jobs["nightly"].schedule
    assert schedule == JobSchedule(
        Cron.parse("30 1 * * *"), jitter=600.0, windows=(Window.parse("01:00-05:00"),)
    )
    run = schedule.next_run("nightly", dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    assert run.date() == dt.date(2026, 3, 1)
    assert dt.time(1, 30) <= run.time() < dt.time(1, 40)


def test_interval_schedule_and_numeric_jitter(tmp_path: Path) -> None:
    extra = 'schedule = "every 6h"\njitter = 30\nwindows = "22:00-02:00"\n'
    schedule = load_config(_load(tmp_path, extra)).jobs["nightly"].schedule
    assert schedule == JobSchedule(Every(21600), 30.0, (Window.parse("22:00-02:00"),))


@pytest.mark.parametrize(
    ("extra", "key", "expected"),
    [
        ('schedule = "61 * * * *"', "jobs.nightly.schedule", "cron expression"),
        ('schedule = "every soon"', "jobs.nightly.schedule", "every <duration>"),
        ("schedule = 5", "jobs.nightly.schedule", "a string"),
        ('schedule = "@daily"\njitter = "lots"', "jobs.nightly.jitter", "a duration"),
        ('schedule = "@daily"\njitter = [1]', "jobs.nightly.jitter", "a duration"),
        ('schedule = "@daily"\nwindows = ["1-5"]', r"jobs.nightly.windows\[0\]", "UTC window"),
        ('jitter = "1m"', "jobs.nightly.jitter", "jobs.nightly.schedule to be set"),
        ('windows = ["01:00-02:00"]', "jobs.nightly.windows", "schedule to be set"),
        ('schedul = "@daily"', "jobs.nightly.schedul", "a typo"),
    ],
)
def test_bad_schedules_name_their_key(tmp_path: Path, extra: str, key: str, expected: str) -> None:
    path = _load(tmp_path, extra + "\n")
    with pytest.raises(ConfigError, match=rf"^{path}: {key}: expected .*{expected}"):
        load_config(path)
