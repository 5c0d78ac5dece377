"""The actions of an ALTER, in Ecto's words: `add column age, drop constraint users_email_key`,
`alter column name type text`, `foreign key (user_id) references users not valid` (migrator.statements
describes the rest of a statement).
"""

from __future__ import annotations

from collections.abc import Callable

from migrator import sql_tokens

TAIL_CAP = 120  # all actions of an ALTER, rendered; more become `, ...`
_CONSTRAINTS = {"PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "EXCLUDE"}


def _join(w: sql_tokens.Words, actions: list[str]) -> str:
    """`add column a, drop column b`; what the head cut off or what would make it long becomes `, ...`."""
    if w.cut and len(actions) > 1:
        actions[-1] = "..."
    elif w.cut and actions and not actions[-1].endswith("..."):
        actions[-1] += " ..."
    text = ""
    for k, action in enumerate(actions):
        if k and len(text) + len(action) > TAIL_CAP:
            return text + ", ..."
        text += (", " if k else "") + action
    return text


def actions(w: sql_tokens.Words, i: int) -> str:
    """The comma-separated actions from i on, each rendered as written (names folded)."""
    return _join(w, [w.render(a, b) for a, b in sql_tokens.split_parts(w, i)])


def alter_table(w: sql_tokens.Words, i: int) -> tuple[str, bool]:
    """Each action of an ALTER TABLE (`add column age, drop constraint users_email_key`); CONCURRENTLY?"""
    concurrent = False
    parts = []
    for a, b in sql_tokens.split_parts(w, i):
        if w.up(a) == "DETACH" and w.find(a, "CONCURRENTLY", b) is not None:
            concurrent = True
        parts.append(_table_action(w, a, b))
    return _join(w, parts), concurrent


def _table_action(w: sql_tokens.Words, a: int, b: int) -> str:
    """One action of an ALTER TABLE; a column's name where PostgreSQL lets the word COLUMN be left out."""
    action = _TABLE_ACTIONS.get(w.up(a))
    return (action(w, a, b) if action is not None else None) or w.render(a, b)


def _add(w: sql_tokens.Words, a: int, b: int) -> str:
    sub = w.up(a + 1)
    if sub == "CONSTRAINT":
        return f"add constraint {w.name(a + 2)} {_constraint(w, a + 3, b)}".rstrip()
    if sub in _CONSTRAINTS:
        return f"add {_constraint(w, a + 1, b)}"
    k = w.skip(a + 2 if sub == "COLUMN" else a + 1, {"IF", "NOT", "EXISTS"})
    return f"add column {w.name(k)}".rstrip()


def _drop(w: sql_tokens.Words, a: int, b: int) -> str:
    sub = w.up(a + 1)
    subject = sub.lower() if sub in ("COLUMN", "CONSTRAINT") else "column"
    k = w.skip(a + 2 if sub in ("COLUMN", "CONSTRAINT") else a + 1, {"IF", "EXISTS"})
    return f"drop {subject} {w.name(k)}".rstrip()


def _alter_column(w: sql_tokens.Words, a: int, b: int) -> str | None:
    sub = w.up(a + 1)
    if sub == "CONSTRAINT":
        return None
    k = a + 2 if sub == "COLUMN" else a + 1
    end = w.find(k + 1, "USING", b) or b  # TYPE ... USING <expression>
    return f"alter column {w.name(k)} {w.render(k + 1, end)}".rstrip()


def _rename(w: sql_tokens.Words, a: int, b: int) -> str | None:
    sub = w.up(a + 1)
    if sub == "TO":
        return None
    subject = sub.lower() if sub in ("COLUMN", "CONSTRAINT") else "column"
    k = a + 2 if sub in ("COLUMN", "CONSTRAINT") else a + 1
    return f"rename {subject} {w.name(k)} to {w.name(k + 2)}".rstrip()


_TABLE_ACTIONS: dict[str, Callable[[sql_tokens.Words, int, int], str | None]] = {
    "ADD": _add, "DROP": _drop, "ALTER": _alter_column, "RENAME": _rename,
}


def _constraint(w: sql_tokens.Words, k: int, b: int) -> str:
    """`unique (email)`, `check (age > 0)`, `foreign key (user_id) references users not valid`."""
    if w.up(k) != "FOREIGN":
        return w.render(k, b)
    references = w.find(k, "REFERENCES", b)
    if references is None or w.up(k + 1) != "KEY" or w.word(k + 2) != "(":
        return w.render(k, b)
    text = f"foreign key {w.render(k + 2, w.close(k + 2))} references {w.name(references + 1)}"
    not_valid = any(w.up(j) == "NOT" and w.up(j + 1) == "VALID" for j in range(references + 2, b))
    return text + (" not valid" if not_valid else "")
