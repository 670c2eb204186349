"""Prometheus and Grafana in the Docker stack: Prometheus scrapes every service that serves
metrics, by names that exist, on the ports they listen on; Grafana gets its provisioning, the
dashboard and a data source that points at Prometheus; both are pinned and published on the
loopback only."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.unit.docker_stack import (
    COMBOS,
    DOCKER,
    MONITORING_SERVICES,
    environment,
    mount,
    published,
    services,
)

PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
GRAFANA = DOCKER / "grafana"
DISCOVERY = {"static_configs", "dns_sd_configs"}


def prometheus_config() -> Any:
    return yaml.safe_load(PROMETHEUS_CONFIG.read_text())


def scrape_targets(config: Mapping[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(job, host, port) of every static target and every DNS name."""
    for job in config["scrape_configs"]:
        name = job["job_name"]
        kinds = {k for k in job if k.endswith("_configs")} - {"relabel_configs"}
        assert kinds <= DISCOVERY, f"{name}: discovery this test does not follow: {kinds}"
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                yield name, host, int(port)
        for dns in job.get("dns_sd_configs", []):
            assert dns["type"] == "A", f"{name}: SRV records carry their own ports"
            for host in dns["names"]:
                yield name, host, int(dns["port"])


def metrics_ports(service: Mapping[str, Any]) -> set[int]:
    """The ports a package service serves metrics on: its ``workers_metrics_port`` setting,
    or the ``--port`` of ``workers exporter``."""
    ports = set()
    env = environment(service)
    if "WORKERS_METRICS_PORT" in env:
        ports.add(int(env["WORKERS_METRICS_PORT"]))
    command = [str(word) for word in service.get("command") or []]
    if command[:2] == ["workers", "exporter"]:
        assert "--port" in command, "workers exporter without --port: its port is implicit"
        ports.add(int(command[command.index("--port") + 1]))
    return ports


def mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Target in the container -> source (a resolved path for a bind mount)."""
    out = {}
    for volume in service.get("volumes") or []:
        source, target = mount(volume)
        out[target] = str(Path(source).resolve()) if source.startswith("/") else source
    return out


def test_prometheus_scrapes_every_15_seconds() -> None:
    config = prometheus_config()
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())

    assert config["global"]["scrape_interval"] == "15s"
    assert all(job.get("scrape_interval", "15s") == "15s" for job in config["scrape_configs"])
    # Grafana's rate windows assume the same interval.
    assert datasource["datasources"][0]["jsonData"]["timeInterval"] == "15s"


@pytest.mark.parametrize("combo", COMBOS)
def test_scrape_targets_are_services_on_their_metrics_ports(rendered: Any, combo: str) -> None:
    svc = services(rendered, combo)
    targets = list(scrape_targets(prometheus_config()))
    scraped = {host for _, host, _ in targets}

    for job, host, port in targets:
        assert host in svc, f"{job}: no service {host}"
        assert port in metrics_ports(svc[host]), f"{job}: {host} serves no metrics on {port}"
        assert str(port) in map(str, svc[host].get("expose", [])), f"{job}: {host}:{port}"
        assert "ports" not in svc[host], f"{host}: metrics are for this network only"
        # workers_metrics_address defaults to every interface; the loopback hides it.
        address = environment(svc[host]).get("WORKERS_METRICS_ADDRESS", "0.0.0.0")
        assert not address.startswith(("127.", "localhost", "::1")), f"{host}: {address}"
    # A service that serves metrics and is not scraped is a gap on the dashboard.
    serving = {name for name, s in svc.items() if metrics_ports(s)}
    assert serving == scraped


def test_the_dashboards_job_names_are_prometheus_jobs() -> None:
    jobs = {job["job_name"] for job in prometheus_config()["scrape_configs"]}
    board = json.loads((GRAFANA / "dashboards" / "workers.json").read_text())
    named = {
        name
        for panel in board["panels"]
        for target in panel.get("targets", [])
        for pattern in re.findall(r'job=~?"([^"]*)"', target["expr"])
        for name in pattern.split("|")
    }

    assert named and named <= jobs


def test_the_exporters_health_check_asks_its_own_port(rendered: Any) -> None:
    exporter = services(rendered, "single")["exporter"]
    (port,) = metrics_ports(exporter)
    command = exporter["command"]

    assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable from Prometheus
    assert f"http://127.0.0.1:{port}/metrics" in " ".join(exporter["healthcheck"]["test"])


@pytest.mark.parametrize("combo", COMBOS)
def test_prometheus_reads_this_config_and_keeps_its_data(rendered: Any, combo: str) -> None:
    declared_volumes = set(rendered[(combo, "example")].get("volumes") or {})
    prometheus = services(rendered, combo)["prometheus"]
    flags = dict(arg.split("=", 1) for arg in prometheus["command"])
    mounted = mounts(prometheus)

    assert mounted[flags["--config.file"]] == str(PROMETHEUS_CONFIG.resolve())
    assert mounted[flags["--storage.tsdb.path"]] in declared_volumes
    assert flags.get("--web.listen-address", ":9090") == ":9090"
    assert prometheus["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    assert "9090/-/ready" in " ".join(prometheus["healthcheck"]["test"])


@pytest.mark.parametrize("combo", COMBOS)
def test_grafana_is_provisioned_from_this_tree(rendered: Any, combo: str) -> None:
    svc = services(rendered, combo)
    grafana = svc["grafana"]
    mounted = mounts(grafana)
    env = environment(grafana)

    assert mounted["/etc/grafana/provisioning"] == str((GRAFANA / "provisioning").resolve())
    assert mounted["/var/lib/grafana"] in set(rendered[(combo, "example")]["volumes"])
    # Each dashboard provider reads a folder that is mounted and holds the dashboard.
    providers = [
        provider
        for path in sorted((GRAFANA / "provisioning/dashboards").glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert providers
    for provider in providers:
        folder = provider["options"]["path"]
        assert folder in mounted, f"provider {provider['name']}: {folder} is not mounted"
        assert (Path(mounted[folder]) / "workers.json").is_file()
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    folder, _, name = home.rpartition("/")
    assert (Path(mounted[folder]) / name).is_file()
    # The data source reaches Prometheus by its service name on the port it listens on.
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    url = urlsplit(source["datasources"][0]["url"])
    assert url.hostname in svc
    assert url.port in {published(p)[2] for p in svc[url.hostname]["ports"]}
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


@pytest.mark.parametrize("combo", COMBOS)
def test_monitoring_is_pinned_and_published_on_the_loopback(rendered: Any, combo: str) -> None:
    svc = services(rendered, combo)
    for name in sorted(MONITORING_SERVICES):
        image = svc[name]["image"]
        repository, _, tag = image.rpartition(":")
        assert repository in ("prom/prometheus", "grafana/grafana"), image
        # A release (v3.1.0, 11.4.0), not latest or a moving minor (11.4).
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"not pinned to a release: {image}"
        for port in svc[name]["ports"]:
            assert published(port)[0] == "127.0.0.1", f"{name}: {port}"
