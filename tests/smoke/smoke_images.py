"""The smoke images: the migrator image under test plus the scenario's extra revisions, as a new release would ship
them (tests/smoke/smoke_scenario.py). Built with the real Docker engine, for the kind suite and its emulation."""

from __future__ import annotations

from pathlib import Path

from tests.docker import docker
from tests.smoke.smoke_scenario import IMAGE_FILES, base_revisions, smoke_revisions, smoke_tag


def build_smoke_image(base: str, role: str, workdir: Path) -> str:
    """BASE plus the files of ROLE in /app/migrations/versions, byte-compiled as image/migrator/Dockerfile does;
    returns its tag."""
    tag = smoke_tag(base, role)
    if not IMAGE_FILES[role]:
        return tag
    files = smoke_revisions(base_revisions()[-1])
    context = workdir / role
    context.mkdir(parents=True)
    copies = []
    for name in IMAGE_FILES[role]:
        revision = files[name]
        (context / revision.filename).write_text(revision.text())
        copies.append(f"COPY {revision.filename} /app/migrations/versions/\n")
    (context / "Dockerfile").write_text(
        f"FROM {base}\nUSER 0:0\n{''.join(copies)}"
        "RUN python -m compileall -q -f --invalidation-mode unchecked-hash /app/migrations\n"
        "USER 10001:10001\n")
    docker("build", "--quiet", "--tag", tag, str(context), timeout=600, env={"DOCKER_BUILDKIT": "1"})
    return tag


def build_smoke_images(base: str, workdir: Path) -> dict[str, str]:
    """Every smoke image on BASE: role -> tag (`base` is BASE itself)."""
    return {role: build_smoke_image(base, role, workdir) for role in IMAGE_FILES}
