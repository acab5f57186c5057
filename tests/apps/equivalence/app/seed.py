"""Load the reference data and, when no active key named ``admin`` exists, create one.

    python -m app.seed

Idempotent: rows already there are left alone (``ON CONFLICT DO NOTHING``),
so a second run inserts nothing.  The admin key is never shown: only its
prefix, to recognise it by; get a usable admin key with
``python -m app.rotate_keys --name admin``, which prints it once.
"""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert

from app import keys, reference
from app.cli import run
from app.config import Settings
from app.db import categories, equivalences, units

ADMIN = "admin"


def upsert(conn, table, rows: list[dict], **conflict) -> tuple[int, int]:
    """(inserted, already present) for ``rows`` inserted with ON CONFLICT DO NOTHING."""
    if not rows:
        return 0, 0
    statement = insert(table).values(rows).on_conflict_do_nothing(**conflict).returning(table.c.id)
    inserted = len(conn.execute(statement).all())
    return inserted, len(rows) - inserted


def seed(settings: Settings, engine: Engine) -> str:
    salt = settings.salt()
    counts = []
    with engine.begin() as conn:
        rows = [{"code": code, "name": name} for code, (name, _base) in reference.CATEGORIES.items()]
        counts.append(upsert(conn, categories, rows, index_elements=["code"]))
        category_ids = dict(conn.execute(select(categories.c.code, categories.c.id)).all())

        rows = [
            {"code": code, "name": name, "category_id": category_ids[category]}
            for code, (name, category, _factor) in reference.UNITS.items()
        ]
        counts.append(upsert(conn, units, rows, index_elements=["code"]))
        unit_ids = dict(conn.execute(select(units.c.code, units.c.id)).all())

        rows = [
            {
                "from_unit_id": unit_ids[code],
                "to_unit_id": unit_ids[reference.CATEGORIES[category][1]],
                "factor": factor,
                "source": reference.SOURCE,
            }
            for code, (_name, category, factor) in reference.UNITS.items()
            if factor is not None
        ]
        counts.append(upsert(conn, equivalences, rows, constraint="uq_equivalences_pair"))

        key = keys.create_if_absent(conn, salt, ADMIN)
        counts.append((1, 0) if key else (0, 1))

    inserted = sum(new for new, _ in counts)
    present = sum(old for _, old in counts)
    if key:
        admin = (
            f"admin key {keys.prefix(key)}... created, not shown:"
            f" python -m app.rotate_keys --name {ADMIN} prints a usable one"
        )
    else:
        admin = "an active admin key exists"
    return f"inserted {inserted} rows, {present} already present ({admin})"


def main() -> None:
    run("seed", seed)


if __name__ == "__main__":
    main()
