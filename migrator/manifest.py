"""The manifest of a migration directory (what Atlas's atlas.sum is): what every revision file says, read once
when the image is built, so that a pod's no-op start reads one small file instead of every revision.

`migrator manifest` (run by the image builds) and `migrator new` write `<script_location>/.migrator-manifest`:
each file Alembic loads, with its size, mtime, sha256, checksum (migrator.source_checksum), revision and
parents; the heads and the digest of (revision, sha256) that validation compares with the database; or, when
the text scanner cannot be certain (migrator.revision_scan), why not.

It is trusted only while a cheap check shows the directory unchanged: the same files (one listing of each
version location), each with the size and mtime (nanoseconds) recorded, and every file modified less than
RACY_SECONDS before the manifest was written hashed again (its mtime might not change on a second write
within the file system's clock tick). That catches every edit, copy, checkout, added, removed or renamed
file, except one that keeps a file's size and sets its mtime back to the recorded nanosecond (touch -r, a
tool that restores timestamps). A stale or missing manifest is never wrong, only slower: the scanner reads
the files, as without a manifest, and a debug line says why.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from migrator import alembic_ini, scripts
from migrator.errors import ConfigError, Uncertain
from migrator.logs import get_logger
from migrator.repos import Repo
from migrator.tables.history import FileSums

if TYPE_CHECKING:
    from migrator.revision_text import RevisionFile

NAME = ".migrator-manifest"
FORMAT = "migrator-manifest 1"
RACY_SECONDS = 2  # coarser than any file system's timestamp granularity (FAT: 2 s)
_BODY = "\n--\n"


class Locations(NamedTuple):
    """Alembic's version locations of a repo, as the scanner reads them (migrator.scripts)."""

    dirs: tuple[Path, ...]
    recursive: bool
    sourceless: bool

    @staticmethod
    def of(repo: Repo) -> Locations:
        ini = alembic_ini.read(repo.project_dir)
        dirs = tuple(ini.version_locations) if ini is not None and ini.version_locations else (repo.versions_dir,)
        return Locations(dirs, bool(ini and ini.recursive), bool(ini and ini.sourceless))

    def key(self, root: Path) -> str:
        """The locations as the manifest records them: relative to the script directory, so that it holds in
        the image too."""
        return json.dumps([[os.path.relpath(d, root) for d in self.dirs], self.recursive])


class Entry(NamedTuple):
    """One revision file as the manifest recorded it."""

    path: str  # relative to the script directory
    size: int
    mtime_ns: int
    sums: FileSums
    revision: str | None  # None when the scanner could not read it
    parents: tuple[str, ...]
    labels: tuple[str, ...]


class RevisionSource(NamedTuple):
    """One revision as this image's files have it."""

    revision: str
    path: str
    parents: tuple[str, ...]
    file_hash: str  # sha256 of the file's bytes


class View(NamedTuple):
    """What the revision files say, for the no-op path: their heads and the digest of (revision, sha256) over
    every revision (all are applied at head). From a trusted manifest, or from the scanner."""

    heads: frozenset[str]
    digest: str | None
    revisions: Callable[[], dict[str, RevisionSource]]  # every revision's file, when validation needs them


def view(repo: Repo) -> View | None:
    """The no-op path's view of the files: the trusted manifest's, else the scanner's; None when only Alembic
    can tell (the fast path steps aside)."""
    found = trusted(repo)
    if found is not None:
        return found[1]
    hashes: dict[str, tuple[str, str]] = {}
    graph = scripts.fast_graph(repo, hashes)
    if graph is None:
        return None
    return View(graph.heads, digest((rev, sha) for rev, (_, sha) in hashes.items()),
                lambda: {rev: RevisionSource(rev, path, graph.parents[rev], sha)
                         for rev, (path, sha) in hashes.items()})


def digest(pairs: Iterable[tuple[str, str]]) -> str | None:
    """The digest the database computes over its applied revisions (history.digest_sql): sha256 of
    `revision file_hash` lines in code point order (= C collation on UTF-8); None for none."""
    lines = sorted(f"{revision} {file_hash}" for revision, file_hash in pairs)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest() if lines else None


# --- writing ----------------------------------------------------------------------------------------------

