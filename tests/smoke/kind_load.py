#!/usr/bin/env python3
"""Load local Docker images into a kind cluster, with either of Docker's image stores.

`kind load docker-image` saves images with a plain `docker save`. Under Docker's containerd image store (the
default of Docker 29 and of Docker Desktop) that archive carries an image's whole multi-platform index
although only the host's platform was pulled, and the node's `ctr images import --all-platforms` fails on the
first missing blob (kubernetes-sigs/kind#3795). Saving the host's platform only (`docker image save
--platform`, Docker 28 and later) and loading the archive with `kind load image-archive` works with both
stores; the classic store's `docker save` is single-platform already and gets no --platform (older engines
lack it).

    python3 tests/smoke/kind_load.py --name CLUSTER IMAGE...

Standard library only, so that a workflow step can run it before anything is installed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SNAPSHOTTER = "io.containerd.snapshotter.v1"  # docker info's driver-type under the containerd image store


class LoadError(Exception):
    """A step failed; the message is one line that says which and why."""


def uses_containerd_store(docker_info: dict[str, Any]) -> bool:
    """Whether `docker info --format '{{json .}}'` describes Docker's containerd image store."""
    status = docker_info.get("DriverStatus") or []
    return any(len(pair) == 2 and pair[0] == "driver-type" and pair[1] == SNAPSHOTTER for pair in status)


def platform_of(inspect: dict[str, Any]) -> str:
    """os/arch[/variant] of one `docker image inspect` entry."""
    parts = [inspect["Os"], inspect["Architecture"]]
    if inspect.get("Variant"):
        parts.append(inspect["Variant"])
    return "/".join(parts)


def save_argv(docker: str, image: str, archive: Path, platform: str | None) -> list[str]:
    """The `docker image save` command for one image: with --platform only under the containerd store."""
    argv = [docker, "image", "save"]
    if platform is not None:
        argv += ["--platform", platform]
    return [*argv, "--output", str(archive), image]


def load_argv(kind: str, archive: Path, cluster: str) -> list[str]:
    return [kind, "load", "image-archive", str(archive), "--name", cluster]


def run(argv: Sequence[str], timeout: float) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LoadError(f"{' '.join(argv[:3])} did not finish: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise LoadError(f"{' '.join(argv[:3])} exited {proc.returncode}: {detail}")
    return proc.stdout


def save_image(image: str, archive: Path, docker: str = "docker") -> list[str]:
    """Save IMAGE to ARCHIVE as kind can import it; returns the command that did it."""
    info = json.loads(run([docker, "info", "--format", "{{json .}}"], timeout=60))
    platform = None
    if uses_containerd_store(info):
        [inspect] = json.loads(run([docker, "image", "inspect", image], timeout=60))
        platform = platform_of(inspect)
    argv = save_argv(docker, image, archive, platform)
    run(argv, timeout=600)
    return argv


def load_images(images: Sequence[str], cluster: str, docker: str = "docker", kind: str = "kind") -> None:
    """Save each image and load it into every node of the kind cluster CLUSTER."""
    with tempfile.TemporaryDirectory(prefix="kind-load-") as tmp:
        for index, image in enumerate(images):
            archive = Path(tmp) / f"image-{index}.tar"
            save_image(image, archive, docker)
            run(load_argv(kind, archive, cluster), timeout=600)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load local Docker images into a kind cluster "
                                                 "(works with Docker's containerd image store too).")
    parser.add_argument("--name", required=True, help="the kind cluster's name")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    args = parser.parse_args(argv)
    try:
        load_images(args.images, args.name)
    except LoadError as exc:
        print(f"kind_load: {exc}", file=sys.stderr)
        return 1
    print(f"kind_load: loaded {', '.join(args.images)} into kind cluster {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
