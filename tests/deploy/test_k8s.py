"""deploy/k8s: manifests parse, carry what a cluster needs, and agree with docker-compose.yml."""

from __future__ import annotations

import re
from typing import Any

import pytest
from deployfiles import (
    K8S,
    PLACEHOLDER_PREFIX,
    REDIS_CONF,
    pod_labels,
    pod_spec,
    project_version,
    redis_conf,
)

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "CronJob")
QUEUES_TO_SCALE_ON = {"get", "inspect", "put", "clean", "ocr"}
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
def secrets(k8s_objects):
    """The Secret templates by name -> their keys."""
    return {name: set(obj["stringData"]) for (kind, name), obj in k8s_objects.items()
            if kind == "Secret"}


SECRET_KEYS = {
    "deid-cluster-key": {"secret.key"},
    "deid-redis-server": {"users.acl", "ca.crt", "redis.crt", "redis.key", "probe.password"},
    "deid-redis-clients": {"ca.crt", "producer.password", "worker.password", "flower.password",
                           "keda.username", "keda.password", "keda.tls"},
    "deid-flower": {"FLOWER_BASIC_AUTH"},
}
"""Every Secret of a deployment and its files (deploy/secrets.sh makes them)."""
NOT_SECRET = {"keda.username", "keda.tls"}  # a user name and "enable", kept beside the password


