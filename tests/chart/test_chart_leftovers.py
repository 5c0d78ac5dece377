"""No copy of a secret outlives the release step (issue 17, item 3): the chart makes none for its hooks.

The hook phase of every hook-mode scenario is replayed under each tool's deletion rules (helm_rules.py for
Helm 3.18, 3.21 and 4.2; argocd_emulation.py for Argo CD) and each way it can end: the migrate or the seed Job
fails, the client is interrupted while a Job runs, the phase succeeds but the release fails later, and then
`helm uninstall`, which deletes no hook. What stays holds no Secret and no ServiceAccount, and the cleanup
commands of chart/README.md delete all of it. Chart 0.2.0's hook copy of the Secret is replayed too, to show
that the replay finds the copy Helm 3.18 and Argo CD leave behind.

Rendered offline by Helm's own engine; no cluster is involved.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from typing import Any

import pytest

from tests.chart.argocd_emulation import sync
from tests.chart.chart_render import (
    CHART,
    HOOK_SCENARIOS,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    deep_merge,
    external_objects,
    hook_order,
    render,
)
from tests.chart.helm_rules import deleted_when_phase_fails, deleted_when_phase_succeeds

HELM_VERSIONS = ("3.18", "3.21", "4.2")
WITH_EGRESS = {"networkPolicy": {"enabled": True, "egress": {"enabled": True}}, "migrator": {"seed": {"enabled": True}}}
Key = tuple[str, str]


def helm_leftovers(hooks: list[dict[str, Any]], version: str, ending: str) -> list[dict[str, Any]]:
    """The hooks of a pre-install phase still there when Helm VERSION is done, by ENDING: `fails N` (hook N's
    Job failed), `interrupted N` (the client died while hook N ran), `succeeds` (the phase succeeded; the
    release may still fail later). `helm uninstall` afterwards deletes none of them."""
    what, _, index = ending.partition(" ")
    if what == "succeeds":
        gone = deleted_when_phase_succeeds(hooks)
        return [h for h in hooks if h not in gone]
    created = hooks[: int(index) + 1]
    gone = deleted_when_phase_fails(hooks, int(index), version) if what == "fails" else []
    return [h for h in created if h not in gone]


def endings(hooks: list[dict[str, Any]]) -> list[str]:
    jobs = [i for i, h in enumerate(hooks) if h["kind"] == "Job"]
    return ["succeeds", *(f"fails {i}" for i in jobs), *(f"interrupted {i}" for i in jobs)]


def secret_holders(objects: list[dict[str, Any]]) -> list[Key]:
    return [(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in ("Secret", "ServiceAccount")]


# --- the documented cleanup ------------------------------------------------------------------------------

def cleanup_commands() -> list[list[str]]:
    """The `kubectl delete` commands of chart/README.md's cleanup, for release `rel` in namespace `apps`."""
    text = (CHART / "README.md").read_text()
    section = text[text.index("<!-- cleanup commands -->"):text.index("<!-- /cleanup commands -->")]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("kubectl delete ")]
    assert len(lines) == 2, lines
    return [shlex.split(line.replace("RELEASE", RELEASE).replace("NAMESPACE", NAMESPACE)) for line in lines]


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in re.split(r",(?![^(]*\))", selector):
        if " in " in term:
            key, values = term.split(" in ")
            if labels.get(key.strip()) not in [v.strip() for v in values.strip("() ").split(",")]:
                return False
        else:
            key, value = term.split("=")
            if labels.get(key) != value:
                return False
    return True


def deleted_by(argv: list[str], obj: dict[str, Any]) -> bool:
    """Whether `kubectl delete KINDS [NAMES] [-l SELECTOR]` (ARGV) deletes OBJ in namespace NAMESPACE."""
    kinds = argv[2].split(",")
    names = [a for a in argv[3:] if not a.startswith("-")]
    selector = argv[argv.index("-l") + 1] if "-l" in argv else None
    if selector is not None:
        names.remove(selector)
    namespace = argv[argv.index("--namespace") + 1]
    names.remove(namespace)
    return (obj["kind"].lower() in kinds and namespace == obj["metadata"]["namespace"]
            and (not names or obj["metadata"]["name"] in names)
            and (selector is None or selector_matches(selector, obj["metadata"]["labels"])))


def assert_cleaned_up(objects: list[dict[str, Any]]) -> None:
    commands = cleanup_commands()
    for obj in objects:
        assert any(deleted_by(argv, obj) for argv in commands), f"no cleanup command deletes {obj['kind']}"


# --- Helm -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", HOOK_SCENARIOS)
def test_no_secret_outlives_a_helm_hook_phase(scenario: str) -> None:
    hooks = hook_order(render(deep_merge(SCENARIOS[scenario], WITH_EGRESS)).objects, "pre-install")
    for version in HELM_VERSIONS:
        for ending in endings(hooks):
            left = helm_leftovers(hooks, version, ending)
            assert secret_holders(left) == [], (version, ending, secret_holders(left))
            assert_cleaned_up(left)


def test_the_replay_finds_chart_0_2_0s_copy_left_by_helm_3_18() -> None:
    """The check above can fail: a hook copy of the Secret made as chart 0.2.0 made it (weight -10,
    before-hook-creation and hook-succeeded) stays when the migrate Job fails on Helm 3.18, and is deleted from
    3.19 on; an interrupted client leaves it with every version."""
    rendered = render(SCENARIOS["hook-existing-seed-ca"])
    copy = {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "rel-migrator-migrate-database", "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": "database"},
        "annotations": {"helm.sh/hook": "pre-install,pre-upgrade", "helm.sh/hook-weight": "-10",
                        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}}}
    hooks = hook_order([*rendered.objects, copy], "pre-install")
    assert hooks[0] is copy
    left = [("Secret", "rel-migrator-migrate-database")]
    assert secret_holders(helm_leftovers(hooks, "3.18", "fails 1")) == left
    assert secret_holders(helm_leftovers(hooks, "3.21", "fails 1")) == []
    assert secret_holders(helm_leftovers(hooks, "4.2", "interrupted 1")) == left


def always(outcome: str) -> Callable[[dict[str, Any]], str]:
    """Every Job's end, for the Argo CD replay."""
    return lambda job: outcome


# --- Argo CD --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", HOOK_SCENARIOS)
def test_no_secret_outlives_an_argo_cd_sync(scenario: str) -> None:
    """Argo CD runs the hooks as PreSync hooks and deletes HookSucceeded ones only when the whole sync
    succeeded: after a failed migration the Jobs stay (for their logs), and nothing that holds a secret."""
    values = deep_merge(SCENARIOS[scenario], WITH_EGRESS)
    rendered = render(values)
    for outcome, sync_outcome, kept in (("Complete", "Succeeded", set()),
                                        ("Failed", "Failed", {("Job", "rel-migrator-migrate")})):
        result = sync(rendered.objects, external_objects(values), job_outcome=always(outcome))
        assert result.outcome == sync_outcome, result
        left = [o for o in rendered.objects if (o["kind"], o["metadata"]["name"]) in result.left]
        assert secret_holders(left) == []
        assert_cleaned_up(left)
        assert kept <= result.left and {kind for kind, _ in result.left} <= {"Job", "NetworkPolicy"}
