"""One revision file as Alembic would load it: its bytes, proof that it compiles, then what its text says.

Alembic imports each file (SourceFileLoader), which fails where the source does not compile. A fresh
byte-compiled file proves that it compiles (the image's unchecked-hash .pyc, or the timestamp .pyc CPython
writes in development, validated as CPython's import validates it); else compile() does. The text is then
decoded as CPython decodes it and read by migrator.revision_text, and by the parser (migrator.revision_ast)
where the text alone cannot be certain.
"""

from __future__ import annotations

import _imp
import hashlib
import os
import re
import stat
import sys
from importlib.util import MAGIC_NUMBER, cache_from_source, source_hash

from migrator.errors import Uncertain
from migrator.revision_text import RevisionFile, checked_revision, read_assignments

# Compiled when first needed (re caches it): only a file that mentions an encoding needs it.
_COOKIE = rb"(?m)^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)"


def read_script(path: str | os.PathLike[str], shown: str | None = None,
                hashes: dict[str, tuple[str, str]] | None = None) -> RevisionFile:
    """What Alembic would read from the revision file at `path` (a real path); Uncertain when unsure."""
    path = os.fspath(path)
    shown = shown or os.path.basename(path)
    data, status = _read(path, shown)
    _prove_compiles(path, data, status, shown)
    found = parse_script(_decode(data, shown), shown)
    if hashes is not None:
        hashes[found.revision] = (path, hashlib.sha256(data).hexdigest())
    return found


def _read(path: str, shown: str) -> tuple[bytes, os.stat_result]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO must not hang the start
    except OSError as exc:
        raise Uncertain(f"{shown}: cannot be read ({exc.strerror})") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise Uncertain(f"{shown}: not a regular file")
        chunks = [os.read(fd, status.st_size + 1)]
        while chunks[-1] and sum(map(len, chunks)) != status.st_size:  # a short read, or a file that grew
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks), status
    except OSError as exc:
        raise Uncertain(f"{shown}: cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)


def _prove_compiles(path: str, data: bytes, status: os.stat_result, shown: str) -> None:
    """Alembic imports the file (SourceFileLoader): it fails where this source does not compile."""
    header = _pyc_header(path)
    if header is not None and _pyc_is_fresh(header, data, status, shown):
        return  # a byte-compiled file of exactly this source exists: it compiled
    try:
        compile(data, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise Uncertain(f"{shown}: does not compile ({type(exc).__name__}: {exc})") from None


def _pyc_header(path: str) -> bytes | None:
    """The first 16 bytes of the .pyc CPython's import would use for `path`, or None."""
    try:
        fd = os.open(_pyc_path(path), os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return os.read(fd, 16)
    except OSError:
        return None
    finally:
        os.close(fd)


def _pyc_path(path: str) -> str:
    """Where CPython's import looks for the byte-compiled `path` (importlib.util.cache_from_source)."""
    if _PLAIN_CACHE:  # cache_from_source's answer in the common case, without its cost
        head, sep, name = path.rpartition(os.sep)
        return f"{head}{sep}__pycache__{os.sep}{name[:-3]}.{_CACHE_TAG}.pyc"
    return cache_from_source(path)


_CACHE_TAG = sys.implementation.cache_tag
_PLAIN_CACHE = _CACHE_TAG is not None and sys.pycache_prefix is None and not sys.flags.optimize


def _pyc_is_fresh(header: bytes, data: bytes, status: os.stat_result, shown: str) -> bool:
    """CPython's own validation (importlib._bootstrap_external: _classify_pyc, _validate_*_pyc)."""
    if len(header) < 16 or header[:4] != MAGIC_NUMBER:
        return False
    flags = int.from_bytes(header[4:8], "little")
    if flags & ~0b11:
        return False
    if not flags & 0b1:  # timestamp-based: source mtime and size, as CPython compares them
        return (header[8:12] == (int(status.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
                and header[12:16] == (status.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
    if header[8:16] == source_hash(data):
        return True
    checked = _imp.check_hash_based_pycs != "never" and (flags & 0b10 or _imp.check_hash_based_pycs == "always")
    if not checked:
        # CPython would run the stale bytecode, not this text: what the text says is not what Alembic sees
        raise Uncertain(f"{shown}: its unchecked .pyc was compiled from another version of the file (Alembic "
                        f"would run that .pyc: byte-compile the file again)")
    return False


def _decode(data: bytes, shown: str) -> str:
    """The source text as CPython decodes it (UTF-8, an optional BOM, universal newlines)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif b"coding" in data[:400]:
        head = b"\n".join(data.split(b"\n", 2)[:2])
        cookie = re.search(_COOKIE, head)
        if cookie and cookie[1].lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
            raise Uncertain(f"{shown}: declares the encoding {cookie[1].decode('ascii', 'replace')}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Uncertain(f"{shown}: is not UTF-8") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text



def parse_script(text: str, shown: str) -> RevisionFile:
    """The four names' values from source that compiles; Uncertain unless every use of them is certain."""
    text = "\n" + text  # every line, the first included, starts after a newline (line n is after the n-th)
    values, needs_parser = read_assignments(text, shown)
    if needs_parser:
        from migrator.revision_ast import check_tree  # noqa: PLC0415  (the few files the text cannot clear)

        check_tree(text, shown)
    return checked_revision(values, shown)
