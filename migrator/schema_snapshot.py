"""A database's schema as a set of named definitions, read from the catalogs, and the difference of two.

`migrator verify` compares the schema before a migration's upgrade with the schema after its downgrade. It
reads the catalogs with PostgreSQL's own `pg_get_*def` functions instead of running `pg_dump --schema-only`:

- no client binary is needed (the migrator image has none), and none can refuse the server for being newer
  than itself, as pg_dump does;
- what is compared is named and normalised here, one entry per object, so that a difference reads as "index
  public.users_email_index: CREATE INDEX ..." and not as a line number in a text diff;
- the order of columns is not compared: a downgrade that adds back a dropped column can only put it last
  (PostgreSQL has no column reordering), and Alembic's own comparison ignores it too. Everything else about a
  column is: its type, default, nullability, identity, generation expression, collation and comment.

Compared: schemas, extensions, tables (also partitioned, unlogged, foreign), views and materialized views
(their definitions), sequences, columns, constraints (domains' too), indexes, triggers, rules, row-level
security policies, functions and procedures, aggregates, enum/domain/range/composite types, extended
statistics, owners, privileges and comments on schemas, relations, columns, routines and types. Not compared:
what lives outside the database's schemas (roles, tablespaces, event triggers, publications), collations,
operators and text search objects, default privileges. Objects that belong to an extension are compared
as the extension (its version and schema). Migrator's own tables (the version table, the migration history,
the seed ledger) are left out: they exist because migrations ran, not because of what a migration did.

Names are read with an empty search_path, so that every name outside pg_catalog is schema-qualified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

Snapshot = Mapping[tuple[str, str], str]  # (kind, qualified name) -> its definition, whitespace collapsed

# An object is not a database's own when an extension created it (the extension stands for it), nor when it
# is part of another object ('i': a range type's constructor functions): `deptypes` says which apply.
_OWN = """NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass AND e.objid = {oid}
                  AND e.deptype IN ({deptypes}))"""
_USER_SCHEMA = "{nsp} !~ '^pg_' AND {nsp} <> 'information_schema'"
_ACL = ("coalesce(' acl ' || nullif(array_to_string(ARRAY(SELECT a::text FROM unnest({acl}) a ORDER BY 1), ','), ''), "
        "'')")
_COMMENT = "coalesce(' comment ' || quote_literal({description}), '')"

# Each part yields (kind, name, definition). `excluded` holds migrator's own tables, with the sequences they own.
_QUERY = f"""
WITH excluded AS (
    SELECT c.oid FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.relname = ANY(%(tables)s)
    UNION
    SELECT d.objid FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
      AND t.relkind IN ('r', 'p') AND t.relname = ANY(%(tables)s)
),
rel AS (
    SELECT c.*, c.oid AS relid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {_USER_SCHEMA.format(nsp="n.nspname")} AND c.oid NOT IN (SELECT oid FROM excluded)
      AND {_OWN.format(catalog="pg_class", oid="c.oid", deptypes="'e'")}
)
SELECT 'schema', quote_ident(n.nspname),
       'owner ' || pg_get_userbyid(n.nspowner) || {_ACL.format(acl="n.nspacl")}
       || {_COMMENT.format(description="obj_description(n.oid, 'pg_namespace')")}
FROM pg_namespace n WHERE {_USER_SCHEMA.format(nsp="n.nspname")}
UNION ALL
SELECT 'extension', quote_ident(x.extname), 'version ' || x.extversion || ' schema ' || quote_ident(n.nspname)
FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
UNION ALL
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'sequence' END,
       c.oid::regclass::text,
       'owner ' || pg_get_userbyid(c.relowner)
       || CASE c.relpersistence WHEN 'u' THEN ' unlogged' ELSE '' END
       || CASE WHEN c.relrowsecurity THEN ' row security' ELSE '' END
       || CASE WHEN c.relforcerowsecurity THEN ' forced' ELSE '' END
       || coalesce(' with ' || array_to_string(c.reloptions, ','), '')
       || coalesce(' partition by ' || pg_get_partkeydef(c.oid), '')
       || coalesce(' inherits ' || (SELECT string_agg(i.inhparent::regclass::text, ',' ORDER BY i.inhseqno)
                                    FROM pg_inherits i WHERE i.inhrelid = c.oid), '')
       || coalesce(' ' || pg_get_expr(c.relpartbound, c.oid), '')
       || CASE WHEN c.relkind IN ('v', 'm') THEN ' as ' || pg_get_viewdef(c.oid) ELSE '' END
       || coalesce((SELECT ' ' || format_type(s.seqtypid, NULL) || ' start ' || s.seqstart || ' increment '
                           || s.seqincrement || ' min ' || s.seqmin || ' max ' || s.seqmax || ' cache ' || s.seqcache
                           || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END
                    FROM pg_sequence s WHERE s.seqrelid = c.oid), '')
       || coalesce((SELECT ' owned by ' || d.refobjid::regclass::text || '.' || quote_ident(a.attname)
                    FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                    WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1), '')
       || {_ACL.format(acl="c.relacl")} || {_COMMENT.format(description="obj_description(c.oid, 'pg_class')")}
