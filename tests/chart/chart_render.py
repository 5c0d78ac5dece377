"""The chart rendered by the real Helm engine (helm-python-sdk, offline), and what the tests read from it.

Every tool these tests use is a real one: Helm's Go engine through helm_python, kubernetes-validate, checkov,
check-jsonschema. A missing tool skips its tests with the reason printed (CI strict mode makes that a failure).
"""

from __future__ import annotations

import functools
import json
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
CHART = ROOT / "chart"
RELEASE = "rel"
NAMESPACE = "apps"
KUBE_VERSIONS = ("1.29.0", "1.33.0")

# Helm's install order of kinds (pkg/release/util/kind_sorter.go), which breaks ties between hooks of one weight.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList",
    "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList",
    "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler",
    "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]

PASSWORD = "pw-Sentinel-7f3a9c"  # a value that must appear in the chart's Secrets and nowhere else
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"

# Each option of the chart, in each mode it matters in; the tests render them all.
SIDECAR = {"name": "db-proxy", "image": "example.com/db-proxy:1.0", "args": ["--port", "5432"],
           "securityContext": {"runAsNonRoot": True, "runAsUser": 10002, "readOnlyRootFilesystem": True,
                               "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                               "privileged": False, "seccompProfile": {"type": "RuntimeDefault"}},
           "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}}
SCENARIOS: dict[str, dict[str, Any]] = {
    "hook-defaults": {},
    # Hook mode reads only what exists before the release: existing Secrets for the credentials and the CA.
    "hook-existing-seed-ca": {
        "database": {"existingSecret": {"name": "pg-app", "passwordKey": "password"},
                     "ssl": {"caSecret": {"name": "pg-ca", "key": "ca.crt"}}},
        "migrator": {"seed": {"enabled": True}},
    },
    "hook-existing-url-secret": {
        "database": {"url": "", "existingSecret": {"name": "pg-app", "urlKey": "uri"},
                     "ssl": {"mode": "verify-ca", "caSecret": {"name": "pg-ca", "key": "root.crt"}}},
    },
    "hook-existing-password-env": {
        "database": {"existingSecret": {"name": "pg-app", "passwordKey": "password"},
                     "passwordFile": {"enabled": False}},
    },
    "hook-no-serviceaccount": {
        "database": {"existingSecret": {"name": "pg-app", "passwordKey": "password"}},
        "serviceAccount": {"create": False},
        "networkPolicy": {"enabled": False},
        "migrator": {"hook": {"weight": 5}, "config": {"logFormat": "json", "lockTimeout": "10m",
                                                          "ddlRetries": 2}},
    },
    # Separate credentials: the app's password in a chart-made Secret, the migrator's (the schema owner's) in
    # one made before the release, which the hook Jobs can read.
    "hook-separate-credentials": {
        "database": {"url": "postgresql://app_rw@postgres:5432/app", "password": PASSWORD},
        "migrator": {"database": {"url": "postgresql://app_owner@postgres:5432/app",
                                  "existingSecret": {"name": "pg-owner", "passwordKey": "password"}},
                     "seed": {"enabled": True}},
    },
    # A platform's cluster: a mirror registry, pull secrets, a tainted node pool, a database proxy sidecar,
    # mesh annotations, default-deny egress.
    "hook-platform": {
        "global": {"imageRegistry": "mirror.example.com"},
        "imagePullSecrets": [{"name": "regcred"}],
        "database": {"url": "postgresql://app@127.0.0.1:5432/app",
                     "existingSecret": {"name": "pg-app", "passwordKey": "password"}},
        "migrator": {"sidecars": [SIDECAR], "podLabels": {"team": "payments"},
                     "podAnnotations": {"sidecar.istio.io/nativeSidecar": "true"},
                     "extraVolumes": [{"name": "certs", "emptyDir": {}}],
                     "extraVolumeMounts": [{"name": "certs", "mountPath": "/certs"}],
                     "nodeSelector": {"pool": "batch"},
                     "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
                     "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                         "nodeSelectorTerms": [{"matchExpressions": [
                             {"key": "pool", "operator": "In", "values": ["batch"]}]}]}}},
                     "priorityClassName": "batch-high",
                     "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                                    "whenUnsatisfiable": "ScheduleAnyway",
                                                    "labelSelector": {"matchLabels": {"team": "payments"}}}]},
        "app": {"sidecars": [SIDECAR], "priorityClassName": "web"},
        "networkPolicy": {"egress": {"enabled": True, "database": [{"ipBlock": {"cidr": "10.0.0.5/32"}}]}},
    },
    "initContainer-seed": {
        "database": {"password": PASSWORD},
        "migrator": {"mode": "initContainer", "seed": {"enabled": True}},
        "app": {"replicaCount": 5},
    },
    "initContainer-separate-sidecar": {
        "database": {"url": "postgresql://app_rw@127.0.0.1:5432/app", "password": PASSWORD},
        "migrator": {"mode": "initContainer",
                     "database": {"url": "postgresql://app_owner@127.0.0.1:5432/app", "password": "owner-" + PASSWORD}},
        "app": {"sidecars": [SIDECAR]},
    },
    "job-password": {
        "database": {"password": PASSWORD},
        "migrator": {"mode": "job", "job": {"ttlSecondsAfterFinished": 3600}},
    },
    # The chart makes both Secrets, and the CA's: in job mode they are applied with the Job.
    "job-password-seed-ca": {
        "database": {"password": PASSWORD, "ssl": {"ca": CA_PEM}},
        "migrator": {"mode": "job", "seed": {"enabled": True}},
    },
    "job-digests-seed": {
        "migrator": {"mode": "job", "seed": {"enabled": True},
                     "image": {"registry": "ghcr.io/example", "digest": "sha256:" + "a" * 64}},
        "app": {"image": {"registry": "ghcr.io/example", "digest": "sha256:" + "b" * 64}},
    },
    # Argo CD: sync waves around the plain Job, egress limited, separate chart-made credentials.
    "job-argocd-waves": {
        "database": {"url": "postgresql://app_rw@postgres:5432/app", "password": PASSWORD},
        "migrator": {"mode": "job", "job": {"syncWave": 0},
                     "database": {"url": "postgresql://app_owner@postgres:5432/app", "password": "owner-" + PASSWORD}},
        "networkPolicy": {"egress": {"enabled": True}},
    },
    # Cloud IAM binds an identity to a ServiceAccount's name: accounts made before the release, one for the
    # app and one for the migrator; Azure Workload Identity also wants a label on every pod.
    "hook-cloud-identity-seed": {
        "database": {"existingSecret": {"name": "pg-app", "passwordKey": "password"}},
        "serviceAccount": {"create": False, "name": "app"},
        "commonLabels": {"azure.workload.identity/use": "true"},
        "migrator": {"serviceAccountName": "app-migrator", "seed": {"enabled": True}},
    },
    # OpenShift's restricted SCC assigns the uid, gid and fsGroup from the namespace's range.
    "job-openshift-ids": {
        "database": {"password": PASSWORD},
        "migrator": {"mode": "job", "job": {"runId": "2026-01-02"}},
        "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
        "containerSecurityContext": {"runAsUser": None, "runAsGroup": None},
    },
    # Many tenants shared out over the pods of Indexed Jobs (migrate, then seed), five shards two at a time.
    "hook-tenants-seed": {
        "database": {"existingSecret": {"name": "pg-app", "passwordKey": "password"}},
        "migrator": {"tenants": {"shards": 5, "parallelism": 2, "backoffLimitPerIndex": 2},
                     "seed": {"enabled": True}},
    },
    "job-tenants": {
        "database": {"password": PASSWORD},
        "migrator": {"mode": "job", "tenants": {"shards": 3}},
    },
}
OPENSHIFT_SCENARIOS = {"job-openshift-ids"}
HOOK_SCENARIOS = [name for name, values in SCENARIOS.items()
                  if values.get("migrator", {}).get("mode", "hook") == "hook"]


