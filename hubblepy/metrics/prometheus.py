"""A private Prometheus (Debian's ``prometheus`` package) scraping a lab's node and relay.

``hubble lab up --prometheus`` starts it through :func:`start_prometheus`: its own config file and
data directory under the lab folder, listening on a loopback address (default
``127.0.0.1:9090``), never the system service. It scrapes every second so a test or a user sees a
probe's drop within a few seconds. :func:`query` asks its HTTP API for an instant vector.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_PROMETHEUS_ADDRESS = "127.0.0.1:9090"
SCRAPE_INTERVAL = "1s"


class PrometheusError(Exception):
    """Prometheus is missing or did not start (one line)."""


def config_text(targets: dict[str, str]) -> str:
    """prometheus.yml scraping ``targets`` (job name -> HOST:PORT); JSON is valid YAML."""
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "5s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [address]}]}
            for job, address in sorted(targets.items())
            if address
        ],
    }
    return json.dumps(config, indent=1) + "\n"


def start_prometheus(folder: Path, address: str, targets: dict[str, str]) -> subprocess.Popen:
    """Start prometheus with its files in ``folder`` (config, data/, prometheus.log)."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusError(
            "prometheus is not installed (apt-get install prometheus, or scripts/bootstrap.sh)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(config_text(targets))
    log = open(folder / "prometheus.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address={address}",
        ],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PrometheusError(
                f"prometheus exited with status {proc.returncode} (log: {folder / 'prometheus.log'})"
            )
        try:
            with urllib.request.urlopen(f"http://{address}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise PrometheusError(f"prometheus did not become ready on {address} (log: {folder / 'prometheus.log'})")


def query(address: str, promql: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Result of an instant query: ``[{"metric": {...}, "value": [ts, "v"]}, ...]``."""
    url = f"http://{address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise PrometheusError(f"query {promql!r} failed: {body.get('error', body)}")
    return body["data"]["result"]
