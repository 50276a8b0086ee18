"""Fault config validation, JSON round trip and seeded decisions."""

from __future__ import annotations

import json
import re
import threading

import pytest

from localnet import ids
from localnet.errors import ErrorCode, RejectCode
from localnet.faults import FaultConfig, Faults
from localnet.limits import Limits

CANISTER = ids.canister_id(3)
OTHER = ids.canister_id(4)


def outcomes(faults: Faults, kind: str = "call", n: int = 200) -> list[int | None]:
    results = []
    for _ in range(n):
        fault = faults.http_fault(kind)  # type: ignore[arg-type]
        results.append(None if fault is None else fault.status)
    return results


def test_no_faults_by_default() -> None:
    faults = Faults()
    assert faults.delay_s("query") == 0.0
    assert outcomes(faults) == [None] * 200
    assert faults.transient_reject_for(CANISTER, "m") is None
    assert faults.stopped_reject_for(CANISTER) is None
    assert faults.limits(Limits()) == Limits()
    assert faults.payload_cap() is None
    assert Faults(seed=4).config == FaultConfig(seed=4)


def test_http_faults_follow_the_probabilities_and_the_seed() -> None:
    faults = Faults()
    faults.set(seed=7, http_429={"call": 0.3}, http_503={"call": 0.2}, retry_after_s=3)
    first = outcomes(faults, n=1000)
    assert 250 <= first.count(429) <= 350
    assert 150 <= first.count(503) <= 250
    assert outcomes(faults, "query") == [None] * 200  # other endpoints unaffected
    fault = faults.http_fault("call")
    while fault is None:
        fault = faults.http_fault("call")
    assert fault.retry_after_s == 3
    assert "localnet fault injection" in fault.message

    faults.set(seed=7)  # re-seeding replays the same sequence
    assert outcomes(faults, n=1000) == first
    faults.set(seed=8)
    assert outcomes(faults, n=1000) != first


def test_streams_are_independent_per_endpoint() -> None:
    faults = Faults(FaultConfig(seed=1, http_429={"call": 0.5, "query": 0.5}))
    calls_alone = outcomes(faults, "call")
    faults.set(seed=1)
    mixed = []
    for _ in range(200):
        faults.http_fault("query")  # query traffic interleaved with calls
        fault = faults.http_fault("call")
        mixed.append(None if fault is None else fault.status)
    assert mixed == calls_alone


def test_latency_with_jitter_stays_in_range_and_is_seeded() -> None:
    faults = Faults(FaultConfig(seed=3, latency_s={"call": 1.5}, jitter_s={"call": 0.5}))
    delays = [faults.delay_s("call") for _ in range(100)]
    assert all(1.5 <= d < 2.0 for d in delays)
    assert len(set(delays)) > 50
    faults.set(seed=3)
    assert [faults.delay_s("call") for _ in range(100)] == delays
    assert faults.delay_s("query") == 0.0


def test_transient_rejects_for_chosen_canisters_and_methods() -> None:
    faults = Faults()
    faults.set(transient_reject=1.0, transient_canisters={CANISTER}, transient_methods={"put"})
    reject = faults.transient_reject_for(CANISTER, "put")
    assert reject is not None
    assert reject.code == RejectCode.SYS_TRANSIENT
    assert reject.error_code == ErrorCode.SUBNET_OVERSUBSCRIBED
    assert ids.to_text(CANISTER) in reject.message
    assert faults.transient_reject_for(OTHER, "put") is None
    assert faults.transient_reject_for(CANISTER, "get") is None

    faults.set(transient_reject=0.25, transient_canisters=set(), transient_methods=set(), seed=5)
    hits = [faults.transient_reject_for(OTHER, "any") is not None for _ in range(1000)]
    assert 180 <= sum(hits) <= 320
    faults.set(seed=5)
    assert [faults.transient_reject_for(OTHER, "any") is not None for _ in range(1000)] == hits


def test_stopped_canisters_and_payload_cap() -> None:
    faults = Faults(FaultConfig(stopped_canisters={ids.to_text(CANISTER)}, payload_cap=1000))
    assert faults.stopped_canisters == {CANISTER}
    reject = faults.stopped_reject_for(CANISTER)
    assert reject is not None
    assert (reject.code, reject.error_code) == (RejectCode.CANISTER_ERROR, "IC0508")
    assert faults.stopped_reject_for(OTHER) is None
    assert faults.is_stopped(CANISTER)
    assert not faults.is_stopped(OTHER)
    assert faults.payload_cap() == 1000
    capped = faults.limits(Limits())
    assert capped.max_ingress_bytes == 1000
    assert capped.max_response_bytes == 1000


def test_json_round_trip() -> None:
    config = FaultConfig(
        seed=9,
        latency_s={"query": 0.15, "call": 1.5},
        jitter_s={"call": 0.1},
        http_429={"read_state": 0.1},
        http_503={"status": 1.0},
        retry_after_s=2,
        transient_reject=0.5,
        transient_canisters={CANISTER},
        transient_methods={"icrp_write"},
        stopped_canisters={OTHER},
        payload_cap=4096,
    )
    data = json.loads(json.dumps(config.to_json()))
    assert data["stopped_canisters"] == [ids.to_text(OTHER)]
    assert FaultConfig.from_json(data) == config
    assert Faults.from_json(data).config == config


def test_from_json_merges_onto_a_base() -> None:
    base = FaultConfig(latency_s={"call": 1.0}, payload_cap=10)
    merged = FaultConfig.from_json({"payload_cap": None, "seed": 4}, base=base)
    assert merged == FaultConfig(latency_s={"call": 1.0}, seed=4)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"latency": {}}, "unknown fault config field(s) ['latency']"),
        ({"latency_s": {"update": 1}}, "unknown endpoint kind 'update'"),
        ({"latency_s": {"call": -1}}, "must be a number >= 0"),
        ({"http_429": {"call": 1.5}}, "probability"),
        ({"http_429": {"call": 0.6}, "http_503": {"call": 0.6}}, "at most 1"),
        ({"transient_reject": 2}, "probability"),
        ({"retry_after_s": 1.5}, "whole number of seconds"),
        ({"payload_cap": 0}, "positive byte count"),
        ({"stopped_canisters": ["not a principal"]}, "not a valid principal"),
        ({"stopped_canisters": "aaaaa-aa"}, "list of strings"),
        ({"seed": "x"}, "seed must be an integer"),
    ],
)
def test_invalid_configs_say_what_is_wrong(data: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        FaultConfig.from_json(data)


def test_reset_clears_everything() -> None:
    faults = Faults(FaultConfig(seed=2, http_503={"query": 1.0}, payload_cap=5))
    faults.reset()
    assert faults.config == FaultConfig()
    assert faults.http_fault("query") is None


def test_concurrent_readers_and_writers() -> None:
    faults = Faults(FaultConfig(transient_reject=0.5, http_429={"call": 0.5}))
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(2000):
                faults.transient_reject_for(CANISTER, "m")
                faults.http_fault("call")
                faults.limits(Limits())
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for seed in range(200):
        faults.set(seed=seed, payload_cap=1000 + seed)
    for thread in threads:
        thread.join()
    assert errors == []
    assert faults.config.payload_cap == 1199
