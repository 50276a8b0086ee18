"""The byte budget counts each relayed byte once: the write charges it, the read does not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from replicator.chunking import Path, SizePolicy, TransferSize
from replicator.flows.image.canister import CanisterReader, CanisterWriter
from replicator.pump import Sizer

DATA = bytes(range(256)) * 64  # 16 KiB


class FakeClient:
    async def read_view(self, snapshot_id: int, offset: int, length: int) -> memoryview:
        return memoryview(DATA)[offset : offset + length]

    async def write(self, import_id: int, offset: int, data: memoryview) -> int:
        return offset + len(data)


class FakeSide:
    """A canister side whose calls record the bytes they charge to the budget."""

    def __init__(self) -> None:
        self.client = FakeClient()
        self.endpoint = "fake"
        self.charged: list[tuple[str, int]] = []

    async def call(
        self,
        method: str,
        perform: Callable[[], Awaitable[Any]],
        *,
        cost: str = "update",
        nbytes: int = 0,
    ) -> Any:
        self.charged.append((method, nbytes))
        return await perform()


def _sizer(path: Path) -> Sizer:
    return Sizer(TransferSize(SizePolicy(ceiling=4096, floor=512, granularity=512)), path)


async def test_a_relay_into_a_canister_charges_the_writes_only() -> None:
    source, target = FakeSide(), FakeSide()
    writer = CanisterWriter(cast(Any, target), 1, _sizer(Path.WRITE), verifies_chunks=True)
    reader = CanisterReader(
        cast(Any, source), 7, _sizer(Path.READ), charged=not writer.charges_bytes
    )
    data = await reader.read_at(0, 4096)
    await writer.write_at(0, data)
    assert source.charged == [("icrp_read", 0)]
    assert target.charged == [("icrp_write", 4096)]


async def test_reads_no_write_pays_for_are_charged() -> None:
    source = FakeSide()  # a verify job, or a relay into an archive file
    reader = CanisterReader(cast(Any, source), 7, _sizer(Path.READ))
    assert bytes(await reader.read_at(100, 300)) == DATA[100:400]
    assert source.charged == [("icrp_read", 300)]
