"""The TOML configuration and dfx's canister_ids.json."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from canister_iface.certificate import BLS_KEY_DER_PREFIX
from replicator import kinds
from replicator.config import default_config, is_loopback_url, load_config, read_canister_ids
from replicator.errors import EXIT_USAGE, ConfigError
from replicator.job import ArchiveRef, CanisterRef
from replicator.limits import LimitSettings
from replicator.settings import EngineSettings
from replicator.topup import TopUpPolicy

# Made-up ids (never a real NNS canister's): "fake" in the middle says so.
APP_IC = "sppxf-mqaaa-fake2-aaaaa-cai"
APP_LOCAL = "kipf3-nqaaa-fake3-aaaaa-cai"
BACKUP_LOCAL = "xmf3k-3iaaa-fake5-aaaaa-cai"
SHARED = "plfju-2iaaa-fake4-aaaaa-cai"
STAGING_KEY = (BLS_KEY_DER_PREFIX + bytes(range(96))).hex()

FULL = f"""
network = "ic"
canister_ids = ["canister_ids.json"]
checkpoints = "state/checkpoints.sqlite3"

[networks.local]
url = "http://127.0.0.1:8080/"
root_key = "fetch"
[networks.local.limits]
calls_per_second = 200
in_flight = 64

[networks.ic]
url = "https://icp-api.io"
root_key = "builtin"

[networks.staging]
url = "https://staging.example"
root_key = "{STAGING_KEY}"

[identity]
pem = "keys/ops.pem"

[limits]
calls_per_second = 5
bytes_per_second = "1.5 MiB"
byte_burst = 4194304
in_flight = 8
in_flight_per_canister = 2
windows = ["01:00-05:00", "22:00-23:00"]
cycles_budget = "2.5T"
max_chunk_size = "1 MiB"
min_chunk_size = "8KiB"

[retry]
max_attempts = 4
max_seconds = 60

[metrics]
port = 9464

[canisters]
app = {{ ic = "{APP_IC}", local = "{APP_LOCAL}" }}
shared = "{SHARED}"

[jobs.nightly]
kind = "backup"
source = "app"
target = "app_backup"
network = "local"
options = {{ verify = true, route = "direct" }}

