"""Loaders and checks for the deployment files (docker-compose.yml, .env.example, deploy/).

No Docker engine or cluster runs in CI, so these tests are what stands between a typo in a
manifest and an operator's failed rollout: they parse the files and check the facts that the
services depend on (passwords required, ports closed, names consistent across files).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"

SECRET_VARS = ("FLOWER_PASSWORD",)
"""Variables of .env whose values are secrets: they appear only as ${VAR} references, never as
values. (Every other secret is a file made by deploy/secrets.sh, see SECRET_FILES.)"""

REDIS_CONF = ROOT / "deploy" / "redis" / "redis.conf"
ACL_TEMPLATE = ROOT / "deploy" / "redis" / "users.acl.template"
SECRETS_SH = ROOT / "deploy" / "secrets.sh"

REDIS_USERS = {"worker": "worker", "submit": "producer", "flower": "flower"}
"""The Redis user each deid service logs in as."""

PLACEHOLDER_PREFIX = "change-me"

# ${VAR}, ${VAR?msg} or ${VAR:?msg}: a reference with no default (a default would be a literal).
_REQUIRED_REF = r"\$\{[A-Z_][A-Z0-9_]*(?::?\?[^}]*)?\}"
REF_ONLY = re.compile(rf"^(?:{_REQUIRED_REF}|:)+$")
_VAR_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)")


def is_reference_only(value: str) -> bool:
    """True when ``value`` is built only from required ${VAR} references (and ':' separators)."""
    return bool(REF_ONLY.match(value))


MASK = "REFERENCE"


def mask_references(text: str) -> str:
    """``text`` with each required ${VAR} reference replaced by MASK, so URLs parse as URLs."""
    return re.sub(_REQUIRED_REF, MASK, text)


def without_comments(text: str) -> str:
    """YAML text minus whole-line comments (compose does not interpolate them)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def referenced_vars(text: str) -> set[str]:
    """Names of the ${VAR} references in compose text (``$${`` is an escape, not a reference)."""
    return set(_VAR_REFERENCE.findall(without_comments(text)))


def mount_target(mount: str) -> tuple[str, str, str]:
    """Split a short-syntax volume ``source:target[:mode]`` whose source may be ``${X:-./a}``."""
    if mount.startswith("${"):
        end = mount.index("}") + 1
        source, rest = mount[:end], mount[end + 1 :]
    else:
        source, _, rest = mount.partition(":")
    target, _, mode = rest.partition(":")
    return source, target, mode


def parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}: not NAME=value: {line!r}"
        values[name.strip()] = value.strip()
    return values


def project_version() -> str:
    """The [project] version of pyproject.toml (read by hand: tomllib is 3.11+, we support 3.10)."""
    section = None
    for line in (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        header = re.match(r"^\[([^\]]+)\]\s*$", line)
        if header:
            section = header.group(1)
            continue
        version = re.match(r'^version\s*=\s*"([^"]+)"', line)
        if section == "project" and version:
            return version.group(1)
    raise AssertionError("pyproject.toml: no [project] version")


def load_k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every object in deploy/k8s/*.yaml as (file name, object), kustomization included."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment, StatefulSet, Job or CronJob."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


def redis_conf() -> dict[str, str]:
    """deploy/redis/redis.conf as directive -> value (the last one wins, as in Redis)."""
    conf: dict[str, str] = {}
    for line in REDIS_CONF.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            conf[name] = value.strip()
    return conf


def acl_rules() -> dict[str, list[str]]:
    """deploy/redis/users.acl.template as user -> its rules."""
    users: dict[str, list[str]] = {}
    for line in ACL_TEMPLATE.read_text(encoding="utf-8").splitlines():
        words = line.split()
        assert words[0] == "user", line
        users[words[1]] = words[2:]
    return users
