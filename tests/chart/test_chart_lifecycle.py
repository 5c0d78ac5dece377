"""The chart after the first install: rollbacks and version skew (--allow-newer), who ran a migration (history
identity), which ServiceAccount the migrator runs under (cloud IAM), `helm test --logs`, the time budget under
Helm's --timeout, and the values the schema or the templates refuse.

Rendered offline by Helm's own engine (helm-python-sdk); no cluster is involved.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.chart.chart_render import (
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    annotations_of,
    deep_merge,
    delete_policies,
    env_of,
    hook_events,
    migrator_containers,
    pod_spec,
    render,
    render_error,
    rollback_command,
    rollback_pod,
)

FULLNAME = f"{RELEASE}-migrator"
HELM_DEFAULT_TIMEOUT = 300  # seconds: `helm install/upgrade/rollback --timeout`, Helm 3 and Helm 4


def seconds(duration: str) -> float:
    """A migrator duration (`60`, `60s`, `2m`, `500ms`) in seconds, as migrator.config.parse_seconds reads it."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|min|h)?", duration)
    assert match, duration
    unit = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * unit


# --- --allow-newer --------------------------------------------------------------------------------------

MODES = ["hook", "job", "initContainer"]


@pytest.mark.parametrize("seed", [False, True], ids=["migrate", "migrate-seed"])
@pytest.mark.parametrize("mode", MODES)
def test_allow_newer_reaches_migrate_seed_and_wait_in_every_mode(mode: str, seed: bool) -> None:
    """After `helm rollback`, an automatic --atomic rollback, or an old pod restarting mid-rollout, an older
    image meets a database a newer release migrated: without --allow-newer, migrate and seed exit 2 and the
    pod crash-loops. Every migrate, seed and wait container of every mode gets it; status does not."""
    rendered = render({"migrator": {"mode": mode, "seed": {"enabled": seed}}})
    steps: dict[str, list[list[str]]] = {}
    for _, container in migrator_containers(rendered):
        args = container["args"]
        steps.setdefault(args[0], []).append(args)
    # Job mode renders no helm test pod by default (tests/chart/test_chart_gitops.py says why).
    expected = {"migrate", "wait", "rollback"} | ({"seed"} if seed else set())
    expected |= {"status"} if mode != "job" else set()
    expected |= {"status"} if mode != "job" else set()
    assert set(steps) == expected
    for step in ("migrate", "seed", "wait", "status"):
        for args in steps.get(step, []):
            assert args[-1] == "--allow-newer" and args.count("--allow-newer") == 1, args
    assert steps.get("status", [["status", "--check", "--allow-newer"]]) == [["status", "--check", "--allow-newer"]]
    assert steps["rollback"] == [["rollback", "base"]]


@pytest.mark.parametrize("values", [
    {"migrator": {"allowNewer": False}},
    {"migrator": {"wait": {"allowNewer": False}}},  # chart 0.1.0's name, still honoured
    {"migrator": {"allowNewer": True, "wait": {"allowNewer": False}}},  # the old name wins when set
], ids=["allowNewer-false", "deprecated-false", "deprecated-wins"])
@pytest.mark.parametrize("mode", MODES)
def test_allow_newer_off_holds_old_images_back(mode: str, values: dict[str, Any]) -> None:
    rendered = render(deep_merge({"migrator": {"mode": mode, "seed": {"enabled": True}}}, values))
    for obj, container in migrator_containers(rendered):
        assert "--allow-newer" not in container["args"], (obj["metadata"]["name"], container["name"])
    assert "--allow-newer" not in rendered.notes


def test_the_deprecated_key_set_to_true_still_passes_the_flag_and_warns() -> None:
    rendered = render({"migrator": {"allowNewer": False, "wait": {"allowNewer": True}}})
    assert all("--allow-newer" in c["args"] for _, c in migrator_containers(rendered)
               if c["args"][0] in ("migrate", "wait"))
    assert "WARNING: migrator.wait.allowNewer is the name chart 0.1.0 gave to migrator.allowNewer" in rendered.notes
    assert "WARNING" not in render().notes


# --- who ran it: the history table's identity -----------------------------------------------------------

