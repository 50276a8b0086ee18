"""Several ``replicator serve`` workers sharing one fleet through a PostgreSQL job queue.

With a PostgreSQL store (``--state postgresql://…``, ``[store] url``),
``replicator serve`` is one *worker* of many: every worker reads the same
configuration, and the scheduled jobs are shared through `procrastinate`_
(a maintained PostgreSQL job queue: locks, queueing locks, periodic defers,
worker heartbeats and stalled-job detection).  No lease protocol of our own
decides who runs what; this module only wires the queue to the engine:

- **Ticks, once.**  Every worker evaluates every schedule
  (:mod:`replicator.schedule`: cron or interval, jitter, windows) and, at a
  tick, defers a queue job for it with procrastinate's periodic defer, which
  inserts ``(task, job name, tick)`` once across workers: three workers, one
  queue job per tick.  A queueing lock per job name collapses ticks that pile
  up behind a long run into one waiting run, as a single ``serve`` skips the
  runs a long one overlapped.
- **One run at a time.**  Queue jobs carry a lock per job name, so the queue
  never hands two ticks of one job out at once; any worker with a free slot
  (``[store] concurrency``) takes the next one and runs it through
  ``engine.submit`` — any kind, the engine does not care.
- **A fair share each.**  A worker asks the queue for a job only while it
  runs fewer than :func:`fair_share` of the runs going (``ceil(running /
  live workers) + 1``); otherwise it leaves the job to a less busy worker
  (which, notified of the job or polling, takes it).  Nine runs of one tick
  on three workers: at most four on any.
- **Takeover.**  Each worker sends heartbeats (every ``takeover / 6`` s).  Every
  worker sweeps the queue every ``takeover / 10`` s for jobs whose worker's
  heartbeat is older than ``takeover / 2`` s (procrastinate's stalled jobs) and
  hands them back to the queue; another worker takes them and the engine
  resumes from the shared checkpoints.  The store's locks (holder + lease,
  :mod:`replicator.joblock`) use the same timing: the tick's lock has a lease
  of ``takeover / 2``, the engine's job lock one heartbeat less, both renewed
  with each heartbeat, so the new worker also gets the job's locks by then.
  A dead worker's jobs so run elsewhere within ``takeover`` seconds (default
  30): detection ≤ takeover/2, sweep ≤ takeover/10, pick-up ≤ takeover/10
  (polling; usually at once by LISTEN/NOTIFY).
- **Slow is not dead.**  A worker whose job is slow keeps sending heartbeats
  and renewing its locks: nobody takes its job.
- **Robbed anyway** (a worker suspended beyond the bound, a partitioned
  network): the new worker holds the locks, so the store refuses the old
  worker's writes (:class:`~replicator.joblock.JobLocked`) and its run stops;
  what it wrote to canisters is harmless — the protocol's writes are
  idempotent and a resumed run takes the target's word for what it holds.
  The old worker leaves the queue job to its new owner (it does not mark it
  finished) and records no run.  On waking it sees its tick lock gone and
  cancels its run at once, which gives the engine's job lock back (the new
  owner waits for that lock meanwhile), and it leaves the job's peer grants in
  place: the new owner copies through them (:mod:`replicator.flows.image.grants`).
- **Exactly one record per tick.**  The worker running a tick holds a lock
  ``schedule:<name>`` in the store for the whole run and, still holding it,
  records the tick in ``replicator_schedule_runs``.  A worker that gets a
  tick which already ran (its first worker died after recording it) skips it.

.. _procrastinate: https://procrastinate.readthedocs.io
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from replicator.engine import Engine
from replicator.errors import EXIT_INTERRUPTED, EXIT_OK
from replicator.joblock import Holder, JobLocked, Taken, holding
from replicator.metrics import ServiceMetrics
from replicator.pgstore import PostgresStore, ScheduledRun
from replicator.service import (
    DEFAULT_GRACE,
    Now,
    RunResult,
    ScheduledJob,
    Service,
    Sleep,
    _utcnow,
    current_job,
)

log = logging.getLogger(__name__)

QUEUE = "replicator"
TASK = "replicator.scheduled_run"
SCHEDULE_LOCK = "schedule:"  # prefix of the store lock a worker holds while it runs a tick


def schedule_lock(name: str) -> str:
    """The store lock held while a tick of the scheduled job ``name`` runs."""
    return SCHEDULE_LOCK + name


@dataclass(frozen=True)
class Timing:
    """Everything derived from the takeover bound (seconds), see the module docstring."""

    takeover: float

    @property
    def heartbeat(self) -> float:
        return self.takeover / 6

    @property
    def dead_after(self) -> float:
        return self.takeover / 2

    @property
    def job_lease(self) -> float:
        return self.dead_after - self.heartbeat

    @property
    def sweep(self) -> float:
        return max(0.2, self.takeover / 10)

    @property
    def poll(self) -> float:
        return max(0.2, self.takeover / 10)


class WorkerMetrics:
    """What a worker adds to ``replicator serve``'s metrics (sum or max across workers)."""

    def __init__(self, registry: CollectorRegistry, timing: Timing) -> None:
        r = registry
        self.jobs_running = Gauge(
            "replicator_worker_jobs_running",
            "Scheduled jobs this worker runs now (sum across workers: all running jobs).",
            registry=r,
        )
        self.slots = Gauge(
            "replicator_worker_slots", "Scheduled jobs this worker may run at once.", registry=r
        )
        self.takeovers = Counter(
            "replicator_worker_takeovers",
            "Queue jobs of dead workers this worker handed back to the queue.",
            registry=r,
        )
        self.skipped = Counter(
            "replicator_worker_ticks_skipped",
            "Ticks handed to this worker that had already run elsewhere.",
            registry=r,
        )
        self.lost = Counter(
            "replicator_worker_runs_lost",
            "Runs this worker lost to another one (it was thought dead): the other finished them.",
            registry=r,
        )
        self.bound = Gauge(
            "replicator_worker_takeover_bound_seconds",
            "Within this time a dead worker's jobs run on another worker ([store] takeover).",
            registry=r,
        )
        self.bound.set(timing.takeover)
        self.alive = Gauge(
            "replicator_workers_alive",
            "Workers whose heartbeat is recent, as the queue sees them (same on every worker).",
            registry=r,
        )
        self.unowned = Gauge(
            "replicator_job_unowned_seconds",
            "How long a scheduled job's running tick has had no live owner (0: it has one, or "
            "none runs). Same on every worker: aggregate with max.",
            ["name"],
            registry=r,
        )


