#!/usr/bin/env bash
# Build the air-gapped stand-in for python:3.12-slim: Debian bookworm (minbase) with Debian's Python 3,
# made with mmdebstrap from Debian's packages and imported into Docker, for machines that reach Debian's
# archive but no container registry.
#
#   image/base/build.sh                # -> migrator-base:bookworm and migrator-build-base:bookworm
#   BASE_TAG=x:1 BUILD_BASE_TAG=y:1 image/base/build.sh
#
# Two images, because the Dockerfiles' builder stage needs `python3 -m venv` with pip (Debian ships
# ensurepip in python3-venv) while the final stage must carry no pip:
#   BASE_TAG        python3, ca-certificates, netbase: what python:3.12-slim gives at run time
#   BUILD_BASE_TAG  the same plus python3-venv, for the builder stage only (--build-arg BUILDER_IMAGE)
# Both have the same /usr/bin/python3, so a venv made in the second runs in the first.
# Documentation, man pages, locales and apt's package lists are left out. Needs root (mmdebstrap's root
# mode) and Docker.
set -euo pipefail

BASE_TAG=${BASE_TAG:-migrator-base:bookworm}
BUILD_BASE_TAG=${BUILD_BASE_TAG:-migrator-build-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DOCKER=${DOCKER:-/usr/bin/docker}
RUNTIME_PACKAGES=python3,ca-certificates,netbase

die() { echo "base/build.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "mmdebstrap's root mode needs root"
if ! command -v mmdebstrap >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2 \
        || die "mmdebstrap is missing and could not be installed (apt-get install mmdebstrap)"
fi

# Applied by dpkg while installing and kept in the image (dpkg.cfg.d), so any later apt-get install in a
# derived image stays as lean. Copyright files stay: they are the licences of what the image ships.
DPKG_OPTS=(
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-include=/usr/share/locale/locale.alias'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/lintian/*'
)

# Build-time leftovers that nothing reads at run time; apt's lists and cache go by mmdebstrap's cleanup.
# Single quotes on purpose: mmdebstrap runs the hook with the root directory as "$1".
# shellcheck disable=SC2016
CLEANUP='rm -rf "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old "$1"/var/log/* "$1"/usr/share/doc-base'

WORK=$(mktemp -d --tmpdir migrator-base.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The root filesystem as a tarball in $WORK/rootfs.tar; mmdebstrap's chatter goes to $WORK/mmdebstrap.log.
build_rootfs() {
    local packages=$1
    # The merged-usr hook sets up /usr the way debootstrap does, instead of installing usrmerge, whose
    # dependency on perl would add 45 MB to an image that never runs perl scripts.
    mmdebstrap --variant=minbase --include="$packages" --format=tar "${DPKG_OPTS[@]}" \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --customize-hook="$CLEANUP" \
        "$SUITE" "$WORK/rootfs.tar" \
        "deb $MIRROR $SUITE main" \
        "deb $MIRROR $SUITE-updates main" \
        "deb $SECURITY_MIRROR $SUITE-security main" \
        >"$WORK/mmdebstrap.log" 2>&1
}

import() {
    local tag=$1 packages=$2
    echo "base/build.sh: building $tag ($packages)" >&2
    if ! build_rootfs "$packages"; then
        tail -n 40 "$WORK/mmdebstrap.log" >&2
        die "mmdebstrap failed for $tag (nothing imported)"
    fi
    "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase + Debian's Python 3 ($packages)\"" \
        --message "mmdebstrap --variant=minbase $SUITE ($packages)" \
        "$WORK/rootfs.tar" "$tag" >/dev/null
    rm -f "$WORK/rootfs.tar"
}

import "$BASE_TAG" "$RUNTIME_PACKAGES"
import "$BUILD_BASE_TAG" "$RUNTIME_PACKAGES,python3-venv"
"$DOCKER" run --rm "$BASE_TAG" python3 -c 'import sys, ssl; print("base ok:", sys.version.split()[0], ssl.OPENSSL_VERSION)'
"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -F -e "$BASE_TAG" -e "$BUILD_BASE_TAG"
