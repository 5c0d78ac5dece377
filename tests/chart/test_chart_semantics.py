"""What the rendered chart means: hook order on install and upgrade, the Job, init containers, names, hardening.

Rendered offline by Helm's own engine (helm-python-sdk); no cluster is involved.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from tests.chart.chart_render import (
    HOOK_SCENARIOS,
    NAMESPACE,
    OPENSHIFT_SCENARIOS,
    PASSWORD,
    RELEASE,
    SCENARIOS,
    annotations_of,
    containers,
    deep_merge,
    delete_policies,
    env_of,
    external_objects,
    hook_events,
    hook_order,
    hook_weight,
    is_migrator,
    missing_before_hook_pods,
    pod_spec,
    referenced,
    render,
    rollback_command,
    rollback_pod,
)

FULLNAME = f"{RELEASE}-migrator"
MIGRATOR_VERBS = {"migrate", "seed", "wait", "status", "rollback", "migrator"}


# --- pre-install / pre-upgrade ordering -----------------------------------------------------------------



@pytest.mark.parametrize("upgrade", [False, True], ids=["install", "upgrade"])
@pytest.mark.parametrize("scenario", HOOK_SCENARIOS)
def test_hook_job_finds_everything_it_references(scenario: str, upgrade: bool) -> None:
    """Replaying Helm's hook phase: every Secret, ConfigMap and ServiceAccount that the migrate (and seed) Job
    reads exists before the release (the user's own, or `default`), though no release object exists yet; the
    chart makes no copy of any of them; and the seed Job comes after the migrate Job."""
    values = SCENARIOS[scenario]
    rendered = render(values, upgrade=upgrade)
    event = "pre-upgrade" if upgrade else "pre-install"
    hooks = hook_order(rendered.objects, event)
    jobs = [o for o in hooks if o["kind"] == "Job"]
    seeds = values.get("migrator", {}).get("seed", {}).get("enabled", False)
    assert [j["metadata"]["name"] for j in jobs] == [f"{FULLNAME}-migrate"] + ([f"{FULLNAME}-seed"] if seeds else [])
    external = external_objects(values)
    assert missing_before_hook_pods(rendered.objects, event, external) == []
    for job in jobs:
        assert referenced(pod_spec(job)) <= external
    assert [o["kind"] for o in hooks if o["kind"] in ("Secret", "ServiceAccount", "ConfigMap")] == []


def test_the_ordering_check_catches_the_classic_failure() -> None:
    """The replay above can fail: a pre-install Job that reads the release's own Secret is reported."""
    values = SCENARIOS["hook-existing-seed-ca"]
    rendered = render(values)
    job = next(o for o in rendered.objects if o["kind"] == "Job")
    volume = next(v for v in pod_spec(job)["volumes"] if v["name"] == "database-password")
    volume["secret"]["secretName"] = f"{FULLNAME}-database"  # a release object: created after the hooks
    problems = missing_before_hook_pods(rendered.objects, "pre-install", external_objects(values))
    assert problems == [f"Job/{FULLNAME}-migrate needs Secret/{FULLNAME}-database, "
                        "which no earlier pre-install hook made"]


def test_the_only_hook_copy_is_the_egress_policy_ten_below_the_job() -> None:
    """No Secret or ServiceAccount is copied for the hooks; with egress restricted, the egress NetworkPolicy
    (no secret in it) is, created before the Jobs so that they reach the database on the first install."""
    values = deep_merge(SCENARIOS["hook-existing-seed-ca"], {"networkPolicy": {"egress": {"enabled": True}}})
    rendered = render(values)
    order = [(o["kind"], o["metadata"]["name"], hook_weight(o)) for o in hook_order(rendered.objects, "pre-install")]
    assert order == [
        ("NetworkPolicy", f"{FULLNAME}-migrate-egress", -10),
        ("Job", f"{FULLNAME}-migrate", 0),
        ("Job", f"{FULLNAME}-seed", 1),
    ]
    moved = render(deep_merge(values, {"migrator": {"hook": {"weight": 7}}}))
    assert [hook_weight(o) for o in hook_order(moved.objects, "pre-install")] == [-3, 7, 8]
    assert [o["kind"] for o in hook_order(render(SCENARIOS["hook-existing-seed-ca"]).objects, "pre-install")] \
        == ["Job", "Job"]


def test_app_pods_read_the_release_objects_that_helm_uninstall_removes() -> None:
    values = SCENARIOS["hook-separate-credentials"]
    rendered = render(values)
    release_objects = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects if not hook_events(o)}
    for obj in [rendered.deployment(), rendered.test_pod()]:
        assert referenced(pod_spec(obj)) <= release_objects | external_objects(values)
        assert ("Secret", f"{FULLNAME}-database") in referenced(pod_spec(obj))


