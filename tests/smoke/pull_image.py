#!/usr/bin/env python3
"""Pull a Docker Hub image from a mirror first, and tag it with its Docker Hub name.

Docker Hub refuses anonymous pulls past its rate limit, and CI runners share addresses. The kind smoke workflow
pulls every image it needs (the kind node image, PostgreSQL, the Python base of image/build.sh) with this script
before anything else could pull it: from Google's Docker Hub mirror, then (official images only) from Amazon ECR
Public's copy of the Docker library, and from Docker Hub itself only as the last resort. A reference pinned by
digest is pulled by that digest from every source, so a mirror cannot substitute other content. The image is
then tagged with its Docker Hub name without the digest (kindest/node:v1.36.1, postgres:16), which is what kind,
image/build.sh and `kind load` find locally, so none of them pulls again.

    python3 tests/smoke/pull_image.py REFERENCE      prints the local name on stdout

Standard library only, so that a workflow step can run it before anything is installed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

GOOGLE_MIRROR = "mirror.gcr.io"  # Docker Hub's images, cached by Google
ECR_LIBRARY = "public.ecr.aws/docker/library"  # Docker's official images, on Amazon ECR Public
DOCKER_HUB = "docker.io"


class PullError(Exception):
    """No source gave the image; the message is one line naming each source and why."""


def split(reference: str) -> tuple[str, str | None, str | None]:
    """(repository with library/ for official images, tag or None, digest or None) of a Docker Hub reference."""
    name, _, digest = reference.partition("@")
    repository, tag = name, None
    if ":" in name.rsplit("/", 1)[-1]:
        repository, tag = name.rsplit(":", 1)
    if repository.startswith(f"{DOCKER_HUB}/"):
        repository = repository[len(DOCKER_HUB) + 1:]
    if "." in repository.split("/", 1)[0] or ":" in repository.split("/", 1)[0]:
        raise PullError(f"{reference} is not a Docker Hub image (its first part names another registry)")
    if "/" not in repository:
        repository = f"library/{repository}"
    return repository, tag, digest or None


def candidates(reference: str) -> list[str]:
    """The references to try, in order: the mirrors first, Docker Hub last; by digest when REFERENCE has one."""
    repository, tag, digest = split(reference)
    pin = f"@{digest}" if digest else f":{tag or 'latest'}"
    sources = [f"{GOOGLE_MIRROR}/{repository}"]
    if repository.startswith("library/"):
        sources.append(f"{ECR_LIBRARY}/{repository.removeprefix('library/')}")
    sources.append(f"{DOCKER_HUB}/{repository}")
    return [source + pin for source in sources]


def local_name(reference: str) -> str:
    """The name kind, build.sh and `kind load` look for: the Docker Hub name with its tag, without the digest."""
    repository, tag, _ = split(reference)
    return f"{repository.removeprefix('library/')}:{tag or 'latest'}"


def docker(argv: Sequence[str], timeout: float) -> str | None:
    """Run a docker command; None when it succeeded, else its last line of output (why it failed)."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"did not finish: {exc}"
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[-1]


def pull(reference: str, docker_binary: str = "docker", timeout: float = 600) -> str:
    """Pull REFERENCE from the first source that gives it and tag it with its local name; returns that name."""
    failures = []
    for candidate in candidates(reference):
        why = docker([docker_binary, "pull", "--quiet", candidate], timeout)
        if why is None:
            target = local_name(reference)
            why = docker([docker_binary, "tag", candidate, target], 60)
            if why is None:
                print(f"pull_image: {reference} from {candidate}, tagged {target}", file=sys.stderr)
                return target
        failures.append(f"{candidate} ({why})")
    raise PullError(f"{reference} could not be pulled from any source: {'; '.join(failures)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pull a Docker Hub image from a mirror first and tag it with "
                                                 "its Docker Hub name (printed on stdout).")
    parser.add_argument("reference", help="a Docker Hub image: NAME[:TAG][@DIGEST]")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pull attempt (600)")
    args = parser.parse_args(argv)
    try:
        print(pull(args.reference, timeout=args.timeout))
    except PullError as exc:
        print(f"pull_image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
