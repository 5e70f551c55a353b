"""Read deploy/ as data: Dockerfile instructions, compose services, Kubernetes objects, and the
`istream` command lines and environment variables each of them runs or sets."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from stream_app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
VERSION = PROJECT["version"]
WEB_PORT = Settings.model_fields["worker_web_port"].default
DEPLOY = ROOT / "deploy"
GUIDE = DEPLOY / "README.md"
DOCKER = DEPLOY / "docker"
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
IMAGE_PREFIX = "interest-stream/"
SHELLS = ({"/bin/sh", "sh", "/bin/bash", "bash"}, "-c")
SEPARATORS = {"&&", "||", ";", "|", "(", ")", "&"}


# ---- Dockerfiles ---------------------------------------------------------------------------------
@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, rest of the line)

    def all(self, name: str) -> list[str]:
        return [rest for instr, rest in self.instructions if instr == name]

    def last(self, name: str) -> str | None:
        found = self.all(name)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]  # ARG defaults (global and per stage)
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def labels(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for rest in self.final.all("LABEL"):
            out.update(pair.split("=", 1) for pair in shlex.split(rest))
        return out

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for rest in self.final.all("ENV"):
            out.update(pair.split("=", 1) for pair in shlex.split(rest))
        return out

    def exec_form(self, name: str) -> list[str] | None:
        rest = self.final.last(name)
        return None if rest is None else json.loads(rest)

    def image(self) -> str:
        labels = self.labels()
        return f"{labels['org.opencontainers.image.title']}:{labels['org.opencontainers.image.version']}"

    def commands(self) -> list[list[str]]:
        """`istream` argv of the image's default command and of every RUN line of every stage."""
        out = []
        entrypoint, cmd = self.exec_form("ENTRYPOINT"), self.exec_form("CMD")
        if entrypoint == ["istream"]:
            out.append(["istream", *(cmd or [])])
        for stage in self.stages:
            for rest in stage.all("RUN"):
                out += istream_in_shell(rest)
        return out


def _logical_lines(text: str) -> Iterator[str]:
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        yield current + line
        current = ""
    if current:
        yield current


def read_dockerfile(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        instr, _, rest = line.partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr == "ARG":
            name, _, default = rest.partition("=")
            if default:
                args[name] = default
        elif instr == "FROM":
            base = rest.split()[0]
            stages.append(Stage(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)))
        else:
            stages[-1].instructions.append((instr, rest))
    return Dockerfile(path, args, stages)


@cache
def dockerfiles() -> dict[str, Dockerfile]:
    """Image name:tag (from its labels) -> Dockerfile."""
    files = [read_dockerfile(p) for p in sorted(DOCKER.glob("*.Dockerfile"))]
    return {d.image(): d for d in files}


# ---- shell command lines ---------------------------------------------------------------------------
def istream_in_shell(script: str) -> list[list[str]]:
    """The `istream ...` argvs in a shell script: commands split on operators, redirections and
    comments dropped, `kubectl exec POD -- istream ...` and `! istream ...` included."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    redirected = False
    for token in lexer:
        if token in SEPARATORS or (set(token) <= set("&|;()") and token):
            commands.append([])
            redirected = False
        elif set(token) <= set("<>&"):
            if commands[-1] and commands[-1][-1].isdigit():  # 2>/dev/null
                commands[-1].pop()
            redirected = True
        elif not redirected:
            commands[-1].append(token)
    out = []
    for words in commands:
        if "--" in words:
            words = words[words.index("--") + 1 :]
        while words and words[0] in ("!", "exec"):
            words = words[1:]
        if words and words[0] == "istream":
            out.append(words)
    return out


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def container_argv(entrypoint: list[str], command: list[str]) -> list[list[str]]:
    """`istream` argvs a container runs given its entrypoint and command (or args)."""
    if entrypoint == ["istream"]:
        return [["istream", *command]]
    if entrypoint and entrypoint[0] in SHELLS[0] and SHELLS[1] in entrypoint:
        return [argv for script in command for argv in istream_in_shell(script)]
    if entrypoint[:1] == ["istream"]:
        return [[*entrypoint, *command]]
    return []


# ---- compose ---------------------------------------------------------------------------------------
@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def our_services() -> dict[str, dict[str, Any]]:
    """Compose services that run an interest-stream image."""
    return {
        name: svc for name, svc in compose()["services"].items() if str(svc.get("image", "")).startswith(IMAGE_PREFIX)
    }


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _image_exec(image: str, name: str) -> list[str]:
    # an image no Dockerfile builds has no known defaults (test_images_and_tags_agree_everywhere says so)
    dockerfile = dockerfiles().get(image)
    return (dockerfile.exec_form(name) if dockerfile else None) or []


def service_argvs(service: dict[str, Any]) -> list[list[str]]:
    image = service["image"]
    entrypoint = _as_list(service["entrypoint"]) if "entrypoint" in service else _image_exec(image, "ENTRYPOINT")
    command = _as_list(service["command"]) if "command" in service else _image_exec(image, "CMD")
    return container_argv(entrypoint, command)


# ---- Kubernetes ------------------------------------------------------------------------------------
@cache
def k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    """(file, object) of every manifest under deploy/k8s (kustomization.yaml excluded)."""
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path, doc) for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return out


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [o for _, o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name} under deploy/k8s, found {len(found)}"
    return found[0]


def workloads() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload object, pod spec) of every Deployment/StatefulSet/Job/CronJob."""
    for _, obj in k8s_objects():
        spec = obj.get("spec", {})
        if obj["kind"] == "Pod":
            yield obj, spec
            continue
        if obj["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec:
            yield obj, spec["template"]["spec"]


def our_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, pod spec, container) of every container that runs an interest-stream image."""
    for obj, pod in workloads():
        workload = obj["metadata"]["name"]
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            if container["image"].startswith(IMAGE_PREFIX):
                yield workload, pod, container


def container_argvs(container: dict[str, Any]) -> list[list[str]]:
    image = container["image"]
    entrypoint = container.get("command") or _image_exec(image, "ENTRYPOINT")
    args = container.get("args") if "args" in container or "command" in container else _image_exec(image, "CMD")
    return container_argv(entrypoint, args or [])


def configmap_env(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in k8s_object("ConfigMap", name).get("data", {}).items()}


def secret_env(name: str) -> dict[str, str]:
    secret = k8s_object("Secret", name)
    return {k: str(v) for k, v in (secret.get("stringData") or secret.get("data") or {}).items()}


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """Every environment variable a container gets (envFrom ConfigMaps/Secrets, then env)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmap_env(source["configMapRef"]["name"]))
        if "secretRef" in source:
            env.update(secret_env(source["secretRef"]["name"]))
    env.update({e["name"]: str(e.get("value", "")) for e in container.get("env", [])})
    return env


def k8s_kind(kind: str) -> dict[str, Any]:
    """The one object of ``kind`` under deploy/k8s."""
    (obj,) = [o for _, o in k8s_objects() if o["kind"] == kind]
    return obj
