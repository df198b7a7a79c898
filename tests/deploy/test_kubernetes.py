"""The Kubernetes manifests, as built by ``kubectl kustomize`` and checked by the operators' tools.

kubernetes-validate knows the built-in kinds only; the custom resources
(ServiceMonitor, PrometheusRule, ScaledObject, TriggerAuthentication) are
checked here field by field against what they must agree with.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import Settings, load_settings
from tests.deploy.conftest import Rendered
from tests.deploy.rules import rule_groups
from tests.deploy.tools import KUBERNETES, OVERLAYS, ROOT, load_all, run, tool

CUSTOM_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "ScaledObject": "keda.sh/v1alpha1",
    "TriggerAuthentication": "keda.sh/v1alpha1",
}
SECRET_EXAMPLE = KUBERNETES / "base" / "secret.example.yaml"


def secret_example() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(SECRET_EXAMPLE.read_text())
    return doc


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_both_overlays_build_every_resource(rendered: dict[str, Rendered], overlay: str) -> None:
    kinds = sorted(d["kind"] for d in rendered[overlay].docs)
    expected = {
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "ScaledObject",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    }
    assert expected <= set(kinds), kinds
    assert "Secret" not in kinds, "a Secret with placeholders must never be applied"
    namespaces = {
        d["metadata"].get("namespace") for d in rendered[overlay].docs if d["kind"] != "Namespace"
    }
    assert namespaces == {"customer-sync"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_validate_strict_accepts_the_output(
    rendered: dict[str, Rendered], overlay: str, tmp_path: Path
) -> None:
    checker = tool("kubernetes-validate")
    result = run([checker, "--strict", "-k", "1.31", "-"], stdin=rendered[overlay].text)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = set(re.findall(r"passed for resource (\S+)/", output))
    builtin = {d["kind"].lower() for d in rendered[overlay].docs if d["kind"] not in CUSTOM_KINDS}
    assert passed == builtin, output
    # Only the custom resources may be unknown to it, and they are checked below instead.
    for line in output.splitlines():
        if line.startswith(("WARN", "ERROR")):
            match = re.search(r"kind (\w+) with api version (\S+)", line)
            assert match, line
            assert CUSTOM_KINDS.get(match[1]) == match[2], line


def test_kubernetes_validate_accepts_the_secret_example() -> None:
    result = run([tool("kubernetes-validate"), "--strict", "-k", "1.31", SECRET_EXAMPLE])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource secret/customer-sync-credentials" in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_are_well_formed(rendered: dict[str, Rendered], overlay: str) -> None:
    built = rendered[overlay]
    for doc in built.docs:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] == CUSTOM_KINDS[doc["kind"]], doc["kind"]
    deployment, service, config = (built.one(k) for k in ("Deployment", "Service", "ConfigMap"))
    settings = config["data"]

    monitor = built.one("ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["endpoints"]] == ["metrics"]
    assert "metrics" in port_names
    assert monitor["endpoints"][0]["path"] == "/metrics"

    rules = built.one("PrometheusRule")["spec"]["groups"]
    assert rules == rule_groups(), "PrometheusRule differs from deploy/prometheus/alerts.yml"

    scaled = built.one("ScaledObject")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    partitions = int(scaled["metadata"]["annotations"]["customer-sync/source-partitions"])
    assert spec["maxReplicaCount"] == partitions, "replicas beyond the partition count sit idle"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    [trigger] = spec["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["bootstrapServers"] == settings["KAFKA_BOOTSTRAP_SERVERS"]
    assert meta["consumerGroup"] == settings["KAFKA_GROUP_ID"]
    assert meta["topic"] in settings["KAFKA_SOURCE_TOPICS"].split(",")
    assert int(meta["lagThreshold"]) > 0
    assert meta["allowIdleConsumers"] == "false"
    if "authenticationRef" in trigger:
        auth = built.one("TriggerAuthentication")
        assert auth["metadata"]["name"] == trigger["authenticationRef"]["name"]
        keys = set(secret_example()["stringData"])
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == secret_example()["metadata"]["name"]
            assert ref["key"] in keys, ref
        assert settings.get("KAFKA_CLIENT_SECURITY_PROTOCOL") == "SASL_SSL"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_probes_resources_and_hardening(
    rendered: dict[str, Rendered], overlay: str
) -> None:
    built = rendered[overlay]
    deployment = built.one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    settings = built.one("ConfigMap")["data"]

    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port["http"] == int(settings["HTTP_PORT"])
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind
    assert pod["terminationGracePeriodSeconds"] > float(settings["SHUTDOWN_TIMEOUT_SECONDS"])
    assert c["args"] == ["run"]

    security = c["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    spread = {t["topologyKey"] for t in pod["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in spread
    # Never more members than partitions, even for a moment during a rollout.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0

    labels = pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        doc = built.one(kind)
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= pod_labels.items(), kind
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()

    refs = {next(iter(e)): e[next(iter(e))]["name"] for e in c["envFrom"]}
    assert refs["configMapRef"] == built.one("ConfigMap")["metadata"]["name"]
    assert refs["secretRef"] == secret_example()["metadata"]["name"]
    assert built.one("ServiceAccount")["metadata"]["name"] == pod["serviceAccountName"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_and_secret_example_make_a_valid_configuration(
    rendered: dict[str, Rendered], overlay: str
) -> None:
    data = rendered[overlay].one("ConfigMap")["data"]
    spec_names = {name.upper() for name in Settings.model_fields if name != "kafka_client"}
    for name in data:
        assert name in spec_names or name.startswith("KAFKA_CLIENT_"), f"{name} is no setting"
    environment = {**data, **secret_example()["stringData"]}
    settings = load_settings(environment)  # raises ConfigError naming the variable otherwise
    assert settings.kafka_group_id == data["KAFKA_GROUP_ID"]


def test_secret_example_carries_no_real_values() -> None:
    secret = secret_example()
    assert secret["kind"] == "Secret"
    assert set(secret["stringData"].values()) == {"REPLACE_ME"}
    assert "data" not in secret
    base = yaml.safe_load((KUBERNETES / "base" / "kustomization.yaml").read_text())
    assert SECRET_EXAMPLE.name not in base["resources"]


def test_checkov_finds_nothing_or_every_skip_says_why(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    """checkov scans what is applied (the rendered overlays), the secret example and the Dockerfile.

    Skips are annotations (``checkov.io/skipN: ID=reason``): they survive
    ``kustomize build``, where comments do not.
    """
    checkov = tool("checkov")
    for overlay, built in rendered.items():
        (tmp_path / overlay).mkdir()
        (tmp_path / overlay / "all.yaml").write_text(built.text)
    (tmp_path / SECRET_EXAMPLE.name).write_text(SECRET_EXAMPLE.read_text())
    (tmp_path / "Dockerfile").write_text((ROOT / "Dockerfile").read_text())
    result = run(
        [
            checkov,
            "-d",
            tmp_path,
            "--framework",
            "kubernetes",
            "dockerfile",
            "--skip-download",
            "-o",
            "json",
        ]
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}
    for report in reports:
        failed = report["results"]["failed_checks"]
        assert not failed, [(f["check_id"], f["check_name"], f["resource"]) for f in failed]
        assert report["results"]["passed_checks"], report["check_type"]
        for skipped in report["results"]["skipped_checks"]:
            reason = skipped["check_result"].get("suppress_comment", "")
            assert len(reason) > 20, f"{skipped['check_id']} is skipped without a reason"
    assert result.returncode == 0, result.stderr[-2000:]


def test_secret_example_is_listed_nowhere_else() -> None:
    for path in KUBERNETES.rglob("kustomization.yaml"):
        resources = yaml.safe_load(path.read_text()).get("resources", [])
        assert not any("secret" in str(r) for r in resources), path
    assert load_all(SECRET_EXAMPLE.read_text())
