"""One exception class per failure class, each carrying its exit code.

The CLI is the only place that turns these into a process exit; everything below it raises. The message of
each exception is the one actionable line printed first when the process fails.
"""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
UNREACHABLE = 3
LOCK_TIMEOUT = 4
NOT_AT_HEAD = 5
PARTIAL = 6
TENANTS_FAILED = 7
INTERRUPTED_SIGINT = 130
OUTPUT_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for a command its pipe's reader left
INTERRUPTED_SIGTERM = 143

EXIT_CODES: dict[int, str] = {
    OK: "ok (also: already at head, nothing to roll back, a newer database accepted by --allow-newer)",
    FAILED: "a migration or seed failed (the message says what stays applied), or lint found problems, or a "
            "verify check failed",
    USAGE: "usage, configuration or revision error (bad argument, URL, setting or file; unknown or ambiguous "
           "revision; several heads; an env.py that does not delegate; a pooler that does not keep the "
           "session; a newer database without --allow-newer; a database verify may not use: not empty without "
           "--wipe; an applied migration whose file changed or is missing, unless MIGRATOR_VALIDATE says warn "
           "or off)",
    UNREACHABLE: "database unreachable, refused the connection (authentication, missing database, SSL), or "
                 "the connection was lost during the run",
    LOCK_TIMEOUT: "the migration lock was not acquired within MIGRATOR_LOCK_TIMEOUT, or was lost during the "
                  "run (the run stopped before its next step), or the version table stayed locked by another "
                  "session or a prepared transaction as long",
    NOT_AT_HEAD: "not at head (status --check, wait timed out, seed before migrate)",
    PARTIAL: "a non-transactional migration was left part-way: an operator decides (status, resolve)",
    TENANTS_FAILED: "one or more tenants failed or were not reached, and every other tenant was done: a line per "
                    "failed tenant gives its own exit code and reason, and the last line counts them (retrying "
                    "runs only what is left)",
    INTERRUPTED_SIGINT: "interrupted by SIGINT (within 10 s of the signal)",
    OUTPUT_CLOSED: "standard output was closed by its reader (migrator sql piped to head): the output stops "
                   "there, quietly, as after SIGPIPE",
    INTERRUPTED_SIGTERM: "interrupted by SIGTERM (within 10 s of the signal)",
}


class Uncertain(Exception):
    """The revision files' text alone cannot answer (migrator.revision_text); Alembic's full path must. The
    message names the file and the reason. Not a failure: the caller takes Alembic's path."""


class MigratorError(Exception):
    """Base class: a failure the user can act on, with its exit code."""

    exit_code = FAILED


class MigrationFailed(MigratorError):
    """A migration or a seed raised; its transaction was rolled back."""

    exit_code = FAILED


class LintFailed(MigratorError):
    """squawk reported dangerous DDL; `report` is what it said."""

    exit_code = FAILED

    def __init__(self, message: str, report: str) -> None:
        super().__init__(message)
        self.report = report


class ConfigError(MigratorError):
    """Bad environment, configuration file, URL, path or value."""

    exit_code = USAGE


class RevisionError(MigratorError):
    """Unknown, ambiguous or unusable revision; several heads; bad revision files."""

    exit_code = USAGE


class DatabaseUnreachable(MigratorError):
    """The database did not accept a connection in time, or refused our credentials."""

    exit_code = UNREACHABLE


class ConnectionLost(MigratorError):
    """An established connection broke or stopped answering (reset, terminated backend, stall, failover)."""

    exit_code = UNREACHABLE


class LockTimeout(MigratorError):
    """Another migrator held the migration lock longer than MIGRATOR_LOCK_TIMEOUT."""

    exit_code = LOCK_TIMEOUT


class LockLost(MigratorError):
    """This process no longer holds the migration lock; the run stopped before its next step."""

    exit_code = LOCK_TIMEOUT


class PartiallyApplied(MigratorError):
    """A non-transactional migration committed part of itself and did not finish: an operator decides."""

    exit_code = PARTIAL


class TenantsFailed(MigratorError):
    """Some tenants of a repo failed (each with its own error), the others were done."""

    exit_code = TENANTS_FAILED


class NotAtHead(MigratorError):
    """The database is not at the head revision of the scripts."""

    exit_code = NOT_AT_HEAD


class OutputClosed(Exception):
    """The reader of standard output went away; the command stops writing (exit 141, nothing logged)."""


class Interrupted(KeyboardInterrupt):
    """Raised from the SIGTERM handler.

    A KeyboardInterrupt subclass on purpose: psycopg cancels the running statement on the server when a
    KeyboardInterrupt reaches it mid-query, and SQLAlchemy rolls the transaction back, so a terminated
    migration leaves nothing behind.
    """

    def __init__(self, signal_name: str = "SIGTERM", exit_code: int = INTERRUPTED_SIGTERM,
                 detail: str | None = None) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.exit_code = exit_code
        self.detail = detail  # what is known about the work that was running, once someone found out


# The codes each command can end with, out of EXIT_CODES: every command may be interrupted (130, 143) or given bad
# input (2); those that reach a database may lose it (3) or get an SQL error (1); those that take the migration
# lock may time out on it (4); those that print results to stdout may find it closed (141).
_ANY = (OK, USAGE, INTERRUPTED_SIGINT, INTERRUPTED_SIGTERM)
_DATABASE = (FAILED, UNREACHABLE)
COMMAND_EXIT_CODES: dict[str, frozenset[int]] = {
    "migrate": frozenset((*_ANY, *_DATABASE, LOCK_TIMEOUT, PARTIAL, TENANTS_FAILED)),
    "rollback": frozenset((*_ANY, *_DATABASE, LOCK_TIMEOUT, PARTIAL)),
    "seed": frozenset((*_ANY, *_DATABASE, LOCK_TIMEOUT, NOT_AT_HEAD, PARTIAL, TENANTS_FAILED)),
    "status": frozenset((*_ANY, *_DATABASE, NOT_AT_HEAD, PARTIAL, OUTPUT_CLOSED, TENANTS_FAILED)),
    "wait": frozenset((*_ANY, *_DATABASE, NOT_AT_HEAD)),
    "sql": frozenset((*_ANY, UNREACHABLE, OUTPUT_CLOSED)),  # 3 with --from current, which reads the database
    "new": frozenset((*_ANY, OUTPUT_CLOSED)),
    "lint": frozenset((*_ANY, FAILED, OUTPUT_CLOSED)),
    "history": frozenset((*_ANY, *_DATABASE, OUTPUT_CLOSED, TENANTS_FAILED)),
    "resolve": frozenset((*_ANY, *_DATABASE, LOCK_TIMEOUT)),
    "init": frozenset((*_ANY, OUTPUT_CLOSED)),
    "verify": frozenset((*_ANY, *_DATABASE, LOCK_TIMEOUT, OUTPUT_CLOSED)),
    "manifest": frozenset((*_ANY, OUTPUT_CLOSED)),
}


def exit_code_table(command: str | None = None) -> str:
    """The exit codes as printed by --help and documented in the README; for `command`, only those it can end with."""
    codes = COMMAND_EXIT_CODES[command] if command is not None else EXIT_CODES.keys()
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items() if code in codes)
