"""deploy/Dockerfile: the image installs exactly as CI does, runs as non-root, checks health."""

from __future__ import annotations

import shlex
from pathlib import Path

from deployfiles import DOCKERFILE, ROOT, project_version

CI_RUN = ROOT / ".ci" / "run"


def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comments dropped, as Docker and sh see them."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(" ".join((pending + stripped).split()))
        pending = ""
    if pending:
        lines.append(" ".join(pending.split()))
    return lines


def instructions(path: Path) -> list[tuple[str, str]]:
    result = []
    for line in logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest))
    return result


def pip_install_commands(lines: list[str]) -> list[list[str]]:
    """Each ``... pip install ...`` command as shell words, quoting normalised away."""
    commands = []
    for line in lines:
        words = shlex.split(line, comments=True)
        if "pip" in words and "install" in words:
            commands.append(words)
    return commands


def dockerfile_pip_command() -> list[str]:
    runs = [rest for keyword, rest in instructions(DOCKERFILE) if keyword == "RUN"]
    commands = pip_install_commands(runs)
    assert len(commands) == 1, "deploy/Dockerfile must install the project with one pip line"
    return commands[0]


def test_dockerfile_installs_the_project_with_the_flower_and_ocr_extras():
    # Every worker consumes queue ocr (deid_workers.app.QUEUES): it needs the OCR engine.
    words = dockerfile_pip_command()
    assert words[:4] == ["python", "-m", "pip", "install"]
    assert ".[flower,ocr]" in words
    assert "&&" not in words, "the install line must be one command, comparable with .ci/run"


def test_ci_runs_the_dockerfile_pip_line():
    """CI builds what the image builds, without Docker: the same pip command must be in .ci/run."""
    expected = dockerfile_pip_command()
    assert CI_RUN.is_file(), ".ci/run is missing"
    ci_commands = pip_install_commands(logical_lines(CI_RUN.read_text(encoding="utf-8")))
    assert expected in ci_commands, (
        f"deploy/Dockerfile installs with `{shlex.join(expected)}` but .ci/run has "
        f"{[shlex.join(c) for c in ci_commands]}"
    )


def test_pip_line_comparison_sees_a_difference():
    """The comparison above must fail when a flag differs, and ignore only quoting."""
    docker = pip_install_commands(['python -m pip install --no-cache-dir ".[flower]"'])
    same = pip_install_commands(["python -m pip install --no-cache-dir '.[flower]'  # the image"])
    other = pip_install_commands(['python -m pip install --no-cache-dir --pre ".[flower]"'])
    assert docker[0] in same and docker[0] not in other


def test_base_image_user_and_healthcheck():
    steps = instructions(DOCKERFILE)
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = [rest for keyword, rest in steps if keyword == "HEALTHCHECK"]
    assert len(health) == 1 and "inspect ping" in health[0] and "celery@$HOSTNAME" in health[0]
    assert ("CMD", '["deid-worker"]') in steps


def test_build_context_never_copies_secrets_or_data():
    # COPY . would take .env (and the input data) into a layer when the legacy builder ignores
    # deploy/Dockerfile.dockerignore; copy named paths only.
    for keyword, rest in instructions(DOCKERFILE):
        if keyword in ("COPY", "ADD"):
            sources = rest.split()[:-1]
            assert "." not in sources and not any(s.startswith(".env") for s in sources), rest
    text = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    patterns = [s for s in (line.strip() for line in text.splitlines()) if s and s[0] != "#"]
    # An allow-list: exclude everything first, then re-include only what the build needs.
    assert patterns[0] == "*"
    assert not any(p.startswith("!.env") or p.startswith("!data") for p in patterns)


def test_pyproject_version_is_the_image_tag_in_the_build_comment():
    assert f"deid-workers:{project_version()}" in DOCKERFILE.read_text(encoding="utf-8")
