"""deploy/k8s/ and deploy/compose.yaml: schema-checked, and consistent with the bridge.

Every Kubernetes object is deserialised into the official client's model for its kind
(``kubernetes.client``: required fields checked) and serialised back: a field the model does
not know (a typo, a field at the wrong level) is lost on the way and fails the comparison.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
kubernetes = pytest.importorskip("kubernetes")

from telephony_bridge.settings import Settings  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S = DEPLOY / "k8s"

MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("v1", "Service"): "V1Service",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("networking.k8s.io/v1", "Ingress"): "V1Ingress",
}


def _objects() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc:
                out.append((name, doc))
    return out


def _normalise(value: Any) -> Any:
    """YAML's ints where the API takes int-or-string, dropped empties: as the model writes them."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items() if v not in (None, {}, [])} or None
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def test_every_manifest_in_the_kustomization_round_trips_through_its_model() -> None:
    client = kubernetes.client.ApiClient()
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert files == listed, "every manifest is applied by the kustomization"
    objects = _objects()
    assert {doc["kind"] for _, doc in objects} >= {"Deployment", "Service", "PodDisruptionBudget",
                                                   "HorizontalPodAutoscaler", "StatefulSet"}
    for name, doc in objects:
        model = MODELS[(doc["apiVersion"], doc["kind"])]
        obj = client.deserialize(json.dumps(doc), model, "application/json")
        back = client.sanitize_for_serialization(obj)
        assert _normalise(back) == _normalise(doc), f"{name}: {doc['kind']} has fields its model does not know"


def _deployment() -> dict[str, Any]:
    return next(doc for _, doc in _objects() if doc["kind"] == "Deployment")


def test_the_deployment_drains_within_its_grace_period_and_probes_readiness_apart_from_liveness() -> None:
    dep = _deployment()
    pod = dep["spec"]["template"]["spec"]
    (bridge,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in bridge["env"]}
    assert pod["terminationGracePeriodSeconds"] > float(env["DRAIN_MAX_S"]) + 5
    assert float(env["DRAIN_FINISH_S"]) <= float(env["DRAIN_HANDOVER_S"]) <= float(env["DRAIN_MAX_S"])
    assert bridge["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert bridge["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert env["REDIS_URL"].startswith("redis://redis-0.redis:")  # the StatefulSet's pod DNS name
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # The selector picks the pod template; the PDB, the Service and the HPA point at it.
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for _, doc in _objects():
        if doc["kind"] == "PodDisruptionBudget":
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
        if doc["kind"] == "Service" and doc["metadata"]["name"] == "telephony-bridge":
            assert doc["spec"]["selector"].items() <= labels.items()
        if doc["kind"] == "HorizontalPodAutoscaler":
            assert doc["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
            assert doc["spec"]["minReplicas"] >= 2


def test_the_hpa_metric_is_one_the_bridge_exports() -> None:
    from telephony_bridge.metrics import Metrics

    exported = Metrics().render().decode() if isinstance(Metrics().render(), bytes) else Metrics().render()
    hpa = next(doc for _, doc in _objects() if doc["kind"] == "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    assert re.search(rf"^{name} ", exported, re.M), f"{name} is not in /metrics"
    adapter = next(doc for _, doc in _objects() if doc["kind"] == "ConfigMap")
    rules = yaml.safe_load(adapter["data"]["prometheus-adapter-rules.yaml"])
    assert rules["rules"][0]["name"]["as"] == name


def test_the_drain_settings_in_the_manifests_are_ones_the_bridge_reads() -> None:
    from telephony_bridge.settings import load_settings

    env = {e["name"]: e["value"] for e in _deployment()["spec"]["template"]["spec"]["containers"][0]["env"]}
    settings = load_settings({**env, "GEMINI_API_KEY": "k" * 39, "TWILIO_AUTH_TOKEN": "t" * 32,
                              "STREAM_TOKEN_SECRET": "s" * 43})
    assert settings.drain_max_s == float(env["DRAIN_MAX_S"])
    assert settings.redis_url == env["REDIS_URL"]
    assert Settings.drain_max_s <= 40


def test_compose_runs_two_replicas_sharing_redis_behind_a_readiness_checking_proxy() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    bridges = [name for name, svc in services.items() if "bridge" in name]
    assert len(bridges) == 2
    for name in bridges:
        svc = services[name]
        assert svc["environment"]["REDIS_URL"].startswith("redis://redis:")
        grace = int(svc["stop_grace_period"].rstrip("s"))
        assert grace > float(svc["environment"]["DRAIN_MAX_S"]) + 5
    assert "redis" in services and "proxy" in services
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    upstreams = re.search(r"reverse_proxy ([^{]+)\{", caddyfile).group(1).split()
    assert sorted(u.split(":")[0] for u in upstreams) == sorted(bridges)
    assert "health_uri /readyz" in caddyfile
