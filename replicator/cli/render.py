"""What the command line shows while a job runs: a progress bar, plain lines, or JSON.

Three renderers share one interface (:class:`Renderer`):

- :class:`BarRenderer` (stderr is a terminal): one line redrawn in place,
  at most ten times a second::

      backup  copying  [#########.........]  12.0/64.0 MiB  3.1 MiB/s  ETA 0:17  retries 0

- :class:`LineRenderer` (stderr is a file or a pipe, e.g. under systemd): one
  plain line per phase change and at most one progress line every
  ``interval`` seconds, so logs stay readable;
- :class:`JsonRenderer` (``--json``): one JSON object per line on stdout,
  nothing else on stdout.  Every object has ``"event"`` and ``"time"`` (Unix
  seconds); the events are

  ========  ==================================================================
  event     fields
  ========  ==================================================================
  start     job, kind, source, target (null when none)
  total     job, total_bytes
  phase     job, phase (``preparing``, ``copying``, ``committing``, ...)
  progress  job, done_bytes, total_bytes, rate_bytes_per_second, eta_seconds
            (null while unknown); at most one every ``interval`` seconds
  retry     job, reason (``rate_limited``, ``overloaded``, ...), wait_seconds
  note      message, plus free fields (e.g. ``canister`` for a created canister)
  error     message, exit_code
  summary   ok, exit_code and the command's result fields; always the last line
  ========  ==================================================================

Human renderers write to stderr and print the summary as ``key: value`` lines
on stdout, so ``replicator backup ... > result.txt`` keeps only the result.
Sizes are shown in binary units (KiB, MiB, GiB), rates per second.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TextIO

Clock = Callable[[], float]

KiB = 1024
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
# Rates are averaged over this many seconds: long enough to smooth bursts of
# 2 MiB chunks, short enough to show a change of limit within a few seconds.
RATE_WINDOW_S = 5.0
BAR_WIDTH = 24
BAR_REFRESH_S = 0.1
LINE_INTERVAL_S = 5.0
FINAL_PHASES = frozenset({"done", "failed", "cancelled"})


def format_bytes(n: float) -> str:
    """``12.0 MiB``; bytes below 1 KiB as integers."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < KiB or unit == _UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= KiB
    raise AssertionError("unreachable")


def format_rate(bytes_per_second: float | None) -> str:
    return "-" if bytes_per_second is None else f"{format_bytes(bytes_per_second)}/s"


def format_duration(seconds: float | None) -> str:
    """``0:17``, ``1:02:03``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Meter:
    """Bytes done, rate over a sliding window, and the ETA they imply."""

    def __init__(self, clock: Clock = time.monotonic, window: float = RATE_WINDOW_S) -> None:
        self._clock = clock
        self._window = window
        self.started = clock()
        self.total: int | None = None
        self.done = 0
        self._samples: deque[tuple[float, int]] = deque([(self.started, 0)])

    def set_total(self, total: int, done: int = 0) -> None:
        """The size is known; ``done`` bytes were copied by earlier runs.

        The rate counts only what moves from now on: bytes a resumed job
        already had are not a burst of this run.
        """
        self.total = total
        self.done = done
        self._samples = deque([(self._clock(), done)])

    def update(self, done: int) -> None:
        now = self._clock()
        if done < self.done:  # the job discarded progress (another image): start over
            self._samples.clear()
        self.done = done
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    @property
    def rate(self) -> float | None:
        """Bytes per second over the window; ``None`` before two samples."""
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        span = max(self._clock(), t1) - t0
        if span <= 0 or len(self._samples) < 2:
            return None
        return (d1 - d0) / span

    @property
    def eta(self) -> float | None:
        rate = self.rate
        if self.total is None or not rate or rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / rate)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


class Renderer:
    """The interface every renderer implements; the base renders nothing."""

    # JSON output ends with a summary object even when the command failed early.
    always_summarize = False

    def start(self, job_id: str, kind: str, source: str, target: str | None) -> None:
        """A job starts (or resumes)."""

    def total(self, job_id: str, total_bytes: int, done_bytes: int = 0) -> None:
        """The job's size became known; ``done_bytes`` were copied by earlier runs."""

    def phase(self, job_id: str, phase: str) -> None:
        """The job entered ``phase``."""

    def progress(self, job_id: str, done_bytes: int) -> None:
        """``done_bytes`` (absolute, not a delta) are copied or checked."""

    def retry(self, job_id: str, reason: str, wait_seconds: float) -> None:
        """A transient error is retried after ``wait_seconds``."""

    def note(self, message: str, **fields: Any) -> None:
        """Something worth a line (a canister created, a step of the demo)."""

    def error(self, message: str, exit_code: int) -> None:
        """The command failed with ``exit_code``; ``message`` says what to do."""

    def summary(self, fields: Mapping[str, Any]) -> None:
        """The command's result; the last thing rendered."""

    def close(self) -> None:
        """Finish any partly drawn line."""


