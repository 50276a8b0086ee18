"""Examples and tests never use real canister ids as placeholders.

A reader copies an example's ids; a placeholder that is a real canister —
``rrkah-fqaaa-aaaaa-aaaaq-cai`` is the NNS governance canister,
``ryjl3-tyaaa-aaaaa-aaaba-cai`` the ICP ledger — sends their commands to it.
Examples use obviously made-up ids ("fake" in the middle); no test or
document uses an id of the NNS subnet's range.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from canister_iface.principal import Principal
from replicator import config

ROOT = Path(__file__).parents[2]
CANISTER_ID = re.compile(r"\b[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-cai\b")
NNS_RANGE_END = 0x100000  # canister indices below this live on the NNS subnet

EXAMPLES = [
    ROOT / "README.md",
    ROOT / "deploy" / "replicator.toml",
    *sorted((ROOT / "deploy" / "examples").iterdir()),
]
SCANNED = [
    *EXAMPLES,
    ROOT / "replicator" / "config.py",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "tests" / "unit").glob("*.py")),
    *sorted((ROOT / "tests" / "integration").glob("*.py")),
    *sorted((ROOT / "tests" / "e2e").glob("*.py")),
]
ALLOWED = {"rrkah-fqaaa-aaaaa-aaaaq-cai", "ryjl3-tyaaa-aaaaa-aaaba-cai"}  # named in this file


def _index(text: str) -> int | None:
    raw = Principal.from_text(text).raw
    if len(raw) != 10 or raw[8:] != b"\x01\x01":
        return None
    return int.from_bytes(raw[:8], "big")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_ids_are_obviously_made_up(path: Path) -> None:
    ids = CANISTER_ID.findall(path.read_text())
    real = [i for i in ids if "-fake" not in i]
    assert not real, f"{path}: use made-up ids like {config.EXAMPLE_ID}, not {real}"


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_nns_canister_id_is_a_placeholder(path: Path) -> None:
    found = set(CANISTER_ID.findall(path.read_text())) - (
        ALLOWED if path == Path(__file__) else set()
    )
    nns = [i for i in found if (n := _index(i)) is not None and n < NNS_RANGE_END]
    assert not nns, f"{path} uses ids of NNS canisters as placeholders: {nns}"


def test_the_made_up_ids_are_valid_and_far_from_any_subnet() -> None:
    for text in ("sppxf-mqaaa-fake2-aaaaa-cai", config.EXAMPLE_ID):
        index = _index(text)
        assert index is not None
        assert index > 1 << 40  # no subnet's range reaches this far
