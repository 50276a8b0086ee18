"""The ``split`` kind: its request, its planner and its registration.

``plan_split`` turns "split this canister" into a job:

1. an unfinished split of the same source is continued as it was planned
   (its ranges and shards are in its checkpoint): a crash never plans again
   nor creates a second set of shards;
2. the source must speak the key-range parts of ICRP (capabilities
   ``key_distribution``, ``range_changes``, ``journal_reset``,
   ``range_digest``, ``fences``, ``routing``, ``mode``) and not be split
   already (it has no fences);
3. boundaries: given (``boundaries``), or chosen from the source's
   ``icrp_key_distribution`` so that the ``shards`` parts (or as many as
   keep each under ``max_shard_bytes``) hold about the same bytes;
4. the plan is announced (``ctx.intend``): a canister per moved range, the
   bytes each moves, and the deletion in the source after cut-over; a dry
   run stops here (``--plan-only``);
5. the shards are created (:meth:`~replicator.provision.Provisioner.app_canister`,
   recorded in the registry under ``split-shard-<i>`` before use, exactly
   the configured controllers) with the source's module — the shipped demo
   app when the source runs it, else the module given as ``wasm`` — and get
   their key range and the ``standby`` mode (nobody writes to them yet).

Part 0 of the key space stays in the source; part ``i`` moves to shard ``i``.
"""

from __future__ import annotations

import asyncio

from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import KeyRange
from canister_iface.principal import Principal
from replicator import kinds
from replicator.errors import JobFailed, UsageError
from replicator.flow import Action, Kind, PlanContext, Verb, to_be_created
from replicator.flows.modules import module_of
from replicator.flows.split.machine import PHASES, advance
from replicator.flows.split.metrics import SplitMetrics
from replicator.flows.split.performer import SplitPerformer, key_range
from replicator.flows.split.ranges import (
    Bucket,
    Part,
    balanced_boundaries,
    estimate,
    parse_boundaries,
    parse_size,
    shard_count,
    spans,
)
from replicator.job import CanisterRef, Job, JobRequest
from replicator.topup import copy_cost

KIND = "split"
NEEDED = (
    "key_distribution",
    "range_changes",
    "journal_reset",
    "range_digest",
    "fences",
    "routing",
    "mode",
)
# Buckets of the key distribution: fine enough to balance, few enough to fetch.
BUCKET_BYTES = 256 * 1024
SHARD_KEY = "split-shard-{}"


def request(
    source: CanisterRef,
    *,
    shards: int | None = None,
    max_shard_bytes: int | str | None = None,
    boundaries: str | None = None,
    wasm: str | None = None,
    name: str | None = None,
    job_id: str = "",
) -> JobRequest:
    """Split ``source`` into ``shards`` parts (or parts of at most ``max_shard_bytes``,
    or at ``boundaries``: comma-separated keys, ``0x…`` hex or text)."""
    options = {
        "shards": shards,
        "max_shard_bytes": max_shard_bytes,
        "boundaries": boundaries,
        "wasm": wasm,
        "name": name,
    }
    return JobRequest(KIND, source, None, options, id=job_id)


async def plan_split(ctx: PlanContext, req: JobRequest) -> Job:
    """The split job of ``req.source`` (see the module docstring)."""
    source = req.source
    if not isinstance(source, CanisterRef):
        raise UsageError(f"a split reads from a canister, not {source}")
    resumed = await _unfinished(ctx, req)
    if resumed is not None:
        return resumed
    icrp = IcrpClient(ctx.calls.agent_for(source.network), Principal.from_text(source.canister_id))
    await _check_source(ctx, source, icrp)
    buckets = await _distribution(ctx, source, icrp)
    boundaries = _boundaries(req, buckets)
    parts = estimate(buckets, boundaries)
    wasm = await module_of(ctx.calls, source, req.options.get("wasm"))
    if not await ctx.intend(*_actions(ctx, source, parts)):
        stand_ins = [to_be_created(f"shard {i}", source.network) for i in range(1, len(parts))]
        return _job(req, boundaries, [s.canister_id for s in stand_ins])
    # Created side by side: each takes several update calls (create, install, settings).
    made = [_shard(ctx, source, i, part, wasm) for i, part in enumerate(parts) if i > 0]
    shards = list(await asyncio.gather(*made))
    return _job(req, boundaries, shards)


def _job(req: JobRequest, boundaries: tuple[bytes, ...], shards: list[str]) -> Job:
    return req.job(split_at=",".join(b.hex() for b in boundaries), shard_canisters=",".join(shards))


async def _unfinished(ctx: PlanContext, req: JobRequest) -> Job | None:
    """The plan of an unfinished split of the same source, if there is one."""
    job_id = await ctx.store.find_resumable(req.job().fingerprint)
    if job_id is None:
        return None
    job = (await ctx.store.load(job_id)).state.job
    ctx.note(f"continuing the unfinished split {job_id} as it was planned")
    return req.job(
        split_at=job.options.get("split_at"), shard_canisters=job.options.get("shard_canisters")
    )


