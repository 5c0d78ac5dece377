"""chart/README.md, the README's "Deploy with Helm", NOTES and the chart agree: every statement of the docs that
rendering can check is checked here (defaults, bounds, what each mode renders, the recipes), so that a change
of the chart that the docs do not follow fails.

Rendered offline by Helm's own engine; no cluster is involved.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.chart.chart_render import (
    CHART,
    ROOT,
    deep_merge,
    env_of,
    pod_spec,
    recipe,
    render,
    rollback_command,
    rollback_pod,
)

CHART_README = (CHART / "README.md").read_text()
README = (ROOT / "README.md").read_text()
DEPLOY = README[README.index("## Deploy with Helm"):README.index("## Develop with Skaffold")]
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_job_bounds_the_docs_state_are_the_charts() -> None:
    job = VALUES["migrator"]["job"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"], job["nonRetryableExitCodes"]) == (0, 210, [1, 2, 6])
    for text in (flat(CHART_README), flat(DEPLOY)):
        assert "`backoffLimit: 0`" in text
    assert "`activeDeadlineSeconds` (210 s; Helm's `--timeout` must exceed it by 90 s)" in flat(DEPLOY)
    assert "pass `--timeout` of at least that plus 90 s" in flat(CHART_README)
    assert "| `migrator.job.activeDeadlineSeconds` | 210 s |" in CHART_README
    notes = flat(render().notes)
    assert "the Job gives up after 210 s" in notes and "which must exceed that by 90 s" in notes
    config = VALUES["migrator"]["config"]
    assert (config["connectTimeout"], config["lockTimeout"]) == ("60s", "60s")
    assert "| `migrator.config.connectTimeout` (`MIGRATOR_CONNECT_TIMEOUT`) | 60 s |" in CHART_README


def exit_code_rows() -> dict[str, str]:
    """The exit-code table of chart/README.md's Failures section: codes -> what happens by default."""
    section = CHART_README[CHART_README.index("| exit | meaning | by default |"):]
    rows = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[2]
    return rows


@pytest.mark.parametrize("mode", ["hook", "job"])
def test_the_exit_code_table_is_the_rendered_pod_failure_policy(mode: str) -> None:
    [job] = render({"migrator": {"mode": mode}}).jobs()
    fail_job = job["spec"]["podFailurePolicy"]["rules"][0]
    assert fail_job["action"] == "FailJob"
    rows = exit_code_rows()
    documented = sorted(int(code) for codes, decision in rows.items() if "(`FailJob`)" in decision
                        for code in codes.split(", "))
    assert documented == fail_job["onExitCodes"]["values"]
    assert all("not retried" in rows[codes] for codes in ("3, 4", "137, 143"))
    ignore = [r for r in job["spec"]["podFailurePolicy"]["rules"] if r["action"] == "Ignore"]
    assert len(ignore) == (1 if mode == "hook" else 0)  # "no `Ignore` rule in `job` mode"
    assert "no `Ignore` rule in `job` mode" in flat(CHART_README)


def test_what_each_mode_renders_is_what_the_docs_say() -> None:
    assert [p["metadata"]["name"] for p in render({"migrator": {"mode": "job"}}).kind("Pod")] == []
    assert "The `helm test` pod is not rendered in `job` mode" in flat(CHART_README)
    for mode in ("hook", "initContainer"):
        assert render({"migrator": {"mode": mode}}).test_pod()
    hook = render({})
    assert pod_spec(hook.jobs()[0])["serviceAccountName"] == "default"
    assert "| default (`serviceAccount.create: true`) | `default` (the release's account does not exist yet) |" \
        in CHART_README
    assert {s["metadata"]["name"] for s in hook.kind("ServiceAccount")} == {"rel-migrator"}


def test_the_rollback_pointer_is_the_same_in_notes_and_docs() -> None:
    notes = render().notes
    assert "helm get notes rel --namespace apps --revision FROM" in notes
    assert "helm get notes RELEASE --namespace NS --revision FROM" in CHART_README
    assert "--image=migrator:dev" in rollback_command(notes)


def test_the_egress_hook_copy_weight_is_the_documented_one() -> None:
    rendered = render({"networkPolicy": {"egress": {"enabled": True}}, "migrator": {"hook": {"weight": 4}}})
    copy = rendered.get("NetworkPolicy", "rel-migrator-migrate-egress")
    assert copy["metadata"]["annotations"]["helm.sh/hook-weight"] == "-6"
    assert "(weight `migrator.hook.weight - 10`)" in CHART_README


@pytest.mark.parametrize(("name", "annotation"), [
    ("istio", "sidecar.istio.io/nativeSidecar"),
    ("linkerd", "config.beta.linkerd.io/proxy-enable-native-sidecar"),
])
def test_mesh_recipes_annotate_every_pod(name: str, annotation: str) -> None:
    rendered = render(recipe(name))
    pods = [j["spec"]["template"] for j in rendered.jobs()] + [rendered.test_pod(),
                                                             rendered.deployment()["spec"]["template"],
                                                             rollback_pod(rollback_command(rendered.notes), "base")]
    assert all(pod["metadata"]["annotations"][annotation] == "true" for pod in pods)


def test_the_cloud_sql_proxy_recipe_is_a_native_sidecar_in_front_of_every_migrator() -> None:
    values = recipe("cloud-sql-proxy")
    rendered = render(values)
    [proxy] = values["migrator"]["sidecars"]
    assert values["app"]["sidecars"] == [proxy]
    objects = [*rendered.jobs(), rendered.test_pod(), rendered.deployment(),
               rollback_pod(rollback_command(rendered.notes), "base")]
    for obj in objects:
        init = pod_spec(obj)["initContainers"]
        assert init[0] == {**proxy, "restartPolicy": "Always"}, obj["metadata"]["name"]
    database_url = env_of(pod_spec(rendered.jobs()[0])["containers"][0])["DATABASE_URL"]
    assert database_url.startswith("postgresql://app@127.0.0.1:5432/")
    assert "--exit-zero-on-sigterm" in proxy["args"] and proxy["startupProbe"]["httpGet"]["path"] == "/startup"


def test_the_separate_credentials_example_renders_as_documented() -> None:
    text = CHART_README[CHART_README.index("### Separate credentials"):]
    example = yaml.safe_load(text[text.index("```yaml\n") + 8:].split("```", 1)[0])
    rendered = render(deep_merge(example, {"migrator": {"seed": {"enabled": True}}}))
    migrate, seed = (pod_spec(j)["containers"][0] for j in rendered.jobs())
    wait = pod_spec(rendered.deployment())["initContainers"][0]
    assert env_of(migrate)["DATABASE_URL"] == env_of(seed)["DATABASE_URL"] == example["migrator"]["database"]["url"]
    assert env_of(wait)["DATABASE_URL"] == example["database"]["url"]