@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_migrator_container_says_who_runs_it(scenario: str) -> None:
    rendered = render(SCENARIOS[scenario])
    found = migrator_containers(rendered)
    assert len(found) >= 3
    for _, container in found:
        env = env_of(container)
        assert env["MIGRATOR_POD_NAME"] == ("field", "metadata.name")
        assert env["MIGRATOR_POD_NAMESPACE"] == ("field", "metadata.namespace")
        assert env["MIGRATOR_IMAGE"] == container["image"]
    app = next(c for c in pod_spec(rendered.deployment())["containers"] if c["name"] == "app")
    assert not {"MIGRATOR_POD_NAME", "MIGRATOR_POD_NAMESPACE", "MIGRATOR_IMAGE"} & set(env_of(app))


def test_the_image_reference_is_the_rendered_one() -> None:
    digest = "sha256:" + "d" * 64
    rendered = render({"migrator": {"image": {"registry": "ghcr.io/example", "digest": digest}}})
    for _, container in migrator_containers(rendered):
        assert env_of(container)["MIGRATOR_IMAGE"] == f"ghcr.io/example/migrator@{digest}"


# --- the ServiceAccount the migrator runs under ---------------------------------------------------------

def service_accounts(rendered: Any) -> dict[str, str]:
    """Pod kind/name -> serviceAccountName, the NOTES rollback pod included."""
    out = {f"{o['kind']}/{o['metadata']['name']}": pod_spec(o)["serviceAccountName"]
           for o in rendered.objects if o["kind"] in ("Job", "Deployment", "Pod")}
    out["rollback"] = rollback_pod(rollback_command(rendered.notes), "base")["spec"]["serviceAccountName"]
    return out


def test_hook_jobs_run_under_default_when_the_chart_makes_the_account() -> None:
    """The hook Jobs run before the release's account exists, and no copy of it is made for them (a copy could
    outlive the hook phase, as a Secret's could): they run under `default`, with no token mounted."""
    rendered = render({"migrator": {"seed": {"enabled": True}}})
    assert service_accounts(rendered) == {
        f"Job/{FULLNAME}-migrate": "default", f"Job/{FULLNAME}-seed": "default",
        f"Deployment/{FULLNAME}": FULLNAME, f"Pod/{FULLNAME}-test-schema": FULLNAME, "rollback": FULLNAME}
    assert [a["metadata"]["name"] for a in rendered.kind("ServiceAccount")] == [FULLNAME]
    assert not any(hook_events(o) for o in rendered.objects if o["kind"] != "Job" and o["kind"] != "Pod")


def test_the_release_account_carries_the_cloud_annotations() -> None:
    annotations = {"iam.gke.io/gcp-service-account": "migrate@project.iam.gserviceaccount.com"}
    rendered = render({"serviceAccount": {"annotations": annotations}})
    [account] = rendered.kind("ServiceAccount")
    assert annotations.items() <= annotations_of(account).items()


def test_a_named_migrator_account_replaces_the_hook_copy() -> None:
    """Cloud IAM (GKE Workload Identity, EKS IRSA and Pod Identity, Azure Workload Identity) binds by the
    ServiceAccount's name: an account made before the release is what the hook Jobs can use."""
    rendered = render({"migrator": {"serviceAccountName": "app-migrator", "seed": {"enabled": True}}})
    assert service_accounts(rendered) == {
        f"Job/{FULLNAME}-migrate": "app-migrator", f"Job/{FULLNAME}-seed": "app-migrator",
        f"Deployment/{FULLNAME}": FULLNAME, f"Pod/{FULLNAME}-test-schema": "app-migrator",
        "rollback": "app-migrator"}
    assert [a["metadata"]["name"] for a in rendered.kind("ServiceAccount")] == [FULLNAME]
    plain = render({"migrator": {"mode": "job", "serviceAccountName": "app-migrator"}})
    assert pod_spec(plain.jobs()[0])["serviceAccountName"] == "app-migrator"


def test_a_precreated_release_account_serves_the_hook_jobs() -> None:
    rendered = render({"serviceAccount": {"create": False, "name": "app"}})
    assert set(service_accounts(rendered).values()) == {"app"}
    assert rendered.kind("ServiceAccount") == []


