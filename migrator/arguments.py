"""The `migrator` command line's arguments: every subcommand, its options, and their types (durations within
their bounds, revisions never empty, counts within reason); a bad argument is a ConfigError (exit 2, one line).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from migrator import __version__, errors
from migrator.config import WAIT_INTERVAL, WAIT_TIMEOUT, Bounds, parse_seconds
from migrator.errors import ConfigError

DESCRIPTION = """\
Database migrations for PostgreSQL, for release images: Alembic migrations run once, under a lock, one
transaction per migration, logged as Ecto does. Settings come from the environment (DATABASE_URL or PG*,
DATABASE_PASSWORD_FILE, MIGRATOR_*); see the README."""

EPILOG = f"""\
exit codes:
{errors.exit_code_table()}
"""


def _epilog(command: str) -> str:
    return f"exit codes:\n{errors.exit_code_table(command)}\n"


HISTORY_LIMIT_MAX = 1_000_000  # rows `history --limit` may ask for

# What --repo means to each command when migrator.toml lists several databases.
REPO_ALL = "only this database of migrator.toml; default: every one, in the file's order"
REPO_ONE = "the database of migrator.toml to work on: required when it lists several"
REPO_HELP = {"rollback": REPO_ONE, "sql": REPO_ONE, "new": REPO_ONE, "lint": REPO_ONE, "resolve": REPO_ONE,
             "verify": REPO_ONE,
             "migrate": REPO_ALL + " (with --to: required when it lists several)"}
# --tenant: the commands that reach a repo's database(s), and what it means to each.
TENANT_ALL = ("only this tenant of the repo that lists tenants (migrator.toml's tenants or tenants_query); "
              "default: every tenant this process takes (MIGRATOR_TENANT_SHARDS)")
TENANT_ONE = "the tenant to work on, of a repo that lists tenants: required there"
TENANT_HELP = {"migrate": TENANT_ALL, "seed": TENANT_ALL, "status": TENANT_ALL, "wait": TENANT_ALL,
               "history": TENANT_ALL, "rollback": TENANT_ONE, "resolve": TENANT_ONE,
               "sql": TENANT_ONE + " (with --from current)"}


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors raised as ConfigError so they get the one-line treatment and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see {self.prog} --help)")


Command = Callable[[str, str], Parser]


def build_parser() -> Parser:
    parser = Parser(prog="migrator", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"migrator {__version__}")
    parser.add_argument("-C", "--project-dir", type=Path, default=None, metavar="DIR",
                        help="directory holding migrations/, seeds/ and migrator.toml (default: the working directory)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, required=True)

    def command(name: str, text: str) -> Parser:
        p: Parser = sub.add_parser(name, help=text, description=text, epilog=_epilog(name),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
        _repo_options(p, name)
        return p

    _changing_commands(command)
    _reading_commands(command)
    _offline_commands(command)
    _verify_command(command)
    _init_command(sub)
    return parser


def _changing_commands(command: Command) -> None:
    """The commands that change the database: migrate, rollback, seed, resolve."""
    p = command("migrate", "upgrade to the head revision (or --to REV)")
    p.add_argument("--to", type=_revision, metavar="REV",
                   help="stop at this revision (required when there are several heads)")
    _allow_newer(p, "exit 0 without migrating")

    p = command("rollback", "downgrade so that REV is the newest applied revision (base undoes everything)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("revision", nargs="?", type=_revision, metavar="REV",
                        help="revision that stays applied, or base")
    target.add_argument("--steps", type=_positive, metavar="N", help="undo the newest N migrations")
    p.add_argument("--dry-run", action="store_true", help="log what would be reverted; change nothing")

    p = command("seed", "run the seed files in seeds/ whose content has not run yet")
    p.add_argument("--force", action="store_true", help="run every seed file, changed or not")
    _allow_newer(p, "exit 0 without seeding (the newer release's seeds apply)")

    p = command("resolve", "decide a migration left part-way (exit 6): run it again, or mark it done by hand; or "
                "accept an applied migration's changed or removed file")
    p.add_argument("revision", type=_revision, metavar="REV",
                   help="the revision `migrator status` shows as left part-way, changed or missing")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--rerun", action="store_true", help="the next migrate runs it again (after you undid its "
                     "committed part, or if it is safe to repeat)")
    how.add_argument("--mark-applied", action="store_true", help="you completed it by hand: stamp its version")
    how.add_argument("--accept-checksum", action="store_true", help="its file changed (or is gone) on purpose: "
                     "validation compares with the file as it is now (recorded in the history)")


def _reading_commands(command: Command) -> None:
    """The commands that only read the database: status, wait, history."""
    p = command("status", "show current revision(s), head(s) and pending revisions")
    p.add_argument("--json", action="store_true", help="one JSON object per database on stdout")
    p.add_argument("--check", action="store_true", help="exit 5 when a database is not at head (6 when a "
                   "migration was left part-way)")
    _allow_newer(p, "count it as at head for --check")

    p = command("wait", "wait until every database is at the head this image knows (never migrates)")
    p.add_argument("--timeout", type=_bounded(WAIT_TIMEOUT), default=300.0, metavar="S",
                   help="give up (exit 5) after S seconds (default 300)")
    p.add_argument("--interval", type=_bounded(WAIT_INTERVAL), default=2.0, metavar="S",
                   help="poll every S seconds (default 2, at least 0.1)")
    _allow_newer(p, "start the app")

    p = command("history", "show the migration history: every migration and rollback, who ran it, how it ended")
    p.add_argument("--json", action="store_true", help="one JSON object per row on stdout")
    p.add_argument("--limit", type=_positive_up_to(HISTORY_LIMIT_MAX), default=50, metavar="N",
                   help=f"the newest N rows (default 50, at most {HISTORY_LIMIT_MAX})")


def _offline_commands(command: Command) -> None:
    """The commands that need no database: sql, new, lint, manifest."""
    p = command("sql", "print the SQL of a range of migrations, rendered offline (no database needed)")
    p.add_argument("--from", dest="start", default="base", type=_revision, metavar="REV",
                   help="start after this revision (default base; `current` asks the database)")
    p.add_argument("--to", dest="end", default="heads", type=_revision, metavar="REV",
                   help="end at this revision (default heads); below --from renders a rollback")

    p = command("new", "create a revision file with a timestamp id on top of the head")
    p.add_argument("message", help="what the migration does, e.g. \"add users.age\"")

    p = command("lint", "check the migrations' SQL with squawk (dangerous locks, unsafe DDL)")
    p.add_argument("--from", dest="start", default="base", type=_revision, metavar="REV",
                   help="only revisions after REV")

    command("manifest", "write the manifest of the revision files (migrations/.migrator-manifest), which lets a "
            "no-op start skip reading every file; image builds run it")


def _verify_command(command: Command) -> None:
    p = command("verify", "check the migrations on a throwaway database (CI): one head, every upgrade, each "
                "downgrade restores the schema, no drift from the models, offline SQL; exit 1 when a check fails")
    p.add_argument("--database-url", metavar="URL", help="verify on this database instead of an embedded PostgreSQL "
                   "(default: DATABASE_URL when set); it must be empty, or --wipe; no password in it (PGPASSWORD, "
                   "DATABASE_PASSWORD_FILE or ~/.pgpass)")
    p.add_argument("--wipe", action="store_true", help="the named database may be emptied first (everything in it "
                   "is dropped)")
    p.add_argument("--strict", action="store_true", help="a revision that cannot render offline fails the check")
    p.add_argument("--downgrades-from", metavar="REV", help="check up/down/up from REV on; earlier revisions only "
                   "upgrade (for a history whose old downgrades are not kept up)")


def _init_command(sub: Any) -> None:  # argparse._SubParsersAction, private in typeshed
    text = ("create migrations/, seeds/, migrator.toml, migrator.Dockerfile and Helm values for the app in the "
            "project directory; never overwrites a file")
    p = sub.add_parser("init", help=text, description=text, epilog=_epilog("init"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adopt", action="store_true", help="take over the Alembic project of alembic.ini instead: keep "
                   "its versions/, rewrite its env.py to delegate to migrator (the original kept as env.py.orig)")
    p.add_argument("--config", metavar="PATH", help="with --adopt: the project's alembic.ini when it is not "
                   "./alembic.ini (as `alembic -c PATH`, relative to the project directory); migrator.toml then "
                   "names it, so that migrator reads it too")


def _repo_options(parser: Parser, command: str) -> None:
    """--repo, and --tenant for the commands that reach a repo's tenants."""
    parser.add_argument("--repo", metavar="NAME", help=REPO_HELP.get(command, REPO_ALL))
    if command in TENANT_HELP:
        parser.add_argument("--tenant", metavar="NAME", help=TENANT_HELP[command])


def _allow_newer(parser: Parser, then: str) -> None:
    parser.add_argument("--allow-newer", action="store_true", help="when the database is at a revision this image "
                        "does not know (a newer release), and the migration history proves it descends from this "
                        f"image's head(s), {then}; for expand/contract migrations (old code works on the new schema)")


def _bounded(bounds: Bounds) -> Callable[[str], float]:
    """An argparse type: a duration within `bounds`, the message saying the allowed range."""
    def parse(value: str) -> float:
        try:
            return parse_seconds("value", value, bounds)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value=")) from None
    return parse


def _revision(value: str) -> str:
    """A revision argument: an id (or a unique prefix of one), base, head(s); never empty."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty revision: give a revision id (or a unique prefix of it), base or "
                                         "head")
    return value


def _positive_up_to(high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = _positive(value)
        if number > high:
            raise argparse.ArgumentTypeError(f"{value!r} is more than {high}")
        return number
    return parse


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return int(value)

