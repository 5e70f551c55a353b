"""deploy/ agrees with the code: files parse, every `istream` command it runs (Dockerfiles, compose,
Kubernetes, the guide's code blocks) exists with the options used, and every ISTREAM_*/KAFKA_* variable
it sets is a setting with a valid value."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from pydantic import AliasChoices

from stream_app.cli import cli
from stream_app.settings import ENV_PREFIX, Settings
from tests.deploy import manifests as m
from tests.deploy.manifests import GUIDE, VERSION

ISTREAM = Path(sys.executable).with_name("istream")
YAML_FILES = sorted([*m.DEPLOY.rglob("*.yml"), *m.DEPLOY.rglob("*.yaml")])
JSON_FILES = sorted(m.DEPLOY.rglob("*.json"))


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