def test_cloud_identity_labels_reach_every_pod() -> None:
    """Azure Workload Identity injects its token only into pods labelled azure.workload.identity/use."""
    rendered = render(SCENARIOS["hook-cloud-identity-seed"])
    pods = [o["spec"]["template"] for o in rendered.objects if o["kind"] in ("Job", "Deployment")]
    pods += [rendered.test_pod(), rollback_pod(rollback_command(rendered.notes), "base")]
    for pod in pods:
        assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"


def test_init_container_mode_refuses_a_separate_migrator_account() -> None:
    error = render_error({"migrator": {"mode": "initContainer", "serviceAccountName": "app-migrator"}})
    assert "migrator.serviceAccountName: in initContainer mode the migrator runs in the app pods" in error


# --- helm test ------------------------------------------------------------------------------------------

def test_helm_test_pod_delete_policy_is_a_value() -> None:
    pod = render({"migrator": {"test": {"deletePolicy": "before-hook-creation,hook-succeeded"}}}).test_pod()
    assert delete_policies(pod) == ["before-hook-creation", "hook-succeeded"]
    assert "helm test rel --namespace apps --logs" in render().notes
    assert "helm test" not in render({"migrator": {"test": {"enabled": False}}}).notes


# --- the time budget under Helm's --timeout -------------------------------------------------------------

def test_default_deadlines_fit_helms_default_timeout() -> None:
    """The hook Job must end (and its last pod stop: the migrator exits within 10 s of SIGTERM) before Helm's
    default --timeout, or Helm reports a bare timeout and deletes the Secret copies the Job still reads; and
    one attempt's waits (connect, lock) fit inside the Job's deadline, so their own error is what is seen."""
    rendered = render()
    [job] = rendered.jobs()
    deadline = job["spec"]["activeDeadlineSeconds"]
    assert deadline + 60 <= HELM_DEFAULT_TIMEOUT
    env = env_of(pod_spec(job)["containers"][0])
    assert deadline + 90 <= HELM_DEFAULT_TIMEOUT  # Helm 3's --wait-for-jobs polls a failed Job 30 times more
    # The one attempt that waits out both still leaves a minute of the deadline for the migrations, so that a
    # wait's own error (exit 3 or 4, with its reason) is what ends the Job rather than the deadline.
    assert seconds(env["MIGRATOR_CONNECT_TIMEOUT"]) + seconds(env["MIGRATOR_LOCK_TIMEOUT"]) <= deadline - 60
    assert "the default does; keep any --timeout of yours at 300s or more" in rendered.notes


@pytest.mark.parametrize("mode", ["hook", "job"])
def test_notes_say_which_timeout_a_longer_deadline_needs(mode: str) -> None:
    notes = render({"migrator": {"mode": mode, "job": {"activeDeadlineSeconds": 1200}}}).notes
    assert "the Job gives up after 1200 s, retries included" in notes
    assert "pass --timeout 1290s or more to helm install, upgrade and rollback" in notes
    assert "Time budget" not in render({"migrator": {"mode": "initContainer"}}).notes


def test_notes_say_where_a_failed_hook_jobs_log_is() -> None:
    notes = render({"migrator": {"seed": {"enabled": True}}}).notes
    assert "as pre-install/pre-upgrade hook Jobs (rel-migrator-migrate, then rel-migrator-seed)" in notes
    assert "When a hook Job fails, Helm prints its log (hook-failed)." in notes
    assert f"kubectl logs (--namespace {NAMESPACE} job/rel-migrator-migrate, job/rel-migrator-seed)" in notes
    deleted = render({"migrator": {"hook": {"deletePolicy": "before-hook-creation,hook-failed"}}}).notes
    assert "stays for kubectl logs" not in deleted


def test_notes_say_how_to_retry_a_failed_plain_job() -> None:
    notes = render({"migrator": {"mode": "job", "job": {"runId": 4}}}).notes
    assert "A failed Job is not retried by itself" in notes
    assert (f"helm upgrade {RELEASE} CHART --namespace {NAMESPACE} --reuse-values "
            "--set-string migrator.job.runId=NEW-VALUE") in notes
    assert 'by giving it a new run id (now "4")' in notes
    assert (f"kubectl delete job --namespace {NAMESPACE} -l app.kubernetes.io/instance={RELEASE},"
            "app.kubernetes.io/component=migrate") in notes
    assert "not retried by itself" not in render().notes