def test_hook_job_annotations() -> None:
    [job] = render().jobs()
    assert annotations_of(job)["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations_of(job)["helm.sh/hook-weight"] == "0"
    assert annotations_of(job)["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    # Helm 3.18+ prints the log of a failed hook Job (its pods' main containers).
    assert annotations_of(job)["helm.sh/hook-output-log-policy"] == "hook-failed"
    both = render({"migrator": {"hook": {"outputLogPolicy": "hook-failed,hook-succeeded"}}}).jobs()[0]
    assert annotations_of(both)["helm.sh/hook-output-log-policy"] == "hook-failed,hook-succeeded"
    never = render({"migrator": {"hook": {"outputLogPolicy": ""}}}).jobs()[0]
    assert "helm.sh/hook-output-log-policy" not in annotations_of(never)


def test_each_hook_job_has_one_container_so_helm_prints_its_log() -> None:
    """Helm prints the logs of a hook Job's pods' main containers only (pkg/kube/client.go): with seeds on, a
    failing migrate step in an init container would print nothing, so migrate and seed are separate Jobs."""
    rendered = render({"migrator": {"seed": {"enabled": True}}})
    for job in rendered.jobs():
        spec = pod_spec(job)
        assert "initContainers" not in spec
        assert len(spec["containers"]) == 1
        assert annotations_of(job)["helm.sh/hook-output-log-policy"] == "hook-failed"


# --- the Job --------------------------------------------------------------------------------------------

def test_job_runs_migrate_once_within_its_deadline() -> None:
    """One attempt, bounded: no pod-level retry (backoffLimit 0), FailJob on 1, 2 and 6 whatever backoffLimit,
    and in hook mode an evicted or preempted pod replaced without counting (see test_job_failures.py)."""
    values = deep_merge(SCENARIOS["hook-existing-seed-ca"], {"migrator": {"seed": {"enabled": False}}})
    job = render(values).jobs()[0]
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 210
    assert "ttlSecondsAfterFinished" not in spec
    assert spec["podFailurePolicy"]["rules"] == [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1, 2, 6]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
    pod = pod_spec(job)
    assert pod["restartPolicy"] == "Never"
    assert "initContainers" not in pod
    [migrate] = pod["containers"]
    assert migrate["name"] == "migrate"
    assert migrate["args"] == ["migrate", "--allow-newer"]
    assert "command" not in migrate  # the image's ENTRYPOINT is `migrator`
    assert migrate["image"] == "migrator:dev"
    assert migrate["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert env_of(migrate) == {
        "DATABASE_URL": "postgresql://app@postgres:5432/app",
        "DATABASE_PASSWORD_FILE": "/var/run/secrets/database/password",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": "/var/run/secrets/database-ca/ca.crt",
        "MIGRATOR_POD_NAME": ("field", "metadata.name"),
        "MIGRATOR_POD_NAMESPACE": ("field", "metadata.namespace"),
        "MIGRATOR_IMAGE": "migrator:dev",
        "MIGRATOR_CONNECT_TIMEOUT": "60s",
        "MIGRATOR_LOCK_TIMEOUT": "60s",
        "MIGRATOR_LOG_FORMAT": "console",
        "MIGRATOR_LOG_LEVEL": "info",
    }
    mounts = {m["name"]: m for m in migrate["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["database-password"] == {"name": "database-password", "mountPath": "/var/run/secrets/database",
                                           "readOnly": True}
    assert volumes["database-password"]["secret"] == {
        "secretName": "pg-app", "defaultMode": 0o440, "items": [{"key": "password", "path": "password"}]}
    assert volumes["database-ca"]["secret"] == {
        "secretName": "pg-ca", "defaultMode": 0o444, "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}
    [plain] = render({"migrator": {"mode": "job"}}).jobs()
    assert plain["spec"]["podFailurePolicy"]["rules"] == spec["podFailurePolicy"]["rules"][:1]


def test_exit_codes_for_fail_job_are_sorted_and_unique() -> None:
    job = render({"migrator": {"job": {"nonRetryableExitCodes": [5, 2, 130]}}}).jobs()[0]
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2, 5, 130]
    none = render({"migrator": {"job": {"nonRetryableExitCodes": []}}}).jobs()[0]
    assert [r["action"] for r in none["spec"]["podFailurePolicy"]["rules"]] == ["Ignore"]
    [plain] = render({"migrator": {"mode": "job", "job": {"nonRetryableExitCodes": []}}}).jobs()
    assert "podFailurePolicy" not in plain["spec"]


def test_seed_runs_after_migrate() -> None:
    """Hook mode: a seed Job one weight after the migrate Job (Helm runs hooks in weight order and stops at the
    first failure). Plain-Job mode: one pod, migrate as its init container and seed as its main container."""
    migrate, seed = render({"migrator": {"seed": {"enabled": True}}}).jobs()
    assert [(c["name"], c["args"]) for c in pod_spec(migrate)["containers"]] == [
        ("migrate", ["migrate", "--allow-newer"])]
    assert [(c["name"], c["args"]) for c in pod_spec(seed)["containers"]] == [("seed", ["seed", "--allow-newer"])]
    assert (hook_weight(migrate), hook_weight(seed)) == (0, 1)
    assert seed["spec"]["podFailurePolicy"] == migrate["spec"]["podFailurePolicy"]
    [plain] = render({"migrator": {"mode": "job", "seed": {"enabled": True}}}).jobs()
    pod = pod_spec(plain)
    assert [(c["name"], c["args"]) for c in pod["initContainers"]] == [("migrate", ["migrate", "--allow-newer"])]
    assert [(c["name"], c["args"]) for c in pod["containers"]] == [("seed", ["seed", "--allow-newer"])]


def test_settings_reach_every_migrator_container() -> None:
    rendered = render(SCENARIOS["hook-no-serviceaccount"])
    for obj in [*rendered.jobs(), rendered.deployment(), rendered.test_pod()]:
        for container in containers(pod_spec(obj)):
            if container["name"] == "app":
                assert not any(k.startswith("MIGRATOR_") for k in env_of(container))
                continue
            env = env_of(container)
            assert env["MIGRATOR_LOG_FORMAT"] == "json"
            assert env["MIGRATOR_LOCK_TIMEOUT"] == "10m"
            assert env["MIGRATOR_DDL_RETRIES"] == "2"
            assert "MIGRATOR_STATEMENT_TIMEOUT" not in env  # empty: the migrator's own default


# --- init containers and the app ------------------------------------------------------------------------

WAIT = ("wait-for-schema", ["wait", "--timeout", "300", "--allow-newer"])


@pytest.mark.parametrize(("scenario", "expected"), [
    ("hook-defaults", [WAIT]),
    ("job-password", [WAIT]),
    ("initContainer-seed", [("migrate", ["migrate", "--allow-newer"]), ("seed", ["seed", "--allow-newer"]), WAIT]),
])
def test_app_pods_init_containers(scenario: str, expected: list[tuple[str, list[str]]]) -> None:
    rendered = render(SCENARIOS[scenario])
    init = pod_spec(rendered.deployment())["initContainers"]
    assert [(c["name"], c["args"]) for c in init] == expected
    assert all(c["image"] == "migrator:dev" for c in init)
    if scenario.startswith("initContainer"):
        assert rendered.jobs() == []


def test_wait_options() -> None:
    init = pod_spec(render({"migrator": {"wait": {"timeout": 42}, "allowNewer": False}}).deployment())
    assert init["initContainers"][0]["args"] == ["wait", "--timeout", "42"]
    off = pod_spec(render({"migrator": {"wait": {"enabled": False}}}).deployment())
    assert "initContainers" not in off


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_app_containers_run_no_migrator_command(scenario: str) -> None:
    rendered = render(SCENARIOS[scenario])
    spec = pod_spec(rendered.deployment())
    migrator_images = {c["image"] for c in containers(spec) if c["name"] != "app"} | {
        c["image"] for j in rendered.jobs() for c in containers(pod_spec(j))}
    [app] = spec["containers"]
    assert app["name"] == "app"
    assert app["image"] not in migrator_images
    assert "migrator-app" in app["image"]
    assert "command" not in app
    assert "args" not in app
    assert not MIGRATOR_VERBS & set(json.dumps(app.get("env", [])).split('"'))
    assert app["ports"] == [{"name": "http", "containerPort": 4000, "protocol": "TCP"}]
    assert env_of(app)["PORT"] == "4000"


# --- plain-Job mode -------------------------------------------------------------------------------------

def plain_job_name(values: dict[str, Any], release: str = RELEASE) -> str:
    rendered = render(deep_merge({"migrator": {"mode": "job"}}, values), name=release)
    [job] = rendered.jobs()
    assert "helm.sh/hook" not in annotations_of(job)
    return str(job["metadata"]["name"])


def test_plain_job_name_follows_what_the_pod_runs() -> None:
    base = plain_job_name({})
    assert re.fullmatch(rf"{FULLNAME}-migrate-[0-9a-f]{{10}}", base)
    assert plain_job_name({}) == base  # deterministic: an unchanged release keeps its finished Job
    assert plain_job_name({"migrator": {"image": {"tag": "v2"}}}) != base
    assert plain_job_name({"migrator": {"image": {"digest": "sha256:" + "c" * 64}}}) != base
    assert plain_job_name({"migrator": {"seed": {"enabled": True}}}) != base
    assert plain_job_name({"migrator": {"config": {"lockTimeout": "30"}}}) != base
    assert plain_job_name({"database": {"url": "postgresql://app@other:5432/app"}}) != base
    # Neither the app's settings nor a password (kept out of the name's hash) make a new Job.
    assert plain_job_name({"app": {"image": {"tag": "v2"}, "replicaCount": 7}}) == base
    assert plain_job_name({"database": {"password": "one"}}) == plain_job_name({"database": {"password": "two"}})


@pytest.mark.parametrize("job", [
    {"backoffLimit": 4},
    {"activeDeadlineSeconds": 600},
    {"ttlSecondsAfterFinished": 3600},
    {"nonRetryableExitCodes": [2]},
    {"nonRetryableExitCodes": [2, 6, 5]},
    {"podAnnotations": {"example.com/x": "y"}},
    {"runId": "2"},
    {"runId": 2},
], ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_plain_job_name_follows_every_field_of_the_job_spec(job: dict[str, Any]) -> None:
    """podFailurePolicy and the pod template are immutable: a Job patched with a new one is rejected by the API
    server, so any change of the Job spec must make a Job of another name; and runId forces a new run."""
    assert plain_job_name({"migrator": {"job": job}}) != plain_job_name({})


def test_plain_job_name_ignores_what_is_not_in_the_job_spec() -> None:
    base = plain_job_name({})
    assert plain_job_name({"migrator": {"job": {"annotations": {"argocd.argoproj.io/sync-options": "Replace=true"}}}}) \
        == base
    assert plain_job_name({"migrator": {"job": {"runId": ""}}}) == base
    assert plain_job_name({"migrator": {"hook": {"weight": 3, "outputLogPolicy": ""}}}) == base
    assert plain_job_name({"migrator": {"job": {"runId": "7"}}}) == plain_job_name({"migrator": {"job": {"runId": 7}}})


def test_plain_job_name_fits_a_label_with_a_long_release_name() -> None:
    name = plain_job_name({}, release="a-release-name-that-is-long-enough-to-need-cutting-x")
    assert len(name) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    assert re.search(r"-migrate-[0-9a-f]{10}$", name)


def test_plain_job_uses_release_objects_created_with_it() -> None:
    rendered = render(SCENARIOS["job-password"])
    [job] = rendered.jobs()
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert not any(hook_events(o) for o in rendered.objects if o["kind"] != "Pod")
    release = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    assert referenced(pod_spec(job)) <= release


# --- credentials and SSL --------------------------------------------------------------------------------

def test_existing_secret_with_the_whole_url() -> None:
    rendered = render(SCENARIOS["hook-existing-url-secret"])
    assert rendered.kind("Secret") == []
    for obj in [*rendered.jobs(), rendered.deployment()]:
        spec = pod_spec(obj)
        for container in containers(spec):
            env = env_of(container)
            assert env["DATABASE_URL"] == ("secret", "pg-app", "uri")
            assert "DATABASE_PASSWORD_FILE" not in env
            assert env["PGSSLMODE"] == "verify-ca"
            assert env["PGSSLROOTCERT"] == "/var/run/secrets/database-ca/ca.crt"
        ca = next(v for v in spec["volumes"] if v["name"] == "database-ca")
        assert ca["secret"]["secretName"] == "pg-ca"
        assert ca["secret"]["items"] == [{"key": "root.crt", "path": "ca.crt"}]


def test_existing_secret_password_as_pgpassword() -> None:
    rendered = render(SCENARIOS["hook-existing-password-env"])
    env = env_of(pod_spec(rendered.jobs()[0])["containers"][0])
    assert env["DATABASE_URL"] == "postgresql://app@postgres:5432/app"
    assert env["PGPASSWORD"] == ("secret", "pg-app", "password")
    assert "DATABASE_PASSWORD_FILE" not in env


def test_password_file_from_an_existing_secret() -> None:
    rendered = render({"database": {"existingSecret": {"name": "pg-app", "passwordKey": "pw"}}})
    for obj in [*rendered.jobs(), rendered.deployment(), rendered.test_pod()]:
        spec = pod_spec(obj)
        volume = next(v for v in spec["volumes"] if v["name"] == "database-password")
        assert volume["secret"]["secretName"] == "pg-app"
        assert volume["secret"]["items"] == [{"key": "pw", "path": "password"}]
        for container in containers(spec):
            assert env_of(container)["DATABASE_PASSWORD_FILE"] == "/var/run/secrets/database/password"


def test_chart_made_secrets_hold_the_values() -> None:
    rendered = render(SCENARIOS["job-password-seed-ca"])
    secrets = {s["metadata"]["name"]: s for s in rendered.kind("Secret")}
    assert set(secrets) == {f"{FULLNAME}-database", f"{FULLNAME}-database-ca"}
    assert base64.b64decode(secrets[f"{FULLNAME}-database"]["data"]["password"]).decode() == PASSWORD
    assert base64.b64decode(secrets[f"{FULLNAME}-database-ca"]["data"]["ca.crt"]).decode().startswith("-----BEGIN")
    assert not any(hook_events(s) for s in secrets.values())
    separate = render(SCENARIOS["job-argocd-waves"])
    secrets = {s["metadata"]["name"]: s for s in separate.kind("Secret")}
    assert {name: base64.b64decode(s["data"]["password"]).decode() for name, s in secrets.items()} == {
        f"{FULLNAME}-database": PASSWORD, f"{FULLNAME}-migrator-database": "owner-" + PASSWORD}


@pytest.mark.parametrize("scenario", [s for s, v in SCENARIOS.items() if v.get("database", {}).get("password")])
def test_the_password_appears_only_in_secrets(scenario: str) -> None:
    rendered = render(SCENARIOS[scenario])
    encoded = base64.b64encode(PASSWORD.encode()).decode()  # also a substring of the owner's "owner-" + PASSWORD
    for obj in rendered.objects:
        text = json.dumps(obj)
        if obj["kind"] == "Secret":
            continue
        assert PASSWORD not in text and encoded not in text, f"{obj['kind']}/{obj['metadata']['name']}"
    assert PASSWORD not in rendered.notes and encoded not in rendered.notes


# --- hardening ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_pod_is_hardened(scenario: str) -> None:
    rendered = render(SCENARIOS[scenario])
    pods = [o for o in rendered.objects if o["kind"] in ("Deployment", "Job", "Pod")]
    pods.append(rollback_pod(rollback_command(rendered.notes), "20211103022310"))
    assert len(pods) >= 3
    ids = {} if scenario in OPENSHIFT_SCENARIOS else {"runAsUser": 10001, "runAsGroup": 10001}
    for obj in pods:
        spec = pod_spec(obj)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"] == {"runAsNonRoot": True, **ids, **({"fsGroup": 10001} if ids else {}),
                                           "seccompProfile": {"type": "RuntimeDefault"}}
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
        for container in [c for c in containers(spec) if is_migrator(c) or c["name"] == "app"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["runAsNonRoot"] is True and ctx.get("runAsUser") == ids.get("runAsUser")
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
            assert set(container["resources"]) == {"requests", "limits"}
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
            assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]


def test_service_accounts_mount_no_token() -> None:
    rendered = render()
    accounts = rendered.kind("ServiceAccount")
    assert {a["metadata"]["name"] for a in accounts} == {FULLNAME}
    assert all(a["automountServiceAccountToken"] is False for a in accounts)
    assert pod_spec(rendered.deployment())["serviceAccountName"] == FULLNAME
    # The hook Jobs run before the release's account exists, and no copy of it is made for them.
    assert pod_spec(rendered.jobs()[0])["serviceAccountName"] == "default"
    assert pod_spec(rendered.jobs()[0])["automountServiceAccountToken"] is False


def test_network_policies_select_every_pod() -> None:
    rendered = render(SCENARIOS["hook-defaults"])
    policies = rendered.kind("NetworkPolicy")
    assert len(policies) == 2

    def selected(labels: dict[str, str]) -> list[str]:
        names = []
        for policy in policies:
            selector = policy["spec"]["podSelector"]
            ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
            ok = ok and all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []))
            if ok:
                names.append(policy["metadata"]["name"])
        return names

    app = rendered.deployment()["spec"]["template"]["metadata"]["labels"]
    assert selected(app) == [f"{FULLNAME}-app"]
    job = rendered.jobs()[0]["spec"]["template"]["metadata"]["labels"]
    assert selected(job) == [f"{FULLNAME}-migrator"]
    assert selected(rendered.test_pod()["metadata"]["labels"]) == [f"{FULLNAME}-migrator"]
    migrator_policy = rendered.get("NetworkPolicy", f"{FULLNAME}-migrator")
    assert migrator_policy["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in migrator_policy["spec"]  # no rule: nothing may connect


# --- helm test and NOTES.txt ----------------------------------------------------------------------------

def test_helm_test_pod_checks_the_schema() -> None:
    pod = render().test_pod()
    assert hook_events(pod) == ["test"]
    # No hook-succeeded: Helm 3 would delete the pod before `helm test --logs` reads it, and fail.
    assert delete_policies(pod) == ["before-hook-creation"]
    assert "helm.sh/hook-output-log-policy" not in annotations_of(pod)  # --logs prints it, once
    spec = pod_spec(pod)
    assert spec["restartPolicy"] == "Never"
    [status] = spec["containers"]
    assert status["args"] == ["status", "--check", "--allow-newer"]
    assert status["image"] == "migrator:dev"


def test_notes_print_the_rollback_command_for_this_release() -> None:
    rendered = render(SCENARIOS["job-password-seed-ca"])
    argv = rollback_command(rendered.notes)
    assert argv[:3] == ["kubectl", "run", f"{FULLNAME}-rollback"]
    assert argv[-3:] == ["--", "rollback", "REV"]
    assert argv[3:5] == ["--namespace", NAMESPACE]
    assert "--image=migrator:dev" in argv
    assert {"--rm", "-i", "--restart=Never", "--override-type=strategic"} <= set(argv)
    pod = rollback_pod(argv, "20211103022310")
    spec = pod["spec"]
    [container] = spec["containers"]
    assert container["args"] == ["rollback", "20211103022310"]
    assert container["image"] == "migrator:dev"
    # The database settings come from the release's own Secrets, as the app's (here the same credentials).
    deployment_wait = pod_spec(rendered.deployment())["initContainers"][0]
    assert env_of(container) == env_of(deployment_wait)
    assert spec["volumes"] == pod_spec(rendered.deployment())["volumes"]
    assert spec["serviceAccountName"] == FULLNAME
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "migrate"


def test_notes_quote_values_for_the_shell() -> None:
    tricky = "it's $HOME; `x`"
    rendered = render({"migrator": {"extraEnv": [{"name": "NOTE", "value": tricky}]}})
    pod = rollback_pod(rollback_command(rendered.notes), "base")
    assert env_of(pod["spec"]["containers"][0])["NOTE"] == tricky


@pytest.mark.parametrize(("mode", "phrase"), [
    ("hook", "as pre-install/pre-upgrade hook Jobs (rel-migrator-migrate)."),
    ("job", "as the plain Job rel-migrator-migrate-"),
    ("initContainer", "as an init container of every app pod"),
])
def test_notes_name_the_mode(mode: str, phrase: str) -> None:
    assert phrase in render({"migrator": {"mode": mode}}).notes


# --- every object -------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_objects_carry_names_labels_and_namespace(scenario: str) -> None:
    rendered = render(SCENARIOS[scenario])
    idents = [(o["kind"], o["metadata"]["name"]) for o in rendered.objects]
    assert len(idents) == len(set(idents)), "two objects share a kind and name"
    for obj in rendered.objects:
        meta = obj["metadata"]
        assert meta["namespace"] == NAMESPACE
        assert len(meta["name"]) <= 63
        labels = meta["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "migrator"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "migrator-0.3.0"
