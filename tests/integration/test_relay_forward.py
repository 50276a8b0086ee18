"""The relay's forwarded writes on localnet: ``icrp_read_for_write`` answers a read as
the target's ``icrp_write`` argument, which the relay sends on unchanged (each byte
hashed once); a source without the method is relayed with ``icrp_read``."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import World, counter, ref, run_backup, world

from canister_iface import errors as ic
from canister_iface import icrp_errors as ie
from canister_iface.candid_value import ArgParts, Blob, encode_values
from canister_iface.icrp import IcrpClient, WriteArg, chunk_digest
from canister_iface.icrp_types import ImportSpec
from canister_iface.principal import Principal
from replicator.settings import Transfer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
ICRP_V1_WASM = (ROOT / "tests" / "canisters" / "wasm" / "icrp_v1.wasm").read_bytes()


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


def calls(w: World, method: str) -> float:
    return counter(w.metrics, "replicator_calls_total", method=method, outcome="ok")


async def test_a_relayed_backup_sends_each_read_reply_on_as_the_write(w: World) -> None:
    demo = await w.demo(mib=2, chunk_size=256 * 1024)
    backup = await w.backup_canister(demo)
    assert (await IcrpClient(w.agent, demo).info()).can("read_for_write")
    async with w.engine() as engine:
        outcome = await run_backup(engine, ref(demo), ref(backup), via="relay")
    assert outcome.ok, outcome.error
    assert outcome.target_digest == outcome.digest
    assert calls(w, "icrp_read_for_write") > 0
    assert calls(w, "icrp_read") == 0
    assert calls(w, "icrp_write") == calls(w, "icrp_read_for_write")


async def test_a_source_without_read_for_write_is_relayed_with_icrp_read(w: World) -> None:
    # icrp_v1: an ICRP app built before icrp_read_for_write (neither the method
    # nor the capability), as deployed canisters stay until upgraded.
    old = await w.create(ICRP_V1_WASM)
    for key in range(4):
        value = bytes([key]) * 200_000
        arg = encode_values([(Blob, b"key-%d" % key), (Blob, value)])
        await w.agent.update(old, "put", arg)
    info = await IcrpClient(w.agent, old).info()
    assert "image" in info.capabilities
    assert not info.can("read_for_write")
    backup = await w.backup_canister(old)
    async with w.engine() as engine:
        outcome = await run_backup(engine, ref(old), ref(backup), via="relay")
    assert outcome.ok, outcome.error
    assert outcome.target_digest == outcome.digest
    assert outcome.bytes_copied > 800_000
    assert calls(w, "icrp_read") > 0
    assert calls(w, "icrp_read_for_write") == 0


async def _exported(w: World, canister: Principal) -> tuple[IcrpClient, int, int, bytes]:
    client = IcrpClient(w.agent, canister)
    ticket = await client.wait_ready(await client.begin_export())
    assert ticket.digest is not None
    return client, ticket.snapshot_id, ticket.size, ticket.digest


async def _importing(w: World) -> tuple[IcrpClient, int, IcrpClient, int, list[bytes]]:
    """A 1 MiB demo (256 KiB chunks) exported, and an import of it open on a backup canister."""
    demo = await w.demo(mib=1, chunk_size=256 * 1024)
    source, snapshot, size, digest = await _exported(w, demo)
    target = IcrpClient(w.agent, await w.backup_canister(demo))
    digests = await source.chunk_digests(snapshot, 0, -(-size // (256 * 1024)))
    spec = ImportSpec(demo, snapshot, size, 256 * 1024, digest, chunk_digests=tuple(digests))
    return source, snapshot, target, await target.begin_import(spec), digests


async def test_the_reply_is_a_valid_write_argument_the_target_still_checks(w: World) -> None:
    source, snapshot, target, import_id, digests = await _importing(w)

    arg = await source.read_for_write(snapshot, import_id, 0, 300_000)
    assert bytes(arg.data) == await source.read(snapshot, 0, 300_000)
    assert arg.message.digest == hashlib.sha256(arg.message.joined()).digest()
    assert await target.write_arg(arg) == 300_000

    # A forged argument (same digest claimed, other bytes) is refused by the IC:
    # the request id is computed from what arrives, and the signature no longer fits.
    forged = bytearray(arg.message.joined())
    forged[-1] ^= 1
    with pytest.raises(ic.IcError):
        await target.write_arg(
            WriteArg(ArgParts((memoryview(bytes(forged)),), arg.message.digest), arg.data)
        )
    # The target checks chunks as ever: wrong bytes in a forwarded write are refused.
    bad = await source.read_for_write(snapshot, import_id, 256 * 1024, 256 * 1024)
    raw = bytearray(bad.message.joined())
    raw[-1] ^= 1
    tampered = ArgParts((bytes(raw),))
    with pytest.raises(ie.DigestMismatch):
        await target.write_arg(WriteArg(tampered, memoryview(bytes(raw))[-256 * 1024 :]))
    assert chunk_digest(bytes(raw[-256 * 1024 :])) != digests[1]


async def test_a_refused_read_for_write_is_a_reject_and_icrp_read_says_why(w: World) -> None:
    demo = await w.demo(mib=1)
    source, snapshot, _, _ = await _exported(w, demo)
    with pytest.raises(ic.CanisterReject, match="StaleSnapshot"):
        await source.read_for_write(snapshot + 7, 1, 0, 1000)
    with pytest.raises(ie.StaleSnapshot):
        await source.read(snapshot + 7, 0, 1000)
    # The source checks its caller: a stranger gets nothing.
    stranger = IcrpClient(w.stranger, demo)
    with pytest.raises(ic.CanisterReject, match="NotAuthorized"):
        await stranger.read_for_write(snapshot, 1, 0, 1000)


async def test_a_forwarded_write_releases_its_reply_once_the_node_has_it(w: World) -> None:
    source, snapshot, target, import_id, _ = await _importing(w)
    arg = await source.read_for_write(snapshot, import_id, 0, 300_000)
    assert not arg.released
    assert await target.write_arg(arg, release=True) == 300_000
    assert arg.released  # the views of the reply, and so the reply, are gone
    with pytest.raises(ValueError, match="released"):
        bytes(arg.data)


async def test_a_relayed_backup_whose_writes_fail_after_sending_reads_them_again(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 429 answers a call the node has read: the write's reply was released, so
    # a retry reads the piece again (outside the runner) before sending it.
    reads: list[int] = []
    read_for_write = IcrpClient.read_for_write

    async def counted(self: IcrpClient, *args: int) -> WriteArg:
        reads.append(args[2])
        return await read_for_write(self, *args)

    monkeypatch.setattr(IcrpClient, "read_for_write", counted)
    demo = await w.demo(mib=2, chunk_size=64 * 1024)
    backup = await w.backup_canister(demo)
    w.net.faults.set(seed=3, http_429={"call": 0.3})
    async with w.engine(transfer=Transfer(max_size=256 * 1024)) as engine:
        outcome = await run_backup(engine, ref(demo), ref(backup), via="relay")
    w.net.faults.reset()
    assert outcome.ok, outcome.error
    assert outcome.target_digest == outcome.digest
    assert counter(w.metrics, "replicator_retries_total", reason="rate_limited") > 0
    assert len(reads) > calls(w, "icrp_read_for_write")  # read again: not through the runner
    assert calls(w, "icrp_read") == 0