def helm() -> Any:
    """The helm_python module, or a skip that says how to get it."""
    try:
        import helm_python
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"helm-python-sdk is not installed ({exc}): pip install helm-python-sdk")
    return helm_python


def tool(name: str) -> str:
    """A command-line tool from this interpreter's environment or PATH, or a skip naming it."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: pip install {name}")
    return found


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


@dataclass
class Rendered:
    """One render: the manifests by template, the parsed objects, and NOTES.txt."""

    files: dict[str, str]
    values: dict[str, Any]

    @functools.cached_property
    def objects(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for name, text in sorted(self.files.items()):
            if name.endswith(".yaml"):
                docs += [d for d in yaml.safe_load_all(text) if d]
        return docs

    @property
    def notes(self) -> str:
        return next(text for name, text in self.files.items() if name.endswith("NOTES.txt"))

    def manifest_text(self) -> str:
        return "\n---\n".join(t for n, t in sorted(self.files.items()) if n.endswith(".yaml") and t.strip())

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        matches = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
        return matches[0]

    def one(self, kind: str) -> dict[str, Any]:
        objs = self.kind(kind)
        assert len(objs) == 1, f"expected one {kind}, rendered {[o['metadata']['name'] for o in objs]}"
        return objs[0]

    def jobs(self) -> list[dict[str, Any]]:
        return self.kind("Job")

    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    def test_pod(self) -> dict[str, Any]:
        return next(o for o in self.kind("Pod") if hook_events(o) == ["test"])


def render(values: dict[str, Any] | None = None, *, upgrade: bool = False, name: str = RELEASE,
           namespace: str = NAMESPACE, revision: int = 1) -> Rendered:
    """Render the chart as `helm install` (or `helm upgrade` to REVISION) would, with the real engine."""
    h = helm()
    with h.Chart.load(str(CHART)) as chart:
        files = chart.render(values or {}, name=name, namespace=namespace, is_install=not upgrade,
                             is_upgrade=upgrade, revision=revision)
    return Rendered(files=files, values=values or {})


def render_error(values: dict[str, Any]) -> str:
    """The message of the error that rendering VALUES raises; fails the test when it renders."""
    h = helm()
    with h.Chart.load(str(CHART)) as chart:
        try:
            chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        except h.HelmError as exc:
            return str(exc)
    pytest.fail(f"the chart rendered with bad values {values}")


def external_objects(values: dict[str, Any]) -> set[tuple[str, str]]:
    """What the user makes before installing, by the values: existing Secrets, and a ServiceAccount the chart
    does not make."""
    db = values.get("database", {})
    out: set[tuple[str, str]] = set()
    if db.get("existingSecret", {}).get("name"):
        out.add(("Secret", db["existingSecret"]["name"]))
    if db.get("ssl", {}).get("caSecret", {}).get("name"):
        out.add(("Secret", db["ssl"]["caSecret"]["name"]))
    if values.get("serviceAccount", {}).get("create") is False:
        out.add(("ServiceAccount", values["serviceAccount"].get("name") or "default"))
    if values.get("migrator", {}).get("serviceAccountName"):
        out.add(("ServiceAccount", values["migrator"]["serviceAccountName"]))
    if values.get("migrator", {}).get("database", {}).get("existingSecret", {}).get("name"):
        out.add(("Secret", values["migrator"]["database"]["existingSecret"]["name"]))
    out |= {("Secret", s["name"]) for s in values.get("imagePullSecrets", [])}
    out.add(("ServiceAccount", "default"))  # every namespace has it
    return out


# --- pod specs ------------------------------------------------------------------------------------------

def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return obj["spec"]  # type: ignore[no-any-return]
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """NAME -> value, NAME -> ('secret', name, key) for a secretKeyRef, NAME -> ('field', path) for the
    downward API."""
    out: dict[str, Any] = {}
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            out[var["name"]] = ("secret", ref["name"], ref["key"])
        elif "fieldRef" in source:
            out[var["name"]] = ("field", source["fieldRef"]["fieldPath"])
        else:
            out[var["name"]] = var["value"]
    return out


MIGRATOR_STEPS = ("migrate", "seed", "wait", "status", "rollback")


def is_migrator(container: dict[str, Any]) -> bool:
    """Whether CONTAINER runs a migrator step (not the app, a sidecar or an extra init container)."""
    return bool(container.get("args")) and container["args"][0] in MIGRATOR_STEPS


def migrator_containers(rendered: Rendered) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, container) for every container that runs the migrator image: in the Jobs, the app pods' init
    containers, the helm test pod and the NOTES rollback pod."""
    objects = [*rendered.jobs(), rendered.deployment(), *rendered.kind("Pod"),
               rollback_pod(rollback_command(rendered.notes), "base")]
    return [(obj, c) for obj in objects for c in containers(pod_spec(obj)) if is_migrator(c)]