def make_renderer(
    *,
    json_output: bool,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    tty: bool | None = None,
    quiet: bool = False,
) -> Renderer:
    """The renderer for this terminal: JSON if asked, a bar on a TTY, else lines."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    if json_output:
        return JsonRenderer(out)
    if tty is None:
        tty = err.isatty()
    if quiet:
        return _HumanRenderer(out, err)
    return BarRenderer(out, err) if tty else LineRenderer(out, err)


# ------------------------------------------------------------------- JSON


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class JsonRenderer(Renderer):
    """``--json``: one object per line (see the module docstring)."""

    always_summarize = True

    def __init__(
        self, out: TextIO, *, clock: Clock = time.monotonic, interval: float = 1.0
    ) -> None:
        self._out = out
        self._clock = clock
        self._interval = interval
        self._meters: dict[str, Meter] = {}
        self._last_progress: dict[str, float] = {}

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self._out.write(json.dumps(record, default=_json_default, sort_keys=False) + "\n")
        self._out.flush()

    def _meter(self, job_id: str) -> Meter:
        return self._meters.setdefault(job_id, Meter(self._clock))

    def start(self, job_id: str, kind: str, source: str, target: str | None) -> None:
        self._meters[job_id] = Meter(self._clock)
        self.emit("start", job=job_id, kind=kind, source=source, target=target)

    def total(self, job_id: str, total_bytes: int, done_bytes: int = 0) -> None:
        self._meter(job_id).set_total(total_bytes, done_bytes)
        self.emit("total", job=job_id, total_bytes=total_bytes)

    def phase(self, job_id: str, phase: str) -> None:
        self._flush_progress(job_id)
        self.emit("phase", job=job_id, phase=phase)

    def progress(self, job_id: str, done_bytes: int) -> None:
        meter = self._meter(job_id)
        meter.update(done_bytes)
        now = self._clock()
        finished = meter.total is not None and done_bytes >= meter.total
        if finished or now - self._last_progress.get(job_id, -math.inf) >= self._interval:
            self._emit_progress(job_id, meter, now)

    def _flush_progress(self, job_id: str) -> None:
        meter = self._meters.get(job_id)
        if meter is not None and meter.done and self._last_progress.get(job_id) is not None:
            self._emit_progress(job_id, meter, self._clock())

    def _emit_progress(self, job_id: str, meter: Meter, now: float) -> None:
        self._last_progress[job_id] = now
        rate = meter.rate
        eta = meter.eta
        self.emit(
            "progress",
            job=job_id,
            done_bytes=meter.done,
            total_bytes=meter.total,
            rate_bytes_per_second=None if rate is None else round(rate),
            eta_seconds=None if eta is None else round(eta, 1),
        )

    def retry(self, job_id: str, reason: str, wait_seconds: float) -> None:
        self.emit("retry", job=job_id, reason=reason, wait_seconds=round(wait_seconds, 3))

    def note(self, message: str, **fields: Any) -> None:
        self.emit("note", message=message, **fields)

    def error(self, message: str, exit_code: int) -> None:
        self.emit("error", message=message, exit_code=exit_code)

    def summary(self, fields: Mapping[str, Any]) -> None:
        self.emit("summary", **fields)


# ------------------------------------------------------------------ human


class _HumanRenderer(Renderer):
    """Notes and errors on stderr, the summary as ``key: value`` lines on stdout."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._out = out
        self._err = err

    def _line(self, text: str) -> None:
        self._err.write(text + "\n")
        self._err.flush()

    def note(self, message: str, **fields: Any) -> None:
        del fields
        self._line(message)

    def error(self, message: str, exit_code: int) -> None:
        self._line(f"error: {message} (exit code {exit_code})")

    def summary(self, fields: Mapping[str, Any]) -> None:
        width = max((len(k) for k in fields), default=0)
        for key, value in fields.items():
            self._out.write(f"{key + ':':<{width + 1}} {_show(key, value)}\n")
        self._out.flush()


def _show(key: str, value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, int | float) and key.endswith("per_second") and "bytes" in key:
        return format_rate(value)
    if isinstance(value, int | float) and (key.endswith("bytes") or key in _SIZE_KEYS):
        return f"{format_bytes(value)} ({int(value):,} bytes)"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


