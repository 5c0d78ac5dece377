"""migrator's own tables, and its reads and writes of Alembic's version table: one owner for all of them.

- versions: the version table's revisions (read with psycopg alone, on the no-op path) and resolve's stamps;
- history: the migration history (`migrator_history`), one row per migration, rollback and resolution
  (literals: its values quoted on the client, for the row that travels with a step's COMMIT);
- seed_ledger: which seed file ran with which content (`migrator_seeds`), per repo;
- naming: how their names are written (psycopg.sql.Identifier, never text) and how they are created, one creator
  at a time, so that migrators of different repos creating them at once do not collide.
"""
