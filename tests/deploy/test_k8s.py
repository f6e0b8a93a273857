"""deploy/k8s: manifests parse, carry what a cluster needs, and agree with docker-compose.yml."""

from __future__ import annotations

import re
from typing import Any

import pytest
from deployfiles import K8S, PLACEHOLDER_PREFIX, SECRET_VARS, pod_labels, pod_spec, project_version

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "CronJob")
QUEUES_TO_SCALE_ON = {"get", "inspect", "put", "clean"}
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", str(value))
    assert match, f"unexpected memory quantity {value!r}"
    return int(match.group(1)) * _UNITS.get(match.group(2) or "", 1)


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_spec(obj)["containers"]


def env_names(container: dict[str, Any], objects: dict) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        config = objects[("ConfigMap", source["configMapRef"]["name"])]
        names |= set(config["data"])
    return names


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and In-expressions) matches ``labels``."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", "extend selects() for other operators"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


@pytest.fixture(scope="module")
def worker(k8s_objects):
    return k8s_objects[("Deployment", "deid-worker")]


@pytest.fixture(scope="module")
def secret(k8s_objects):
    return k8s_objects[("Secret", "deid-secrets")]


def test_every_document_parses_and_is_named(k8s_docs):
    assert len(k8s_docs) > 10
    for filename, doc in k8s_docs:
        assert isinstance(doc, dict), filename
        assert doc.get("apiVersion") and doc.get("kind"), filename
        if doc["kind"] != "Kustomization":
            assert doc.get("metadata", {}).get("name"), f"{filename}: {doc['kind']} without a name"


