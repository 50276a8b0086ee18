"""Where a fleet's members come from: an index canister, a file, a static list.

- An **index canister** (the job's source): ``index = "icrp"`` (the default)
  pages through ICRP's ``icrp_fleet_members(cursor, limit)``; any other value
  names the app's own method of the plain shape
  ``(after : opt principal, limit : nat) -> (vec principal)`` (the platform's
  ``list_user_canisters``), continued after the last id until a page is empty.
- A **file** (the source ``file:<path>``): one id per line (``#`` starts a
  comment), a JSON list of ids, or dfx's ``canister_ids.json`` (every id of
  the fleet's network).
- A **static list**: the ``members`` option, ids separated by commas or spaces,
  added to the source's.
- **Controlled by an identity**: the ``controlled_by`` option (a principal,
  or ``me``: the orchestrator's identity) keeps, of the ids the sources
  above name, only the canisters whose controllers — read from certified
  state, ``/canister/<id>/controllers`` — include it; ids of canisters that
  do not exist are dropped too.  (The IC cannot list the canisters of a
  controller: the candidates come from a list, e.g. every canister in a
  dfx ``canister_ids.json``.)  Any other error reading the controllers
  fails the listing rather than drop a member.

Every id is checked; a bad one is an error naming where it came from, and
nothing is recorded (a partial listing would mark members gone).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from icp_candid import Types

from canister_iface.candid_value import as_principal, as_vec, decode_single, encode_values
from canister_iface.errors import CanisterNotFound, ProtocolError
from canister_iface.icrp import MAX_FLEET_PAGE, IcrpClient
from canister_iface.icrp_types import FleetPage
from canister_iface.principal import Principal
from replicator.config import MANAGEMENT_CANISTER, canonical_principal
from replicator.errors import UsageError
from replicator.flow import Calls
from replicator.job import ArchiveRef, CanisterRef, Endpoint, Scalar

ICRP_INDEX = "icrp"
PLAIN_PAGE = 1_000  # ids per call of a plain index method
MAX_PAGES = 100_000  # a listing longer than this is a loop in the index


async def discover(
    calls: Calls, source: Endpoint, network: str, options: Mapping[str, Scalar]
) -> list[str]:
    """Every member's canister id (canonical text), sorted, without duplicates."""
    found: set[str] = set()
    if isinstance(source, CanisterRef):
        index = str(options.get("index") or ICRP_INDEX)
        found.update(await _from_index(calls, source, index))
    elif isinstance(source, ArchiveRef):
        found.update(await asyncio.to_thread(read_file, Path(source.path), network))
    found.update(static(options.get("members"), "the members option"))
    if isinstance(source, CanisterRef):
        found.discard(source.canister_id)  # the index is not its own member
    owner = options.get("controlled_by")
    if owner is not None:
        found = set(await controlled_by(calls, network, sorted(found), owner))
    return sorted(found)


async def controlled_by(calls: Calls, network: str, ids: list[str], owner: Scalar) -> list[str]:
    """Those of ``ids`` that ``owner`` (a principal or ``me``) controls (see the module)."""
    agent = calls.agent_for(network)
    who = agent.identity.principal if owner == "me" else _principal(owner)
    runner = calls.runner_for(network)

    async def controls(canister: str) -> bool:
        try:
            found = await runner.call(
                canister, "controllers", lambda: agent.controllers(canister), cost="query"
            )
        except CanisterNotFound:
            return False
        return who in found

    kept = [c for c, ok in zip(ids, await asyncio.gather(*map(controls, ids)), strict=True) if ok]
    calls.note(f"{len(kept)} of {len(ids)} listed canisters are controlled by {who}")
    return kept


def _principal(value: Scalar) -> Principal:
    text = canonical_principal(value) if isinstance(value, str) else None
    if text is None:
        raise UsageError(
            f"the fleet option controlled_by must be a principal or 'me', got {value!r}"
        )
    return Principal.from_text(text)


