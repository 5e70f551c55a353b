"""The compose stack: workers, volumes, Kafka listeners, Prometheus targets and the Grafana dashboard
agree with each other and with what the worker exports."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import yaml

from stream_app.worker.metrics import WorkerMetrics
from tests.deploy import manifests as m
from tests.deploy.manifests import VERSION, WEB_PORT


def test_gpu_override_builds_the_gpu_worker_for_every_worker() -> None:
    override = yaml.safe_load((m.COMPOSE_FILE.parent / "docker-compose.gpu.yml").read_text(encoding="utf-8"))
    workers = {n for n, s in m.our_services().items() if m.service_argvs(s) == [["istream", "worker"]]}
    assert set(override["services"]) == workers
    for name, service in override["services"].items():
        built = m.read_dockerfile(m.ROOT / service["build"]["dockerfile"])
        assert built.image() == service["image"] == f"interest-stream/worker-gpu:{VERSION}", name


def test_every_service_builds_its_image() -> None:
    # `docker compose up` would otherwise try to pull interest-stream/* from a registry
    unbuilt = [name for name, service in m.our_services().items() if "build" not in service]
    assert not unbuilt, f"compose services without a build section: {unbuilt}"


def test_compose_workers_state_registry_and_ports() -> None:
    services = m.compose()["services"]
    workers = {n: s for n, s in m.our_services().items() if m.service_argvs(s) == [["istream", "worker"]]}
    assert len(workers) >= 2
    state_volumes = set()
    for name, svc in workers.items():
        env = m.service_env(svc)
        image_env = m.dockerfiles()[svc["image"]].env()
        registry_dir = env.get("ISTREAM_REGISTRY_DIR", image_env["ISTREAM_REGISTRY_DIR"])
        data_dir = env.get("ISTREAM_WORKER_DATA_DIR", image_env["ISTREAM_WORKER_DATA_DIR"])
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert registry_dir in mounts and data_dir in mounts, f"{name}: state or registry is not on a volume"
        assert f"{mounts[registry_dir]}:{registry_dir}:ro" in svc["volumes"], f"{name}: mount the registry read-only"
        state_volumes.add(mounts[data_dir])
        assert int(env.get("ISTREAM_WORKER_WEB_PORT", image_env["ISTREAM_WORKER_WEB_PORT"])) == WEB_PORT
        assert svc["read_only"] is True and "/tmp" in str(svc["tmpfs"])
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert len(state_volumes) == len(workers), "workers share a RocksDB state volume"
    partitions = int(m.service_env(services["topics"])["ISTREAM_PARTITIONS"])
    assert len(workers) <= partitions
    # Prometheus scrapes exactly the workers, on the worker web port.
    prometheus = yaml.safe_load((m.COMPOSE_FILE.parent / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {t for job in prometheus["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{n}:{WEB_PORT}" for n in workers}


def test_compose_kafka_is_apache_kraft_and_reachable() -> None:
    services = m.compose()["services"]
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", kafka["image"]), "pin an apache/kafka release"
    env = kafka["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "KAFKA_CONTROLLER_QUORUM_VOTERS" in env
    advertised = {urlsplit(u).netloc for u in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name, svc in m.our_services().items():
        bootstrap = m.service_env(svc)["KAFKA_BOOTSTRAP_SERVERS"]
        assert set(bootstrap.split(",")) <= advertised, (
            f"{name} bootstraps from {bootstrap}, kafka advertises {advertised}"
        )
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
    declared = set(m.compose()["volumes"])
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
            else:
                assert (m.COMPOSE_FILE.parent / source).exists() or source == "./data", f"{name}: {source} missing"


def exported_metric_names() -> set[str]:
    suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"]}
    suffixes |= {"gauge": [""], "info": ["_info"]}
    return {family.name + suffix for family in WorkerMetrics().registry.collect() for suffix in suffixes[family.type]}


def test_dashboard_queries_metrics_the_worker_exports() -> None:
    dashboard = json.loads((m.COMPOSE_FILE.parent / "grafana/dashboards/interest-stream.json").read_text())
    exported = exported_metric_names()
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("throughput", "latency", "lag", "dead letters", "model", "online hr@k", "online trial"):
        assert topic in titles, f"the dashboard has no {topic} panel"
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used = set(re.findall(r"\bistream_[a-z0-9_]+", target["expr"]))
            assert used and used <= exported, f"panel {panel['title']!r}: {sorted(used - exported)} not exported"
    provisioning = m.COMPOSE_FILE.parent / "grafana/provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {datasource["uid"]}