def test_kustomization_lists_every_manifest_but_the_secret_template(k8s_docs):
    kustomization = next(doc for name, doc in k8s_docs if doc["kind"] == "Kustomization")
    listed = set(kustomization["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # Applying the template would overwrite the real Secret with its placeholders.
    assert "secret.example.yaml" not in listed
    assert listed == files - {"secret.example.yaml"}
    assert kustomization["namespace"] == "deid"


def test_secret_template_holds_placeholders_only(secret):
    values = secret["stringData"]
    assert set(values) == {"REDIS_PASSWORD", "DEID_SECRET", "FLOWER_USER", "FLOWER_PASSWORD"}
    for name in SECRET_VARS:
        assert values[name].startswith(PLACEHOLDER_PREFIX), name
    assert "data" not in secret, "base64 data would hide real values from review"


def test_only_the_secret_template_holds_secret_values(k8s_docs):
    for filename, doc in k8s_docs:
        if doc["kind"] == "Secret":
            continue
        text = repr(doc)
        assert PLACEHOLDER_PREFIX not in text, filename


def test_every_secret_reference_names_a_key_of_the_secret(k8s_objects, secret):
    keys = set(secret["stringData"])
    refs = []
    for obj in k8s_objects.values():
        if obj["kind"] in WORKLOAD_KINDS:
            for c in containers(obj):
                env = c.get("env", [])
                refs += [e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e]
        if obj["kind"] == "TriggerAuthentication":
            refs += obj["spec"]["secretTargetRef"]
    assert refs
    for ref in refs:
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in keys, ref


def test_workloads_request_resources(k8s_objects):
    for (kind, name), obj in k8s_objects.items():
        if kind not in WORKLOAD_KINDS:
            continue
        for c in containers(obj):
            requests = c["resources"]["requests"]
            assert "cpu" in requests and "memory" in requests, f"{kind}/{name}"
            limit = c["resources"]["limits"]["memory"]
            assert quantity_bytes(limit) >= quantity_bytes(requests["memory"]), f"{kind}/{name}"


def test_worker_resources_say_where_they_come_from():
    text = (K8S / "worker.yaml").read_text(encoding="utf-8")
    assert "benchmarks/" in text and "python -m benchmarks" in text


def test_images_match_compose_and_the_project_version(k8s_objects, compose):
    compose_image = compose["services"]["worker"]["image"]
    assert compose_image == f"deid-workers:{project_version()}"
    for (kind, name), obj in k8s_objects.items():
        if kind in WORKLOAD_KINDS and name != "redis":
            for c in containers(obj):
                assert c["image"] == compose_image, f"{kind}/{name}"
    redis = containers(k8s_objects[("StatefulSet", "redis")])[0]
    assert redis["image"] == compose["services"]["redis"]["image"]


@pytest.mark.parametrize(
    ("service", "kind", "name"),
    [("worker", "Deployment", "deid-worker"), ("submit", "CronJob", "deid-submit"),
     ("flower", "Deployment", "flower")],
)
def test_env_names_match_compose(k8s_objects, compose, service, kind, name):
    compose_names = set(compose["services"][service]["environment"])
    k8s_names = env_names(containers(k8s_objects[(kind, name)])[0], k8s_objects)
    missing = compose_names - k8s_names
    assert not missing, f"{kind}/{name} lacks {sorted(missing)} that compose's {service} sets"


def test_brokers_point_at_the_redis_service(k8s_objects):
    for (kind, name), obj in k8s_objects.items():
        if kind in WORKLOAD_KINDS and name != "redis":
            env = {e["name"]: e for e in containers(obj)[0]["env"]}
            assert env["DEID_BROKER_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@redis:6379/0"
            # $(VAR) expands only from variables defined earlier in the list.
            order = [e["name"] for e in containers(obj)[0]["env"]]
            assert order.index("REDIS_PASSWORD") < order.index("DEID_BROKER_URL"), name
    assert ("Service", "redis") in k8s_objects


def test_redis_requires_password_keeps_aof_and_stays_inside(k8s_objects):
    args = containers(k8s_objects[("StatefulSet", "redis")])[0]["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert k8s_objects[("Service", "redis")]["spec"]["type"] == "ClusterIP"
    for (kind, name), obj in k8s_objects.items():
        if kind == "Service":
            assert obj["spec"].get("type", "ClusterIP") == "ClusterIP", name


def test_redis_network_policy_admits_every_client_and_only_them(k8s_objects):
    policy = k8s_objects[("NetworkPolicy", "redis-clients-only")]
    redis_labels = pod_labels(k8s_objects[("StatefulSet", "redis")])
    assert selects(policy["spec"]["podSelector"], redis_labels)
    peers = [p for rule in policy["spec"]["ingress"] for p in rule["from"]]
    same_namespace = [p["podSelector"] for p in peers if "namespaceSelector" not in p]
    clients = [("Deployment", "deid-worker"), ("Deployment", "flower"), ("CronJob", "deid-submit")]
    for kind, name in clients:
        labels = pod_labels(k8s_objects[(kind, name)])
        assert any(selects(s, labels) for s in same_namespace), f"{kind}/{name} cannot reach redis"
    assert not any(selects(s, redis_labels) for s in same_namespace)
    assert any("namespaceSelector" in p for p in peers), "KEDA's operator must reach redis"


def test_scaled_object_targets_workers_on_queue_lengths(k8s_objects, worker):
    scaled = k8s_objects[("ScaledObject", "deid-worker")]
    target = scaled["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment" and target["name"] == worker["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] >= 1, "zero replicas would kill running batches"
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    assert {t["metadata"]["listName"] for t in triggers} == QUEUES_TO_SCALE_ON
    for t in triggers:
        assert ("TriggerAuthentication", t["authenticationRef"]["name"]) in k8s_objects
        assert t["metadata"]["address"].startswith("redis.deid.svc.cluster.local:6379")
        assert int(t["metadata"]["listLength"]) >= 1


def test_worker_consumes_every_queue_it_scales_on(worker):
    # deid-worker subscribes to deid_workers.app.QUEUES; KEDA must watch real queue names.
    from deid_workers.app import QUEUES

    container = containers(worker)[0]
    assert container["command"] == ["deid-worker"]
    assert QUEUES_TO_SCALE_ON <= set(QUEUES)
    assert "--concurrency=1" in container["args"], "memory requests are per single-process pod"


def test_pdb_selects_worker_pods(k8s_objects, worker):
    pdb = k8s_objects[("PodDisruptionBudget", "deid-worker")]
    assert selects(pdb["spec"]["selector"], pod_labels(worker))
    assert not selects(pdb["spec"]["selector"], pod_labels(k8s_objects[("StatefulSet", "redis")]))


def test_timeouts_are_ordered(k8s_objects, worker):
    config = k8s_objects[("ConfigMap", "deid-config")]["data"]
    time_limit = int(config["DEID_TASK_TIME_LIMIT"])
    assert int(config["DEID_VISIBILITY_TIMEOUT"]) > time_limit
    # The running batch must finish inside the grace period of a scale-down or drain.
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > time_limit


@pytest.mark.parametrize(
    ("kind", "name"), [("Deployment", "deid-worker"), ("CronJob", "deid-submit")]
)
def test_input_and_output_are_on_the_shared_volume(k8s_objects, kind, name):
    obj = k8s_objects[(kind, name)]
    volumes = {v["name"]: v for v in pod_spec(obj)["volumes"]}
    mounts = {m["mountPath"]: m for m in containers(obj)[0]["volumeMounts"]}
    for path, read_only in [("/data/in", True), ("/data/out", False)]:
        volume = volumes[mounts[path]["name"]]
        assert volume["persistentVolumeClaim"]["claimName"] == "deid-data", path
        assert mounts[path].get("readOnly", False) is read_only, path
    claim = k8s_objects[("PersistentVolumeClaim", "deid-data")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize(
    ("kind", "name"), [("Deployment", "deid-worker"), ("CronJob", "deid-submit")]
)
def test_quarantine_is_mounted_where_the_config_points(k8s_objects, kind, name):
    # /data is read-only in the pods (readOnlyRootFilesystem): the output's sibling cannot be
    # made there, so DEID_QUARANTINE names a writable mount of the shared volume.
    where = k8s_objects[("ConfigMap", "deid-config")]["data"]["DEID_QUARANTINE"]
    obj = k8s_objects[(kind, name)]
    assert "deid-config" in {e["configMapRef"]["name"] for e in containers(obj)[0]["envFrom"]}
    mounts = {m["mountPath"]: m for m in containers(obj)[0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(obj)["volumes"]}
    assert not mounts[where].get("readOnly", False) and mounts[where]["subPath"] == "quarantine"
    assert volumes[mounts[where]["name"]]["persistentVolumeClaim"]["claimName"] == "deid-data"


def test_flower_requires_basic_auth(k8s_objects):
    flower = containers(k8s_objects[("Deployment", "flower")])[0]
    env = {e["name"]: e for e in flower["env"]}
    assert env["FLOWER_BASIC_AUTH"]["value"] == "$(FLOWER_USER):$(FLOWER_PASSWORD)"
    assert "DEID_SECRET" not in env
    assert k8s_objects[("Service", "flower")]["spec"]["type"] == "ClusterIP"


def test_pods_run_as_non_root(k8s_objects):
    for (kind, name), obj in k8s_objects.items():
        if kind in WORKLOAD_KINDS:
            spec = pod_spec(obj)
            assert spec["securityContext"]["runAsNonRoot"] is True, f"{kind}/{name}"
            assert spec.get("automountServiceAccountToken") is False, f"{kind}/{name}"
            for c in spec["containers"]:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, f"{kind}/{name}"
