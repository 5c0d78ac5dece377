"""Separate credentials for the migrator and the app (issue 17, item 10), and what hook mode refuses because it
makes no copy of a Secret (item 3). test_pod_emulation.py runs them against two real PostgreSQL roles.

Rendered offline by Helm's own engine; no cluster is involved.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart_render import (
    PASSWORD,
    RELEASE,
    SCENARIOS,
    containers,
    deep_merge,
    env_of,
    is_migrator,
    pod_spec,
    render,
    render_error,
    rollback_command,
    rollback_pod,
)

FULLNAME = f"{RELEASE}-migrator"
APP_URL = "postgresql://app_rw@postgres:5432/app"
OWNER_URL = "postgresql://app_owner@postgres:5432/app"
SEPARATE = {"database": {"url": APP_URL, "existingSecret": {"name": "pg-rw", "passwordKey": "password"}},
            "migrator": {"seed": {"enabled": True}, "test": {"enabled": True},
                         "database": {"url": OWNER_URL,
                                      "existingSecret": {"name": "pg-owner", "passwordKey": "password"}}}}


def credentials_by_step(values: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """Step -> the (URL, password Secret) pairs of every container running it, the app's included."""
    rendered = render(values)
    objects = [*rendered.jobs(), rendered.deployment(), *rendered.kind("Pod"),
               rollback_pod(rollback_command(rendered.notes), "base")]
    out: dict[str, set[tuple[str, str]]] = {}
    for obj in objects:
        spec = pod_spec(obj)
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in (c for c in containers(spec) if is_migrator(c) or c["name"] == "app"):
            mount = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/var/run/secrets/database")
            secret = volumes[mount]["secret"]["secretName"]
            step = container["args"][0] if is_migrator(container) else "app"
            out.setdefault(step, set()).add((env_of(container)["DATABASE_URL"], secret))
    return out


@pytest.mark.parametrize("mode", ["hook", "job", "initContainer"])
def test_the_migrator_changes_the_schema_with_its_own_role_and_the_app_pods_only_read(mode: str) -> None:
    by_step = credentials_by_step(deep_merge(SEPARATE, {"migrator": {"mode": mode}}))
    owner, app = {(OWNER_URL, "pg-owner")}, {(APP_URL, "pg-rw")}
    assert by_step == {"migrate": owner, "seed": owner, "rollback": owner,
                       "wait": app, "status": app, "app": app}


def test_in_init_container_mode_only_the_migrate_container_mounts_the_owners_password() -> None:
    rendered = render(deep_merge(SEPARATE, {"migrator": {"mode": "initContainer"}}))
    spec = pod_spec(rendered.deployment())
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert secrets == {"database-password": "pg-rw", "migrator-database-password": "pg-owner"}
    mounted = {c["name"]: {m["name"] for m in c["volumeMounts"]} for c in containers(spec)}
    assert mounted["migrate"] == mounted["seed"] == {"tmp", "migrator-database-password"}
    assert mounted["wait-for-schema"] == mounted["app"] == {"tmp", "database-password"}


def test_the_chart_makes_both_secrets_in_job_mode() -> None:
    rendered = render(SCENARIOS["job-argocd-waves"])
    by_step = credentials_by_step(SCENARIOS["job-argocd-waves"])
    assert by_step["migrate"] == {("postgresql://app_owner@postgres:5432/app", f"{FULLNAME}-migrator-database")}
    assert by_step["wait"] == {("postgresql://app_rw@postgres:5432/app", f"{FULLNAME}-database")}
    assert sorted(s["metadata"]["name"] for s in rendered.kind("Secret")) == [
        f"{FULLNAME}-database", f"{FULLNAME}-migrator-database"]


def test_without_migrator_database_everyone_uses_database() -> None:
    by_step = credentials_by_step({"database": {"existingSecret": {"name": "pg", "passwordKey": "p"}},
                                   "migrator": {"seed": {"enabled": True}}})
    assert set().union(*by_step.values()) == {("postgresql://app@postgres:5432/app", "pg")}


@pytest.mark.parametrize(("values", "message"), [
    ({"migrator": {"database": {"password": "x", "existingSecret": {"name": "s", "passwordKey": "p"}}}},
     "migrator.database: set migrator.database.password or migrator.database.existingSecret.name, not both"),
    ({"migrator": {"database": {"existingSecret": {"name": "s"}}}},
     "migrator.database.existingSecret: set urlKey (the Secret holds the whole URL) or passwordKey"),
    ({"migrator": {"database": {"existingSecret": {"passwordKey": "p"}}}},
     "migrator.database.existingSecret: urlKey and passwordKey need migrator.database.existingSecret.name"),
    ({"migrator": {"database": {"existingSecret": {"name": "s", "passwordKey": "p"}}}},
     "migrator.database: set migrator.database.url, or migrator.database.existingSecret.name with urlKey"),
    ({"migrator": {"database": {"url": "postgresql://owner:hunter2@db/app"}}},
     "migrator.database.url must not carry a password (it is visible in the pod spec)"),
])
def test_inconsistent_migrator_credentials_fail_with_one_line(values: dict[str, Any], message: str) -> None:
    error = render_error(deep_merge({"migrator": {"mode": "job"}}, values))
    assert message in error, error
    assert "hunter2" not in error


# --- hook mode: what exists before the release, or nothing (item 3) -------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"database": {"password": PASSWORD}},
     "database.password: in hook mode the migrate Job runs before the release's objects exist, and the chart "
     "makes no copy of a Secret for it (a copy could outlive the release step); keep the password in a Secret "
     "made before the release and name it in database.existingSecret, or use migrator.mode job"),
    ({"migrator": {"database": {"url": OWNER_URL, "password": PASSWORD}}},
     "migrator.database.password: in hook mode the migrate Job runs before the release's objects exist"),
    ({"database": {"existingSecret": {"name": "s", "passwordKey": "p"},
                   "ssl": {"ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}},
     "database.ssl.ca: in hook mode the migrate Job runs before the release's objects exist"),
])
def test_hook_mode_refuses_what_would_need_a_copy(values: dict[str, Any], message: str) -> None:
    error = render_error(values)
    assert message in error, error
    assert len(error.splitlines()) == 1 and PASSWORD not in error
    assert render(deep_merge(values, {"migrator": {"mode": "job"}})).jobs()  # the same values in job mode


def test_hook_mode_keeps_a_chart_made_password_for_the_app_alone() -> None:
    """The app pods and the test pod are release objects: the app's password may be chart-made when the
    migrator reads its own from a Secret made before the release."""
    rendered = render(SCENARIOS["hook-separate-credentials"])
    [secret] = rendered.kind("Secret")
    assert secret["metadata"]["name"] == f"{FULLNAME}-database" and "annotations" not in secret["metadata"]