_SIZE_KEYS = frozenset({"size", "bytes_copied", "bytes"})


class _JobView:
    """What the human renderers remember about one job."""

    def __init__(self, kind: str, clock: Clock) -> None:
        self.kind = kind
        self.phase = "pending"
        self.meter = Meter(clock)
        self.retries = 0

    def status(self) -> str:
        meter = self.meter
        done = format_bytes(meter.done)
        size = f"{done}/{format_bytes(meter.total)}" if meter.total is not None else done
        fraction = meter.fraction
        percent = f" ({fraction:.0%})" if fraction is not None else ""
        return (
            f"{size}{percent}  {format_rate(meter.rate)}  ETA {format_duration(meter.eta)}"
            f"  retries {self.retries}"
        )


class LineRenderer(_HumanRenderer):
    """Plain lines for logs: phase changes, and progress every ``interval`` seconds."""

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        *,
        clock: Clock = time.monotonic,
        interval: float = LINE_INTERVAL_S,
    ) -> None:
        super().__init__(out, err)
        self._clock = clock
        self._interval = interval
        self._jobs: dict[str, _JobView] = {}
        self._last: dict[str, float] = {}

    def _job(self, job_id: str) -> _JobView:
        return self._jobs.setdefault(job_id, _JobView("job", self._clock))

    def start(self, job_id: str, kind: str, source: str, target: str | None) -> None:
        self._jobs[job_id] = _JobView(kind, self._clock)
        arrow = f" → {target}" if target is not None else ""
        self._line(f"{job_id}: {kind} {source}{arrow}")

    def total(self, job_id: str, total_bytes: int, done_bytes: int = 0) -> None:
        self._job(job_id).meter.set_total(total_bytes, done_bytes)

    def phase(self, job_id: str, phase: str) -> None:
        view = self._job(job_id)
        view.phase = phase
        extra = f"  {view.status()}" if view.meter.done or view.meter.total else ""
        self._line(f"{job_id}: {phase}{extra}")

    def progress(self, job_id: str, done_bytes: int) -> None:
        view = self._job(job_id)
        view.meter.update(done_bytes)
        now = self._clock()
        if now - self._last.get(job_id, view.meter.started) >= self._interval:
            self._last[job_id] = now
            self._line(f"{job_id}: {view.phase}  {view.status()}")

    def retry(self, job_id: str, reason: str, wait_seconds: float) -> None:
        self._job(job_id).retries += 1
        self._line(f"{job_id}: retrying ({reason}) in {wait_seconds:.1f} s")


class BarRenderer(LineRenderer):
    """A progress bar redrawn in place on a terminal."""

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        *,
        clock: Clock = time.monotonic,
        refresh: float = BAR_REFRESH_S,
    ) -> None:
        super().__init__(out, err, clock=clock, interval=refresh)
        self._drawn = False
        self._current: str | None = None

    def _line(self, text: str) -> None:
        self._clear()
        super()._line(text)
        self._redraw()

    def _clear(self) -> None:
        if self._drawn:
            self._err.write("\r\x1b[2K")
            self._drawn = False

    def _redraw(self) -> None:
        if self._current is None or self._current not in self._jobs:
            return
        view = self._jobs[self._current]
        fraction = view.meter.fraction
        filled = round((fraction or 0.0) * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self._err.write(f"\r\x1b[2K{view.kind}  {view.phase:<10} [{bar}]  {view.status()}")
        self._err.flush()
        self._drawn = True

    def start(self, job_id: str, kind: str, source: str, target: str | None) -> None:
        self.close()  # keep the previous job's last bar on screen
        super().start(job_id, kind, source, target)
        self._current = job_id

    def phase(self, job_id: str, phase: str) -> None:
        self._job(job_id).phase = phase
        self._clear()
        self._redraw()
        if phase in FINAL_PHASES and job_id == self._current:
            self.close()  # the bar's last state stays on screen; notes go below it

    def progress(self, job_id: str, done_bytes: int) -> None:
        view = self._job(job_id)
        view.meter.update(done_bytes)
        now = self._clock()
        if now - self._last.get(job_id, -math.inf) >= self._interval:
            self._last[job_id] = now
            self._redraw()

    def retry(self, job_id: str, reason: str, wait_seconds: float) -> None:
        self._job(job_id).retries += 1
        self._redraw()

    def summary(self, fields: Mapping[str, Any]) -> None:
        self.close()
        super().summary(fields)

    def close(self) -> None:
        if self._drawn:  # leave the bar as last drawn and move below it
            self._err.write("\n")
            self._err.flush()
            self._drawn = False
        self._current = None
