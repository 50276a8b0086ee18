"""deploy/ and grafana/: Prometheus config and alert rules (promtool), dashboards, compose, systemd.

Every metric a dashboard panel or an alert rule uses must be one that
``replicator/metrics.py`` exports; the Prometheus files must pass
``promtool check config``, ``promtool check rules`` and the rule unit tests
``promtool test rules``.  Docker cannot run here, so the compose file is
checked for its shape and for paths that exist in the repository.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from replicator import kinds
from replicator.config import load_config
from replicator.metrics import Metrics, ServiceMetrics
from replicator.service import DEFAULT_GRACE
from replicator.workers import Timing, WorkerMetrics

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERT_FILES = sorted((DEPLOY / "alerts").glob("*.yml"))  # what prometheus.yml loads
ALERT_TESTS = sorted((DEPLOY / "alerts" / "tests").glob("*_test.yml"))
DATASOURCE_UID = "replicator-prometheus"

# Metrics Prometheus itself adds to every target.
PROMETHEUS_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (apt-get install prometheus)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must not skip this test")
    pytest.skip(message)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [_tool("promtool"), *args], capture_output=True, text=True, cwd=DEPLOY, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


# ------------------------------------------------------------------ promtool


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-workers.yml"])
def test_promtool_check_config(name: str) -> None:
    out = _promtool("check", "config", name).stdout
    assert f"SUCCESS: {len(ALERT_FILES)} rule files found" in out


@pytest.mark.parametrize("path", ALERT_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    out = _promtool("check", "rules", str(path.relative_to(DEPLOY))).stdout
    assert "SUCCESS" in out


@pytest.mark.parametrize("path", ALERT_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    _promtool("test", "rules", str(path.relative_to(DEPLOY)))


def test_every_alert_has_a_unit_test() -> None:
    assert {p.name for p in ALERT_FILES} >= {"replicator.yml"}
    rules = {r["alert"] for r in _alert_rules()}
    tested = {
        case["alertname"]
        for path in ALERT_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert rules == tested
    assert len(rules) >= 6


def test_prometheus_scrapes_the_port_the_service_serves() -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (scrape,) = prometheus["scrape_configs"]
    assert scrape["job_name"] == "replicator"  # the alerts' up{job="replicator"}
    (target,) = scrape["static_configs"][0]["targets"]
    config = load_config(DEPLOY / "replicator.toml")
    assert target == f"replicator:{config.metrics.port}"  # the compose service's name


# ------------------------------------------------------------- metric names


def exported_names() -> set[str]:
    """Every sample name the service's registry can export."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, process_metrics=True)
    ServiceMetrics(registry, version="0")
    WorkerMetrics(registry, Timing(30))  # `serve` with a PostgreSQL store
    for kind in kinds.registered():  # what an engine adds when it starts
        if kind.metrics is not None:
            metrics.extension(kind.metrics)
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "info": ("_info",),
        "gauge": ("",),
    }
    names = set()
    for family in registry.collect():
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {s.name for s in family.samples}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b\d[\d.eE+]*(?:ms|[smhdwy])?\b", " ", text)  # numbers, durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function call or an operator
        names.add(word)
    return names


def test_metric_names_parses_promql() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, method) (rate(replicator_x_bucket{a="b(c)"}[5m])))'
        " / on (instance) group_left replicator_y_total > bool 3 and up offset 5m"
    )
    assert metric_names(expr) == {"replicator_x_bucket", "replicator_y_total", "up"}


def _panel_queries() -> Iterator[tuple[str, str]]:
    for path in DASHBOARDS:
        for panel in _panels(json.loads(path.read_text())):
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]


def _alert_rules() -> list[dict[str, Any]]:
    files = [yaml.safe_load(path.read_text()) for path in ALERT_FILES]
    return [r for rules in files for group in rules["groups"] for r in group["rules"]]