def static(value: Scalar, where: str) -> list[str]:
    """The ids of a static list (commas or whitespace between them)."""
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        raise UsageError(f"{where} must be canister ids separated by commas, got {value!r}")
    return [checked(t, where) for t in re.split(r"[\s,]+", value.strip()) if t]


def checked(text: str, where: str) -> str:
    """``text`` as a canonical canister id, or a usage error naming ``where``."""
    canonical = canonical_principal(text)
    if canonical is None or canonical == MANAGEMENT_CANISTER:
        raise UsageError(f"{where}: {text!r} is not a canister id; fix or remove it")
    return canonical


def read_file(path: Path, network: str) -> list[str]:
    """The ids in a members file (see the module docstring)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the fleet's members file {path}: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not valid JSON ({exc}); fix the file") from None
        return [checked(t, str(path)) for t in _json_ids(data, network, path)]
    ids = []
    for number, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip()
        if item:
            ids.append(checked(item, f"{path} line {number}"))
    return ids


def _json_ids(data: object, network: str, path: Path) -> Iterable[str]:
    if isinstance(data, list) and all(isinstance(i, str) for i in data):
        return data
    if isinstance(data, dict):  # canister_ids.json: name → {network: id}
        ids = []
        for name, nets in data.items():
            if isinstance(nets, dict) and isinstance(nets.get(network), str):
                ids.append(nets[network])
            elif not isinstance(nets, dict):
                raise UsageError(f"{path}: {name!r} should map networks to ids (canister_ids.json)")
        return ids
    raise UsageError(
        f"{path}: expected a JSON list of canister ids or a canister_ids.json map, got "
        f"{type(data).__name__}"
    )


async def _from_index(calls: Calls, index: CanisterRef, method: str) -> list[str]:
    if method == ICRP_INDEX:
        return await _icrp_members(calls, index)
    return await _plain_members(calls, index, method)


async def _icrp_members(calls: Calls, index: CanisterRef) -> list[str]:
    client = IcrpClient(calls.agent_for(index.network), index.canister_id)
    runner = calls.runner_for(index.network)
    members: list[str] = []
    cursor: Principal | None = None
    for _ in range(MAX_PAGES):
        start = cursor

        async def page_at(start: Principal | None = start) -> FleetPage:
            return await client.fleet_members(start, MAX_FLEET_PAGE)

        page = await runner.call(index.canister_id, "icrp_fleet_members", page_at)
        members.extend(m.canister.to_text() for m in page.members)
        nxt = page.next_cursor
        if nxt is None:
            return members
        if cursor is not None and nxt.raw <= cursor.raw:
            raise ProtocolError(
                f"{index}: icrp_fleet_members' next_cursor {nxt} does not move past {cursor}"
            )
        cursor = nxt
    raise ProtocolError(f"{index}: icrp_fleet_members did not end after {MAX_PAGES} pages")


async def _plain_members(calls: Calls, index: CanisterRef, method: str) -> list[str]:
    agent = calls.agent_for(index.network)
    runner = calls.runner_for(index.network)
    members: list[str] = []
    after: Principal | None = None
    for _ in range(MAX_PAGES):
        arg = encode_values(
            [
                (Types.Opt(Types.Principal), [] if after is None else [after.raw]),
                (Types.Nat, PLAIN_PAGE),
            ]
        )

        async def query(arg: bytes = arg) -> bytes:
            return await agent.query(index.canister_id, method, arg)

        reply = await runner.call(index.canister_id, method, query)
        page = [as_principal(p, method) for p in as_vec(decode_single(reply, method), method)]
        if not page:
            return members
        if after is not None and page[0].raw <= after.raw:
            raise ProtocolError(
                f"{index}: {method} answered {page[0]} after {after}; an index must list "
                "ids in ascending order after the cursor"
            )
        members.extend(p.to_text() for p in page)
        after = page[-1]
    raise ProtocolError(f"{index}: {method} did not end after {MAX_PAGES} pages")
