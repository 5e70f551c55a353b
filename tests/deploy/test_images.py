"""The images: names and tags agree everywhere, build inputs exist and pass .dockerignore, the pinned
ONNX Runtime is the tested one and matches the CUDA base, and the scripts they run work."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys

import pytest
import yaml

from stream_app.worker.metrics import WorkerMetrics
from tests.deploy import manifests as m
from tests.deploy.manifests import PROJECT, VERSION, WEB_PORT


def test_images_and_tags_agree_everywhere() -> None:
    images = set(m.dockerfiles())
    for name, service in m.our_services().items():
        assert service["image"] in images, f"compose service {name}: no Dockerfile builds {service['image']}"
        if "build" in service:
            context = (m.COMPOSE_FILE.parent / service["build"]["context"]).resolve()
            built = m.read_dockerfile(context / service["build"]["dockerfile"])
            assert built.image() == service["image"], f"compose service {name} builds {built.image()}"
            assert context == m.ROOT, f"compose service {name}: build context {context} is not the repository root"
    for workload, _, container in m.our_containers():
        assert container["image"] in images, f"k8s {workload}: no Dockerfile builds {container['image']}"
    kustomization = yaml.safe_load((m.K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    used_in_k8s = {c["image"].split(":")[0] for _, _, c in m.our_containers()}
    overrides = {i["name"]: i["newTag"] for i in kustomization["images"]}
    assert set(overrides) == used_in_k8s
    assert set(overrides.values()) == {VERSION}


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


def test_requirements_swap_only_onnxruntime() -> None:
    script = m.DOCKER / "requirements.py"

    def run(*args: str) -> list[str]:
        done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, cwd=m.ROOT)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()  # one requirement a line; a marker has spaces

    cpu = run("--onnxruntime", "cpu", "--version", "1.2.3")
    assert "onnxruntime==1.2.3" in cpu and not any(r.startswith("onnxruntime-gpu") for r in cpu)
    others = [r for r in PROJECT["dependencies"] if not r.startswith("onnxruntime")]
    assert [r for r in cpu if r != "onnxruntime==1.2.3"] == others
    train = run("--onnxruntime", "gpu", "--version", "1.2.3", "--extra", "train")
    assert "onnxruntime-gpu==1.2.3" in train and any(r.startswith("torch") for r in train)
    bad = subprocess.run([sys.executable, str(script), "--onnxruntime", "cpu", "--version", "1", "--extra", "nope"])
    assert bad.returncode == 2


def test_healthcheck_needs_a_served_model() -> None:
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