def test_dashboards_and_alerts_use_only_exported_metrics() -> None:
    known = exported_names() | PROMETHEUS_METRICS
    uses = list(_panel_queries()) + [(f"alert {r['alert']}", r["expr"]) for r in _alert_rules()]
    assert len(uses) > 20
    unknown = [f"{where}: {name}" for where, expr in uses for name in metric_names(expr) - known]
    assert not unknown, "metrics that replicator/metrics.py does not export:\n" + "\n".join(unknown)
    used = {n for _, expr in uses for n in metric_names(expr)}
    assert {"replicator_copied_bytes_total", "replicator_retries_total"} <= used


# ---------------------------------------------------------------- dashboards


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_shape(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])  # fixed, so links survive
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["title"]
    panels = list(_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID
        assert panel.get("description"), f"{panel['title']}: say what the panel shows"
    variables = dashboard["templating"]["list"]
    for variable in variables:
        assert variable["datasource"]["uid"] == DATASOURCE_UID


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert DASHBOARDS
    assert len(uids) == len(set(uids))


def test_overview_covers_the_issue() -> None:
    overview = json.loads((GRAFANA / "dashboards" / "overview.json").read_text())
    exprs = " ".join(t["expr"] for p in _panels(overview) for t in p.get("targets", []))
    for metric in (
        "replicator_copied_bytes_total",
        "replicator_copied_chunks_total",
        "replicator_jobs{",
        "replicator_jobs_finished_total",
        "replicator_job_failures_total",
        "replicator_retries_total",
        "replicator_throttle_wait_seconds_total",
        "replicator_call_duration_seconds_bucket",
        "replicator_chunk_size_bytes",
        "replicator_schedule_last_success_timestamp_seconds",
        "replicator_cycles_spent_total",
        "replicator_canisters_created_total",
        "replicator_build_info",
        "replicator_backup_canister_freeze_days_min",
        "replicator_backup_canister_top_ups_total",
    ):
        assert metric in exprs, metric


def test_workers_dashboard_covers_the_issue() -> None:
    workers = json.loads((GRAFANA / "dashboards" / "workers.json").read_text())
    assert workers["uid"] == "replicator-workers"
    exprs = [t["expr"] for p in _panels(workers) for t in p.get("targets", [])]
    assert any("sum by (instance) (replicator_worker_jobs_running" in e for e in exprs)
    assert any("sum by (job) (replicator_worker_jobs_running" in e for e in exprs)
    assert any("replicator_workers_alive" in e for e in exprs)
    assert any("replicator_job_unowned_seconds" in e for e in exprs)


def test_grafana_provisioning() -> None:
    provisioning = GRAFANA / "provisioning"
    (datasources_file,) = sorted((provisioning / "datasources").glob("*.yaml"))
    (dashboards_file,) = sorted((provisioning / "dashboards").glob("*.yaml"))
    (datasource,) = yaml.safe_load(datasources_file.read_text())["datasources"]
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["type"] == "prometheus"
    (provider,) = yaml.safe_load(dashboards_file.read_text())["providers"]
    assert provider["type"] == "file"
    # The compose file mounts grafana/dashboards where the provider reads.
    mounts = _compose()["services"]["grafana"]["volumes"]
    assert f"../grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# ------------------------------------------------------------------- compose


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def test_compose_services_and_paths_exist() -> None:
    compose = _compose()
    assert set(compose["services"]) == {"replicator", "prometheus", "grafana"}
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target, *mode = volume.split(":")
            assert target.startswith("/"), (name, volume)
            assert mode in ([], ["ro"]), (name, volume)
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is not in the repository"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
    build = compose["services"]["replicator"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).is_file()


def test_compose_wires_the_config_prometheus_and_grafana() -> None:
    services = _compose()["services"]
    replicator = services["replicator"]
    assert replicator["command"][:3] == ["serve", "--config", "/etc/replicator/replicator.toml"]
    assert "./replicator.toml:/etc/replicator/replicator.toml:ro" in replicator["volumes"]
    config = load_config(DEPLOY / "replicator.toml")
    assert config.identity_pem is not None
    secrets = [v for v in replicator["volumes"] if v.startswith("./secrets:")]
    assert secrets == [f"./secrets:{config.identity_pem.parent}:ro"]
    assert config.checkpoints.parent == Path("/var/lib/replicator")
    assert "replicator-state:/var/lib/replicator" in replicator["volumes"]
    assert config.metrics.addr == "0.0.0.0"  # Prometheus scrapes from its own container
    grace = float(replicator["stop_grace_period"].rstrip("s"))
    assert grace > DEFAULT_GRACE
    prometheus = services["prometheus"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "./alerts:/etc/prometheus/alerts:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_workers_compose_runs_three_workers_on_one_postgresql() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.workers.yml").read_text())
    services = compose["services"]
    workers = sorted(n for n in services if n.startswith("worker"))
    assert workers == ["worker1", "worker2", "worker3"]
    assert {"postgres", "prometheus", "grafana"} <= set(services)
    named = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is not in the repository"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
    for name in workers:
        worker = services[name]
        assert worker["command"][:3] == ["serve", "--config", "/etc/replicator/replicator.toml"]
        assert "./replicator-workers.toml:/etc/replicator/replicator.toml:ro" in worker["volumes"]
        assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "PGPASSWORD" in worker["environment"]  # not in the config file
        assert float(worker["stop_grace_period"].rstrip("s")) > DEFAULT_GRACE
    config = load_config(DEPLOY / "replicator-workers.toml")
    assert config.store.url == "postgresql://replicator@postgres:5432/replicator"
    assert config.store.takeover <= 30
    assert config.state == config.store.url  # the workers keep no local state
    prometheus = yaml.safe_load((DEPLOY / "prometheus-workers.yml").read_text())
    (scrape,) = prometheus["scrape_configs"]
    assert scrape["job_name"] == "replicator"
    targets = scrape["static_configs"][0]["targets"]
    assert targets == [f"{w}:{config.metrics.port}" for w in workers]
    assert (
        "./prometheus-workers.yml:/etc/prometheus/prometheus.yml:ro"
        in (services["prometheus"]["volumes"])
    )