def secret_volumes(obj: dict[str, Any]) -> dict[str, tuple[str, set[str]]]:
    """A workload's secret volumes: mount path -> (Secret name, keys it exposes)."""
    spec = pod_spec(obj)
    by_name = {v["name"]: v["secret"] for v in spec.get("volumes", []) if "secret" in v}
    out = {}
    for c in spec["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] in by_name:
                sv = by_name[m["name"]]
                keys = {i["key"] for i in sv["items"]} if "items" in sv else {"*"}
                out[m["mountPath"]] = (sv["secretName"], keys)
    return out


def mounted_files(obj: dict[str, Any]) -> set[str]:
    """Paths of the secret files a workload's pod sees."""
    spec = pod_spec(obj)
    by_name = {v["name"]: v["secret"] for v in spec.get("volumes", []) if "secret" in v}
    files = set()
    for c in spec["containers"]:
        for m in c.get("volumeMounts", []):
            sv = by_name.get(m["name"])
            if sv is None:
                continue
            for item in sv.get("items") or [{"path": k} for k in SECRET_KEYS[sv["secretName"]]]:
                files.add(f"{m['mountPath']}/{item['path']}")
    return files


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


def test_secret_template_holds_placeholders_only(k8s_objects, secrets):
    assert secrets == SECRET_KEYS
    for name, keys in SECRET_KEYS.items():
        obj = k8s_objects[("Secret", name)]
        assert "data" not in obj, "base64 data would hide real values from review"
        for key in keys - NOT_SECRET:
            assert PLACEHOLDER_PREFIX in obj["stringData"][key], (name, key)


def test_only_the_secret_template_holds_secret_values(k8s_docs):
    for filename, doc in k8s_docs:
        if doc["kind"] == "Secret":
            continue
        text = repr(doc)
        assert PLACEHOLDER_PREFIX not in text, filename


def test_every_secret_reference_names_a_key_of_a_secret(k8s_objects, secrets):
    refs = []
    for obj in k8s_objects.values():
        if obj["kind"] in WORKLOAD_KINDS:
            for c in containers(obj):
                env = c.get("env", [])
                refs += [e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e]
            for name, keys in secret_volumes(obj).values():
                refs += [{"name": name, "key": k} for k in keys - {"*"}]
        if obj["kind"] == "TriggerAuthentication":
            refs += obj["spec"]["secretTargetRef"]
    assert len(refs) > 10
    for ref in refs:
        assert ref["key"] in secrets.get(ref["name"], ()), ref


def test_no_secret_is_an_environment_value_and_each_pod_mounts_only_its_own(k8s_objects):
    """The cluster key and the Redis passwords are files (DEID_SECRET_FILE,
    DEID_REDIS_PASSWORD_FILE), mounted only where needed: a pod's environment can be read in
    /proc, kubectl describe and crash dumps; its mounted files only by its own user."""
    config = k8s_objects[("ConfigMap", "deid-config")]["data"]
    want = {
        ("Deployment", "deid-worker"): {"/run/secrets/deid/secret.key", "/run/secrets/redis/ca.crt",
                                        "/run/secrets/redis/password"},
        ("Deployment", "deid-worker-ocr"): {"/run/secrets/deid/secret.key",
                                            "/run/secrets/redis/ca.crt",
                                            "/run/secrets/redis/password"},
        ("CronJob", "deid-submit"): {"/run/secrets/deid/secret.key", "/run/secrets/redis/ca.crt",
                                     "/run/secrets/redis/password"},
        ("Deployment", "flower"): {"/run/secrets/redis/ca.crt", "/run/secrets/redis/password"},
        ("StatefulSet", "redis"): {"/run/secrets/redis-tls/ca.crt",
                                   "/run/secrets/redis-tls/redis.crt",
                                   "/run/secrets/redis-tls/redis.key",
                                   "/run/secrets/redis-acl/users.acl",
                                   "/run/secrets/redis-probe/password"},
    }
    for key, files in want.items():
        obj = k8s_objects[key]
        assert mounted_files(obj) == files, key
        env = containers(obj)[0].get("env", [])
        assert not [e for e in env if "secretKeyRef" in e.get("valueFrom", {})
                    and e["name"] != "FLOWER_BASIC_AUTH"], key
        assert not {"DEID_SECRET", "REDIS_PASSWORD", "REDISCLI_AUTH"} & {e["name"] for e in env}
    assert config["DEID_SECRET_FILE"] in want[("Deployment", "deid-worker")]
    assert config["DEID_REDIS_PASSWORD_FILE"] in want[("Deployment", "flower")]
    assert config["DEID_REDIS_TLS_CA"] in want[("Deployment", "flower")]
    users = {("Deployment", "deid-worker"): "worker", ("Deployment", "deid-worker-ocr"): "worker",
             ("CronJob", "deid-submit"): "producer", ("Deployment", "flower"): "flower"}
    for key, user in users.items():  # each pod's one password file is its own user's
        (volume,) = [v for v in secret_volumes(k8s_objects[key]).values()
                     if v[0] == "deid-redis-clients"]
        assert volume[1] == {"ca.crt", f"{user}.password"}, key


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
    [("worker", "Deployment", "deid-worker"), ("worker", "Deployment", "deid-worker-ocr"),
     ("submit", "CronJob", "deid-submit"), ("flower", "Deployment", "flower")],
)
def test_env_names_match_compose(k8s_objects, compose, service, kind, name):
    compose_names = set(compose["services"][service]["environment"])
    k8s_names = env_names(containers(k8s_objects[(kind, name)])[0], k8s_objects)
    missing = compose_names - k8s_names
    assert not missing, f"{kind}/{name} lacks {sorted(missing)} that compose's {service} sets"


def test_brokers_point_at_the_redis_service_over_tls_as_their_own_user(k8s_objects):
    users = {"deid-worker": "worker", "deid-worker-ocr": "worker", "deid-submit": "producer",
             "flower": "flower"}
    for (kind, name), obj in k8s_objects.items():
        if kind in WORKLOAD_KINDS and name != "redis":
            env = {e["name"]: e for e in containers(obj)[0]["env"]}
            assert env["DEID_BROKER_URL"]["value"] == f"rediss://{users[name]}@redis:6379/0"
    assert ("Service", "redis") in k8s_objects


