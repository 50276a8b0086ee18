"""Several real ``replicator serve`` workers on one PostgreSQL store, for tests and benchmarks.

A :class:`Workers` starts ``python -m replicator.cli serve`` subprocesses, each
with ``--state postgresql://…`` and a metrics port of its own, all reading the
same config file, and can SIGKILL or restart any of them.  What the workers
did is read back from the store (``replicator_schedule_runs``, the checkpoint
rows, the job locks) and from procrastinate's tables.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement against the shared store (autocommit); its rows."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        cursor = db.execute(statement.encode(), params)
        return list(cursor.fetchall()) if cursor.description else []


@dataclass
class Worker:
    index: int
    port: int
    log: Path
    proc: subprocess.Popen[bytes]
    started: float  # time.time()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        return body if status == 200 else ""

    def ready(self) -> dict[str, Any] | None:
        status, body = self.get("/readyz")
        if status == 0:
            return None
        try:
            parsed: dict[str, Any] = json.loads(body)
        except ValueError:
            return None
        return parsed


@dataclass
class Workers:
    """``serve`` workers sharing ``url``; ``config`` is the one TOML file they all read."""

    config: Path
    url: str
    logs: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: dict[int, Worker] = field(default_factory=dict)
    _runs: dict[int, int] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)  # kept across restarts (one target)

    def args(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "replicator.cli", "--config", str(self.config),
            "--state", self.url, "--metrics-port", str(port), "serve", "--grace", "5",
        ]  # fmt: skip

    def start(self, index: int) -> Worker:
        port = self.ports.setdefault(index, free_port())
        self._runs[index] = self._runs.get(index, 0) + 1
        log = self.logs / f"worker{index}.{self._runs[index]}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self.args(port),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        worker = Worker(index, port, log, proc, time.time())
        self.workers[index] = worker
        return worker

    def start_all(self, count: int) -> list[Worker]:
        return [self.start(i) for i in range(count)]

    def kill(self, index: int) -> float:
        """SIGKILL worker ``index`` (no goodbye); the time it died."""
        worker = self.workers[index]
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(30)
        return time.time()

    def stop(self, index: int, timeout: float = 30) -> int:
        worker = self.workers[index]
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
            try:
                return worker.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
                return -9
        return worker.proc.returncode

    def close(self) -> None:
        for worker in self.workers.values():
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()

    def all_logs(self) -> list[Path]:
        return sorted(self.logs.glob("worker*.log"))

    def tails(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name}:\n{p.read_text()[-chars:]}" for p in self.all_logs())

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = [w for w in self.workers.values() if w.alive()]
        while pending and time.monotonic() < deadline:
            pending = [w for w in pending if w.alive() and (w.ready() or {}).get("ready") is None]
            pending = [w for w in pending if w.get("/healthz")[0] != 200]
            time.sleep(0.2)
        if pending:
            late = [w.index for w in pending]
            raise TimeoutError(f"workers {late} did not answer\n{self.tails()}")

    # -- what the store says

    def runs(self, name: str | None = None) -> list[tuple[str, int, str, str]]:
        """Recorded scheduled runs: (name, tick, outcome, worker), by tick."""
        where, params = ("", ()) if name is None else (" WHERE name = %s", (name,))
        rows = sql(
            self.url,
            "SELECT name, tick, outcome, worker FROM replicator_schedule_runs"
            + where
            + " ORDER BY tick, name",
            params,
        )
        return [(str(n), int(t), str(o), str(w)) for n, t, o, w in rows]

    def holders(self) -> dict[str, str]:
        """Live store locks: fingerprint → holder description (``pid@host``)."""
        rows = sql(self.url, "SELECT fingerprint, pid, host FROM replicator_job_locks")
        return {str(f): f"{p}@{h}" for f, p, h in rows}

    def queue_jobs(self) -> list[tuple[int, str, str, int | None]]:
        """procrastinate's jobs: (id, name, status, worker id)."""
        rows = sql(
            self.url,
            "SELECT id, args->>'name', status::text, worker_id FROM procrastinate_jobs ORDER BY id",
        )
        return [(int(i), str(n), str(s), w) for i, n, s, w in rows]


