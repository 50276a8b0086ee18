"""The command line's renderers: bar, plain lines and JSON lines."""

from __future__ import annotations

import io
import json

import pytest

from replicator.cli.jobrun import RenderedProgress
from replicator.cli.render import (
    BarRenderer,
    JsonRenderer,
    LineRenderer,
    Meter,
    format_bytes,
    format_duration,
    make_renderer,
)
from replicator.job import CanisterRef, Job

MiB = 1024 * 1024
APP = "sppxf-mqaaa-fake2-aaaaa-cai"  # made up


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (12 * MiB, "12.0 MiB"), (3 << 30, "3.0 GiB")],
)
def test_sizes_are_binary_units(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_durations() -> None:
    assert format_duration(None) == "-"
    assert format_duration(17.4) == "0:17"
    assert format_duration(3723) == "1:02:03"


def test_meter_rate_and_eta_over_a_window() -> None:
    clock = FakeClock()
    meter = Meter(clock, window=5.0)
    meter.set_total(100 * MiB)
    assert meter.rate is None
    assert meter.eta is None
    for _ in range(10):
        clock.now += 1
        meter.update(meter.done + 2 * MiB)
    assert meter.rate == pytest.approx(2 * MiB, rel=0.01)
    assert meter.eta == pytest.approx(40, rel=0.01)
    assert meter.fraction == pytest.approx(0.2)
    # the window forgets the past: a faster phase shows within a few seconds
    for _ in range(6):
        clock.now += 1
        meter.update(meter.done + 8 * MiB)
    assert meter.rate == pytest.approx(8 * MiB, rel=0.05)


def test_meter_starts_over_when_progress_is_discarded() -> None:
    clock = FakeClock()
    meter = Meter(clock)
    clock.now += 1
    meter.update(10 * MiB)
    clock.now += 1
    meter.update(0)
    clock.now += 1
    meter.update(MiB)
    assert meter.rate is not None
    assert meter.rate > 0


def _events(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_are_throttled_and_end_with_the_summary() -> None:
    clock = FakeClock()
    out = io.StringIO()
    r = JsonRenderer(out, clock=clock, interval=1.0)
    r.start("j1", "backup", "a@local", None)
    r.total("j1", 10 * MiB)
    r.phase("j1", "copying")
    for i in range(1, 11):
        clock.now += 0.25
        r.progress("j1", i * MiB)
    r.retry("j1", "rate_limited", 0.5)
    r.summary({"ok": True, "exit_code": 0, "digest": b"\x01\x02"})
    events = _events(out)
    names = [e["event"] for e in events]
    assert names[:3] == ["start", "total", "phase"]
    progress = [e for e in events if e["event"] == "progress"]
    assert 2 <= len(progress) <= 4  # 2.5 s at most one a second, plus the final one
    assert progress[-1]["done_bytes"] == 10 * MiB
    assert progress[-1]["total_bytes"] == 10 * MiB
    assert events[-2] == {**events[-2], "reason": "rate_limited", "wait_seconds": 0.5}
    assert events[-1]["event"] == "summary"
    assert events[-1]["digest"] == "0102"
    assert all(isinstance(e["time"], float) for e in events)


def test_plain_lines_report_phases_and_periodic_progress() -> None:
    clock = FakeClock()
    out, err = io.StringIO(), io.StringIO()
    r = LineRenderer(out, err, clock=clock, interval=5.0)
    r.start("j1", "backup", "a@local", "b@local")
    r.total("j1", 64 * MiB)
    r.phase("j1", "copying")
    for i in range(1, 21):
        clock.now += 1
        r.progress("j1", i * 2 * MiB)
    r.summary({"job": "j1", "bytes": 40 * MiB, "ok": True})
    lines = err.getvalue().splitlines()
    assert lines[0] == "j1: backup a@local → b@local"
    assert lines[1] == "j1: copying  0 B/64.0 MiB (0%)  -  ETA -  retries 0"
    assert len([line for line in lines if "MiB/s" in line]) == 4  # every 5 s over 20 s
    assert "\r" not in err.getvalue()
    assert out.getvalue().splitlines() == [
        "job:   j1",
        "bytes: 40.0 MiB (41,943,040 bytes)",
        "ok:    yes",
    ]


def test_the_bar_redraws_in_place_and_keeps_its_last_state() -> None:
    clock = FakeClock()
    out, err = io.StringIO(), io.StringIO()
    r = BarRenderer(out, err, clock=clock)
    r.start("j1", "backup", "a@local", None)
    r.total("j1", 8 * MiB)
    r.phase("j1", "copying")
    for i in range(1, 9):
        clock.now += 0.5
        r.progress("j1", i * MiB)
    r.note("created backup canister x")
    r.phase("j1", "done")
    r.note("next step")
    r.close()
    text = err.getvalue()
    assert "\r\x1b[2K" in text
    assert "[########################]  8.0 MiB/8.0 MiB (100%)" in text
    assert "created backup canister x\n" in text
    assert text.endswith(
        "done       [########################]  8.0 MiB/8.0 MiB (100%)"
        "  2.0 MiB/s  ETA 0:00  retries 0\nnext step\n"
    )
    assert text.count("done ") == 1  # a finished bar is drawn once, not again after each note


def test_the_renderer_follows_the_terminal() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert isinstance(make_renderer(json_output=True, stdout=out, stderr=err), JsonRenderer)
    assert type(make_renderer(json_output=False, stdout=out, stderr=err)) is LineRenderer
    bar = make_renderer(json_output=False, stdout=out, stderr=err, tty=True)
    assert isinstance(bar, BarRenderer)


def test_a_resumed_job_reports_the_rate_of_this_run_only() -> None:
    """60 MiB were copied before a restart; this run moves 1 MiB/s, and says so."""
    clock = FakeClock()
    out = io.StringIO()
    renderer = JsonRenderer(out, clock=clock, interval=1.0)
    progress = RenderedProgress(renderer)
    job = Job("backup", CanisterRef(APP, "local"), None, id="backup-000000000001")
    progress.started(job, resumed=True)
    progress.total(job, 100 * MiB, 60 * MiB)
    for _ in range(4):
        clock.now += 1
        progress.advanced(job, MiB)
    events = [e for e in _events(out) if e["event"] == "progress"]
    assert events[-1]["done_bytes"] == 64 * MiB
    assert events[-1]["rate_bytes_per_second"] == pytest.approx(MiB, rel=0.01)
    assert events[-1]["eta_seconds"] == pytest.approx(36, rel=0.05)