def test_redis_runs_the_deployed_config_and_stays_inside(k8s_objects):
    redis = k8s_objects[("StatefulSet", "redis")]
    container = containers(redis)[0]
    assert container["args"] == ["redis-server", "/etc/redis/redis.conf"]
    assert "env" not in container, "no password in Redis' environment"
    # The ConfigMap holds deploy/redis/redis.conf as it is (compose mounts that very file).
    conf_map = k8s_objects[("ConfigMap", "redis-conf")]["data"]["redis.conf"]
    assert conf_map == REDIS_CONF.read_text(encoding="utf-8")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(redis)["volumes"]}
    assert volumes[mounts["/etc/redis"]]["configMap"]["name"] == "redis-conf"
    conf = redis_conf()
    files = mounted_files(redis)
    for directive in ("aclfile", "tls-cert-file", "tls-key-file", "tls-ca-cert-file"):
        assert conf[directive] in files, directive
    for probe in ("readinessProbe", "livenessProbe"):
        command = " ".join(container[probe]["exec"]["command"])
        assert "--user probe" in command and "--tls" in command and "PONG" in command
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
    clients = [("Deployment", "deid-worker"), ("Deployment", "deid-worker-ocr"),
               ("Deployment", "flower"), ("CronJob", "deid-submit")]
    for kind, name in clients:
        labels = pod_labels(k8s_objects[(kind, name)])
        assert any(selects(s, labels) for s in same_namespace), f"{kind}/{name} cannot reach redis"
    assert not any(selects(s, redis_labels) for s in same_namespace)
    assert any("namespaceSelector" in p for p in peers), "KEDA's operator must reach redis"
    assert "Egress" in policy["spec"]["policyTypes"] and policy["spec"]["egress"] == []


def test_workers_flower_and_producer_reach_only_redis_and_dns(k8s_objects):
    policy = k8s_objects[("NetworkPolicy", "workers-flower-submit")]
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["spec"]["ingress"] == []
    for kind, name in [("Deployment", "deid-worker"), ("Deployment", "deid-worker-ocr"),
                       ("Deployment", "flower"), ("CronJob", "deid-submit")]:
        assert selects(policy["spec"]["podSelector"], pod_labels(k8s_objects[(kind, name)]))
    redis_labels = pod_labels(k8s_objects[("StatefulSet", "redis")])
    ports = set()
    for rule in policy["spec"]["egress"]:
        (peer,) = rule["to"]
        rule_ports = {(p["protocol"], p["port"]) for p in rule["ports"]}
        if "namespaceSelector" in peer:
            assert peer["namespaceSelector"]["matchLabels"] == {
                "kubernetes.io/metadata.name": "kube-system"}
            assert rule_ports == {("UDP", 53), ("TCP", 53)}
        else:
            assert selects(peer["podSelector"], redis_labels) and rule_ports == {("TCP", 6379)}
        ports |= rule_ports
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 6379)}


