"""The restricted Pod Security Standard, checked on a Pod's API JSON as the Pod Security admission controller
checks it (k8s.io/pod-security-admission/policy, newest version of each check): the baseline checks and the
restricted ones, each returning why it forbids the pod. A namespace labelled
`pod-security.kubernetes.io/enforce: restricted` refuses a pod for which `restricted_violations` is not empty.

Not modelled: the relaxations for pods with user namespaces (`hostUsers: false`) and for Windows pods
(`spec.os.name: windows`); the pods checked here set neither, so the full rules apply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Pod = dict[str, Any]
Check = Callable[[Pod], list[str]]

BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.ip_local_reserved_ports",  # 1.27
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes",  # 1.29
                "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}  # 1.32
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
SECCOMP_ALLOWED = {"RuntimeDefault", "Localhost"}


def spec(pod: Pod) -> dict[str, Any]:
    return dict(pod.get("spec") or {})


def containers(pod: Pod) -> Iterator[dict[str, Any]]:
    """Every container the admission controller visits: init, regular and ephemeral."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec(pod).get(key) or []


def pod_context(pod: Pod) -> dict[str, Any]:
    return dict(spec(pod).get("securityContext") or {})


def context(container: dict[str, Any]) -> dict[str, Any]:
    return dict(container.get("securityContext") or {})


def named(what: str, names: list[str]) -> list[str]:
    return [f"{what}: {', '.join(names)}"] if names else []


# --- baseline -------------------------------------------------------------------------------------------

def host_process(pod: Pod) -> list[str]:
    setters = ["pod"] if (pod_context(pod).get("windowsOptions") or {}).get("hostProcess") else []
    setters += [c["name"] for c in containers(pod) if (context(c).get("windowsOptions") or {}).get("hostProcess")]
    return named("hostProcess (windowsOptions.hostProcess=true)", setters)


def host_namespaces(pod: Pod) -> list[str]:
    return [f"host namespaces ({key}=true)" for key in ("hostNetwork", "hostPID", "hostIPC") if spec(pod).get(key)]


def privileged(pod: Pod) -> list[str]:
    return named("privileged (securityContext.privileged=true)",
                 [c["name"] for c in containers(pod) if context(c).get("privileged")])


def capabilities_baseline(pod: Pod) -> list[str]:
    return named("non-default capabilities", [
        c["name"] for c in containers(pod)
        if set((context(c).get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES])


def host_path_volumes(pod: Pod) -> list[str]:
    return named("hostPath volumes", [v["name"] for v in spec(pod).get("volumes") or [] if "hostPath" in v])


def host_ports(pod: Pod) -> list[str]:
    return named("hostPort", [c["name"] for c in containers(pod)
                              if any(p.get("hostPort") for p in c.get("ports") or [])])


def app_armor(pod: Pod) -> list[str]:
    bad = []
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and value != "runtime/default" \
                and not value.startswith("localhost/"):
            bad.append(f"annotation {key}={value}")
    profiles = [("pod", pod_context(pod))] + [(c["name"], context(c)) for c in containers(pod)]
    bad += [name for name, ctx in profiles
            if ctx.get("appArmorProfile") and ctx["appArmorProfile"].get("type") not in SECCOMP_ALLOWED]
    return named("forbidden AppArmor profile", bad)


def se_linux(pod: Pod) -> list[str]:
    bad = []
    for name, ctx in [("pod", pod_context(pod))] + [(c["name"], context(c)) for c in containers(pod)]:
        options = ctx.get("seLinuxOptions") or {}
        if options.get("type", "") not in SELINUX_TYPES or options.get("user") or options.get("role"):
            bad.append(name)
    return named("seLinuxOptions (custom type, user or role)", bad)


def proc_mount(pod: Pod) -> list[str]:
    return named("procMount", [c["name"] for c in containers(pod)
                               if context(c).get("procMount") not in (None, "Default")])


def seccomp_baseline(pod: Pod) -> list[str]:
    profiles = [("pod", pod_context(pod))] + [(c["name"], context(c)) for c in containers(pod)]
    return named("seccompProfile Unconfined", [
        name for name, ctx in profiles if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined"])


def sysctls(pod: Pod) -> list[str]:
    return named("forbidden sysctls", [s["name"] for s in pod_context(pod).get("sysctls") or []
                                       if s["name"] not in SAFE_SYSCTLS])


def probe_hosts(pod: Pod) -> list[str]:
    """1.34: no host in a probe's or lifecycle handler's httpGet or tcpSocket."""
    bad = []
    for c in containers(pod):
        handlers = [c.get(p) or {} for p in ("livenessProbe", "readinessProbe", "startupProbe")]
        handlers += [(c.get("lifecycle") or {}).get(h) or {} for h in ("postStart", "preStop")]
        if any((h.get(kind) or {}).get("host") for h in handlers for kind in ("httpGet", "tcpSocket")):
            bad.append(c["name"])
    return named("probe or lifecycle host", bad)


# --- restricted -----------------------------------------------------------------------------------------

def restricted_volumes(pod: Pod) -> list[str]:
    return named("restricted volume types", [
        v["name"] for v in spec(pod).get("volumes") or [] if not RESTRICTED_VOLUMES & set(v)])


def allow_privilege_escalation(pod: Pod) -> list[str]:
    return named("allowPrivilegeEscalation != false", [
        c["name"] for c in containers(pod) if context(c).get("allowPrivilegeEscalation") is not False])


def run_as_non_root(pod: Pod) -> list[str]:
    pod_value = pod_context(pod).get("runAsNonRoot")
    bad = ["pod"] if pod_value is False else []
    for c in containers(pod):
        value = context(c).get("runAsNonRoot")
        if value is False or (value is None and pod_value is not True):
            bad.append(c["name"])
    return named("runAsNonRoot != true", bad)


def run_as_user(pod: Pod) -> list[str]:
    bad = ["pod"] if pod_context(pod).get("runAsUser") == 0 else []
    bad += [c["name"] for c in containers(pod) if context(c).get("runAsUser") == 0]
    return named("runAsUser=0", bad)


def seccomp_restricted(pod: Pod) -> list[str]:
    pod_type = (pod_context(pod).get("seccompProfile") or {}).get("type")
    bad = ["pod"] if pod_type is not None and pod_type not in SECCOMP_ALLOWED else []
    for c in containers(pod):
        container_type = (context(c).get("seccompProfile") or {}).get("type")
        # A container without a profile of its own runs with the pod's.
        if (container_type if container_type is not None else pod_type) not in SECCOMP_ALLOWED:
            bad.append(c["name"])
    return named("seccompProfile not RuntimeDefault or Localhost", bad)


def capabilities_restricted(pod: Pod) -> list[str]:
    missing, adding = [], []
    for c in containers(pod):
        capabilities = context(c).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            missing.append(c["name"])
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            adding.append(c["name"])
    return named("capabilities.drop lacks ALL", missing) + named("capabilities.add beyond NET_BIND_SERVICE", adding)


BASELINE: tuple[Check, ...] = (host_process, host_namespaces, privileged, capabilities_baseline, host_path_volumes,
                               host_ports, app_armor, se_linux, proc_mount, seccomp_baseline, sysctls, probe_hosts)
RESTRICTED: tuple[Check, ...] = (restricted_volumes, allow_privilege_escalation, run_as_non_root, run_as_user,
                                 seccomp_restricted, capabilities_restricted)


def restricted_violations(pod: Pod) -> list[str]:
    """Why the restricted profile forbids POD (baseline and restricted checks), one line each; [] if it admits."""
    return [line for check in (*BASELINE, *RESTRICTED) for line in check(pod)]
