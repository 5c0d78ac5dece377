"""Each revision file's checksum and sha256, for the runs that load Alembic (the history records them with each
upgrade; validation compares them): the manifest's, for a file still as recorded there, else computed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from migrator import manifest
from migrator.repos import Repo
from migrator.tables.history import FileSums


class Sums:
    """Each revision file's checksum and sha256: the manifest's, for a file still as recorded, else computed."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._manifest = manifest.read(repo)
        self._cache: dict[str, FileSums] = {}
        self._real_dirs: dict[str, str] = {}

    def of(self, path: str | os.PathLike[str]) -> FileSums:
        real = self._real(os.fspath(path))
        if real not in self._cache:
            self._cache[real] = self._recorded(real) or _compute(real)
        return self._cache[real]

    def _real(self, path: str) -> str:
        """os.path.realpath(path), with its directory resolved once: realpath looks up every component of the
        path (a syscall each), once per step otherwise. Only a file that is itself a link is resolved again."""
        directory, name = os.path.split(path)
        real_dir = self._real_dirs.get(directory)
        if real_dir is None:
            real_dir = self._real_dirs[directory] = os.path.realpath(directory)
        joined = os.path.join(real_dir, name)
        return os.path.realpath(joined) if os.path.islink(joined) else joined

    def hash_of(self, path: str | os.PathLike[str]) -> str:
        return self.of(path).file_hash

    def _recorded(self, real: str) -> FileSums | None:
        found = self._manifest
        if found is None:
            return None
        entry = found.entries.get(manifest.relative(real, found.root))
        try:
            status = os.stat(real)
        except OSError:
            return None
        if entry is None or (entry.size, entry.mtime_ns) != (status.st_size, status.st_mtime_ns):
            return None
        racy = entry.mtime_ns >= found.written_ns - manifest.RACY_SECONDS * 10**9
        if racy and manifest.file_hash(Path(real)) != entry.sums.file_hash:
            return None
        return entry.sums


def _compute(real: str) -> FileSums:
    from migrator.source_checksum import checksum  # noqa: PLC0415

    data = Path(real).read_bytes()
    return FileSums(checksum(data), hashlib.sha256(data).hexdigest())


_SUMS: dict[Path, Sums] = {}


def sums_for(repo: Repo) -> Sums:
    """One per script directory: a repo's tenants, each a Repo of its own (migrator.tenants), share the files,
    and a Sums each would keep the manifest in memory once per tenant."""
    found = _SUMS.get(repo.script_location)
    if found is None:
        found = _SUMS[repo.script_location] = Sums(repo)
    return found