def test_scaled_object_targets_workers_on_queue_lengths(k8s_objects, worker):
    scaled = k8s_objects[("ScaledObject", "deid-worker")]
    target = scaled["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment" and target["name"] == worker["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] >= 1, "zero replicas would kill running batches"
    ocr = k8s_objects[("ScaledObject", "deid-worker-ocr")]
    assert ocr["spec"]["scaleTargetRef"]["name"] == "deid-worker-ocr"
    triggers = scaled["spec"]["triggers"] + ocr["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    assert {t["metadata"]["listName"] for t in scaled["spec"]["triggers"]} == QUEUES_TO_SCALE_ON - {"ocr"}
    assert {t["metadata"]["listName"] for t in ocr["spec"]["triggers"]} == {"ocr"}
    for t in triggers:
        assert ("TriggerAuthentication", t["authenticationRef"]["name"]) in k8s_objects
        assert t["metadata"]["address"].startswith("redis.deid.svc.cluster.local:6379")
        assert int(t["metadata"]["listLength"]) >= 1
    auth = k8s_objects[("TriggerAuthentication", "deid-redis-auth")]["spec"]["secretTargetRef"]
    # KEDA logs in as its own user, over TLS checked against the deployment's CA.
    assert {(r["parameter"], r["key"]) for r in auth} == {
        ("username", "keda.username"), ("password", "keda.password"), ("tls", "keda.tls"),
        ("ca", "ca.crt")}


def consumed_queues(container: dict[str, Any]) -> set[str]:
    """The queues a deid-worker container consumes: its command line as deid-worker builds it,
    parsed by Celery's own worker command (the last -Q wins, -X takes queues out)."""
    from celery.bin.worker import worker as celery_worker

    from deid_workers.config import Settings
    from deid_workers.worker import worker_argv

    argv = worker_argv(Settings(), container["args"])
    assert argv[0] == "worker"
    params = celery_worker.make_context("worker", argv[1:], resilient_parsing=True).params
    return set(params["queues"]) - set(params["exclude_queues"] or ())


def test_every_queue_is_consumed_by_the_pods_scaled_on_it(k8s_objects, worker):
    # KEDA must watch real queue names, and each list's pods must consume it.
    from deid_workers.app import QUEUES

    ocr = k8s_objects[("Deployment", "deid-worker-ocr")]
    for deployment in (worker, ocr):
        container = containers(deployment)[0]
        assert container["command"] == ["deid-worker"]
        assert "--concurrency=1" in container["args"], "memory requests are per single-process pod"
    assert QUEUES_TO_SCALE_ON <= set(QUEUES)
    assert consumed_queues(containers(worker)[0]) == set(QUEUES) - {"ocr"}
    assert consumed_queues(containers(ocr)[0]) == {"ocr"}


def test_ocr_pods_read_the_input_and_write_only_records(k8s_objects):
    ocr = k8s_objects[("Deployment", "deid-worker-ocr")]
    mounts = {m["mountPath"]: m for m in containers(ocr)[0]["volumeMounts"]}
    assert mounts["/data/in"].get("readOnly") is True
    assert "/data/out" not in mounts and "/data/quarantine" not in mounts
    assert "/data/records" in mounts
    assert quantity_bytes(containers(ocr)[0]["resources"]["requests"]["memory"]) >= 700 * 2**20


def test_pdb_selects_worker_pods(k8s_objects, worker):
    pdb = k8s_objects[("PodDisruptionBudget", "deid-worker")]
    assert selects(pdb["spec"]["selector"], pod_labels(worker))
    ocr = pod_labels(k8s_objects[("Deployment", "deid-worker-ocr")])
    assert not selects(pdb["spec"]["selector"], ocr), "two Deployments must not share pods"
    assert selects(k8s_objects[("PodDisruptionBudget", "deid-worker-ocr")]["spec"]["selector"], ocr)
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
    writable = []
    for path, read_only in [("/data/in", True), ("/data/out", False), ("/data/records", False),
                            ("/data/quarantine", False)]:
        volume = volumes[mounts[path]["name"]]
        assert volume["persistentVolumeClaim"]["claimName"] == "deid-data", path
        assert mounts[path].get("readOnly", False) is read_only, path
        assert mounts[path]["subPath"] == path.rsplit("/", 1)[1], path
        writable += [] if read_only else [path]
    config = k8s_objects[("ConfigMap", "deid-config")]["data"]  # the roots are the mounts
    assert config["DEID_INPUT_ROOTS"] == "/data/in"
    assert config["DEID_OUTPUT_ROOTS"].split(":") == writable
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
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": "deid-flower", "key": "FLOWER_BASIC_AUTH"}
    assert "DEID_SECRET" not in env and "envFrom" not in flower  # no cluster key, no roots
    assert k8s_objects[("Service", "flower")]["spec"]["type"] == "ClusterIP"


def test_pods_run_as_non_root(k8s_objects):
    for (kind, name), obj in k8s_objects.items():
        if kind in WORKLOAD_KINDS:
            spec = pod_spec(obj)
            assert spec["securityContext"]["runAsNonRoot"] is True, f"{kind}/{name}"
            assert spec.get("automountServiceAccountToken") is False, f"{kind}/{name}"
            for c in spec["containers"]:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, f"{kind}/{name}"