def fair_share(running: int, alive: int) -> int:
    """How many runs one worker may hold while ``running`` go on ``alive`` workers.

    One more than an even share: a worker below it takes the next job, one at
    it leaves the job to the others.  Someone is always below it (the least
    busy worker runs at most the average), so no job waits for a free slot
    anywhere; and as a worker's own count is exact and the others' can only
    be stale-low, a worker never holds more than ``ceil((n - 1) / w) + 1`` of
    ``n`` runs on ``w`` workers, however their fetches interleave.
    """
    return math.ceil(running / max(1, alive)) + 1


# The runs going on live workers (a dead worker's runs are about to move), this
# worker's among them, and the live workers.
_SHARE_QUERY = """
SELECT count(*) FILTER (WHERE j.worker_id = %(me)s) AS mine,
       count(*) AS running,
       (SELECT count(*) FROM procrastinate_workers
         WHERE last_heartbeat >= now() - make_interval(secs => %(s)s)) AS alive
  FROM procrastinate_jobs j JOIN procrastinate_workers w ON w.id = j.worker_id
 WHERE j.status = 'doing' AND j.queue_name = %(queue)s
   AND w.last_heartbeat >= now() - make_interval(secs => %(s)s)
"""


class _QueueManager:
    """Builds procrastinate's job manager: fair shares, robbed jobs left to their new owner."""

    @staticmethod
    def make(connector: Any, dead_after: float) -> Any:
        from procrastinate import manager

        class Owned(manager.JobManager):
            def __init__(self, connector: Any) -> None:
                super().__init__(connector)
                self.disowned: set[int] = set()

            async def fetch_job(self, queues: Any, worker_id: int) -> Any:
                row = await self.connector.execute_query_one_async(
                    _SHARE_QUERY, me=worker_id, s=dead_after, queue=QUEUE
                )
                mine, running, alive = int(row["mine"]), int(row["running"]), int(row["alive"])
                if mine >= fair_share(running, alive):
                    log.debug(
                        "worker %s runs %d of %d runs on %d workers: leaving the next job to "
                        "the others",
                        worker_id,
                        mine,
                        running,
                        alive,
                    )
                    return None
                return await super().fetch_job(queues, worker_id)

            async def finish_job(self, job: Any, status: Any, delete_job: bool) -> None:
                if job.id in self.disowned:
                    self.disowned.discard(job.id)
                    return  # another worker runs it now: its status is theirs to set
                await super().finish_job(job, status, delete_job)

            async def retry_job(self, job: Any, *args: Any, **kwargs: Any) -> None:
                if job.id in self.disowned:
                    self.disowned.discard(job.id)
                    return
                await super().retry_job(job, *args, **kwargs)

        return Owned(connector)


