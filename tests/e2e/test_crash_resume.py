"""A backup survives being killed over and over: SIGKILL while chunks are copied, then resume.

The ``replicator backup`` command runs as a subprocess against localnet in
another process, under a low bytes-per-second limit so that the copy spans
many runs.  Every run is the same command again; it finds its job by
fingerprint and continues from the checkpoint.  Odd runs take the relay path
(``icrp_read`` + ``icrp_write``), even runs the direct path (``icrp_push``),
so the same image is written by both; each path is killed twice, and every
run after the first resumes what a killed run of the other path left.  Each
run serves ``/metrics`` on a free port, and the test kills it once that run
has copied bytes (``replicator_copied_bytes_total`` > 0): every kill lands
while chunks are being copied, on both paths.

What must hold:

- after every kill the checkpoint is still copying, holds every chunk it
  held before and more (the runs made progress), and the run copied only
  chunks that were not acknowledged before it (its ``copied_chunks`` never
  exceed the chunks it newly acknowledged): nothing acknowledged is written
  again;
- no run ever saw a ``Conflict`` (the backup canister refuses different bytes
  at an offset it holds) or a digest mismatch;
- the last interruption is a SIGINT (Ctrl-C): exit code 130, a summary naming
  the job, and ``replicator resume <job>`` finishes it, skipping every chunk
  acknowledged before (``chunks_skipped``) and copying only the rest;
- the backup holds the source's image (equal digests, ``replicator verify``
  agrees chunk by chunk), one job did it all, and the peer lists of both
  canisters are as they were (the direct path's grants were revoked, also
  those of killed runs);
- a final restore into a fresh canister gives the source's digest and the
  same ``stats()`` fingerprint.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from cli_harness import UNPACED_LIMITS, Cli, json_lines
from prometheus_client.parser import text_string_to_metric_families

from canister_iface.principal import Principal
from replicator.checkpoints import SqliteStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MIB_IMAGE = 24
KILLS = 4  # two on each path: more kills exercise nothing new, they take time
RATE = "1 MiB"  # bytes per second: each run copies a chunk or two before it is killed
BAD_WORDS = ("Conflict", "DigestMismatch", "digest mismatch", "Traceback")


@pytest.fixture
def cli_config_extra() -> str:
    return UNPACED_LIMITS  # the killed runs are paced by --bytes-per-second


class Run:
    """One ``replicator backup`` subprocess: its JSON lines as they come, its /metrics."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.proc = cli.popen(*args, "--metrics-port", "0")
        self.lines: list[str] = []
        self.metrics_url: str | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if '"metrics_url"' in line:
                self.metrics_url = json.loads(line).get("metrics_url")

    def copied(self, name: str = "replicator_copied_bytes_total") -> float:
        """What this run has copied so far (its own counter: a new process starts at 0)."""
        if self.metrics_url is None or self.proc.poll() is not None:
            return 0.0
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        )

    def wait_copying(self, timeout: float) -> bool:
        """Until this run's copied bytes are > 0 (not merely the plan or the first total)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.copied() > 0:
                return True
            time.sleep(0.05)
        return False

    def finish(self, timeout: float = 60) -> tuple[int, list[dict[str, object]], str]:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stdout and self.proc.stdout.close()
        self.proc.stderr.close()
        return code, json_lines("".join(self.lines)), err

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)


def _backup_args(source: Principal, target: Principal) -> list[str]:
    return ["--json", "backup", str(source), str(target), "--bytes-per-second", RATE]


def _via(attempt: int) -> str:
    return "relay" if attempt % 2 else "direct"


def _checkpoint(state: Path) -> tuple[str, str, set[int], int | None]:
    """The one job's id, phase, acknowledged chunks and chunk count."""

    async def load() -> tuple[str, str, set[int], int | None]:
        async with await SqliteStore.open(state) as store:
            (job,) = await store.list_jobs()
            checkpoint = await store.load(job.id)
            return job.id, job.phase, set(checkpoint.acked), job.chunks_total

    return asyncio.run(load())


def _no_bad_words(texts: list[str]) -> None:
    for text in texts:
        for word in BAD_WORDS:
            assert word not in text, text


