"""A backup survives being killed over and over: SIGKILL at random moments, then resume.

The ``replicator backup`` command runs as a subprocess against localnet in
another process, under a low bytes-per-second limit so that each run is
killed in the middle of its work (starting up, preparing, copying,
committing).  Every run is the same command again; it finds its job by
fingerprint and continues from the checkpoint.  Odd runs take the relay path
(``icrp_read`` + ``icrp_write``), even runs the direct path (``icrp_push``),
so the same offsets are written by both.

What must hold at the end:

- the job finishes with exit code 0 and the backup holds the source's image
  (equal digests, and ``replicator verify`` agrees chunk by chunk);
- no run ever saw a ``Conflict`` (the backup canister refuses different bytes
  at an offset it holds) or a digest mismatch: nothing was written twice with
  different bytes;
- the runs made progress between kills (the checkpoint was used, not
  ignored): later runs skip chunks acknowledged before.

The last interruption is a SIGINT (Ctrl-C): exit code 130, a summary naming
the job, and ``replicator resume <job>`` finishes it.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest
from cli_harness import Cli, json_lines

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MIB_IMAGE = 16
KILLS = 10
RATE = "1 MiB"  # bytes per second: the image takes ~16 s of copying over all runs
BAD_WORDS = ("Conflict", "DigestMismatch", "digest mismatch", "Traceback")


class Run:
    """One ``replicator backup`` subprocess whose JSON lines are read as they come."""

    def __init__(self, cli: Cli, *args: str) -> None:
        self.proc = cli.popen(*args)
        self.lines: list[str] = []
        self.copying = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if '"progress"' in line:
                self.copying.set()

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


def _backup_args(source: str, target: str, attempt: int) -> list[str]:
    via = "relay" if attempt % 2 else "direct"
    return ["--json", "backup", source, target, "--bytes-per-second", RATE, "--via", via]


def _no_bad_words(texts: list[str]) -> None:
    for text in texts:
        for word in BAD_WORDS:
            assert word not in text, text


def test_a_backup_killed_ten_times_resumes_to_the_same_digest(cli: Cli) -> None:
    rng = random.Random(20261122)
    app = cli.deploy_demo(MIB_IMAGE, seed=7)
    backup = cli.create_backup(app)
    outputs: list[str] = []
    killed_while_copying = 0
    started = time.monotonic()

    for attempt in range(KILLS):
        run = Run(cli, *_backup_args(str(app), str(backup), attempt))
        # Half the kills at any moment (start-up, preparing), half once bytes flow.
        if attempt % 2 and run.copying.wait(20):
            time.sleep(rng.uniform(0.2, 1.2))
        else:
            time.sleep(rng.uniform(0.3, 2.5))
        was_copying = run.copying.is_set()
        run.signal(signal.SIGKILL)
        code, events, err = run.finish()
        outputs += ["".join(run.lines), err]
        assert code == -signal.SIGKILL, f"run {attempt}: {run.proc.args} {run.lines} {err}"
        killed_while_copying += was_copying
        assert not [e for e in events if e["event"] in ("error", "summary")], events

    # Ctrl-C: stops at a checkpoint, says how to resume, exits 130.
    run = Run(cli, *_backup_args(str(app), str(backup), KILLS))
    assert run.copying.wait(20)
    time.sleep(0.5)
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
    finished = cli.run("--json", "resume", job_id)
    outputs += [finished.stdout, finished.stderr]
    assert finished.returncode == 0, finished.stdout + finished.stderr
    final = json_lines(finished.stdout)[-1]
    assert final["event"] == "summary"
    assert final["phase"] == "done"
    assert final["resumed"] is True
    _no_bad_words(outputs)

    assert killed_while_copying >= 3  # the kills hit the copy itself, not only start-up
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
    assert time.monotonic() - started < 90