[jobs.offsite]
kind = "archive-export"
source = "app"
target = "file:archives/app.icra"
"""


def _files(tmp_path: Path, toml: str = FULL, ids: object | None = None) -> Path:
    config = tmp_path / "replicator.toml"
    config.write_text(toml)
    if ids is None:
        ids = {"app_backup": {"local": BACKUP_LOCAL}, "app": {"local": SHARED}}
    (tmp_path / "canister_ids.json").write_text(json.dumps(ids))
    return config


def test_defaults_need_no_file() -> None:
    config = default_config()
    assert config.network == "ic"
    ic, local = config.network_named("ic"), config.network_named("local")
    assert ic.url == "https://icp-api.io"
    assert (ic.root_key, ic.fetch_root_key) == (None, False)
    assert local.url == "http://127.0.0.1:4943"
    assert local.fetch_root_key
    assert config.limits_for() == LimitSettings()
    assert config.identity_pem is None
    assert config.metrics.port is None
    assert config.checkpoints.name == "checkpoints.sqlite3"


def test_a_full_file(tmp_path: Path) -> None:
    config = load_config(_files(tmp_path))
    assert config.source == str(tmp_path / "replicator.toml")
    assert config.network_named("local").url == "http://127.0.0.1:8080"
    assert config.network_named("staging").root_key == bytes.fromhex(STAGING_KEY)
    assert config.identity_pem == tmp_path / "keys" / "ops.pem"
    assert config.checkpoints == tmp_path / "state" / "checkpoints.sqlite3"
    limits = config.limits_for("ic")
    assert limits.calls_per_second == 5
    assert limits.bytes_per_second == int(1.5 * 1024 * 1024)
    assert limits.byte_burst == 4 * 1024 * 1024
    assert limits.cycles_budget == 2_500_000_000_000
    assert [str(w) for w in limits.windows] == ["01:00-05:00 UTC", "22:00-23:00 UTC"]
    assert limits.windows[0].start == dt.time(1, 0)
    local = config.limits_for("local")
    assert (local.calls_per_second, local.in_flight) == (200, 64)
    assert local.in_flight_per_canister == 2  # inherited from [limits]
    assert config.chunks.max_size == 1024 * 1024
    assert config.chunks.min_size == 8 * 1024
    assert (config.retry.max_attempts, config.retry.max_seconds) == (4, 60)
    assert config.retry.max_wait == 30  # default kept
    assert config.metrics.port == 9464


def test_canisters_by_name_from_the_file_and_canister_ids_json(tmp_path: Path) -> None:
    config = load_config(_files(tmp_path))
    assert config.canister("app") == CanisterRef(APP_IC, "ic")
    assert config.canister("app", "local") == CanisterRef(APP_LOCAL, "local")  # [canisters] wins
    assert config.canister("app_backup", "local") == CanisterRef(BACKUP_LOCAL, "local")
    assert config.canister("shared", "staging") == CanisterRef(SHARED, "staging")
    assert config.canister(APP_LOCAL, "local") == CanisterRef(APP_LOCAL, "local")
    with pytest.raises(ConfigError, match="an id for network 'ic'"):
        config.canister("app_backup")
    with pytest.raises(ConfigError, match="known: app, app_backup, shared") as info:
        config.canister("ap")
    assert info.value.exit_code == EXIT_USAGE
    with pytest.raises(ConfigError, match="configured networks"):
        config.canister("app", "mars")


def test_named_jobs(tmp_path: Path) -> None:
    config = load_config(_files(tmp_path))
    nightly = config.request("nightly").job()
    assert nightly.kind == "backup"
    assert nightly.source == CanisterRef(APP_LOCAL, "local")
    assert nightly.target == CanisterRef(BACKUP_LOCAL, "local")
    assert dict(nightly.options) == {"verify": True, "route": "direct"}
    offsite = config.request("offsite")
    assert offsite.target == ArchiveRef(str(tmp_path / "archives" / "app.icra"))
    again = config.request("nightly").job()
    assert again.id != nightly.id  # a fresh job each time…
    assert again.fingerprint == nightly.fingerprint  # …for the same command
    with pytest.raises(ConfigError, match="known: nightly, offsite"):
        config.request("weekly")


def test_named_jobs_that_cannot_run_name_their_key(tmp_path: Path) -> None:
    toml = f"""
[jobs.typo]
kind = "backup"
source = "ap"
target = "app_backup"
[jobs.shape]
kind = "backup"
source = "{BACKUP_LOCAL}"
target = "file:x.icra"
"""
    config = load_config(_files(tmp_path, toml))
    with pytest.raises(
        ConfigError, match=r"replicator.toml: jobs\.typo\.source: expected a canister"
    ):
        config.request("typo")
    with pytest.raises(ConfigError, match=r"jobs\.shape: expected a runnable job .*cannot write"):
        kinds.configured(config, "shape")


def test_job_kinds_are_checked_when_the_caller_knows_them(tmp_path: Path) -> None:
    toml = """
