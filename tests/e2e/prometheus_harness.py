"""A real Prometheus for the end-to-end tests: start it, query it, run dashboard panels.

``replicator serve`` tests start the service as a subprocess (``cli.args("serve")``),
then :func:`start_prometheus` with the repository's alert rules; :func:`failing_panel_queries`
runs every panel query of a dashboard and lists those without data.  Each job kind's
dashboard has a test of its own (``test_<kind>_prometheus.py``) built on this module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_harness import ROOT
from prometheus_client.parser import text_string_to_metric_families

DASHBOARDS = ROOT / "grafana" / "dashboards"
ALERTS = sorted((ROOT / "deploy" / "alerts").glob("*.yml"))
# Grafana's built-in variables, as concrete PromQL for a short test.
GRAFANA_VARIABLES = {"__rate_interval": "30s", "__interval": "5s", "__range": "5m"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed (apt-get install prometheus)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must not skip this test")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait(what: str, check: Any, timeout: float, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    tails = "\n".join(f"--- {p.name}:\n{p.read_text()[-4000:]}" for p in logs if p.exists())
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def query(self, expr: str) -> dict[str, Any]:
        qs = urllib.parse.urlencode({"query": expr})
        status, body = get(f"{self.url}/api/v1/query?{qs}")
        data: dict[str, Any] = json.loads(body)
        data["http_status"] = status
        return data

    def series(self, expr: str) -> list[dict[str, Any]]:
        data = self.query(expr)
        if data.get("status") != "success":
            return []
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        result = self.series(expr)
        return float(result[0]["value"][1]) if result else 0.0


def start_prometheus(binary: str, tmp: Path, target: str | Sequence[str]) -> Prometheus:
    """Prometheus scraping ``target`` (``host:port``; several for several workers) every second."""
    targets = json.dumps([target] if isinstance(target, str) else list(target))
    config = tmp / "prometheus.yml"
    rule_files = "".join(f"  - {path}\n" for path in ALERTS)
    config.write_text(
        f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
{rule_files}scrape_configs:
  - job_name: replicator
    static_configs:
      - targets: {targets}
"""
    )
    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    wait("Prometheus to be ready", lambda: ready(prom), 30, [log])
    return prom


def ready(prom: Prometheus) -> bool:
    if prom.proc.poll() is not None:
        pytest.fail(f"prometheus exited with {prom.proc.returncode}: {prom.log.read_text()}")
    try:
        return get(f"{prom.url}/-/ready", timeout=1)[0] == 200
    except OSError:
        return False


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def answers(base: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        pytest.fail(f"replicator serve exited with {proc.returncode}:\n{log.read_text()}")
    try:
        return get(f"{base}/healthz", timeout=1) == (200, "ok\n")
    except OSError:
        return False


def failing_panel_queries(prom: Prometheus, dashboard: Path) -> list[str]:
    """The panel queries of ``dashboard`` that return no series (or an error)."""
    failures = []
    queries = list(dashboard_queries(dashboard))
    for where, expr in queries:
        concrete = substitute(expr, variables_of(where[0]))
        result = retry_until_series(prom, concrete)
        if result is not None:
            failures.append(f"{where[0].name} / {where[1]!r}: {concrete}\n    {result}")
    return failures


def retry_until_series(prom: Prometheus, expr: str, attempts: int = 8) -> str | None:
    """None when ``expr`` returns series; else why not (after a few scrapes)."""
    why = ""
    for _ in range(attempts):
        data = prom.query(expr)
        if data.get("status") != "success":
            return f"error: {data.get('errorType')}: {data.get('error')}"  # never retried
        if data["data"]["result"]:
            return None
        why = "no series"
        time.sleep(0.5)
    return why


# ------------------------------------------------------- reading dashboards


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def dashboard_queries(path: Path) -> Iterator[tuple[tuple[Path, str], str]]:
    dashboard = json.loads(path.read_text())
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield (path, panel["title"]), target["expr"]


def variables_of(path: Path) -> dict[str, str]:
    """Every dashboard variable as a regex matching all its values, plus Grafana's own."""
    dashboard = json.loads(path.read_text())
    values = dict(GRAFANA_VARIABLES)
    for variable in dashboard.get("templating", {}).get("list", []):
        values[variable["name"]] = variable.get("allValue") or ".+"
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {expr}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", replace, expr)


def metric(base: str, metric: str, **labels: str) -> float:
    status, text = get(f"{base}/metrics")
    assert status == 200
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and labels.items() <= sample.labels.items():
                total += sample.value
    return total
