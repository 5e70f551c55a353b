"""The Kubernetes manifests: references resolve, workers keep state per pod and share the registry,
ports, probes and monitors line up, and autoscaling targets the worker group and events topic."""

from __future__ import annotations

import yaml

from stream_app import topics
from stream_app.settings import Settings
from tests.deploy import manifests as m
from tests.deploy.manifests import WEB_PORT


def test_kustomization_lists_every_core_manifest() -> None:
    kustomization = yaml.safe_load((m.K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in m.K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    assert listed == on_disk


def test_k8s_references_resolve() -> None:
    names = {(o["kind"], o["metadata"]["name"]) for _, o in m.k8s_objects()}
    for owner, pod in m.workloads():
        workload = owner["metadata"]["name"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in names
        templates = {t["metadata"]["name"] for t in owner.get("spec", {}).get("volumeClaimTemplates", [])}
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in templates, f"{workload}: volume {mount['name']}"
            for source in container.get("envFrom", []):
                kind, ref = ("ConfigMap", "configMapRef") if "configMapRef" in source else ("Secret", "secretRef")
                assert (kind, source[ref]["name"]) in names, f"{workload}: {kind} {source[ref]['name']} missing"


def test_k8s_workers() -> None:
    sts = m.k8s_object("StatefulSet", "istream-worker")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert m.container_argvs(container) == [["istream", "worker"]]
    env = m.container_env(container)
    mounts = {v["mountPath"]: v for v in container["volumeMounts"]}
    templates = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    assert mounts[env["ISTREAM_WORKER_DATA_DIR"]]["name"] in templates, "RocksDB state must be a PVC per pod"
    registry = mounts[env["ISTREAM_REGISTRY_DIR"]]
    assert registry.get("readOnly") is True, "workers only read the registry; mount it read-only"
    claim = next(v for v in pod["volumes"] if v["name"] == registry["name"])["persistentVolumeClaim"]["claimName"]
    assert "ReadWriteMany" in m.k8s_object("PersistentVolumeClaim", claim)["spec"]["accessModes"]
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert "podAntiAffinity" in pod["affinity"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    assert sts["spec"]["replicas"] <= int(env["ISTREAM_PARTITIONS"])
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["web"]
    assert port == int(env["ISTREAM_WORKER_WEB_PORT"]) == WEB_PORT
    assert int(sts["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) == WEB_PORT
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health/live", "port": "web"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "web"}  # 503 while restoring
    web_host = next(e for e in container["env"] if e["name"] == "ISTREAM_WORKER_WEB_HOST")
    assert web_host["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"  # where other workers forward queries
    service = m.k8s_object("Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"web"}
    monitor = m.k8s_kind("PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"web"}


def test_k8s_finetune_cronjob_writes_the_workers_registry() -> None:
    cron = m.k8s_object("CronJob", "istream-finetune")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (argv,) = m.container_argvs(container)
    assert argv[:2] == ["istream", "finetune"] and "--once" in argv
    registry_arg = argv[argv.index("--registry") + 1]
    mount = next(v for v in container["volumeMounts"] if v["mountPath"] == registry_arg)
    assert not mount.get("readOnly")
    claim = next(v for v in pod["volumes"] if v["name"] == mount["name"])["persistentVolumeClaim"]["claimName"]
    worker_pod = m.k8s_object("StatefulSet", "istream-worker")["spec"]["template"]["spec"]
    assert claim in {v.get("persistentVolumeClaim", {}).get("claimName") for v in worker_pod["volumes"]}
    assert "ISTREAM_BUNDLE_SIGNING_KEY" in m.container_env(container)
    assert "ISTREAM_BUNDLE_SIGNING_KEY" in m.container_env(worker_pod["containers"][0])


def test_keda_scales_the_worker_group_on_the_events_topic() -> None:
    scaled = m.k8s_kind("ScaledObject")
    config = m.configmap_env("istream-config")
    prefix = config.get("ISTREAM_TOPIC_PREFIX", Settings.model_fields["topic_prefix"].default)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == config.get("ISTREAM_WORKER_APP_ID", f"{prefix}-worker")
    assert trigger["metadata"]["topic"] == topics.topic_name(prefix, topics.EVENTS)
    assert trigger["metadata"]["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    assert scaled["spec"]["maxReplicaCount"] <= int(config["ISTREAM_PARTITIONS"])
    assert scaled["spec"]["scaleTargetRef"]["name"] == "istream-worker"


def test_every_pod_runs_unprivileged_on_a_read_only_root() -> None:
    for workload, pod, container in m.our_containers():
        assert pod["securityContext"]["runAsNonRoot"] is True, workload
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False, workload
        mounts = {v["mountPath"] for v in container["volumeMounts"]}
        assert "/tmp" in mounts, f"{workload}: /tmp must be a volume on a read-only root"


def test_kustomization_namespace_is_the_one_it_creates() -> None:
    kustomization = yaml.safe_load((m.K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    (namespace,) = [o for _, o in m.k8s_objects() if o["kind"] == "Namespace"]
    assert kustomization["namespace"] == namespace["metadata"]["name"]
