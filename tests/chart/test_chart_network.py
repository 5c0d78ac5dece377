"""NetworkPolicy egress for every pod of the release (issue 17, item 9), evaluated with NetworkPolicy's rules
(network_policy.py) in a namespace whose default denies egress.

Rendered offline by Helm's own engine; no cluster or network plugin is involved.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart_render import (
    RELEASE,
    Rendered,
    deep_merge,
    hook_order,
    render,
    render_error,
    rollback_command,
    rollback_pod,
)
from tests.chart.network_policy import Destination, egress_allowed

FULLNAME = f"{RELEASE}-migrator"
EGRESS = {"networkPolicy": {"egress": {"enabled": True}}}
DATABASE = Destination("10.0.0.5", 5432)
DNS = Destination("10.96.0.10", 53, "UDP")
ELSEWHERE = [Destination("10.0.0.5", 443), Destination("1.1.1.1", 443), Destination("10.0.0.5", 22)]
MODES = ["hook", "job", "initContainer"]


def pod_labels(rendered: Rendered) -> dict[str, dict[str, str]]:
    """Each pod of the release by its owner: the Jobs', the app's, the test pod's, the rollback pod's labels."""
    out = {f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["metadata"]["labels"]
           for o in rendered.objects if o["kind"] in ("Job", "Deployment")}
    out |= {f"Pod/{p['metadata']['name']}": p["metadata"]["labels"] for p in rendered.kind("Pod")}
    out["rollback"] = rollback_pod(rollback_command(rendered.notes), "base")["metadata"]["labels"]
    return out


def release_policies(rendered: Rendered) -> list[dict[str, Any]]:
    return [p for p in rendered.kind("NetworkPolicy") if "helm.sh/hook" not in p["metadata"].get("annotations", {})]


def test_egress_is_left_alone_by_default() -> None:
    rendered = render({})
    assert all(p["spec"]["policyTypes"] == ["Ingress"] for p in rendered.kind("NetworkPolicy"))
    for labels in pod_labels(rendered).values():
        assert egress_allowed(rendered.kind("NetworkPolicy"), labels, ELSEWHERE[1], default_deny=False)


@pytest.mark.parametrize("mode", MODES)
def test_every_pod_reaches_dns_and_the_database_and_nothing_else(mode: str) -> None:
    rendered = render(deep_merge(EGRESS, {"migrator": {"mode": mode, "test": {"enabled": True}}}))
    policies = release_policies(rendered)
    pods = pod_labels(rendered)
    assert len(pods) == (4 if mode != "initContainer" else 3)
    for pod, labels in pods.items():
        assert egress_allowed(policies, labels, DATABASE), pod
        assert egress_allowed(policies, labels, DNS), pod
        assert egress_allowed(policies, labels, Destination("10.96.0.10", 53, "TCP")), pod
        for other in ELSEWHERE:
            assert not egress_allowed(policies, labels, other), (pod, other)
        # Without the chart's policy, default-deny blocks the database: the policy is what allows it.
        assert not egress_allowed([], labels, DATABASE)


def test_the_database_and_dns_can_be_named() -> None:
    values = deep_merge(EGRESS, {"networkPolicy": {"egress": {
        "database": [{"ipBlock": {"cidr": "10.0.0.5/32"}},
                     {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "db"}},
                      "podSelector": {"matchLabels": {"cnpg.io/cluster": "main"}}}],
        "dns": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                 "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "extraRules": [{"to": [{"ipBlock": {"cidr": "199.36.153.8/30"}}], "ports": [{"port": 443}]}]}}})
    rendered = render(values)
    policies = release_policies(rendered)
    job = pod_labels(rendered)[f"Job/{FULLNAME}-migrate"]
    database_pod = Destination("10.1.2.3", 5432, namespace_labels={"kubernetes.io/metadata.name": "db"},
                               pod_labels={"cnpg.io/cluster": "main"})
    dns_pod = Destination("10.1.0.10", 53, "UDP", namespace_labels={"kubernetes.io/metadata.name": "kube-system"},
                          pod_labels={"k8s-app": "kube-dns"})
    assert egress_allowed(policies, job, DATABASE) and egress_allowed(policies, job, database_pod)
    assert egress_allowed(policies, job, dns_pod) and egress_allowed(policies, job, Destination("199.36.153.9", 443))
    assert not egress_allowed(policies, job, Destination("10.0.0.6", 5432))  # another address, same port
    assert not egress_allowed(policies, job, DNS)  # a DNS server other than the named one
    other_pod = Destination("10.1.2.4", 5432, namespace_labels={"kubernetes.io/metadata.name": "db"},
                            pod_labels={"cnpg.io/cluster": "other"})
    assert not egress_allowed(policies, job, other_pod)


def test_hook_jobs_reach_the_database_on_the_first_install() -> None:
    """A pre-install hook runs before the release's own policy exists: a hook copy created before the Jobs
    allows their egress during the hook phase."""
    rendered = render(deep_merge(EGRESS, {"migrator": {"seed": {"enabled": True}}}))
    hooks = hook_order(rendered.objects, "pre-install")
    assert (hooks[0]["kind"], hooks[0]["metadata"]["name"]) == ("NetworkPolicy", f"{FULLNAME}-migrate-egress")
    during_hooks = [h for h in hooks if h["kind"] == "NetworkPolicy"]
    for job in rendered.jobs():
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert egress_allowed(during_hooks, labels, DATABASE) and egress_allowed(during_hooks, labels, DNS)
        assert not egress_allowed(during_hooks, labels, ELSEWHERE[1])
    assert not egress_allowed(during_hooks, pod_labels(rendered)[f"Deployment/{FULLNAME}"], DATABASE)


def test_egress_needs_the_network_policies() -> None:
    error = render_error({"networkPolicy": {"enabled": False, "egress": {"enabled": True}}})
    assert "networkPolicy.egress.enabled: set networkPolicy.enabled too" in error
