"""The module a canister runs, for kinds that install it again (split, compact).

The IC hands out a canister's module hash, never its module: the module
comes from a file the operator names (``--wasm``), or is the shipped demo
app when the canister runs exactly that.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from canister_iface.principal import Principal
from replicator.errors import UsageError
from replicator.flow import Calls
from replicator.job import CanisterRef
from replicator.provision import shipped_wasm


async def module_of(calls: Calls, canister: CanisterRef, path: object | None) -> bytes:
    """The module ``canister`` runs: the file ``path`` if given, else the shipped demo app."""
    if path is not None:
        try:
            return await asyncio.to_thread(Path(str(path)).read_bytes)
        except OSError as exc:
            raise UsageError(f"cannot read the module {path}: {exc.strerror}") from None
    agent = calls.agent_for(canister.network)
    principal = Principal.from_text(canister.canister_id)
    running = await calls.runner_for(canister.network).call(
        canister.canister_id, "module_hash", lambda: agent.module_hash(principal)
    )
    demo = shipped_wasm("demo_app")
    if running == hashlib.sha256(demo).digest():
        return demo
    raise UsageError(
        f"the IC does not hand out {canister}'s module: give the module it runs with "
        "--wasm PATH (the same build)"
    )
