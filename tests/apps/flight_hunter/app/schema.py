"""Which Alembic revision this build expects, and which one the database is at."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


@lru_cache(maxsize=1)
def script_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(heads, every revision) of the migrations shipped in this build."""
    script = ScriptDirectory(str(MIGRATIONS))
    return frozenset(script.get_heads()), frozenset(rev.revision for rev in script.walk_revisions())


def database_revisions(conn: Connection) -> frozenset[str] | None:
    """The revisions recorded in the database; None when Alembic never ran there."""
    if conn.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None:
        return None
    return frozenset(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def compare(current: frozenset[str] | None) -> str:
    """ "ok", "not migrated" or "migration pending" for the database's revisions."""
    if not current:
        return "not migrated"
    heads, known = script_revisions()
    if current <= heads:
        return "ok"
    if current & (known - heads):
        return "migration pending"
    return "ok"  # newer than this build: revisions are expand-only, so older code still runs
