"""The contract between migrator.alembic_internals and Alembic.

migrator uses a few things Alembic does not document (step plans, a revision's parents, the autocommit block,
the `context` module's proxy). Each is pinned here against the installed Alembic, so that upgrading Alembic
fails these tests first, naming what to review, instead of failing a migration in production. They run on the
newest Alembic (the image's pin, installed here) and, through tests/alembic_versions, on the oldest that
pyproject.toml allows.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import alembic
import pytest
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import ScriptDirectory
from alembic.script.revision import MultipleHeads, RangeNotAncestorError, ResolutionError

from migrator import alembic_internals as internals
from migrator.errors import ConfigError, RevisionError

# The Alembic releases whose internals were reviewed (the oldest pyproject.toml allows, the newest the image
# pins), each with the source hash of the method migrator re-implements (alembic_internals.autocommit_block).
# Between these two its source differs only in a comment and an annotation. A new Alembic must be reviewed
# before it joins.
REVIEWED_AUTOCOMMIT_BLOCK = {
    "1.13.0": "eef7db4a754c15139246e9f2a06f40eafe150dac51c7886853374ee782d1a87c",
    "1.20.1": "6c2d3eb63446285e22c57a081efb6038a204d57fc5e162749d07b68784891e2b",
}


def write_history(root: Path, revisions: dict[str, str | tuple[str, ...] | None]) -> Config:
    versions = root / "versions"
    versions.mkdir(parents=True)
    (root / "env.py").write_text("")
    for rev, down in revisions.items():
        (versions / f"{rev}_x.py").write_text(f"revision = {rev!r}\ndown_revision = {down!r}\nbranch_labels = None\n"
                                              "depends_on = None\ndef upgrade(): pass\ndef downgrade(): pass\n")
    config = Config()
    config.set_main_option("script_location", str(root))
    return config


@pytest.fixture
def merged(tmp_path: Path) -> ScriptDirectory:
    """a -> (b -> b2, c) -> m -> d -> e: a branch and its merge."""
    config = write_history(tmp_path, {"a": None, "b": "a", "c": "a", "b2": "b", "m": ("b2", "c"), "d": "m",
                                      "e": "d"})
    return ScriptDirectory.from_config(config)


def test_the_reviewed_alembic_is_installed() -> None:
    assert alembic.__version__ in REVIEWED_AUTOCOMMIT_BLOCK, "review alembic_internals against the new Alembic first"


def test_autocommit_block_is_the_reviewed_one() -> None:
    source = inspect.getsource(MigrationContext.autocommit_block)
    assert hashlib.sha256(source.encode()).hexdigest() == REVIEWED_AUTOCOMMIT_BLOCK[alembic.__version__], (
        "Alembic's autocommit_block changed: compare it with alembic_internals.autocommit_block")


def test_step_plans_and_their_fields(merged: ScriptDirectory) -> None:
    up = internals.upgrade_plan(merged, "heads", ())
    assert all(isinstance(step, RevisionStep) for step in up)
    assert [internals.step_script(s).revision for s in up][-1] == "e"
    down = internals.downgrade_plan(merged, "c", ("e",))
    assert [internals.step_script(s).revision for s in down] == ["e", "d", "m"]
    assert set(internals.step_destination(down[-1])) == {"b2", "c"}
    assert internals.parents(merged.get_revision("m")) == ("b2", "c")
    assert internals.known_parents(merged)["a"] == ()


def test_revisions_are_every_loaded_revision_once(tmp_path: Path) -> None:
    """alembic_internals.revisions reads the revision map's entries: each revision once, whatever else the map
    keys (None, (), branch labels), the same set walk_revisions() walks."""
    config = write_history(tmp_path, {"a": None, "b": "a", "c": "a", "m": ("b", "c")})
    labelled = tmp_path / "versions" / "b_x.py"
    labelled.write_text(labelled.read_text().replace("branch_labels = None", "branch_labels = ('feature',)"))
    script = ScriptDirectory.from_config(config)
    found = [s.revision for s in internals.revisions(script)]
    assert sorted(found) == ["a", "b", "c", "m"]
    assert set(found) == {s.revision for s in script.walk_revisions()}


def test_relative_downgrade_is_alembics_own(merged: ScriptDirectory) -> None:
    """`rollback --steps N` is Alembic's `downgrade -N`: what it walks, migrator walks; what it refuses, too."""
    assert [internals.step_script(s).revision for s in internals.downgrade_plan(merged, "-2", ("e",))] == ["e", "d"]
    with pytest.raises(RevisionError, match=r"rollback --steps 3 is ambiguous from e"):
        internals.downgrade_plan(merged, "-3", ("e",))


def test_resolution_errors_carry_attributes(merged: ScriptDirectory, tmp_path: Path) -> None:
    with pytest.raises(ResolutionError) as unknown:
        merged.revision_map.get_revision("zz")
    assert unknown.value.argument == "zz"
    two_heads = ScriptDirectory.from_config(write_history(tmp_path / "two", {"a": None, "b": "a", "c": "a"}))
    with pytest.raises(MultipleHeads) as heads:
        two_heads.revision_map.get_revision("heads")
    assert set(heads.value.heads) == {"b", "c"}
    assert {"lower", "upper"} <= set(inspect.signature(RangeNotAncestorError.__init__).parameters)


def test_resolve_names_unknown_and_ambiguous(merged: ScriptDirectory) -> None:
    assert internals.resolve(merged, "b2") == "b2"
    with pytest.raises(RevisionError, match="unknown revision 'zz'"):
        internals.resolve(merged, "zz")
    assert internals.resolve(merged, "b") == "b"  # an exact id wins over the longer ids it prefixes


def test_the_context_proxy_reaches_migrators_environment(tmp_path: Path) -> None:
    """env.py calls `alembic.context.configure`: it must reach MigratorEnvironment.configure, which refuses an
    env.py that does not delegate."""
    config = write_history(tmp_path, {"a": None})
    (tmp_path / "env.py").write_text("from alembic import context\ncontext.configure(url='postgresql://')\n")
    script = ScriptDirectory.from_config(config)
    with pytest.raises(ConfigError, match="configures Alembic itself"):
        internals.run_env(config, script, None, lambda *_: [], as_sql=True)
    assert EnvironmentContext._setups[internals.MigratorEnvironment] is EnvironmentContext._setups[EnvironmentContext]


def test_a_broken_revision_file_is_named(tmp_path: Path) -> None:
    config = write_history(tmp_path, {"a": None})
    (tmp_path / "versions" / "b_boom.py").write_text("revision = 'b'\ndown_revision = 'a'\nraise ValueError('boom')\n")
    with pytest.raises(RevisionError, match=r"cannot load revision file .*b_boom\.py: ValueError: boom"):
        internals.load_script(config)
