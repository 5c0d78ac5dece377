"""The manifest of the revision files (migrator.manifest): trusted only while the cheap check shows the
directory as it was written, and then the no-op path reads no revision file; stale or missing, the scanner
reads them. What the check guarantees: any change of a file's size or mtime, any added, removed or renamed
file, and any change to a file modified within RACY_SECONDS before the manifest was written; not an edit
that keeps a file's size and sets its mtime back to the recorded nanosecond.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from migrator import file_sums, manifest
from migrator.repos import Repo, load_repos
from tests.conftest import FIRST, HEAD, add_revision, migrator_env, run_migrator

HOUR_NS = 3600 * 10**9


def repo_of(project: Path) -> Repo:
    [repo] = load_repos(project)
    return repo


def versions(project: Path) -> Path:
    return project / "migrations" / "versions"


def age(project: Path) -> None:
    """Files and their directory last written an hour ago, as in a checkout or an image layer: not racy, so
    that the check trusts the directory's mtime for the set of files and stats each recorded file."""
    for path in [*versions(project).glob("*.py"), versions(project)]:
        status = path.stat()
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns - HOUR_NS))


def same_size_edit(path: Path) -> None:
    """Change the SQL, keep the size, and set the mtime back to what it was (touch -r)."""
    status = path.stat()
    path.write_text(path.read_text().replace('"bio"', '"bip"'))
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert path.stat().st_size == status.st_size


def test_a_trusted_manifest_says_what_the_scanner_says(project: Path) -> None:
    repo = repo_of(project)
    scanned = manifest.view(repo)
    manifest.write(repo)
    found = manifest.trusted(repo)
    assert scanned is not None and found is not None
    assert (found[1].heads, found[1].digest) == (scanned.heads, scanned.digest) == (frozenset({HEAD}), scanned.digest)
    assert {rev: (s.parents, s.file_hash) for rev, s in found[1].revisions().items()} == \
        {rev: (s.parents, s.file_hash) for rev, s in scanned.revisions().items()}


def test_a_changed_size_or_mtime_or_set_of_files_makes_it_stale(project: Path) -> None:
    repo = repo_of(project)
    age(project)
    first = versions(project) / f"{FIRST}_create_users.py"
    manifest.write(repo)
    original = first.read_bytes(), first.stat()

    first.write_bytes(original[0] + b"# more\n")
    assert manifest.trusted(repo) is None  # size
    first.write_bytes(original[0])
    assert manifest.trusted(repo) is None  # same content, new mtime
    os.utime(first, ns=(original[1].st_atime_ns, original[1].st_mtime_ns))
    assert manifest.trusted(repo) is not None  # as recorded again
    add_revision(project, "20220101000000", HEAD, "pass")
    assert manifest.trusted(repo) is None  # an added file
    (versions(project) / "20220101000000_change.py").unlink()
    assert manifest.trusted(repo) is not None
    first.rename(first.with_name(f"{FIRST}_renamed.py"))
    assert manifest.trusted(repo) is None  # a renamed file


def test_a_same_size_edit_within_the_racy_window_is_caught(project: Path) -> None:
    """A file written just before the manifest: a second write in the same clock tick would keep its mtime,
    so its content is hashed on every check."""
    repo = repo_of(project)
    first = versions(project) / f"{FIRST}_create_users.py"
    first.write_bytes(first.read_bytes())  # written now
    manifest.write(repo)
    assert manifest.trusted(repo) is not None
    same_size_edit(first)
    assert manifest.trusted(repo) is None


def test_a_file_added_within_the_racy_window_is_seen(project: Path) -> None:
    """A file added in the same clock tick as the directory's recorded mtime leaves that mtime as it was: a
    directory modified within the racy window is listed, not trusted."""
    repo = repo_of(project)
    os.utime(versions(project))  # modified just now, as by `migrator new`
    manifest.write(repo)
    recorded = versions(project).stat()
    add_revision(project, "20220101000000", HEAD, "pass")
    os.utime(versions(project), ns=(recorded.st_atime_ns, recorded.st_mtime_ns))
    assert manifest.trusted(repo) is None


def test_an_older_files_same_size_edit_with_its_mtime_set_back_is_not_seen(project: Path) -> None:
    """The documented limit of the cheap check: size and mtime (to the nanosecond) are all it compares for a
    file older than the racy window. `migrator manifest` (the image build) records the edit."""
    repo = repo_of(project)
    age(project)
    manifest.write(repo)
    found = manifest.trusted(repo)
    assert found is not None
    same_size_edit(versions(project) / f"{FIRST}_create_users.py")
    again = manifest.trusted(repo)
    assert again is not None and again[1].digest == found[1].digest
    manifest.write(repo)
    rewritten = manifest.trusted(repo)
    assert rewritten is not None and rewritten[1].digest != found[1].digest


