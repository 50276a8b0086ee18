"""The benchmark table: verdicts, and the exit status of python -m benchmarks."""

from __future__ import annotations

import math

import pytest

from benchmarks import __main__ as bench_main
from benchmarks.figures import Figure, table


def test_verdicts_follow_the_direction_of_the_target() -> None:
    assert Figure("a", "c", 95.0, "%", target=90).verdict == "met"
    assert Figure("a", "c", 85.0, "%", target=90).verdict == "MISSED"
    assert Figure("cpu", "c", 2.5, "s", target=3, higher_is_better=False).verdict == "met"
    assert Figure("cpu", "c", 3.5, "s", target=3, higher_is_better=False).missed
    assert Figure("x", "c", math.nan, "x", target=1).missed
    assert Figure("x", "c", 1.0, "x").verdict == "info"


def test_the_table_names_each_configuration_once() -> None:
    lines: list[str] = []
    table(
        [
            Figure("ratio 8 MiB", "tuned: 32 in flight", 4.0, "x"),
            Figure("ratio 64 MiB", "tuned: 32 in flight", 12.0, "x", target=10),
            Figure("cpu", "defaults", 4.0, "CPU s/GiB", target=3, higher_is_better=False),
        ],
        lines.append,
    )
    assert lines[0].split() == ["figure", "config", "target", "measured", "verdict"]
    assert "MISSED" in lines[4]
    assert "<= 3.00 CPU s/GiB" in lines[4]
    assert lines[-2:] == ["[1] tuned: 32 in flight", "[2] defaults"]


def test_a_missed_figure_makes_the_run_fail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = {
        "good": [Figure("g", "c", 1, "", target=1)],
        "bad": [Figure("b", "c", 0, "", target=1)],
    }
    monkeypatch.setattr(bench_main, "_run", lambda name, options, quick: results[name])
    assert bench_main.main(["good"]) == 0
    assert bench_main.main(["good", "bad"]) == 1
    assert "targets missed: b" in capsys.readouterr().err
