"""What this image's revision scripts know: every revision with its parents, and the heads.

From the files' text when that is certain (migrator.revision_scan: no Alembic, the fast path), else from
Alembic's ScriptDirectory. The fast path may defer to Alembic, never disagree with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from migrator import alembic_ini
from migrator.errors import Uncertain
from migrator.logs import get_logger
from migrator.repos import Repo

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from migrator.revision_scan import ScriptGraph


class Known(NamedTuple):
    """The revisions this image's scripts know, with their parents, and their heads."""

    parents: dict[str, tuple[str, ...]]
    heads: frozenset[str]

    def unknown(self, current: tuple[str, ...]) -> list[str]:
        return sorted(set(current) - self.parents.keys())

    def at_head(self, current: tuple[str, ...]) -> bool:
        return bool(self.heads) and set(current) == self.heads


_deferred: set[str] = set()


def fast_graph(repo: Repo, hashes: dict[str, tuple[str, str]] | None = None) -> ScriptGraph | None:
    """The scripts' graph from their text, or None when only Alembic can tell (the fast path steps aside);
    `hashes` receives each revision's file and sha256 (revision_scan.scan)."""
    try:
        return _scan(repo, hashes)
    except Uncertain as exc:
        if repo.name not in _deferred:  # once per repo and process
            _deferred.add(repo.name)
            get_logger().info(f"fast path not taken, Alembic reads the scripts: {exc}", repo=repo.name)
        return None


def _scan(repo: Repo, hashes: dict[str, tuple[str, str]] | None = None) -> ScriptGraph:
    """Read the version locations alembic.ini names (or migrations/versions), as Alembic would."""
    from migrator import revision_scan  # noqa: PLC0415  (a trusted manifest spares a start the scanner)

    ini = alembic_ini.read(repo.project_dir, repo.alembic_ini)
    if ini is not None and ini.sourceless:
        raise Uncertain("alembic.ini sets sourceless: revision files are read by Alembic")
    dirs = list(ini.version_locations) if ini is not None and ini.version_locations else [repo.versions_dir]
    return revision_scan.scan(dirs, recursive=bool(ini and ini.recursive), hashes=hashes)


def load(repo: Repo) -> tuple[Config, ScriptDirectory]:
    """Alembic's Config and ScriptDirectory of `repo`, every revision file loaded."""
    from migrator import alembic_internals as internals  # noqa: PLC0415  (Alembic only when there is work)

    config = internals.alembic_config(repo)
    return config, internals.load_script(config)


def known_revisions(repo: Repo) -> Known:
    """From the files' text when it is certain, else from Alembic."""
    graph = fast_graph(repo)
    if graph is not None:
        return Known(dict(graph.parents), graph.heads)
    _, script = load(repo)
    return known_from(script)


def known_from(script: ScriptDirectory) -> Known:
    from migrator import alembic_internals as internals  # noqa: PLC0415

    return Known(internals.known_parents(script), frozenset(script.get_heads()))