# --- values refused -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    # YAML reads 1.10 as the number 1.1: the tag would silently become :1.1.
    ({"migrator": {"image": {"tag": 1.10}}}, "at '/migrator/image/tag': got number, want string"),
    ({"app": {"image": {"tag": 2}}}, "at '/app/image/tag': got number, want string"),
    ({"database": {"passwordFile": {"mountPath": "/"}}}, "at '/database/passwordFile/mountPath'"),
    ({"database": {"ssl": {"mountPath": "relative/dir"}}}, "at '/database/ssl/mountPath'"),
    ({"migrator": {"hook": {"outputLogPolicy": "always"}}}, "at '/migrator/hook/outputLogPolicy'"),
    ({"migrator": {"test": {"deletePolicy": "never"}}}, "at '/migrator/test/deletePolicy'"),
    ({"migrator": {"job": {"runId": 1.5}}}, "at '/migrator/job/runId'"),
    ({"migrator": {"allowNewer": "yes"}}, "at '/migrator/allowNewer'"),
    ({"migrator": {"serviceAccountName": "Bad_Name"}}, "at '/migrator/serviceAccountName'"),
])
def test_schema_refuses(values: dict[str, Any], message: str) -> None:
    error = render_error(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


CA = {"ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}


def mounts(password_file: str, ca: str) -> dict[str, Any]:
    return {"database": {"password": "x", "passwordFile": {"mountPath": password_file}, "ssl": {**CA, "mountPath": ca}}}


@pytest.mark.parametrize(("values", "message"), [
    ({"database": {"password": "x", "passwordFile": {"mountPath": "/tmp"}}},
     "database.passwordFile.mountPath and /tmp (every container's writable emptyDir) are both /tmp: a container "
     "cannot mount two volumes at one path; give each its own directory"),
    ({"database": {"password": "x", "ssl": {**CA, "mountPath": "/tmp/"}}},
     "database.ssl.mountPath and /tmp (every container's writable emptyDir) are both /tmp"),
    (mounts("/etc/db", "/etc/db/"),
     "database.passwordFile.mountPath and database.ssl.mountPath are both /etc/db"),
    (mounts("/etc/db", "/etc/db/ca"),
     "database.ssl.mountPath (/etc/db/ca) is inside database.passwordFile.mountPath (/etc/db), a read-only Secret "
     "volume where no mount point can be made; use a directory outside it"),
    (mounts("/etc/db/pw", "/etc/db"),
     "database.passwordFile.mountPath (/etc/db/pw) is inside database.ssl.mountPath (/etc/db)"),
])
def test_colliding_mount_paths_fail_with_one_line(values: dict[str, Any], message: str) -> None:
    error = render_error(values)
    assert message in error, error
    assert "values don't meet" not in error  # the template's own line, not a schema error
    assert len([line for line in error.splitlines() if "mountPath" in line]) == 1


def test_mount_paths_that_are_not_mounted_are_not_checked() -> None:
    """Without a password key or a CA nothing is mounted there, so a path equal to /tmp is harmless."""
    rendered = render({"database": {"passwordFile": {"mountPath": "/tmp"}, "ssl": {"mountPath": "/tmp"}}})
    mounts = [m["mountPath"] for m in pod_spec(rendered.jobs()[0])["containers"][0]["volumeMounts"]]
    assert mounts == ["/tmp"]
    assert render({"database": {"password": "x", "ssl": {**CA, "mountPath": "/tmp/ca"}},
                   "migrator": {"mode": "job"}}).jobs()  # a tmpfs subdir


def test_openshift_null_ids_are_left_to_the_platform() -> None:
    """OpenShift's restricted SCC assigns uid, gid and fsGroup: null values leave them out of every pod."""
    rendered = render(SCENARIOS["job-openshift-ids"])
    pods = [o for o in rendered.objects if o["kind"] in ("Deployment", "Job", "Pod")]
    pods.append(rollback_pod(rollback_command(rendered.notes), "base"))
    for obj in pods:
        spec = pod_spec(obj)
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(spec["securityContext"])
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            assert not {"runAsUser", "runAsGroup"} & set(container["securityContext"])
            assert container["securityContext"]["runAsNonRoot"] is True
