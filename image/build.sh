#!/usr/bin/env bash
# Build the images from the repository root with BuildKit.
#
#   image/build.sh [all]      the migrator and the app image (default)
#   image/build.sh migrator   the migrator image only
#   image/build.sh app        the app image only
#   image/build.sh base       (re)build the local Debian base (image/base/build.sh), whatever can be pulled
#   image/build.sh print-base print the BASE_IMAGE/BUILDER_IMAGE build arguments that would be used
#
# Environment:
#   MIGRATOR_IMAGE   tag of the migrator image      (migrator:dev)
#   APP_IMAGE        tag of the app image           (migrator-app:dev)
#   BASE_IMAGE       base of both final stages; unset: python:3.12-slim when it is present or can be
#                    pulled, else the local base migrator-base:bookworm (built when missing)
#   BUILDER_IMAGE    base of the builder stages     (BASE_IMAGE, or migrator-build-base:bookworm with the local base)
#   CACERT           CA bundle given to pip as the `cacert` secret when the file exists
#                    ($SSL_CERT_FILE, else /etc/ssl/certs/ca-certificates.crt)
#   VERSION, REVISION  OCI labels (migrator/__init__.py's __version__, `git rev-parse HEAD`)
#   BUILD_TARGET     stop at this stage (e.g. `builder`, to inspect the build context it received)
#   DOCKER           the client whose BuildKit works without a registry (/usr/bin/docker)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKER=${DOCKER:-/usr/bin/docker}
MIGRATOR_IMAGE=${MIGRATOR_IMAGE:-migrator:dev}
APP_IMAGE=${APP_IMAGE:-migrator-app:dev}
OFFICIAL_BASE=python:3.12-slim
LOCAL_BASE=${LOCAL_BASE:-migrator-base:bookworm}
LOCAL_BUILD_BASE=${LOCAL_BUILD_BASE:-migrator-build-base:bookworm}
PULL_TIMEOUT=${PULL_TIMEOUT:-60}

log() { echo "build.sh: $*" >&2; }
have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

build_local_base() {
    BASE_TAG=$LOCAL_BASE BUILD_BASE_TAG=$LOCAL_BUILD_BASE DOCKER=$DOCKER "$ROOT/image/base/build.sh"
}

# Sets BASE_IMAGE and BUILDER_IMAGE: the caller's, else the official image, else the local base.
choose_base() {
    if [ -n "${BASE_IMAGE:-}" ]; then
        BUILDER_IMAGE=${BUILDER_IMAGE:-$BASE_IMAGE}
        return
    fi
    if have_image "$OFFICIAL_BASE" || timeout "$PULL_TIMEOUT" "$DOCKER" pull -q "$OFFICIAL_BASE" >/dev/null 2>&1; then
        BASE_IMAGE=$OFFICIAL_BASE
        BUILDER_IMAGE=${BUILDER_IMAGE:-$OFFICIAL_BASE}
        return
    fi
    log "$OFFICIAL_BASE cannot be pulled: using the local Debian base $LOCAL_BASE"
    if ! have_image "$LOCAL_BASE" || ! have_image "$LOCAL_BUILD_BASE"; then
        build_local_base
    fi
    BASE_IMAGE=$LOCAL_BASE
    BUILDER_IMAGE=${BUILDER_IMAGE:-$LOCAL_BUILD_BASE}
}

# The package's __version__ (pyproject.toml reads it from there too).
project_version() {
    local version
    version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/migrator/__init__.py")
    echo "${version:-0.0.0-dev}"
}

# docker build with the shared arguments; $1 = Dockerfile (relative to the root), $2 = tag.
build() {
    local dockerfile=$1 tag=$2
    local cacert=${CACERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
    local args=(
        --file "$ROOT/$dockerfile" --tag "$tag"
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "BUILDER_IMAGE=$BUILDER_IMAGE"
        --build-arg "VERSION=${VERSION:-$(project_version)}"
        --build-arg "REVISION=${REVISION:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)}"
    )
    if [ -f "$cacert" ]; then
        args+=(--secret "id=cacert,src=$cacert")
    fi
    [ -z "${BUILD_TARGET:-}" ] || args+=(--target "$BUILD_TARGET")
    [ "${VERBOSE:-0}" = 1 ] || args+=(--quiet)
    log "building $tag from $dockerfile with --build-arg BASE_IMAGE=$BASE_IMAGE --build-arg BUILDER_IMAGE=$BUILDER_IMAGE"
    DOCKER_BUILDKIT=1 "$DOCKER" build "${args[@]}" "$ROOT" >/dev/null
    log "built $tag ($("$DOCKER" image inspect --format '{{.Size}}' "$tag") bytes)"
}

main() {
    local target=${1:-all}
    case $target in
        base) build_local_base ;;
        print-base)
            choose_base
            echo "--build-arg BASE_IMAGE=$BASE_IMAGE --build-arg BUILDER_IMAGE=$BUILDER_IMAGE" ;;
        migrator) choose_base; build image/migrator/Dockerfile "$MIGRATOR_IMAGE" ;;
        app) choose_base; build image/app/Dockerfile "$APP_IMAGE" ;;
        all)
            choose_base
            build image/migrator/Dockerfile "$MIGRATOR_IMAGE"
            build image/app/Dockerfile "$APP_IMAGE" ;;
        -h|--help|help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" ;;
        *) log "unknown target '$target' (all, migrator, app, base, print-base)"; exit 2 ;;
    esac
}

main "$@"
