"""The conformance suite against the Python ICRP canister: it passes a correct
canister and names the requirement a deliberately broken one violates."""

from __future__ import annotations

import json

import pytest
from icrp_fake import BUGS, FakeAgent, FakeIcrpCanister

from canister_iface.conformance import Report, check_canister
from canister_iface.errors import TransientError

CANISTER = bytes.fromhex("00000000000000010101")
OWNER = b"\x01" * 29
STRANGER = b"\x02" * 29

NOT_APPLICABLE = {
    "key_range.out_of_range",  # not a shard
    "push.write",  # capabilities the fake does not claim
    "journal.push_changes",
    "export.read_for_write",
    "fleet.members",
}
NOT_RUN_WITHOUT_COMMIT = {
    "import.commit_roundtrip",  # state-changing: allow_commit only
    "mode.fence",
    "mode.standby",
    "journal.reset",
}


def _canister(bugs: set[str] | None = None, **kwargs: object) -> FakeIcrpCanister:
    fake = FakeIcrpCanister(CANISTER, {OWNER}, bugs=bugs or set(), prepare_steps=2, **kwargs)
    for i in range(300):
        fake.put(b"user/%05d" % i, b"profile %d " % i * 20)
    return fake


def _with(report: Report, status: str) -> set[str]:
    return {r.id for r in report.results if r.status == status}


async def _check(fake: FakeIcrpCanister, *, other: bool = True, **kwargs: object) -> Report:
    agents = {CANISTER: fake}
    return await check_canister(
        FakeAgent(agents, OWNER),
        CANISTER,
        identity_other=FakeAgent(agents, STRANGER) if other else None,
        **kwargs,
    )


async def test_a_correct_canister_passes_every_applicable_check() -> None:
    fake = _canister(journal_max_entries=50)
    report = await _check(fake)
    assert report.ok, report.render()
    assert _with(report, "skipped") == NOT_APPLICABLE, report.render()
    assert _with(report, "not_run") == NOT_RUN_WITHOUT_COMMIT, report.render()
    assert report.count("passed") == len(report.results) - 9
    # What was not run proves nothing: no "conformant" without them.
    assert not report.conformant
    assert "not conformant: 4 checks not run" in report.render()
    assert report.role == "app"
    assert "journal" in report.capabilities
    # the suite left the canister's data alone and its test imports aborted
    assert len(fake.kv) == 300
    assert fake.staging is not None
    assert "aborted" in fake.staging.state


async def test_the_commit_round_trip_runs_only_when_allowed() -> None:
    fake = _canister()
    before = dict(fake.kv)
    report = await _check(fake, allow_commit=True)
    assert report.result("import.commit_roundtrip").status == "passed", report.render()
    assert fake.kv == before


async def test_state_changing_checks_run_when_allowed_and_leave_the_canister_as_it_was() -> None:
    fake = _canister(journal_max_entries=50)
    fake.fleet = {bytes([i, 1, 1]): i for i in range(250)}
    before = dict(fake.kv)
    report = await _check(fake, allow_commit=True)
    assert report.ok, report.render()
    for check in (
        "mode.fence",
        "mode.standby",
        "export.at_seq",
        "routing.public",
        "fleet.members",
        "journal.reset",
    ):
        assert report.result(check).status == "passed", report.render()
    assert "waited for 301" in report.result("export.at_seq").detail
    assert "icrp_apply, icrp_import_records, icrp_reset_journal, icrp_delete_range refused" in (
        report.result("mode.fence").detail
    )
    assert "250 member(s) in 3 page(s)" in report.result("fleet.members").detail
    assert fake.kv == before
    assert fake.mode["mode"] == {"primary": None}
    assert fake.fences == []
    assert fake.routing["version"] == 1  # republished once


async def test_a_capability_the_canister_does_not_claim_is_not_run() -> None:
    fake = _canister()
    fake.capabilities = ("image", "import", "journal", "apply", "key_range")
    report = await _check(fake, allow_commit=True)
    assert report.ok, report.render()
    for check in ("journal.backlog", "export.at_seq", "mode.fence", "key_range.digest"):
        result = report.result(check)
        assert result.status == "skipped"
        assert result.detail.startswith("not applicable: the canister does not claim")


async def test_a_shard_refuses_keys_outside_its_range() -> None:
    fake = _canister()
    fake.key_range = {"lower": b"user/00100", "upper": [b"user/00200"]}
    report = await _check(fake)
    assert report.ok, report.render()
    assert report.role == "shard"
    assert report.result("key_range.out_of_range").status == "passed"
    assert "100 record(s)" in report.result("key_range.export").detail


async def test_without_a_second_identity_access_checks_are_not_run() -> None:
    report = await _check(_canister(), other=False, allow_commit=True)
    for check in ("info.hides_state", "access.reads_refused", "access.writes_refused"):
        result = report.result(check)
        assert result.status == "not_run"
        assert "identity_other" in result.detail
    assert report.ok  # nothing failed
    assert not report.conformant  # but access control was never tried
    assert report.to_dict()["conformant"] is False
    assert report.to_dict()["counts"]["not_run"] == 3


