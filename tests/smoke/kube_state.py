"""What the smoke tests read from the cluster, decided on the objects' API JSON (camelCase, as the API server
returns them): pure functions, so that they are tested offline (tests/smoke/test_smoke_helpers.py).

Why: `helm upgrade --wait` returns once enough new pods are ready (Helm 3 counts maxUnavailable), while an old
ReplicaSet's pods may still be running or terminating; a test that then lists the pods can see an old one.
The tests poll `rollout_problem` until only the current ReplicaSet's pods are left, all ready.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

REVISION = "deployment.kubernetes.io/revision"


def condition(obj: dict[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def pod_ready(pod: dict[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and condition(pod, "Ready")


def current_replica_set(deployment: dict[str, Any], replica_sets: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ReplicaSet of the Deployment's newest revision, or None before the controller made it."""
    revision = (deployment["metadata"].get("annotations") or {}).get(REVISION)
    uid = deployment["metadata"].get("uid")
    for rs in replica_sets:
        owned = any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
        if owned and revision is not None and (rs["metadata"].get("annotations") or {}).get(REVISION) == revision:
            return rs
    return None


def rollout_problem(deployment: dict[str, Any], replica_sets: list[dict[str, Any]],
                    pods: list[dict[str, Any]]) -> str | None:
    """Why the Deployment's rollout is not over (one line), or None when only the current ReplicaSet's pods
    exist, none terminating, as many as wanted, all ready. PODS: every pod of the Deployment's selector."""
    meta, status = deployment["metadata"], deployment.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return "the Deployment controller has not seen the newest spec yet"
    current = current_replica_set(deployment, replica_sets)
    if current is None:
        return "no ReplicaSet of the Deployment's newest revision yet"
    template_hash = current["metadata"]["labels"]["pod-template-hash"]
    wanted = deployment["spec"].get("replicas", 1)
    old = sorted(p["metadata"]["name"] for p in pods
                 if (p["metadata"].get("labels") or {}).get("pod-template-hash") != template_hash)
    if old:
        return f"pods of an older ReplicaSet remain: {', '.join(old)}"
    terminating = sorted(p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp"))
    if terminating:
        return f"pods are terminating: {', '.join(terminating)}"
    ready = [p for p in pods if pod_ready(p)]
    if len(pods) != wanted or len(ready) != wanted:
        return f"{len(ready)} of {wanted} pods ready, {len(pods)} exist"
    return None


def job_outcome(job: dict[str, Any]) -> str | None:
    """"Complete" or "Failed" once the Job controller has decided, else None."""
    for kind in ("Complete", "Failed"):
        if condition(job, kind):
            return kind
    return None


def init_container_restarts(pod: dict[str, Any]) -> dict[str, tuple[int, int | None]]:
    """Init container name -> (restart count, exit code of its last termination or None)."""
    out: dict[str, tuple[int, int | None]] = {}
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        out[status["name"]] = (status.get("restartCount", 0), terminated.get("exitCode"))
    return out


# --- the NOTES rollback command -------------------------------------------------------------------------

def notes_rollback_argv(notes: str, context: str, revision: str) -> list[str]:
    """The `kubectl run ... -- rollback REV` line of the release's NOTES, for kube-context CONTEXT and with
    REV replaced by REVISION, exactly as a user would run it."""
    lines = [line.strip() for line in notes.splitlines() if line.strip().startswith("kubectl run ")]
    assert len(lines) == 1, f"NOTES should print one kubectl run command, found {len(lines)}"
    argv = shlex.split(lines[0])
    assert argv[-2:] == ["rollback", "REV"], argv[-3:]
    return [*argv[:3], f"--context={context}", *argv[3:-1], revision]


def detached_argv(argv: list[str], name: str, args: list[str]) -> list[str]:
    """The NOTES command turned into a pod that is left to finish on its own: named NAME, running ARGS, without
    --rm and -i. Its log is then read after it ended: attaching (-i) can lose the first lines with kubectl
    before 1.36, a finished pod's log cannot be lost."""
    assert argv[:2] == ["kubectl", "run"] and not argv[2].startswith("-"), argv[:3]
    separator = argv.index("--")
    options = [a for a in argv[3:separator] if a not in ("--rm", "-i", "--stdin")]
    # kubectl run names its container after the pod, and the strategic merge matches containers by name.
    [overrides_at] = [i for i, a in enumerate(options) if a.startswith("--overrides=")]
    overrides = json.loads(options[overrides_at].split("=", 1)[1])
    [container] = overrides["spec"]["containers"]
    container["name"] = name
    options[overrides_at] = "--overrides=" + json.dumps(overrides, separators=(",", ":"))
    return [*argv[:2], name, *options, "--", *args]
