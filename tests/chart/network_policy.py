"""NetworkPolicy's egress rules (networking.k8s.io/v1), evaluated for one pod and one destination: an emulation
of what a conforming network plugin enforces, not a network plugin.

A pod is isolated for egress when a policy whose `policyTypes` include Egress selects it (its namespace's
default-deny policy included); an isolated pod reaches a destination when some rule of some policy selecting
it allows it: the rule's `ports` (none: every port) and its `to` peers (none: every destination). A peer is an
`ipBlock` (a CIDR, less its `except`), or a `namespaceSelector` and/or a `podSelector` (the destination pod's
namespace and labels); a selector is `matchLabels` and `matchExpressions` (In, NotIn, Exists, DoesNotExist).
Named ports are not emulated (the chart's egress rules use numbers).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Destination:
    ip: str
    port: int
    protocol: str = "TCP"
    namespace_labels: dict[str, str] = field(default_factory=dict)  # for an in-cluster pod
    pod_labels: dict[str, str] | None = None  # None: not a pod (an address outside the cluster)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        ok = {"In": present and labels.get(key) in values, "NotIn": not present or labels.get(key) not in values,
              "Exists": present, "DoesNotExist": not present}[operator]
        if not ok:
            return False
    return True


def peer_allows(peer: dict[str, Any], to: Destination) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(to.ip)
        block = peer["ipBlock"]
        excluded = any(address in ipaddress.ip_network(e) for e in block.get("except", []))
        return address in ipaddress.ip_network(block["cidr"]) and not excluded
    if to.pod_labels is None:
        return False  # selectors select pods, never an address outside the cluster
    namespace_ok = selects(peer["namespaceSelector"], to.namespace_labels) if "namespaceSelector" in peer else True
    return namespace_ok and selects(peer.get("podSelector", {}), to.pod_labels)


def rule_allows(rule: dict[str, Any], to: Destination) -> bool:
    ports = rule.get("ports") or []
    port_ok = not ports or any(int(p["port"]) <= to.port <= int(p.get("endPort", p["port"]))
                               and p.get("protocol", "TCP") == to.protocol for p in ports)
    peers = rule.get("to") or []
    return port_ok and (not peers or any(peer_allows(peer, to) for peer in peers))


def egress_allowed(policies: list[dict[str, Any]], pod_labels: dict[str, str], to: Destination,
                   default_deny: bool = True) -> bool:
    """Whether a pod labelled POD_LABELS reaches TO, in a namespace whose own policy denies all egress
    (DEFAULT_DENY) or allows it, with POLICIES applied besides."""
    selecting = [p for p in policies if "Egress" in p["spec"].get("policyTypes", [])
                 and selects(p["spec"]["podSelector"], pod_labels)]
    if not selecting:
        return not default_deny
    return any(rule_allows(rule, to) for p in selecting for rule in p["spec"].get("egress", []))