async def test_a_canister_with_every_check_run_and_met_is_conformant() -> None:
    fake = _canister(journal_max_entries=50)
    report = await _check(fake, allow_commit=True)
    assert report.conformant, report.render()
    assert _with(report, "not_run") == set()
    assert report.render().endswith("not applicable: conformant")


class _Flaky:
    """A caller whose first ``failures`` calls of ``method`` meet an overloaded replica."""

    def __init__(self, inner: FakeAgent, method: str, failures: int) -> None:
        self.inner, self.method, self.failures = inner, method, failures

    async def query(self, canister_id: bytes, method: str, arg: bytes) -> bytes:
        self._maybe_fail(method)
        return await self.inner.query(canister_id, method, arg)

    async def update(
        self,
        canister_id: bytes,
        method: str,
        arg: bytes,
        *,
        effective_canister_id: bytes | None = None,
    ) -> bytes:
        self._maybe_fail(method)
        return await self.inner.update(canister_id, method, arg)

    def _maybe_fail(self, method: str) -> None:
        if method == self.method and self.failures > 0:
            self.failures -= 1
            raise TransientError("the replica is overloaded", http_status=503)


async def _flaky_check(failures: int) -> Report:
    fake = _canister(journal_max_entries=50)
    agents = {CANISTER: fake}
    flaky = _Flaky(FakeAgent(agents, OWNER), "icrp_key_distribution", failures)
    return await check_canister(
        flaky,
        CANISTER,
        identity_other=FakeAgent(agents, STRANGER),
        allow_commit=True,
        retry_delays=(0.0, 0.0),
    )


async def test_a_transient_error_is_retried_not_reported_as_a_failure() -> None:
    report = await _flaky_check(failures=2)
    assert report.result("key_range.distribution").status == "passed", report.render()
    assert report.conformant


async def test_a_transient_error_that_outlasts_the_retries_leaves_the_check_not_run() -> None:
    report = await _flaky_check(failures=10)
    result = report.result("key_range.distribution")
    assert result.status == "not_run", report.render()
    assert "could not complete in 3 attempts" in result.detail
    assert report.ok
    assert not report.conformant


async def test_a_journal_that_reaches_back_to_the_start_cannot_be_too_old() -> None:
    report = await _check(_canister(journal_max_entries=10_000))
    result = report.result("journal.too_old")
    assert result.status == "skipped"
    assert "oldest_seq 0" in result.detail


_VIOLATIONS = {
    "no_auth": {"info.hides_state", "access.reads_refused", "access.writes_refused"},
    "leaky_info": {"info.hides_state"},
    "stale_ok": {"export.stale_snapshot"},
    "short_read": {"export.read_exact", "export.chunk_digests", "import.commit_roundtrip"},
    "bad_chunk_digest": {"export.image_digest"},
    "ids_repeat": {"export.ids_increase", "export.stale_snapshot"},
    "conflict_ok": {"import.conflict"},
    "commit_ignores_digest": {"import.digest_mismatch"},
    "abort_ignored": {"import.abort"},
    "no_too_old": {"journal.too_old", "journal.backlog", "journal.reset"},
    "range_unordered": {"key_range.export"},
    "fence_ignored": {"mode.fence", "mode.standby"},
    "fence_no_owner": {"key_range.fences"},
    "routing_private": {"routing.public"},
    "range_digest_wrong": {"key_range.digest"},
    "fleet_unsorted": {"fleet.members"},
    "export_at_now": {"export.at_seq"},
    "reset_ignored": {"journal.reset"},
}


def test_every_bug_of_the_fake_is_covered() -> None:
    assert set(_VIOLATIONS) == BUGS


@pytest.mark.parametrize("bug", sorted(_VIOLATIONS))
async def test_a_violation_fails_exactly_its_requirement(bug: str) -> None:
    fake = _canister({bug}, journal_max_entries=50)
    fake.fleet = {bytes([i, 1, 1]): i for i in range(150)}
    report = await _check(fake, allow_commit=True)
    failed = {r.id for r in report.results if r.status == "failed"}
    assert failed == _VIOLATIONS[bug], report.render()
    assert not report.ok
    assert "NOT conformant" in report.render()


async def test_render_and_json_tell_the_same_story() -> None:
    report = await _check(_canister({"conflict_ok"}))
    text = report.render()
    assert "FAIL  import.conflict" in text
    assert "different bytes at an offset already written were accepted" in text
    assert f"ICRP conformance of {report.canister_id} (role app" in text
    data = json.loads(report.to_json())
    assert data["conformant"] is False
    assert data["counts"]["failed"] == 1
    by_id = {c["id"]: c for c in data["checks"]}
    assert by_id["import.conflict"]["status"] == "failed"
    assert by_id["export.ready"]["status"] == "passed"
    assert set(by_id) == {r.id for r in report.results}