class _TryLater(Exception):
    """The queue should hand this job out again (the store is down, say)."""


def _retry_strategy() -> Any:
    from procrastinate import exceptions, retry

    class Resume(retry.BaseRetryStrategy):
        """A run stopped by a shutdown or a passing fault goes back to the queue at once."""

        def get_retry_decision(self, *, exception: BaseException, job: Any) -> Any:
            del job
            if isinstance(exception, asyncio.CancelledError | exceptions.JobAborted | _TryLater):
                return retry.RetryDecision(retry_in={"seconds": 0})
            return None

    return Resume()


class SharedService(Service):
    """``replicator serve`` as one worker of many (see the module docstring)."""

    def __init__(
        self,
        jobs: Sequence[ScheduledJob],
        metrics: ServiceMetrics,
        *,
        store: PostgresStore,
        engine: Engine,
        registry: CollectorRegistry,
        takeover: float,
        concurrency: int,
        grace: float = DEFAULT_GRACE,
        now: Now = _utcnow,
        sleep: Sleep = asyncio.sleep,
        worker: str | None = None,
    ) -> None:
        super().__init__(jobs, metrics, grace=grace, now=now, sleep=sleep)
        self.store = store
        self.timing = Timing(takeover)
        self.concurrency = concurrency
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.worker_metrics = WorkerMetrics(registry, self.timing)
        self.worker_metrics.slots.set(concurrency)
        for job in self.jobs:
            self.worker_metrics.unowned.labels(job.name).set(0)
        self._by_name = {j.name: j for j in self.jobs}
        # The engine's job locks follow the queue's heartbeats (module docstring),
        # with a lease one heartbeat shorter than the tick lock's: a stopped
        # worker's job lock has expired by the time its tick lock has.
        engine.lock_lease = self.timing.job_lease
        engine.lock_renew = self.timing.heartbeat
        self._app: Any = None
        self._manager: Any = None
        self._queue_worker: Any = None

    # -- the service

    async def run(self) -> int:
        async with self._queue() as app:
            self._app = app
            worker_task = asyncio.create_task(self._work(), name="queue worker")
            helpers = [
                asyncio.create_task(self._sweep_forever(), name="sweeper"),
                *(
                    asyncio.create_task(self._loop(job), name=f"schedule {job.name}")
                    for job in self.jobs
                ),
            ]
            log.info(
                "worker %s: sharing %d scheduled jobs through the queue (takeover within "
                "%.0f s, %d at once)",
                self.worker,
                len(self.jobs),
                self.timing.takeover,
                self.concurrency,
            )
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait([stopping, worker_task], return_when=asyncio.FIRST_COMPLETED)
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            return await self._stop_worker(worker_task, stopping)

    async def check(self) -> None:
        """``/readyz``: the queue answers (the store is checked on its own)."""
        if self._app is None or not await self._app.check_connection_async():
            raise RuntimeError("the job queue is not connected (or its schema is missing)")

    async def refresh(self) -> None:
        """Before a scrape: fleet-wide figures from the store and the queue."""
        for name, at in (await self.store.last_successes()).items():
            job = self._by_name.get(name)
            if job is not None:
                self.metrics.last_success.labels(name, job.kind).set(at)
        holders = await self.store.lock_holders(SCHEDULE_LOCK)
        now = time.time()
        for job in self.jobs:
            holder = holders.get(schedule_lock(job.name))
            self.worker_metrics.unowned.labels(job.name).set(self._unowned(holder, now))
        self.worker_metrics.alive.set(await self._alive_workers())

    def _unowned(self, holder: Holder | None, now: float) -> float:
        if holder is None or holder.gone(now) is None:
            return 0.0
        renewed = holder.lease_until - self.timing.dead_after  # its last sign of life
        return max(0.0, now - max(renewed, holder.since))

    async def _alive_workers(self) -> int:
        if self._app is None:
            return 0
        rows = await self._app.connector.execute_query_all_async(
            "SELECT id FROM procrastinate_workers"
            " WHERE last_heartbeat >= now() - make_interval(secs => %(s)s)",
            s=self.timing.dead_after,
        )
        return len(rows)

    # -- the queue

    @contextlib.asynccontextmanager
    async def _queue(self) -> AsyncIterator[Any]:
        import procrastinate

        connector = procrastinate.PsycopgConnector(
            conninfo=self.store.url, min_size=1, max_size=4, name="replicator-queue"
        )
        app = procrastinate.App(connector=connector)
        self._manager = app.job_manager = _QueueManager.make(connector, self.timing.dead_after)
        app.task(name=TASK, queue=QUEUE, pass_context=True, retry=_retry_strategy())(self._run_tick)
        async with app.open_async():
            yield app

    async def _work(self) -> None:
        from procrastinate.worker import Worker

        timing = self.timing
        self._queue_worker = Worker(
            self._app,
            queues=[QUEUE],
            name=self.worker,
            concurrency=self.concurrency,
            wait=True,
            fetch_job_polling_interval=timing.poll,
            shutdown_graceful_timeout=0,  # stop at once: runs stop at their next checkpoint
            listen_notify=True,
            delete_jobs="never",  # finished queue jobs are the record of the ticks
            install_signal_handlers=False,
            update_heartbeat_interval=timing.heartbeat,
            stalled_worker_timeout=timing.dead_after,
        )
        await self._queue_worker.run()

    async def _stop_worker(
        self, worker_task: asyncio.Task[None], stopping: asyncio.Task[Any]
    ) -> int:
        stopping.cancel()
        if worker_task.done():  # the queue worker ended on its own: an error
            exc = worker_task.exception()
            log.error("worker %s: the queue worker stopped: %s", self.worker, exc)
            return EXIT_INTERRUPTED
        if self._queue_worker is not None:
            self._queue_worker.stop()
        done, _ = await asyncio.wait([worker_task], timeout=self.grace)
        if not done:
            log.error(
                "jobs still running after %.0f s: exiting anyway; another worker resumes them",
                self.grace,
            )
            worker_task.cancel()
            return EXIT_INTERRUPTED
        return EXIT_OK

    # -- schedules: every worker defers every tick; the queue keeps one

    async def _loop(self, job: ScheduledJob) -> None:
        while True:
            at = job.schedule.next_run(job.name, self._now())
            self.metrics.scheduled(job.name, job.kind, at.timestamp())
            await self._sleep_until(at)
            try:
                await self._defer(job.name, at)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next tick tries again
                log.warning("job %s: could not queue the run of %s: %s", job.name, at, exc)

    async def _defer(self, name: str, at: dt.datetime) -> None:
        from procrastinate import exceptions

        tick = int(at.timestamp())
        deferrer = self._app.tasks[TASK].configure(
            lock=name, queueing_lock=name, task_kwargs={"name": name, "timestamp": tick}
        )
        try:
            queued = await self._manager.defer_periodic_job(
                deferrer.job, periodic_id=name, defer_timestamp=tick
            )
        except exceptions.AlreadyEnqueued:
            # Runs pile up (a long run, or one taken over again and again): as a
            # single serve skips the runs a long one overlapped, this tick is
            # covered by the run still waiting.  Said once per worker and tick.
            log.warning("job %s: tick %d joins the run still waiting for a worker", name, tick)
            return
        if queued is not None:
            log.info("job %s: queued the run of %s", name, at.isoformat(timespec="seconds"))

    # -- takeover: hand the jobs of dead workers back to the queue

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.timing.sweep)
            try:
                await self._sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("worker %s: could not look for stalled jobs: %s", self.worker, exc)

    async def _sweep(self) -> None:
        stalled = await self._manager.get_stalled_jobs(
            queue=QUEUE, seconds_since_heartbeat=self.timing.dead_after
        )
        for queued in stalled:
            try:
                await self._drop_queueing_lock(queued.id)
                await self._manager.retry_job(queued)
            except Exception:  # another worker's sweep was first
                continue
            self.worker_metrics.takeovers.inc()
            log.warning(
                "worker %s: the worker running %s stopped sending heartbeats; its run goes "
                "to the next free worker",
                self.worker,
                queued.task_kwargs.get("name"),
            )

    async def _drop_queueing_lock(self, queue_id: int) -> None:
        """A started tick gives up its queueing lock: it may go back to the queue again.

        The queueing lock only keeps a second tick of a job from *waiting*;
        once a tick runs, the next one may wait behind it.  A tick handed back
        (its worker died or stopped) would otherwise collide with that waiting
        one, stay "doing" forever and, holding the job's lock, block it.
        """
        await self._app.connector.execute_query_async(
            "UPDATE procrastinate_jobs SET queueing_lock = NULL WHERE id = %(id)s", id=queue_id
        )

    # -- one tick

    async def _run_tick(self, context: Any, name: str, timestamp: int) -> None:
        await self._drop_queueing_lock(context.job.id)
        job = self._by_name.get(name)
        if job is None:
            raise _TryLater(f"this worker's configuration has no scheduled job {name!r}")
        current_job.set(name)
        self.worker_metrics.jobs_running.inc()
        try:
            async with contextlib.AsyncExitStack() as stack:
                taken = await self._take_schedule(name, stack)
                if await self.store.run_recorded(name, timestamp):
                    self.worker_metrics.skipped.inc()
                    log.info("job %s: the run of tick %d already happened", name, timestamp)
                    return
                await self._run_and_record(job, timestamp, taken, context.job.id)
        except JobLocked:  # raised by the store once another worker holds our locks
            self._disown(name, context.job.id)
        finally:
            self.worker_metrics.jobs_running.dec()

    async def _run_and_record(
        self, job: ScheduledJob, tick: int, taken: Taken, queue_id: int
    ) -> None:
        started = time.time()
        result: RunResult = await self._run_once(replace(job, run=self._patient(job, taken)))
        if not await self._still_ours(job.name, taken):
            self._disown(job.name, queue_id)
            return
        run = ScheduledRun(job.name, tick, result.outcome, self.worker, started, time.time())
        await self.store.record_run(run, schedule_lock(job.name))

    def _patient(self, job: ScheduledJob, taken: Taken) -> Callable[[], Awaitable[RunResult]]:
        """``job.run`` while the tick is ours: stopped at once when another worker takes it.

        A worker thought dead (suspended past its lease) wakes up still running;
        as soon as it sees its tick lock held by another worker it cancels the
        run, which gives the engine's job lock back for the new owner.  And the
        new owner, finding that job lock still held by a worker whose tick lock
        it took, waits for it to run out or be given back.
        """

        async def run() -> RunResult:
            runner = asyncio.ensure_future(self._waiting_for_job_lock(job, taken))
            watcher = asyncio.ensure_future(self._until_lost(job.name, taken))
            try:
                await asyncio.wait([runner, watcher], return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost = watcher.done() and not runner.done()
                for task in (runner, watcher):
                    task.cancel()
                results = await asyncio.gather(runner, watcher, return_exceptions=True)
            if lost:
                return RunResult("cancelled", EXIT_INTERRUPTED, "another worker took the run over")
            if isinstance(results[0], BaseException):
                raise results[0]
            result: RunResult = results[0]
            return result

        return run

    async def _waiting_for_job_lock(self, job: ScheduledJob, taken: Taken) -> RunResult:
        deadline = time.monotonic() + self.timing.dead_after
        while True:
            try:
                return await job.run()
            except JobLocked as exc:
                if time.monotonic() > deadline or not await self._still_ours(job.name, taken):
                    raise
                log.info("job %s: waiting for the lock of %s to run out", job.name, exc.holder)
                await asyncio.sleep(self.timing.heartbeat / 2)

    async def _until_lost(self, name: str, taken: Taken) -> None:
        """Returns once another worker holds the tick's lock."""
        while True:
            await asyncio.sleep(self.timing.heartbeat)
            try:
                if not await self._still_ours(name, taken):
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is busy: ask again next heartbeat
                log.debug("job %s: could not read the tick's lock: %s", name, exc)

    def _disown(self, name: str, queue_id: int) -> None:
        self.worker_metrics.lost.inc()
        self._manager.disowned.add(queue_id)
        log.error(
            "job %s: another worker took this run over (this worker was thought dead); "
            "it finishes it, this worker's writes were refused",
            name,
        )

    async def _still_ours(self, name: str, taken: Taken) -> bool:
        holders = await self.store.lock_holders(schedule_lock(name))
        holder = holders.get(schedule_lock(name))
        return holder is not None and holder.token == taken.holder.token

    async def _take_schedule(self, name: str, stack: contextlib.AsyncExitStack) -> Taken:
        """The tick's store lock; waits while another live worker still runs the job."""
        timing = self.timing
        while True:
            try:
                taken = await stack.enter_async_context(
                    holding(
                        self.store,
                        schedule_lock(name),
                        what=f"the scheduled job {name}",
                        lease=timing.dead_after,
                        renew=timing.heartbeat,
                    )
                )
            except JobLocked as exc:
                log.info("job %s: waiting for %s to finish its run", name, exc.holder)
                await asyncio.sleep(timing.heartbeat)
                continue
            if taken.note is not None:
                log.warning("job %s: %s", name, taken.note)
            return taken