def test_dockerfile_copies_what_the_package_needs() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    copied = [
        source
        for args in re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE)
        for source in args.split()[:-1]  # the last one is the destination
    ]
    for path in copied:
        assert (ROOT / path).exists(), path
    assert {"replicator", "canister_iface", "localnet", "pyproject.toml", "README.md"} <= set(
        copied
    )
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {f"!{p}" for p in copied} <= set(ignore)


def test_the_example_config_is_valid_and_scheduled() -> None:
    config = load_config(DEPLOY / "replicator.toml")
    assert config.jobs
    for name, template in config.jobs.items():
        assert template.schedule is not None, name
        kinds.configured(config, name)  # its kind knows it, its canisters resolve


# ------------------------------------------------------------------- systemd


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "replicator.service").read_text())
    return unit


def test_systemd_unit() -> None:
    unit = _unit()
    service = unit["Service"]
    assert " serve --config /etc/replicator/replicator.toml" in service["ExecStart"]
    assert service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"]) > DEFAULT_GRACE
    assert service["RestartPreventExitStatus"] == "2"  # a bad config: restarting cannot help
    assert service["StateDirectory"] == "replicator"  # /var/lib/replicator, the checkpoints
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The unit names the installed binary; point it at this checkout's.
    binary = Path(sys.executable).parent / "replicator"  # the console script of this venv
    if not binary.exists():
        pytest.skip(f"no replicator console script next to {sys.executable}")
    text = (DEPLOY / "replicator.service").read_text()
    unit = tmp_path / "replicator.service"
    unit.write_text(text.replace("/opt/replicator/bin/replicator", str(binary)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in result.stderr.splitlines() if "replicator.service" in line]
    assert result.returncode == 0, result.stderr
    assert not problems, result.stderr


def test_every_dashboard_has_its_queries_run_against_a_real_prometheus() -> None:
    """Each dashboard is named by an end-to-end test that runs its panels (prometheus_harness)."""
    e2e = "\n".join(p.read_text() for p in (ROOT / "tests" / "e2e").glob("test_*.py"))
    unchecked = [p.name for p in DASHBOARDS if f'"{p.name}"' not in e2e]
    assert not unchecked, f"dashboards no end-to-end test runs: {unchecked}"