async def _check_source(ctx: PlanContext, source: CanisterRef, icrp: IcrpClient) -> None:
    runner = ctx.calls.runner_for(source.network)
    info = await runner.call(source.canister_id, "icrp_info", icrp.info)
    lacking = [c for c in NEEDED if not info.can(c)]
    if lacking:
        raise JobFailed(
            f"{source} cannot be split: it lacks the ICRP capabilities {', '.join(lacking)} "
            f"(it has: {', '.join(info.capabilities) or 'none'}); build it with the current "
            "Motoko library"
        )
    if not info.trusted:
        raise JobFailed(
            f"{source} does not trust this identity: make it a controller of the canister or "
            "a trusted peer (icrp_set_peers) and run the split again"
        )
    config = await runner.call(source.canister_id, "icrp_config", icrp.config)
    if config.fences:
        raise UsageError(
            f"{source} already fences {len(config.fences)} range(s) from an earlier split: "
            "split the canisters that own them instead"
        )


async def _distribution(ctx: PlanContext, source: CanisterRef, icrp: IcrpClient) -> list[Bucket]:
    runner = ctx.calls.runner_for(source.network)
    buckets: list[Bucket] = []
    cursor: bytes | None = None
    while True:
        page = await runner.call(
            source.canister_id,
            "icrp_key_distribution",
            lambda c=cursor: icrp.key_distribution(KeyRange(), c, BUCKET_BYTES),  # type: ignore[misc]
        )
        buckets.extend(Bucket(b.first_key, b.records, b.bytes) for b in page.buckets)
        if page.next_cursor is None:
            return buckets
        cursor = page.next_cursor


def _boundaries(req: JobRequest, buckets: list[Bucket]) -> tuple[bytes, ...]:
    given = req.options.get("boundaries")
    shards = req.options.get("shards")
    max_bytes = req.options.get("max_shard_bytes")
    if given is not None:
        if shards is not None or max_bytes is not None:
            raise UsageError("give either --boundaries or --shards / --max-shard-bytes, not both")
        return parse_boundaries(str(given))
    if shards is not None and max_bytes is not None:
        raise UsageError("give either --shards or --max-shard-bytes, not both")
    if max_bytes is not None:
        limit = parse_size(max_bytes, "max_shard_bytes")
        parts = shard_count(sum(b.nbytes for b in buckets), limit)
    elif shards is not None:
        parts = _int(shards, "shards")
    else:
        raise UsageError("say how to split: --shards N, --max-shard-bytes SIZE or --boundaries")
    return balanced_boundaries(buckets, parts)


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what} must be a whole number, got {value!r}")
    return value


def _actions(ctx: PlanContext, source: CanisterRef, parts: tuple[Part, ...]) -> list[Action]:
    paid = ctx.provisioner_for(source.network).paid
    cycles = ctx.settings.initial_cycles
    kept = parts[0]
    actions = [
        Action(
            Verb.MOVE,
            f"{source} keeps {kept.span}: ~{kept.records:,} records, ~{kept.nbytes:,} bytes",
            consent=False,
        )
    ]
    for i, part in enumerate(parts[1:], start=1):
        actions.append(
            Action(
                Verb.CREATE,
                f"shard {i} for {part.span} with {cycles:,} cycles",
                cycles=cycles + copy_cost(part.nbytes, pushes=False),
                consent=paid,
            )
        )
        actions.append(
            Action(
                Verb.MOVE,
                f"{part.span} → shard {i}: ~{part.records:,} records, ~{part.nbytes:,} bytes",
                nbytes=part.nbytes,
                consent=False,
            )
        )
    moved = sum(p.nbytes for p in parts[1:])
    rate = ctx.settings.limits_for(source.network).block_bytes_per_second  # relayed
    if rate:
        actions.append(
            Action(
                Verb.MOVE,
                f"~{moved:,} bytes in about {moved / rate:,.0f} s at the configured "
                f"{rate:,.0f} bytes/s (ranges copy in parallel)",
                consent=False,
            )
        )
    actions.append(
        Action(
            Verb.DELETE,
            f"the moved ranges from {source} once each is verified in its shard (~{moved:,} bytes)",
            nbytes=moved,
        )
    )
    return actions


async def _shard(ctx: PlanContext, source: CanisterRef, index: int, part: Part, wasm: bytes) -> str:
    """Shard ``index``: created (or found in the registry), its range set, in standby."""
    provisioner = ctx.provisioner_for(source.network)
    canister = await provisioner.app_canister(source.canister_id, SHARD_KEY.format(index), wasm)
    icrp = IcrpClient(ctx.calls.agent_for(source.network), canister)
    runner = ctx.calls.runner_for(source.network)
    cid = canister.to_text()
    await runner.call(
        cid, "icrp_set_key_range", lambda: icrp.set_key_range(key_range(part.span)), cost="update"
    )
    await runner.call(cid, "icrp_set_mode", lambda: icrp.set_mode("standby"), cost="update")
    return cid


SPLIT = kinds.register(
    Kind(
        name=KIND,
        summary="a canister into shards by key range: copy, catch up, cut over, free",
        advance=advance,
        performer=SplitPerformer,
        sources=(CanisterRef,),
        targets=(None,),
        plan=plan_split,
        metrics=SplitMetrics,
        phases=PHASES,
    )
)

__all__ = ["KIND", "SPLIT", "plan_split", "request", "spans"]
