"""fleet_bench's pure parts: member sizes, member identities, its options."""

from __future__ import annotations

import pytest

from benchmarks import fleet_bench
from benchmarks.fleet_setup import member_identity

KiB = 1024
MiB = 1024 * KiB


def test_member_sizes_spread_from_64_kib_to_1_mib() -> None:
    sizes = [fleet_bench._spread(i, 1_000) for i in range(1_000)]
    assert sizes[0] == 64 * KiB
    assert sizes[-1] == MiB
    assert sizes == sorted(sizes)
    assert fleet_bench._spread(0, 1) == 64 * KiB  # one member: no division by zero


def test_member_identities_are_the_same_for_the_same_seed_and_number() -> None:
    # What makes a repeated setup find the canisters it created before.
    first = member_identity(b"seed", 7).principal
    assert member_identity(b"seed", 7).principal == first
    assert member_identity(b"seed", 8).principal != first
    assert member_identity(b"other", 7).principal != first


def test_options_default_to_10000_members_under_an_explicit_budget() -> None:
    args = fleet_bench.parse([])
    assert (args.fleet, args.budget, args.members) == (10_000, fleet_bench.BUDGET_MIB, 10_000)
    quick = fleet_bench.parse(["--quick"])
    assert (quick.fleet, quick.budget) == (16, fleet_bench.QUICK_BUDGET_MIB)
    assert fleet_bench.parse(["--fleet", "0"]).fleet == 0


@pytest.mark.parametrize("argv", [["--budget", "0"], ["--fleet", "-1"]])
def test_bad_options_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        fleet_bench.parse(argv)
    assert "--budget must be > 0" in capsys.readouterr().err