def wait_for(what: str, check: Any, timeout: float, workers: Workers, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{workers.tails()}")


# ------------------------------------------------------------------ chaos


@dataclass
class Takeover:
    """One SIGKILL: which worker, what it was running, how long until others had it."""

    worker: int
    killed_at: float
    jobs: dict[str, float | None]  # job name → seconds until another worker held it (None: never)

    @property
    def longest(self) -> float | None:
        times = [t for t in self.jobs.values() if t is not None]
        return max(times) if times else None


def schedule_holders(url: str) -> dict[str, int]:
    """Scheduled job name → pid of the worker holding its running tick."""
    rows = sql(
        url,
        "SELECT fingerprint, pid FROM replicator_job_locks WHERE fingerprint LIKE 'schedule:%%'",
    )
    return {str(f).removeprefix("schedule:"): int(p) for f, p in rows}


def chaos(
    workers: Workers,
    kills: int,
    every: tuple[float, float],
    rng: Any,
    *,
    settle: float,
    restart_after: float = 0.5,
) -> list[Takeover]:
    """SIGKILL a random worker ``kills`` times, ``every`` (min, max) seconds, restarting it.

    Prefers a worker that runs something (a kill of an idle worker shows no
    takeover); the next kill comes once the previous takeover is over.  Each
    takeover is timed from the kill until every tick the dead worker held is
    held by another worker or recorded as run; ``settle`` seconds after the
    last kill, what was never taken over stays ``None``.
    """
    pending: list[tuple[Takeover, str, int]] = []
    done: list[Takeover] = []
    next_kill = time.monotonic() + rng.uniform(*every)
    last_kill = None
    while len(done) < kills or pending:
        now = time.monotonic()
        # One failure at a time: a kill waits until the previous takeover is over
        # (a worker that dies while taking a job over delays it by a second bound).
        if len(done) < kills and now >= next_kill and not pending:
            held = schedule_holders(workers.url)
            busy = [
                w for w in workers.workers.values() if w.alive() and w.proc.pid in held.values()
            ]
            victim = rng.choice(busy or [w for w in workers.workers.values() if w.alive()])
            names = [n for n, pid in held.items() if pid == victim.proc.pid]
            killed_at = workers.kill(victim.index)
            takeover = Takeover(victim.index, killed_at, dict.fromkeys(names))
            pending += [(takeover, name, victim.proc.pid) for name in names]
            done.append(takeover)
            time.sleep(restart_after)
            workers.start(victim.index)
            next_kill = time.monotonic() + rng.uniform(*every)
            last_kill = time.monotonic()
        if pending:
            held = schedule_holders(workers.url)
            still = []
            for takeover, name, pid in pending:
                holder = held.get(name)
                # Another worker holds the tick, or already ran it and let go.
                moved = holder not in (None, pid) or (
                    holder is None and _ran_after(workers, name, takeover.killed_at)
                )
                if moved:
                    takeover.jobs[name] = time.time() - takeover.killed_at
                else:
                    still.append((takeover, name, pid))
            pending = still
            if last_kill is not None and len(done) >= kills and now - last_kill > settle:
                break
        time.sleep(0.1)
    return done


def _ran_after(workers: Workers, name: str, since: float) -> bool:
    rows = sql(
        workers.url,
        "SELECT 1 FROM replicator_schedule_runs WHERE name = %s AND finished_at > %s",
        (name, since),
    )
    return bool(rows)


def takeover_table(takeovers: list[Takeover]) -> str:
    lines = ["kill  worker  jobs held  takeover (s)"]
    for i, t in enumerate(takeovers, 1):
        times = ", ".join(
            f"{n} {'never' if s is None else f'{s:.1f}'}" for n, s in sorted(t.jobs.items())
        )
        lines.append(f"{i:>4}  {t.worker:>6}  {len(t.jobs):>9}  {times or '-'}")
    return "\n".join(lines)
