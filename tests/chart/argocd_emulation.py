"""An Argo CD sync of the rendered chart, emulated with the rules of argoproj/gitops-engine (pkg/sync): which
objects are hooks and in which phase, their sync waves, the order within a wave, when the sync waits for
health, and which hooks it deletes. An emulation of those rules, not Argo CD:

- an object is a hook when it has `argocd.argoproj.io/hook`, or `helm.sh/hook` (other than crd-install);
  Helm's pre-install and pre-upgrade map to PreSync, post-install and post-upgrade to PostSync; a hook of
  any other Helm event (`test`) has no phase and is never applied (hook/helm/type.go, sync_phase.go);
- an object's wave is `argocd.argoproj.io/sync-wave`, else `helm.sh/hook-weight`, else 0 (syncwaves/waves.go);
- tasks run phase by phase (PreSync, Sync, PostSync), wave by wave, and within a wave in kind order, then by
  name (sync_tasks.go); all tasks of a wave are applied together. When the sync has more than one phase or
  wave, it waits for each wave's tasks to be healthy before the next; a Degraded one fails the sync. A sync of
  one wave and phase succeeds once applied, whatever the health that follows (sync_context.go);
- a Job is Healthy when Complete and Degraded when Failed (health/health_job.go); a Job whose pod needs an
  object that does not exist never runs: it stays Progressing, and a sync waiting for it never ends (the
  deadlock of chart 0.2.0's job mode with a sync wave only on the Job);
- hooks with HookSucceeded are deleted only when the whole sync succeeds, those with HookFailed when it
  fails, those with BeforeHookCreation before the next sync creates them.

Not emulated: pruning, sync options, retries, health of kinds other than Jobs (they are Healthy once their
inputs exist), and time: each Job's outcome is given by the caller. OPERATORS model controllers that create
objects once another is healthy (a database operator's Secret once its Cluster is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.chart.chart_render import annotations_of, delete_policies, pod_spec, referenced

PHASES = ("PreSync", "Sync", "PostSync")
HELM_HOOK_PHASES = {"pre-install": "PreSync", "pre-upgrade": "PreSync", "post-install": "PostSync",
                    "post-upgrade": "PostSync"}
KIND_ORDER = ["Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
              "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
              "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
              "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
              "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
              "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService"]

Key = tuple[str, str]


def key_of(obj: dict[str, Any]) -> Key:
    return obj["kind"], obj["metadata"]["name"]


def is_hook(obj: dict[str, Any]) -> bool:
    annotations = annotations_of(obj)
    if "argocd.argoproj.io/hook" in annotations:
        return annotations["argocd.argoproj.io/hook"] != "Skip"
    return "helm.sh/hook" in annotations and annotations["helm.sh/hook"] != "crd-install"


def phases(obj: dict[str, Any]) -> list[str]:
    """The sync phases OBJ runs in: Sync for an ordinary object, its hook phases for a hook (none for a Helm
    hook of an event Argo CD does not map, such as `test`)."""
    if not is_hook(obj):
        return ["Sync"]
    annotations = annotations_of(obj)
    if "argocd.argoproj.io/hook" in annotations:
        return [p.strip() for p in annotations["argocd.argoproj.io/hook"].split(",") if p.strip() in PHASES]
    events = [e.strip() for e in annotations["helm.sh/hook"].split(",")]
    return sorted({HELM_HOOK_PHASES[e] for e in events if e in HELM_HOOK_PHASES}, key=PHASES.index)


def wave(obj: dict[str, Any]) -> int:
    annotations = annotations_of(obj)
    for key in ("argocd.argoproj.io/sync-wave", "helm.sh/hook-weight"):
        if key in annotations:
            return int(annotations[key])
    return 0


@dataclass(frozen=True)
class Task:
    phase: str
    wave: int
    obj: dict[str, Any] = field(compare=False, hash=False)

    @property
    def key(self) -> Key:
        return key_of(self.obj)

    def order(self) -> tuple[int, int, int, str]:
        kind = self.obj["kind"]
        rank = KIND_ORDER.index(kind) - len(KIND_ORDER) if kind in KIND_ORDER else 0  # unknown kinds last
        return PHASES.index(self.phase), self.wave, rank, self.obj["metadata"]["name"]


def tasks(objects: list[dict[str, Any]]) -> list[Task]:
    out = [Task(phase, wave(obj), obj) for obj in objects for phase in phases(obj)]
    return sorted(out, key=Task.order)


@dataclass
class SyncResult:
    """How the sync ended: succeeded, failed (a Degraded task) or stuck (waiting forever), and what it did."""

    outcome: str  # Succeeded, Failed, Stuck
    applied: list[Key] = field(default_factory=list)  # in order
    message: str = ""
    left: set[Key] = field(default_factory=set)  # hooks that stay after the sync


def sync(objects: list[dict[str, Any]], existing: set[Key],
         job_outcome: Callable[[dict[str, Any]], str] = lambda job: "Complete",
         operators: dict[Key, list[Key]] | None = None) -> SyncResult:
    """Sync OBJECTS (a rendered chart) into a namespace holding EXISTING. JOB_OUTCOME gives each Job's end
    (Complete or Failed) once its pod could start; OPERATORS: once the key is healthy, the keys it makes."""
    plan = tasks(objects)
    groups: list[list[Task]] = []
    for task in plan:
        if groups and (groups[-1][0].phase, groups[-1][0].wave) == (task.phase, task.wave):
            groups[-1].append(task)
        else:
            groups.append([task])
    present = set(existing)
    result = SyncResult("Succeeded")
    hooks = [t.obj for t in plan if is_hook(t.obj)]
    for group in groups:
        for task in group:
            present.add(task.key)
            result.applied.append(task.key)
        if len(groups) == 1 and not any(is_hook(t.obj) for t in group):
            break  # one wave, no hook: done once applied
        for task in group:
            health = task_health(task.obj, present, job_outcome)
            if health == "Progressing":
                missing = sorted(referenced(pod_spec(task.obj)) - present)
                result.outcome = "Stuck"
                result.message = (f"{task.phase} wave {task.wave}: Job/{task.key[1]} waits for "
                                  f"{', '.join(f'{k}/{n}' for k, n in missing)}")
                result.left = {key_of(h) for h in hooks if key_of(h) in present}
                return result
            if health == "Degraded":
                result.outcome, result.message = "Failed", f"{task.key[0]}/{task.key[1]} is Degraded"
                result.left = left_after(hooks, present, "HookFailed")
                return result
            present.update((operators or {}).get(task.key, []))
    result.left = left_after(hooks, present, "HookSucceeded")
    return result


def task_health(obj: dict[str, Any], present: set[Key], job_outcome: Callable[[dict[str, Any]], str]) -> str:
    if obj["kind"] not in ("Job", "Pod"):
        return "Healthy"
    if referenced(pod_spec(obj)) - present:
        return "Progressing"
    return "Healthy" if job_outcome(obj) == "Complete" else "Degraded"


def left_after(hooks: list[dict[str, Any]], present: set[Key], deleted_policy: str) -> set[Key]:
    """The hooks still there when the sync ends: those created, but those whose policy deletes them."""
    helm_to_argo = {"hook-succeeded": "HookSucceeded", "hook-failed": "HookFailed",
                    "before-hook-creation": "BeforeHookCreation"}
    left = set()
    for hook in hooks:
        policies = {helm_to_argo.get(p, p) for p in delete_policies(hook)}
        argo = annotations_of(hook).get("argocd.argoproj.io/hook-delete-policy")
        if argo:
            policies |= {p.strip() for p in argo.split(",")}
        if key_of(hook) in present and deleted_policy not in policies:
            left.add(key_of(hook))
    return left