[jobs.odd]
kind = "teleport"
source = "app"
"""
    path = _files(tmp_path, toml)
    assert load_config(path).jobs["odd"].kind == "teleport"  # not checked without kinds
    with pytest.raises(ConfigError, match=r"jobs\.odd\.kind: expected one of archive-export.*"):
        load_config(path, kinds=kinds.names())


def test_command_line_overrides_and_extra_canister_ids(tmp_path: Path) -> None:
    ids = tmp_path / "more.json"
    ids.write_text(json.dumps({"extra": {"ic": SHARED}}))
    config = load_config(
        _files(tmp_path),
        overrides={"limits.in_flight": 3, "network": "local", "metrics.port": 0},
        canister_ids=[ids],
    )
    assert config.network == "local"
    assert config.limits_for("ic").in_flight == 3
    assert config.metrics.port == 0
    assert config.canister("extra", "ic") == CanisterRef(SHARED, "ic")
    with pytest.raises(ConfigError, match=r"^command line: limits\.in_flight: expected an int"):
        load_config(_files(tmp_path), overrides={"limits.in_flight": "many"})
    plain = load_config(None, overrides={"networks.local.url": "http://localhost:9000"})
    assert plain.network_named("local").url == "http://localhost:9000"


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ("netwrok = 'ic'", "netwrok", "a typo"),
        ("[limits]\nbytes_per_second = 'fast'", "limits.bytes_per_second", '"auto" or a positive'),
        ("[limits]\nbytes_per_second = 0", "limits.bytes_per_second", '"auto" or a positive'),
        ("[limits]\ncalls_per_second = -1", "limits.calls_per_second", "a positive number"),
        ("[limits]\nin_flight = 0", "limits.in_flight", "at least 1"),
        ("[limits]\nwindows = ['1-5']", r"limits.windows\[0\]", "UTC window"),
        ("[limits]\ncycles_budget = '5X'", "limits.cycles_budget", "cycles"),
        (
            "[networks.ic]\nroot_key = 'fetch'",
            "networks.ic.root_key",
            "only for the network 'local'",
        ),
        ("[networks.local]\nroot_key = 'builtin'", "networks.local.root_key", "only for 'ic'"),
        ("[networks.ic]\nurl = 'http://icp-api.io'", "networks.ic.url", "https"),
        ("[networks.dev]\nurl = 'ftp://x'", "networks.dev.url", "http"),
        ("[networks.dev]\nurl = 'http://x'\nroot_key = 'zz'", "networks.dev.root_key", "hex"),
        ("network = 'mars'", "network", "one of the networks"),
        ("[canisters]\napp = 'not-a-principal'", "canisters.app", "a canister id"),
        (
            "[canisters]\napp = { mars = 'sppxf-mqaaa-fake2-aaaaa-cai' }",
            "canisters.app.mars",
            "network",
        ),
        ("[jobs.x]\nkind = 'copy'\nsource = 'a'", "jobs.x.kind", "one of archive-export, .*backup"),
        ("[jobs.x]\nkind = 'backup'", "jobs.x.source", "a canister name"),
        (
            "[jobs.x]\nkind = 'backup'\nsource = 'a'\noptions = { a = [1] }",
            "jobs.x.options.a",
            "a string",
        ),
        ("[metrics]\nport = 70000", "metrics.port", "at most 65535"),
        (
            "[limits]\nmax_chunk_size = 1024\nmin_chunk_size = 4096",
            "limits.max_chunk_size",
            "at least",
        ),
        ("limits = 3", "limits", "a table"),
        (
            "[limits]\nin_flight = 4\nin_flight_reserved = 4",
            "limits.in_flight_reserved",
            "0 to in_flight - 1 \\(3\\)",
        ),
        ("[cycles]\ntop_up = 'wallet'", "cycles.top_up", "one of auto, provisional, ledger, off"),
        ("[cycles]\ntop_up_below_days = -1", "cycles.top_up_below_days", "a number of days"),
        ("[cycles]\ntop_up_to_days = 10", "cycles.top_up_to_days", "at least .*below_days"),
        ("[cycles]\nreserve = 'lots'", "cycles.reserve", "cycles"),
        ("[cycles]\nreserv = '1T'", "cycles.reserv", "a typo"),
    ],
)
def test_bad_values_name_file_key_and_expectation(
    tmp_path: Path, toml: str, key: str, expected: str
) -> None:
    path = _files(tmp_path, toml)
    with pytest.raises(ConfigError, match=rf"^{path}: {key}: expected .*{expected}") as info:
        load_config(path, kinds=kinds.names())
    assert info.value.exit_code == EXIT_USAGE


def test_the_byte_budget_is_auto_by_default_and_a_size_means_every_route(tmp_path: Path) -> None:
    assert load_config(None).limits_for().bytes_per_second == "auto"
    auto = load_config(_files(tmp_path, "[limits]\nbytes_per_second = 'Auto'"))
    assert auto.limits_for().bytes_per_second == "auto"
    sized = load_config(None, overrides={"limits.bytes_per_second": "3 MiB"})
    assert sized.limits_for().byte_rates == (3 * 1024 * 1024, 3 * 1024 * 1024)


def test_in_flight_slots_can_be_kept_for_standbys(tmp_path: Path) -> None:
    assert default_config().limits_for("ic").reserved_in_flight == 16  # an eighth of 128
    path = _files(tmp_path, "[limits]\nin_flight = 8\nin_flight_reserved = 3\n")
    assert load_config(path, kinds=kinds.names()).limits_for("ic").reserved_in_flight == 3


def test_the_cycles_section_sets_the_top_up_policy(tmp_path: Path) -> None:
    assert default_config().top_up == TopUpPolicy()
    path = _files(
        tmp_path,
        "[cycles]\ntop_up = 'ledger'\ntop_up_below_days = 14\ntop_up_to_days = 60.5\n"
        "reserve = '1.5T'\n",
    )
    config = load_config(path)
    assert config.top_up == TopUpPolicy("ledger", 14.0, 60.5, 1_500_000_000_000)
    assert EngineSettings.from_config(config).top_up == config.top_up


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    broken = _files(tmp_path, "[limits\n")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="deploy with dfx first"):
        load_config(_files(tmp_path, "canister_ids = 'nope.json'"))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("[1, 2]", "canister_ids.json"),
        ('{"app": "sppxf-mqaaa-fake2-aaaaa-cai"}', "app: expected"),
        ('{"app": {"ic": "nope"}}', "app.ic: expected a canister id"),
        ("{not json", "canister_ids.json"),
    ],
)
def test_malformed_canister_ids(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "canister_ids.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        read_canister_ids(path)


def test_dfx_canister_ids(tmp_path: Path) -> None:
    path = tmp_path / "canister_ids.json"
    path.write_text(json.dumps({"app": {"ic": APP_IC, "local": APP_LOCAL}}))
    assert read_canister_ids(path) == {"app": {"ic": APP_IC, "local": APP_LOCAL}}


# ------------------------------------------------------ root keys and ids


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:4943", "http://localhost:8080", "http://[::1]:4943", "http://127.8.0.2"],
)
def test_fetching_the_root_key_is_for_loopback_urls(url: str) -> None:
    assert is_loopback_url(url)
    local = load_config(None, overrides={"networks.local.url": url}).network_named("local")
    assert local.fetch_root_key


@pytest.mark.parametrize(
    "url",
    ["http://192.168.1.20:4943", "https://ic0.app", "http://localnet:4943", "http://10.0.0.1"],
)
def test_a_local_network_elsewhere_must_pin_its_key(tmp_path: Path, url: str) -> None:
    assert not is_loopback_url(url)
    path = _files(tmp_path, f"[networks.local]\nurl = '{url}'\n")
    with pytest.raises(ConfigError, match=r"networks\.local\.root_key: .*loopback URL") as info:
        load_config(path)
    assert url in str(info.value)
    assert "fetch-insecure" in str(info.value)  # the override, named
    pinned = _files(tmp_path, f"[networks.local]\nurl = '{url}'\nroot_key = '{STAGING_KEY}'\n")
    assert load_config(pinned).network_named("local").root_key == bytes.fromhex(STAGING_KEY)


def test_the_insecure_override_is_loud(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _files(
        tmp_path, "[networks.local]\nurl = 'http://10.0.0.1'\nroot_key = 'fetch-insecure'"
    )
    assert load_config(path).network_named("local").fetch_root_key
    assert "INSECURE" in caplog.text
    assert "http://10.0.0.1" in caplog.text
    other = _files(
        tmp_path, "[networks.dev]\nurl = 'http://127.0.0.1'\nroot_key = 'fetch-insecure'"
    )
    with pytest.raises(ConfigError, match="only for the network 'local'"):
        load_config(other)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("308182", "this one has 3 bytes"),
        ((BLS_KEY_DER_PREFIX + bytes(97)).hex(), "this one has 134 bytes"),
        ((bytes(len(BLS_KEY_DER_PREFIX)) + bytes(96)).hex(), "not an IC BLS key"),
        ("xyz", "hex"),
    ],
)
def test_a_pinned_root_key_is_checked_at_load(tmp_path: Path, key: str, expected: str) -> None:
    path = _files(tmp_path, f"[networks.dev]\nurl = 'https://dev.example'\nroot_key = '{key}'\n")
    with pytest.raises(ConfigError, match=rf"networks\.dev\.root_key: expected .*{expected}"):
        load_config(path)


def test_another_network_needs_its_root_key(tmp_path: Path) -> None:
    path = _files(tmp_path, "[networks.dev]\nurl = 'https://dev.example'\n")
    with pytest.raises(ConfigError, match=r"networks\.dev\.root_key: expected the network's DER"):
        load_config(path)


def test_canister_ids_are_normalised_to_lower_case(tmp_path: Path) -> None:
    ids = tmp_path / "upper.json"
    ids.write_text(json.dumps({"extra": {"ic": SHARED.upper()}}))
    toml = f'[canisters]\nloud = "{APP_IC.upper()}"\n'
    config = load_config(_files(tmp_path, toml), canister_ids=[ids])
    assert config.canister("loud", "ic") == CanisterRef(APP_IC, "ic")
    assert config.canister("extra", "ic") == CanisterRef(SHARED, "ic")
    assert config.canister(f" {APP_LOCAL.upper()} ", "local") == CanisterRef(APP_LOCAL, "local")
    assert config.endpoint(APP_LOCAL.upper(), "local") == CanisterRef(APP_LOCAL, "local")


def test_the_management_canister_is_never_a_source_or_target(tmp_path: Path) -> None:
    config = default_config()
    for text in ("aaaaa-aa", "AAAAA-AA"):
        with pytest.raises(ConfigError, match="management canister") as info:
            config.canister(text)
        assert info.value.exit_code == EXIT_USAGE
    with pytest.raises(ConfigError, match=r"canisters\.mgmt: expected .*management canister"):
        load_config(_files(tmp_path, '[canisters]\nmgmt = "aaaaa-aa"\n'))
    path = tmp_path / "canister_ids.json"
    path.write_text(json.dumps({"mgmt": {"ic": "aaaaa-aa"}}))
    with pytest.raises(ConfigError, match=r"mgmt\.ic: expected .*management canister"):
        read_canister_ids(path)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('network = "ic"\n# Müller\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.toml: expected a UTF-8 text file") as info:
        load_config(path)
    assert "0xfc" in str(info.value)
    assert info.value.exit_code == EXIT_USAGE


def test_budget_period_and_job_retention(tmp_path: Path) -> None:
    assert default_config().limits_for().cycles_budget_period == 86400
    assert default_config().job_retention == 30 * 86400
    toml = """
job_retention = "7d"
[limits]
cycles_budget = "5T"
cycles_budget_period = "12h"
[networks.local.limits]
cycles_budget_period = "1h"
"""
    config = load_config(_files(tmp_path, toml))
    assert config.job_retention == 7 * 86400
    assert config.limits_for("ic").cycles_budget_period == 12 * 3600
    assert config.limits_for("local").cycles_budget_period == 3600
    assert config.limits_for("local").cycles_budget == 5 * 10**12  # inherited
    forever = load_config(_files(tmp_path, 'job_retention = "forever"'))
    assert forever.job_retention is None
    for bad, key in (
        ("[limits]\ncycles_budget_period = 'soon'", "limits.cycles_budget_period"),
        ("[limits]\ncycles_budget_period = 5", "limits.cycles_budget_period"),
        ("job_retention = 'a while'", "job_retention"),
    ):
        with pytest.raises(ConfigError, match=rf"{key}: expected"):
            load_config(_files(tmp_path, bad))
