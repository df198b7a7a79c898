"""The Dockerfile: hadolint clean, and the properties the issue asks for, read from the file.

No Docker engine runs here, so the image itself cannot be built; checkov's
Dockerfile checks run in ``test_kubernetes.py`` beside the manifests'.
"""

from __future__ import annotations

import re

from tests.deploy.tools import ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_hadolint_finds_nothing() -> None:
    result = run([tool("hadolint"), "--no-color", DOCKERFILE])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_multi_stage_on_a_pinned_slim_base() -> None:
    bases = [args.split()[0] for keyword, args in instructions() if keyword == "FROM"]
    assert len(bases) >= 2, "build and runtime stages"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    assert len(set(bases)) == 1, "build and run on the same interpreter"


def test_dependencies_get_their_own_layer_before_the_code() -> None:
    steps = instructions()
    copies = [
        i for i, (keyword, args) in enumerate(steps) if keyword == "COPY" and "--from" not in args
    ]
    manifest = next(i for i in copies if "pyproject.toml" in steps[i][1])
    code = next(i for i in copies if steps[i][1].startswith("service"))
    install = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a)
    assert manifest < install < code


def test_runs_customer_sync_as_a_non_root_user_without_healthcheck() -> None:
    steps = instructions()
    runtime = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "the runtime stage must drop root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric, so Kubernetes' runAsNonRoot can verify it"
    assert int(uid) >= 10000, "above the host's system and user ranges"
    assert ("HEALTHCHECK", "NONE") in runtime, "Kubernetes probes replace HEALTHCHECK"
    assert ("ENTRYPOINT", '["customer-sync"]') in runtime
    assert ("CMD", '["run"]') in runtime


def test_no_secret_is_baked_in() -> None:
    for keyword, args in instructions():
        if keyword in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"KEY|SECRET|PASSWORD|TOKEN|SASL", args, re.I), args
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, "the build context is an allowlist"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "service"}, "nothing else (no .env, .venv)"