FROM rel c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
UNION ALL
SELECT 'column', c.oid::regclass::text || '.' || quote_ident(a.attname),
       format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || CASE WHEN a.attgenerated <> '' THEN ' generated as ' || pg_get_expr(ad.adbin, ad.adrelid)
               ELSE coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '') END
       || CASE a.attidentity WHEN 'a' THEN ' identity always' WHEN 'd' THEN ' identity by default' ELSE '' END
       || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
               THEN ' collate ' || a.attcollation::regcollation::text ELSE '' END
       || {_ACL.format(acl="a.attacl")}
       || {_COMMENT.format(description="col_description(c.oid, a.attnum)")}
FROM rel c JOIN pg_attribute a ON a.attrelid = c.oid JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', coalesce(c.oid::regclass::text, k.contypid::regtype::text) || ' ' || quote_ident(k.conname),
       pg_get_constraintdef(k.oid)
FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace LEFT JOIN rel c ON c.oid = k.conrelid
WHERE {_USER_SCHEMA.format(nsp="n.nspname")} AND (c.oid IS NOT NULL OR (k.conrelid = 0 AND k.contypid <> 0
      AND {_OWN.format(catalog="pg_type", oid="k.contypid", deptypes="'e'")}))
UNION ALL
SELECT 'index', x.indexrelid::regclass::text,
       pg_get_indexdef(x.indexrelid)
       || CASE WHEN NOT x.indisvalid THEN ' INVALID' ELSE '' END
       || CASE WHEN x.indisclustered THEN ' clustered' ELSE '' END
       || {_COMMENT.format(description="obj_description(x.indexrelid, 'pg_class')")}
FROM pg_index x JOIN rel c ON c.oid = x.indrelid
UNION ALL
SELECT 'trigger', c.oid::regclass::text || ' ' || quote_ident(g.tgname),
       pg_get_triggerdef(g.oid) || CASE g.tgenabled WHEN 'O' THEN '' ELSE ' enabled ' || g.tgenabled::text END
FROM pg_trigger g JOIN rel c ON c.oid = g.tgrelid WHERE NOT g.tgisinternal
UNION ALL
SELECT 'rule', c.oid::regclass::text || ' ' || quote_ident(r.rulename), pg_get_ruledef(r.oid)
FROM pg_rewrite r JOIN rel c ON c.oid = r.ev_class WHERE r.rulename <> '_RETURN'
UNION ALL
SELECT 'policy', c.oid::regclass::text || ' ' || quote_ident(p.polname),
       CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END || ' for ' || p.polcmd::text
       || ' to ' || array_to_string(ARRAY(SELECT CASE r WHEN 0 THEN 'public' ELSE pg_get_userbyid(r) END
                                          FROM unnest(p.polroles) r ORDER BY 1), ',')
       || coalesce(' using ' || pg_get_expr(p.polqual, p.polrelid), '')
       || coalesce(' with check ' || pg_get_expr(p.polwithcheck, p.polrelid), '')
