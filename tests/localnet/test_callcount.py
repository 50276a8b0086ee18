"""localnet's call counter (``/_/calls``): executions of watched methods and exact repeats."""

from __future__ import annotations

from localnet.callcount import CallCount


def test_only_watched_methods_are_counted_and_identical_calls_are_repeats() -> None:
    count = CallCount()
    count.saw(b"a", "icrp_write", b"x")  # not watched yet
    count.watch(["icrp_write"])
    for callee, method, arg in [
        (b"a", "icrp_write", b"chunk 0"),
        (b"a", "icrp_write", b"chunk 1"),
        (b"b", "icrp_write", b"chunk 0"),  # another canister: not a repeat
        (b"a", "icrp_write", b"chunk 0"),  # the same write again
        (b"a", "icrp_info", b""),
    ]:
        count.saw(callee, method, arg)
    assert count.to_json() == {"icrp_write": {"calls": 4, "repeats": 1}}
    count.watch(["icrp_write", "icrp_apply"])  # watching again starts over
    count.saw(b"a", "icrp_write", b"chunk 0")
    assert count.to_json() == {
        "icrp_apply": {"calls": 0, "repeats": 0},
        "icrp_write": {"calls": 1, "repeats": 0},
    }