def write(repo: Repo) -> Path:
    """Read every revision file and write the manifest next to them (atomically); its path."""
    from migrator import revision_scan  # noqa: PLC0415  (the scanner: see _listed)
    from migrator.revision_file import read_script  # noqa: PLC0415
    from migrator.source_checksum import checksum  # noqa: PLC0415

    root, where = repo.script_location, Locations.of(repo)
    written_ns = time.time_ns()
    directories = _directory_times(where, root)  # before the listing: a file added meanwhile changes them
    entries: list[Entry] = []
    read: list[tuple[str, RevisionFile]] = []
    uncertain = "alembic.ini sets sourceless: revision files are read by Alembic" if where.sourceless else ""
    for real, shown in _files(where):
        status, data = os.stat(real), Path(real).read_bytes()
        try:
            found: RevisionFile | None = read_script(real, shown)
        except Uncertain as exc:
            found, uncertain = None, uncertain or str(exc)
        if found is not None:
            read.append((shown, found))
        entries.append(Entry(relative(real, root), status.st_size, status.st_mtime_ns,
                             FileSums(checksum(data), hashlib.sha256(data).hexdigest()),
                             found.revision if found else None, found.parents if found else (),
                             found.branch_labels if found else ()))
    heads = ""
    if not uncertain:
        try:
            heads = " ".join(sorted(revision_scan.graph(read).heads))
        except Uncertain as exc:
            uncertain = str(exc)
    pairs = [(e.revision, e.sums.file_hash) for e in entries if e.revision]
    entries.sort(key=lambda e: e.path)
    racy_ns = written_ns - RACY_SECONDS * 10**9
    header = [FORMAT, f"locations {where.key(root)}", f"written_ns {written_ns}",
              f"directories {json.dumps(directories) if directories is not None else '-'}",
              f"uncertain {uncertain}" if uncertain else f"heads {heads}", f"digest {digest(pairs) or ''}",
              *(f"racy {e.sums.file_hash} {e.path}" for e in entries if e.mtime_ns >= racy_ns)]
    body = json.dumps([[e.path, e.size, e.mtime_ns, e.sums.checksum, e.sums.file_hash, e.revision,
                        list(e.parents), list(e.labels)] for e in entries], separators=(",", ":"))
    return _save(root / NAME, "\n".join(header) + _BODY + _stats(entries) + _BODY + body + "\n")


def _directory_times(where: Locations, root: Path) -> list[tuple[str, int]] | None:
    """Each version location's mtime: it changes when a file in it is added, removed or renamed, which is
    what spares the no-op path the listing. None for recursive locations (their subdirectories are listed)."""
    if where.recursive:
        return None
    return [(relative(os.path.realpath(d), root), os.stat(d).st_mtime_ns) for d in where.dirs if os.path.isdir(d)]