def test_migrate_does_not_trust_a_stale_manifest(project: Path, database_url: str) -> None:
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    assert run_migrator(["manifest"], cwd=project, database_url=None).returncode == 0
    time.sleep(0.01)
    path = versions(project) / f"{FIRST}_create_users.py"
    path.write_text(path.read_text().replace('"bio"', '"biography"'))
    proc = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_LOG_LEVEL="debug")
    assert proc.returncode == 2
    stale = (f"[debug] manifest {project / 'migrations' / '.migrator-manifest'} is stale (a revision file was "
             "added, removed or changed since it was written): the scanner reads every revision file")
    assert stale in proc.stderr


def test_with_a_trusted_manifest_the_no_op_reads_no_revision_file(project: Path, database_url: str) -> None:
    """Shown with the check's blind spot: an edit it cannot see goes unseen while the manifest is trusted
    (nothing read the file), and is refused once the manifest is gone (the scanner reads the files)."""
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 0
    age(project)
    assert run_migrator(["manifest"], cwd=project, database_url=None).returncode == 0
    same_size_edit(versions(project) / f"{FIRST}_create_users.py")
    trusted = run_migrator(["migrate"], cwd=project, database_url=database_url, MIGRATOR_LOG_LEVEL="debug")
    assert trusted.returncode == 0, trusted.stderr
    assert "manifest" not in trusted.stderr  # no debug line: neither missing nor stale
    (project / "migrations" / ".migrator-manifest").unlink()
    assert run_migrator(["migrate"], cwd=project, database_url=database_url).returncode == 2


def test_new_writes_the_manifest(project: Path) -> None:
    proc = run_migrator(["new", "add users age"], cwd=project, database_url=None)
    assert proc.returncode == 0, proc.stderr
    revision = Path(proc.stdout.strip()).name.split("_", 1)[0]
    found = manifest.trusted(repo_of(project))
    assert found is not None and found[1].heads == frozenset({revision})


# What an image start reads when its manifest is trusted: the scanner, the checksum's passes and the failure
# explanations are imported only by the runs that need them (a start pays for every module it imports).
LOADED = ("import sys\nfrom migrator.cli import main\ncode = main(['migrate'])\n"
          "print(code, ' '.join(sorted(m for m in sys.modules if m.startswith('migrator.'))))\n")
NOT_ON_THE_START_PATH = {"migrator.revision_scan", "migrator.revision_text", "migrator.revision_file",
                         "migrator.source_tokens", "migrator.source_lines", "migrator.source_brackets",
                         "migrator.failures"}


def test_a_migrate_with_a_trusted_manifest_loads_no_scanner(project: Path, database_url: str) -> None:
    age(project)
    assert run_migrator(["manifest"], cwd=project, database_url=None).returncode == 0
    proc = subprocess.run([sys.executable, "-c", LOADED], cwd=project, capture_output=True, text=True, timeout=120,
                          env=migrator_env(database_url), check=False)
    code, loaded = proc.stdout.split(" ", 1)
    assert code == "0", proc.stderr
    assert "migrator.migrations" in loaded.split()  # it applied the migrations (validated, checksums recorded)
    assert NOT_ON_THE_START_PATH.isdisjoint(loaded.split())


def test_file_sums_resolve_paths_as_realpath_does(project: Path, tmp_path: Path) -> None:
    """file_sums.Sums resolves a revision file's directory once per run, not each path component per step: the
    path it keys by is still os.path.realpath's, through a linked directory and for a file that is a link."""
    outside = tmp_path / "outside.py"
    outside.write_text("# kept elsewhere\n")
    (versions(project) / "linked_file.py").symlink_to(outside)
    link = tmp_path / "project_link"
    link.symlink_to(project)
    sums = file_sums.Sums(repo_of(project))
    for path in [versions(project) / f"{FIRST}_create_users.py", link / "migrations" / "versions" / f"{HEAD}_x.py",
                 link / "migrations" / "versions" / "linked_file.py", versions(project) / "linked_file.py"]:
        assert sums._real(str(path)) == os.path.realpath(path)
    assert sums._real(str(versions(project) / "linked_file.py")) == str(outside.resolve())
