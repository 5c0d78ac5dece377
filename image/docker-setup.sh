#!/usr/bin/env bash
# Make a Docker engine usable on a Debian machine (CI, a fresh developer machine); safe to run again.
#
# Installs Debian's docker.io when missing and starts dockerd in the background when no engine answers.
# Debian's client (/usr/bin/docker, 20.10) is the one used: its BuildKit works without pulling anything.
# Prints the client path on success; exits non-zero with one line saying why otherwise.
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
WAIT_SECONDS=${DOCKERD_WAIT:-60}

die() { echo "docker-setup: $*" >&2; exit 1; }

install_docker() {
    [ "$(id -u)" = 0 ] || die "docker.io is not installed and installing it needs root"
    echo "docker-setup: installing docker.io" >&2
    # The package lists may be missing or stale on a fresh machine; an update is cheap next to the install.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >&2
}

engine_answers() { "$DOCKER" info >/dev/null 2>&1; }

start_dockerd() {
    [ "$(id -u)" = 0 ] || die "no Docker engine answers and starting dockerd needs root"
    echo "docker-setup: starting dockerd (log: $LOG)" >&2
    # setsid: dockerd must outlive this script and not get the caller's terminal signals.
    setsid dockerd >>"$LOG" 2>&1 < /dev/null &
    local waited=0
    until engine_answers; do
        sleep 1
        waited=$((waited + 1))
        if [ "$waited" -ge "$WAIT_SECONDS" ]; then
            tail -n 20 "$LOG" >&2 || true
            die "dockerd did not answer within ${WAIT_SECONDS}s"
        fi
    done
}

if [ ! -x "$DOCKER" ] || ! command -v dockerd >/dev/null 2>&1; then
    install_docker
fi
engine_answers || start_dockerd
echo "$DOCKER"