def _save(path: Path, text: str) -> Path:
    temporary = path.with_name(f"{NAME}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _listed(where: Locations) -> list[tuple[str, str]]:
    """The revision files (real path, as shown); Uncertain when they cannot be listed as Alembic would."""
    # The scanner is imported where a listing or a scan is needed: a start whose manifest is trusted (the
    # image's every start) needs neither, and the scanner's modules cost it more than the check itself.
    from migrator import revision_scan  # noqa: PLC0415

    return revision_scan.script_files(where.dirs, recursive=where.recursive)


def _files(where: Locations) -> list[tuple[str, str]]:
    try:
        return _listed(where)
    except Uncertain as exc:
        raise ConfigError(f"cannot list the revision files: {exc}") from None


def relative(real: str, root: Path) -> str:
    """`real` relative to the script directory: a prefix cut in the common case (relpath costs microseconds,
    thousands of times on the no-op path)."""
    prefix = f"{root}{os.sep}"
    return real[len(prefix):] if real.startswith(prefix) else os.path.relpath(real, root)


def _stats(entries: Iterable[Entry]) -> str:
    """One `path, size, mtime` line per file, in path order: what the no-op path compares, as text."""
    return "\n".join(f"{e.path}\t{e.size}\t{e.mtime_ns}" for e in entries)


# --- reading ----------------------------------------------------------------------------------------------

@dataclass
class Manifest:
    """A manifest as read, its body parsed only when asked for."""

    root: Path
    header: dict[str, str]
    racy: list[tuple[str, str]]  # (sha256, path) of each file written within RACY_SECONDS of the manifest
    stats: str  # _stats() as written
    body: str

    @functools.cached_property
    def entries(self) -> dict[str, Entry]:
        return {row[0]: Entry(row[0], row[1], row[2], FileSums(row[3], row[4]), row[5], tuple(row[6]), tuple(row[7]))
                for row in json.loads(self.body)}

    @property
    def written_ns(self) -> int:
        return int(self.header.get("written_ns", "0"))


def read(repo: Repo) -> Manifest | None:
    """The repo's manifest, or None (with a debug line) when there is none or it cannot be used."""
    path = repo.script_location / NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        _debug(repo, f"no manifest ({path}): the scanner reads every revision file; `migrator manifest` writes it")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        _debug(repo, f"manifest {path} unreadable ({exc}): the scanner reads every revision file")
        return None
    head, _, rest = text.partition(_BODY)
    stats, _, body = rest.partition(_BODY)
    lines = head.split("\n")
    if lines[0] != FORMAT:
        _debug(repo, f"manifest {path} is not a {FORMAT!r} file: the scanner reads every revision file")
        return None
    header = dict(line.partition(" ")[::2] for line in lines[1:] if not line.startswith("racy "))
    racy = [(line[5:].partition(" ")[0], line[5:].partition(" ")[2]) for line in lines if line.startswith("racy ")]
    return Manifest(repo.script_location, header, racy, stats, body)


def trusted(repo: Repo) -> tuple[Manifest, View] | None:
    """The manifest and the view it gives, when the cheap check shows the directory as it was written."""
    manifest = read(repo)
    if manifest is None:
        return None
    stale = _stale(repo, manifest)
    if stale:
        _debug(repo, f"manifest {manifest.root / NAME} is stale ({stale}): the scanner reads every revision file")
        return None
    uncertain = manifest.header.get("uncertain")
    if uncertain:
        _debug(repo, f"manifest: the revision files' text is not certain ({uncertain}); Alembic reads them")
        return None
    heads = frozenset(manifest.header.get("heads", "").split())

    def revisions() -> dict[str, RevisionSource]:
        return {e.revision: RevisionSource(e.revision, str(manifest.root / e.path), e.parents, e.sums.file_hash)
                for e in manifest.entries.values() if e.revision}
    return manifest, View(heads, manifest.header.get("digest") or None, revisions)


def _stale(repo: Repo, manifest: Manifest) -> str:
    """Why the directory is not as the manifest recorded it ('' when it is)."""
    where = Locations.of(repo)
    if manifest.header.get("locations") != where.key(manifest.root):
        return "the version locations changed"
    root = manifest.root
    try:
        if _same_directories(manifest, where):  # the same names: one stat per recorded file
            paths = [line.partition("\t")[0] for line in manifest.stats.split("\n")] if manifest.stats else []
            pairs = list(zip(paths, _stat_all(root, paths), strict=True))
        else:  # a file added, removed or renamed, or a directory touched within the racy window: list them
            files = _listed(where)
            pairs = sorted((relative(real, root), os.stat(real)) for real, _ in files)
    except (Uncertain, OSError) as exc:
        return f"the files cannot be listed: {exc}"
    if "\n".join(f"{path}\t{s.st_size}\t{s.st_mtime_ns}" for path, s in pairs) != manifest.stats:
        return "a revision file was added, removed or changed since it was written"
    for recorded, path in manifest.racy:  # written within a clock tick of the manifest: their content tells
        if file_hash(manifest.root / path) != recorded:
            return f"{path} changed since it was written"
    return ""


def _stat_all(root: Path, paths: list[str]) -> list[os.stat_result]:
    """Each file's stat, relative to its directory's descriptor: the kernel looks up one name, not the path."""
    descriptors: dict[str, int] = {}
    try:
        found = []
        for path in paths:
            directory, _, name = path.rpartition("/")
            fd = descriptors.get(directory)
            if fd is None:
                fd = descriptors[directory] = os.open(root / directory, os.O_RDONLY | os.O_DIRECTORY)
            found.append(os.stat(name, dir_fd=fd))
        return found
    finally:
        for fd in descriptors.values():
            os.close(fd)


def _same_directories(manifest: Manifest, where: Locations) -> bool:
    """Whether each version location's mtime is as recorded, and older than the racy window (a directory
    changed within the same clock tick as it was recorded would keep its mtime)."""
    recorded = manifest.header.get("directories", "-")
    if recorded == "-":
        return False
    racy_ns = manifest.written_ns - RACY_SECONDS * 10**9
    now = _directory_times(where, manifest.root)
    return (now is not None and [tuple(item) for item in json.loads(recorded)] == now
            and all(mtime < racy_ns for _, mtime in now))


def file_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


@functools.cache
def _debug_once(repo_name: str, message: str) -> None:
    get_logger().debug(message, repo=repo_name)


def _debug(repo: Repo, message: str) -> None:
    _debug_once(repo.name, message)


def write_all(repos: Sequence[Repo]) -> list[Path]:
    """`migrator manifest`: write each repo's manifest."""
    written = []
    for repo in repos:
        path = write(repo)
        get_logger().info(f"Wrote {path}", repo=repo.name, path=str(path))
        written.append(path)
    return written