FROM pg_policy p JOIN rel c ON c.oid = p.polrelid
UNION ALL
SELECT CASE p.prokind WHEN 'a' THEN 'aggregate' WHEN 'p' THEN 'procedure' ELSE 'function' END,
       p.oid::regprocedure::text,
       CASE WHEN p.prokind = 'a' THEN 'returns ' || format_type(p.prorettype, NULL)
            ELSE pg_get_functiondef(p.oid) END
       || ' owner ' || pg_get_userbyid(p.proowner) || {_ACL.format(acl="p.proacl")}
       || {_COMMENT.format(description="obj_description(p.oid, 'pg_proc')")}
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE {_USER_SCHEMA.format(nsp="n.nspname")} AND {_OWN.format(catalog="pg_proc", oid="p.oid", deptypes="'e', 'i'")}
UNION ALL
SELECT 'type', t.oid::regtype::text,
       CASE t.typtype
           WHEN 'e' THEN 'enum (' || (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                      FROM pg_enum e WHERE e.enumtypid = t.oid) || ')'
           WHEN 'd' THEN 'domain ' || format_type(t.typbasetype, t.typtypmod)
                         || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END
                         || coalesce(' default ' || t.typdefault, '')
           WHEN 'r' THEN 'range of ' || (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r
                                         WHERE r.rngtypid = t.oid)
           WHEN 'c' THEN 'composite'
           ELSE 'base' END
       || ' owner ' || pg_get_userbyid(t.typowner) || {_ACL.format(acl="t.typacl")}
       || {_COMMENT.format(description="obj_description(t.oid, 'pg_type')")}
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE {_USER_SCHEMA.format(nsp="n.nspname")} AND t.typtype IN ('b', 'c', 'd', 'e', 'r')
  AND {_OWN.format(catalog="pg_type", oid="t.oid", deptypes="'e'")}
  AND NOT (t.typtype = 'b' AND t.typcategory = 'A')  -- the array type PostgreSQL makes beside each type
  AND (t.typrelid = 0 OR (SELECT r.relkind FROM pg_class r WHERE r.oid = t.typrelid) = 'c')  -- not a row type
UNION ALL
SELECT 'statistics', quote_ident(n.nspname) || '.' || quote_ident(s.stxname), pg_get_statisticsobjdef(s.oid)
FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace JOIN rel c ON c.oid = s.stxrelid
"""  # noqa: S608  (composed of this module's constants only; the one value, `tables`, is a bound parameter)


def read(conn: psycopg.Connection[Any], leave_out: Iterable[str]) -> dict[tuple[str, str], str]:
    """The schema of `conn`'s database; tables named in `leave_out` (migrator's own) are not part of it.

    Runs in a transaction of its own, with an empty search_path so that names come out qualified; the
    connection must be idle (autocommit, or between transactions)."""
    with conn.transaction():
        conn.execute("SET LOCAL search_path = ''")
        rows = conn.execute(_QUERY, {"tables": sorted(leave_out)}).fetchall()
    return {(kind, name): " ".join((definition or "").split()) for kind, name, definition in rows}


def is_empty(snapshot: Snapshot) -> bool:
    """Nothing in it but the `public` schema and extensions: what CREATE DATABASE makes (template1's
    extensions included)."""
    return all(kind == "extension" or (kind, name) == ("schema", "public") for kind, name in snapshot)


@dataclass(frozen=True)
class Difference:
    """How `after` differs from `before`: objects only in `after`, only in `before`, or defined otherwise."""

    added: list[str]
    removed: list[str]
    changed: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self, added: str = "added", removed: str = "removed", limit: int = 3) -> str:
        """One line: `added index public.x (CREATE INDEX ...); removed ...; changed column ...`."""
        parts = [f"{added} {item}" for item in self.added] + [f"{removed} {item}" for item in self.removed]
        parts += [f"changed {item}" for item in self.changed]
        more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
        return "; ".join(parts[:limit]) + more


def compare(before: Snapshot, after: Snapshot) -> Difference:
    def shown(key: tuple[str, str], snapshot: Snapshot) -> str:
        return f"{key[0]} {key[1]} ({snapshot[key]})"

    return Difference(
        added=[shown(k, after) for k in sorted(after.keys() - before.keys())],
        removed=[shown(k, before) for k in sorted(before.keys() - after.keys())],
        changed=[f"{k[0]} {k[1]}: was {before[k]}, now {after[k]}"
                 for k in sorted(before.keys() & after.keys()) if before[k] != after[k]],
    )


def listing(snapshot: Snapshot, limit: int = 5) -> str:
    """The first `limit` objects of a snapshot, by kind and name: what a database that is not empty holds."""
    names = [f"{kind} {name}" for kind, name in sorted(snapshot) if not (kind == "extension"
                                                                       or (kind, name) == ("schema", "public"))]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