def _volume_refs(volume: dict[str, Any]) -> set[tuple[str, str]]:
    sources = [volume, *volume.get("projected", {}).get("sources", [])]
    refs = {("Secret", s["secret"].get("secretName") or s["secret"]["name"]) for s in sources if "secret" in s}
    return refs | {("ConfigMap", s["configMap"]["name"]) for s in sources if "configMap" in s}


def _env_refs(container: dict[str, Any]) -> set[tuple[str, str]]:
    refs: set[tuple[str, str]] = set()
    for source in [v.get("valueFrom", {}) for v in container.get("env", [])] + container.get("envFrom", []):
        for key, kind in (("secretKeyRef", "Secret"), ("secretRef", "Secret"),
                          ("configMapKeyRef", "ConfigMap"), ("configMapRef", "ConfigMap")):
            if key in source:
                refs.add((kind, source[key]["name"]))
    return refs


def referenced(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (kind, name) a pod spec needs to exist before its pod can start."""
    refs: set[tuple[str, str]] = {("ServiceAccount", spec.get("serviceAccountName", "default"))}
    refs |= {("Secret", s["name"]) for s in spec.get("imagePullSecrets", [])}
    for volume in spec.get("volumes", []):
        refs |= _volume_refs(volume)
    for container in containers(spec):
        refs |= _env_refs(container)
    return refs


# --- hooks ----------------------------------------------------------------------------------------------

def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def hook_events(obj: dict[str, Any]) -> list[str]:
    value = annotations_of(obj).get("helm.sh/hook", "")
    return [e.strip() for e in value.split(",") if e.strip()]


def hook_weight(obj: dict[str, Any]) -> int:
    return int(annotations_of(obj).get("helm.sh/hook-weight", "0"))


def delete_policies(obj: dict[str, Any]) -> list[str]:
    value = annotations_of(obj).get("helm.sh/hook-delete-policy", "")
    return [p.strip() for p in value.split(",") if p.strip()] or ["before-hook-creation"]


def hook_order(objs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    """The hooks of EVENT in the order Helm creates them (pkg/action/hooks.go, Helm 3 and 4): sorted by kind
    in install order, then stably by weight and name."""
    def kind_rank(o: dict[str, Any]) -> int:
        return INSTALL_ORDER.index(o["kind"]) if o["kind"] in INSTALL_ORDER else len(INSTALL_ORDER)
    by_kind = sorted((o for o in objs if event in hook_events(o)), key=kind_rank)
    return sorted(by_kind, key=lambda o: (hook_weight(o), o["metadata"]["name"]))


def missing_before_hook_pods(objs: list[dict[str, Any]], event: str,
                             external: set[tuple[str, str]]) -> list[str]:
    """Problems of the EVENT phase, replayed as Helm runs it (none of the release's own objects exist yet):
    a Job or Pod hook whose referenced Secret/ConfigMap/ServiceAccount neither was created by an earlier hook
    nor is EXTERNAL (made by the user before the release); or such an object created by a hook without
    `before-hook-creation`, which would make the next release's creation of it fail."""
    problems: list[str] = []
    created: set[tuple[str, str]] = set()
    for obj in hook_order(objs, event):
        ident = (obj["kind"], obj["metadata"]["name"])
        if obj["kind"] in ("Job", "Pod"):
            for ref in sorted(referenced(pod_spec(obj)) - created - external):
                problems.append(f"{ident[0]}/{ident[1]} needs {ref[0]}/{ref[1]}, which no earlier {event} hook made")
        elif "before-hook-creation" not in delete_policies(obj):
            problems.append(f"{ident[0]}/{ident[1]} lacks before-hook-creation: the next release cannot create it")
        created.add(ident)
    return problems


# --- NOTES.txt ------------------------------------------------------------------------------------------

def rollback_command(notes: str) -> list[str]:
    """The `kubectl run ... -- rollback REV` line of NOTES.txt, split as a POSIX shell would."""
    lines = [line.strip() for line in notes.splitlines() if line.strip().startswith("kubectl run ")]
    assert len(lines) == 1, f"NOTES.txt should print one kubectl run command, found {len(lines)}"
    return shlex.split(lines[0])


def flag(argv: list[str], name: str) -> str:
    prefix = f"--{name}="
    values = [a[len(prefix):] for a in argv if a.startswith(prefix)]
    if not values and f"--{name}" in argv:
        values = [argv[argv.index(f"--{name}") + 1]]
    assert len(values) == 1, f"--{name} given {len(values)} times in {argv[:6]}..."
    return values[0]


def rollback_pod(argv: list[str], revision: str) -> dict[str, Any]:
    """The Pod that `kubectl run` makes from ARGV: its generated pod with --overrides applied as a strategic
    merge (containers merged by name), and REV replaced by REVISION."""
    assert argv[:2] == ["kubectl", "run"]
    name = argv[2]
    args = argv[argv.index("--") + 1:]
    args = [revision if a == "REV" else a for a in args]
    assert flag(argv, "override-type") == "strategic"
    overrides = json.loads(flag(argv, "overrides"))
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": flag(argv, "namespace"), "labels": {"run": name}},
        "spec": {"restartPolicy": flag(argv, "restart"),
                 "containers": [{"name": name, "image": flag(argv, "image"), "args": args}]},
    }
    pod["metadata"]["labels"].update(overrides.get("metadata", {}).get("labels", {}))
    if overrides.get("metadata", {}).get("annotations"):  # kubectl run applies --overrides to the whole Pod
        pod["metadata"]["annotations"] = overrides["metadata"]["annotations"]
    for key, value in overrides["spec"].items():
        if key != "containers":
            pod["spec"][key] = value
    for override in overrides["spec"]["containers"]:
        target = next((c for c in pod["spec"]["containers"] if c["name"] == override["name"]), None)
        assert target is not None, f"override container {override['name']} matches no container of kubectl run"
        target.update({k: v for k, v in override.items() if k != "name"})
    return pod


# --- chart/README.md ------------------------------------------------------------------------------------

def recipe(name: str) -> dict[str, Any]:
    """The YAML block that follows `<!-- recipe: NAME -->` in chart/README.md, parsed."""
    text = (CHART / "README.md").read_text()
    marker = f"<!-- recipe: {name} -->"
    assert text.count(marker) == 1, f"chart/README.md has {text.count(marker)} recipe {name}"
    block = text[text.index(marker) + len(marker):].split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)  # type: ignore[no-any-return]