@pytest.mark.timeout(300)  # five runs at 1 MiB/s, a resume and a restore
def test_a_backup_killed_four_times_while_copying_resumes_to_the_same_digest(cli: Cli) -> None:
    rng = random.Random(20261122)
    app = cli.deploy_demo(MIB_IMAGE, seed=7)
    backup = cli.create_backup(app)
    peers_before = cli.peers(app, backup)
    outputs: list[str] = []
    acked: set[int] = set()
    killed = {"relay": 0, "direct": 0}

    for attempt in range(KILLS):
        via = _via(attempt)
        run = Run(cli, *_backup_args(app, backup), "--via", via)
        assert run.wait_copying(30), f"run {attempt} ({via}) copied nothing: {run.lines}"
        time.sleep(rng.uniform(0.0, 0.5))
        copied_chunks = run.copied("replicator_copied_chunks_total")  # just before the kill
        run.signal(signal.SIGKILL)
        code, events, err = run.finish()
        outputs += ["".join(run.lines), err]
        assert code == -signal.SIGKILL, f"run {attempt}: {run.proc.args} {run.lines} {err}"
        assert not [e for e in events if e["event"] in ("error", "summary")], events
        _, phase, now_acked, total = _checkpoint(cli.state)
        assert phase == "copying", f"run {attempt} was killed after the copy ({phase})"
        assert total is not None
        assert len(now_acked) < total
        assert acked <= now_acked  # nothing acknowledged is ever forgotten
        assert len(now_acked) > len(acked)  # each run made progress
        # Each chunk this run copied is one it acknowledged anew: it wrote no chunk
        # that an earlier run had acknowledged.
        assert copied_chunks <= len(now_acked - acked), (attempt, copied_chunks, len(acked))
        acked = now_acked
        killed[via] += 1
    assert killed == {"relay": KILLS // 2, "direct": KILLS // 2}

    # Ctrl-C: stops at a checkpoint, says how to resume, exits 130.
    run = Run(cli, *_backup_args(app, backup))
    assert run.wait_copying(30), run.lines
    time.sleep(0.3)
    run.signal(signal.SIGINT)
    code, events, err = run.finish()
    outputs += ["".join(run.lines), err]
    assert code == 130, err
    summary = events[-1]
    assert summary["event"] == "summary"
    assert summary["exit_code"] == 130
    assert summary["phase"] == "cancelled"
    job_id = str(summary["job_id"])
    assert summary["resume"] == f"replicator resume {job_id}"
    assert f"replicator resume {job_id}" in err or any(
        e["event"] == "error" and job_id in str(e["message"]) for e in events
    )
    assert int(summary["chunks_skipped"]) >= len(acked)  # type: ignore[call-overload]
    _, _, acked, total = _checkpoint(cli.state)

    finished = cli.run("--json", "resume", job_id)
    outputs += [finished.stdout, finished.stderr]
    assert finished.returncode == 0, finished.stdout + finished.stderr
    final = json_lines(finished.stdout)[-1]
    assert final["event"] == "summary"
    assert final["phase"] == "done"
    assert final["resumed"] is True
    skipped, copied = int(final["chunks_skipped"]), int(final["chunks_copied"])  # type: ignore[call-overload]
    assert skipped >= len(acked)  # every chunk acknowledged before is skipped…
    assert skipped + copied == total  # …and only the others are copied
    _no_bad_words(outputs)

    digest = cli.image_digest(app)
    assert digest is not None
    assert cli.image_digest(backup) == digest
    assert final["digest"] == digest.hex()
    verify = cli.run("verify", str(backup), str(app))
    assert verify.returncode == 0, verify.stdout + verify.stderr

    jobs = json_lines(cli.run("--json", "jobs").stdout)
    backups = [j for j in jobs if j["event"] == "note" and j.get("kind") == "backup"]
    assert len(backups) == 1  # one job, resumed again and again — never started afresh
    assert backups[0]["phase"] == "done"
    # The direct path's grants are gone, those of the killed runs included.
    assert cli.peers(app, backup) == peers_before

    # The image restores into a fresh canister: the same digest, the same state.
    restored = cli.run("--json", "restore", str(backup), "--new-canister", "--yes")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    result = json_lines(restored.stdout)[-1]
    fresh = Principal.from_text(str(result["target"]).split("@")[0])
    assert fresh not in (app, backup)
    assert result["digest"] == digest.hex()
    assert cli.stats(fresh).fingerprint == cli.stats(app).fingerprint
    assert cli.image_digest(fresh) == digest
    assert cli.peers(app, backup) == peers_before
