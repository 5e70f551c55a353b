"""deploy/ agrees with the code: files parse, every `istream` command exists with the options used,
every ISTREAM_*/KAFKA_* variable is a setting (with a valid value), images and ports line up."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import yaml
from pydantic import AliasChoices

from stream_app import topics
from stream_app.cli import cli
from stream_app.settings import ENV_PREFIX, Settings
from stream_app.worker.metrics import WorkerMetrics
from tests.deploy import manifests as m

PROJECT = tomllib.loads((m.ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
VERSION = PROJECT["version"]
WEB_PORT = Settings.model_fields["worker_web_port"].default
ISTREAM = Path(sys.executable).with_name("istream")
YAML_FILES = sorted([*m.DEPLOY.rglob("*.yml"), *m.DEPLOY.rglob("*.yaml")])
JSON_FILES = sorted(m.DEPLOY.rglob("*.json"))
GUIDE = m.DEPLOY / "README.md"


def setting_env_names() -> set[str]:
    names = set()
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        names |= set(alias.choices) if isinstance(alias, AliasChoices) else {f"{ENV_PREFIX}{name.upper()}"}
    return names


def ours(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith((ENV_PREFIX, "KAFKA_"))}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as a container with ``env`` builds them (nothing else from this machine)."""
    for key in list(os.environ):
        if key.startswith((ENV_PREFIX, "KAFKA_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


# ---- every file parses --------------------------------------------------------------------------
def test_deploy_has_the_expected_files() -> None:
    assert len(YAML_FILES) >= 10 and JSON_FILES
    assert set(m.dockerfiles()) == {f"interest-stream/{n}:{VERSION}" for n in ("worker", "worker-gpu", "trainer")}


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(m.DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: str(p.relative_to(m.DEPLOY)))
def test_json_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)


# ---- commands ---------------------------------------------------------------------------------------
def all_argvs() -> list[tuple[str, list[str]]]:
    found = []
    for image, dockerfile in m.dockerfiles().items():
        found += [(f"{dockerfile.path.name} ({image})", argv) for argv in dockerfile.commands()]
    for name, service in m.our_services().items():
        found += [(f"compose service {name}", argv) for argv in m.service_argvs(service)]
    for workload, _, container in m.our_containers():
        found += [(f"k8s {workload}/{container['name']}", argv) for argv in m.container_argvs(container)]
    found += [(GUIDE.name, argv) for argv in guide_argvs()]
    return list({(where, tuple(argv)): (where, argv) for where, argv in found}.values())


def guide_argvs() -> list[list[str]]:
    """`istream ...` command lines of the operations guide: in its code blocks and as
    `docker compose run --rm SERVICE ARGS` (the service's entrypoint is `istream`)."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"^ *```[a-z]*\n(.*?)^ *```", text, flags=re.S | re.M)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    found = [argv for line in lines for argv in m.istream_in_shell(line)]
    for service, args in re.findall(r"docker compose run --rm ([\w-]+) ([^`\n]+)", text):
        (argv,) = m.service_argvs({**m.our_services()[service], "command": args})
        found.append(argv)
    return found


def resolve(argv: list[str]) -> tuple[list[str], click.Command]:
    """The subcommand path of an `istream` argv and its click command (groups walked like click does)."""
    command: click.Command = cli
    path: list[str] = []
    ctx = click.Context(cli, info_name="istream")
    for word in argv[1:]:
        if not isinstance(command, click.Group) or word.startswith("-"):
            break
        sub = command.get_command(ctx, word)
        assert sub is not None, f"`{' '.join(argv)}`: `istream {' '.join(path)}` has no command {word!r}"
        command, path = sub, [*path, word]
    if isinstance(command, click.Group):
        assert "--help" in argv, f"`{' '.join(argv)}` names a group, not a command"
    return path, command


def test_deploy_runs_the_commands_it_should() -> None:
    paths = {tuple(resolve(argv)[0]) for _, argv in all_argvs()}
    for needed in [("worker",), ("topics", "create"), ("finetune",), ("models", "rollback")]:
        assert needed in paths, f"deploy/ never runs `istream {' '.join(needed)}`"


@pytest.mark.parametrize("where, argv", all_argvs(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_command_exists_with_its_options(where: str, argv: list[str]) -> None:
    path, command = resolve(argv)
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"--help", "-h"}
    used = {word.split("=", 1)[0] for word in argv[len(path) + 1 :] if word.startswith("-")}
    assert used <= known, f"{where}: `istream {' '.join(path)}` has no option {sorted(used - known)}"
    # The real console command answers --help (exit 0) for the same path.
    done = subprocess.run([str(ISTREAM), *path, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{where}: `istream {' '.join(path)} --help` failed:\n{done.stderr}"


# ---- environment variables ------------------------------------------------------------------------
def all_env_sets() -> list[tuple[str, dict[str, str]]]:
    found = [(f"{d.path.name} ENV", d.env()) for d in m.dockerfiles().values()]
    found += [(f"compose service {n}", m.service_env(s)) for n, s in m.our_services().items()]
    env_example = (m.COMPOSE_FILE.parent / ".env.example").read_text(encoding="utf-8")
    found.append((".env.example", dict(re.findall(r"^([A-Z_0-9]+)=(.*)$", env_example, flags=re.M))))
    found += [(f"k8s {w}/{c['name']}", m.container_env(c)) for w, _, c in m.our_containers()]
    return found


@pytest.mark.parametrize("where, env", all_env_sets(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_variable_is_a_setting(where: str, env: dict[str, str]) -> None:
    unknown = set(ours(env)) - setting_env_names()
    assert not unknown, f"{where} sets {sorted(unknown)}, which stream_app.settings.Settings does not read"


@pytest.mark.parametrize("where, env", all_env_sets(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_value_is_valid(where: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # compose interpolation (${VAR:?...}) is filled in by compose; any string is a valid secret
    values = {k: ("x" if v.startswith("${") else v) for k, v in ours(env).items()}
    settings_from(values, monkeypatch)


def test_k8s_secrets_carry_settings_or_files() -> None:
    for _, obj in m.k8s_objects():
        if obj["kind"] != "Secret":
            continue
        keys = set((obj.get("stringData") or obj.get("data") or {}).keys())
        env_like = {k for k in keys if k.isupper()}
        assert env_like <= setting_env_names(), f"Secret {obj['metadata']['name']}: {env_like - setting_env_names()}"


# ---- images, tags, build inputs -------------------------------------------------------------------
def test_images_and_tags_agree_everywhere() -> None:
    images = set(m.dockerfiles())
    for name, service in m.our_services().items():
        assert service["image"] in images, f"compose service {name}: no Dockerfile builds {service['image']}"
        if "build" in service:
            built = m.read_dockerfile(
                m.COMPOSE_FILE.parent / service["build"]["context"] / service["build"]["dockerfile"]
            )
            assert built.image() == service["image"], f"compose service {name} builds {built.image()}"
            assert (m.COMPOSE_FILE.parent / service["build"]["context"]).resolve() == m.ROOT
    for workload, _, container in m.our_containers():
        assert container["image"] in images, f"k8s {workload}: no Dockerfile builds {container['image']}"
    kustomization = yaml.safe_load((m.K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    used_in_k8s = {c["image"].split(":")[0] for _, _, c in m.our_containers()}
    overrides = {i["name"]: i["newTag"] for i in kustomization["images"]}
    assert set(overrides) == used_in_k8s
    assert set(overrides.values()) == {VERSION}


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


def test_images_pin_the_tested_onnxruntime() -> None:
    from onnxruntime.capi import build_and_package_info as ort_build

    pins = {d.path.name: d.args.get("ONNXRUNTIME_VERSION") for d in m.dockerfiles().values()}
    assert set(pins.values()) == {ort_build.__version__}, (
        f"images pin {pins}, the project tests {ort_build.__version__}"
    )
    gpu = m.dockerfiles()[f"interest-stream/worker-gpu:{VERSION}"]
    cuda_base = re.match(r"nvidia/cuda:(\d+)\.[\d.]+-cudnn-runtime-", gpu.final.base)
    assert cuda_base, f"{gpu.path.name}: base {gpu.final.base} is not an nvidia/cuda cudnn runtime image"
    assert cuda_base.group(1) == ort_build.cuda_version.split(".")[0], (
        f"onnxruntime-gpu {ort_build.__version__} needs CUDA {ort_build.cuda_version}, the base is {gpu.final.base}"
    )


def dockerignore_allows(path: str) -> bool:
    allowed = True
    for line in (m.ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes):
            allowed = negate
    return allowed


@pytest.mark.parametrize("image", sorted(m.dockerfiles()))
def test_dockerfile_inputs_exist_and_reach_the_build(image: str) -> None:
    dockerfile = m.dockerfiles()[image]
    for stage in dockerfile.stages:
        for rest in stage.all("COPY"):
            if rest.startswith("--from"):
                continue
            *sources, _ = rest.split()
            for source in sources:
                assert (m.ROOT / source).exists(), f"{dockerfile.path.name}: COPY {source}: not in the repository"
                assert dockerignore_allows(source), f"{dockerfile.path.name}: COPY {source}: excluded by .dockerignore"
    assert not dockerignore_allows(".venv/bin/python") and not dockerignore_allows("var/registry/CURRENT")


@pytest.mark.parametrize("image", sorted(m.dockerfiles()))
def test_images_run_unprivileged_with_volumes_for_state(image: str) -> None:
    dockerfile = m.dockerfiles()[image]
    user = dockerfile.final.last("USER")
    assert user and user.split(":")[0] not in ("0", "root"), f"{dockerfile.path.name} runs as {user!r}"
    assert dockerfile.labels()["org.opencontainers.image.version"] == VERSION
    env = dockerfile.env()
    assert env["HF_HUB_OFFLINE"] == "1" and env["HOME"].startswith("/tmp")
    if "worker" in image:
        assert dockerfile.final.last("EXPOSE") == str(WEB_PORT) == env["ISTREAM_WORKER_WEB_PORT"]
        assert "healthcheck.py" in (dockerfile.final.last("HEALTHCHECK") or "")


# ---- compose ----------------------------------------------------------------------------------------
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


# ---- Kubernetes -------------------------------------------------------------------------------------
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
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "web"}
    service = m.k8s_object("Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"web"}
    monitor = k8s_kind("PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"web"}


def k8s_kind(kind: str) -> dict:
    (obj,) = [o for _, o in m.k8s_objects() if o["kind"] == kind]
    return obj


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
    scaled = k8s_kind("ScaledObject")
    config = m.configmap_env("istream-config")
    prefix = config.get("ISTREAM_TOPIC_PREFIX", Settings.model_fields["topic_prefix"].default)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == config.get("ISTREAM_WORKER_APP_ID", f"{prefix}-worker")
    assert trigger["metadata"]["topic"] == topics.topic_name(prefix, topics.EVENTS)
    assert trigger["metadata"]["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    assert scaled["spec"]["maxReplicaCount"] <= int(config["ISTREAM_PARTITIONS"])
    assert scaled["spec"]["scaleTargetRef"]["name"] == "istream-worker"


# ---- dashboard and metrics --------------------------------------------------------------------------
def exported_metric_names() -> set[str]:
    suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"]}
    suffixes |= {"gauge": [""], "info": ["_info"]}
    return {family.name + suffix for family in WorkerMetrics().registry.collect() for suffix in suffixes[family.type]}


def test_dashboard_queries_metrics_the_worker_exports() -> None:
    dashboard = json.loads((m.COMPOSE_FILE.parent / "grafana/dashboards/interest-stream.json").read_text())
    exported = exported_metric_names()
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("throughput", "latency", "lag", "dead letters", "model"):
        assert topic in titles, f"the dashboard has no {topic} panel"
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used = set(re.findall(r"\bistream_[a-z0-9_]+", target["expr"]))
            assert used and used <= exported, f"panel {panel['title']!r}: {sorted(used - exported)} not exported"
    provisioning = m.COMPOSE_FILE.parent / "grafana/provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {datasource["uid"]}


# ---- scripts the images run -------------------------------------------------------------------------
def test_requirements_swap_only_onnxruntime() -> None:
    script = m.DOCKER / "requirements.py"

    def run(*args: str) -> list[str]:
        done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=m.ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    cpu = run("--onnxruntime", "cpu", "--version", "1.2.3")
    assert "onnxruntime==1.2.3" in cpu and not any(r.startswith("onnxruntime-gpu") for r in cpu)
    others = [r for r in PROJECT["dependencies"] if not r.startswith("onnxruntime")]
    assert [r for r in cpu if r != "onnxruntime==1.2.3"] == [r.replace(" ", "") for r in others]
    train = run("--onnxruntime", "gpu", "--version", "1.2.3", "--extra", "train")
    assert "onnxruntime-gpu==1.2.3" in train and any(r.startswith("torch") for r in train)
    bad = subprocess.run([sys.executable, str(script), "--onnxruntime", "cpu", "--version", "1", "--extra", "nope"])
    assert bad.returncode == 2


def test_healthcheck_needs_a_served_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import start_http_server

    from stream_app.broker import free_port

    metrics = WorkerMetrics()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    env = {**os.environ, "ISTREAM_WORKER_WEB_PORT": str(port)}
    check = [sys.executable, str(m.DOCKER / "healthcheck.py")]
    try:
        starting = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
        assert starting.returncode == 1 and "no model" in starting.stdout
        metrics.model.info({"version": "v1", "provider": "CPUExecutionProvider"})
        serving = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
        assert serving.returncode == 0, serving.stdout
    finally:
        server.shutdown()
        thread.join(5)
    gone = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
    assert gone.returncode == 1


# ---- operations guide -------------------------------------------------------------------------------
def test_guide_shows_the_computed_sizing_table() -> None:
    done = subprocess.run(
        [sys.executable, str(m.DEPLOY / "sizing.py")], capture_output=True, text=True, cwd=m.ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    guide = GUIDE.read_text(encoding="utf-8")
    stale = [line for line in done.stdout.splitlines() if line.strip() and line not in guide]
    assert not stale, f"deploy/README.md is out of date; paste `python deploy/sizing.py` output. Missing: {stale}"


def test_guide_links_resolve() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", guide):
        if "://" not in target:
            assert (GUIDE.parent / target).exists(), f"deploy/README.md links to missing {target}"
