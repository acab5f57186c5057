"""Converting a quantity between two units of one category, along the stored equivalences."""

from __future__ import annotations

from collections import deque
from decimal import Decimal, localcontext

from sqlalchemy import Connection, or_, select

from app.db import categories, equivalences, units

SIGNIFICANT_DIGITS = 15
MAX_ABS_VALUE = Decimal("1e15")


class ConversionError(ValueError):
    """The units are unknown, of different categories, or not linked by any equivalence."""


def parse_value(raw: object) -> Decimal:
    """A finite number (a JSON number or a decimal string) whose magnitude is at most 1e15."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ConversionError("value must be a number or a decimal string")
    try:
        value = Decimal(str(raw).strip())
    except ArithmeticError:
        raise ConversionError("value must be a number or a decimal string") from None
    if not value.is_finite() or abs(value) > MAX_ABS_VALUE:
        raise ConversionError(f"value must be a finite number of magnitude at most {MAX_ABS_VALUE:E}")
    return value


def render(value: Decimal) -> str:
    """``value`` to 15 significant digits, in plain notation without trailing zeros."""
    with localcontext() as ctx:
        ctx.prec = SIGNIFICANT_DIGITS
        rounded = (+value).normalize()
    return format(rounded, "f")


def lookup_units(conn: Connection, codes: list[str]) -> dict[str, dict]:
    query = (
        select(units.c.id, units.c.code, units.c.name, categories.c.code.label("category"))
        .join(categories, categories.c.id == units.c.category_id)
        .where(units.c.code.in_(codes))
    )
    return {row["code"]: dict(row) for row in conn.execute(query).mappings()}


def check_units(conn: Connection, from_code: str, to_code: str) -> str:
    """The category both units belong to; ConversionError when they do not, or do not exist."""
    found = lookup_units(conn, [from_code, to_code])
    missing = [code for code in (from_code, to_code) if code not in found]
    if missing:
        raise ConversionError(f"unknown unit: {', '.join(dict.fromkeys(missing))}")
    source, target = found[from_code], found[to_code]
    if source["category"] != target["category"]:
        raise ConversionError(f"cannot convert {source['category']} ({from_code}) to {target['category']} ({to_code})")
    return source["category"]


def factor_between(conn: Connection, from_code: str, to_code: str) -> Decimal:
    """How many ``to_code`` make one ``from_code``: a breadth-first walk over the equivalences, both ways."""
    check_units(conn, from_code, to_code)
    if from_code == to_code:
        return Decimal(1)
    source_unit = units.alias("source_unit")
    target_unit = units.alias("target_unit")
    category_units = select(units.c.id).where(
        units.c.category_id == select(units.c.category_id).where(units.c.code == from_code).scalar_subquery()
    )
    query = (
        select(source_unit.c.code.label("a"), target_unit.c.code.label("b"), equivalences.c.factor)
        .join(source_unit, source_unit.c.id == equivalences.c.from_unit_id)
        .join(target_unit, target_unit.c.id == equivalences.c.to_unit_id)
        .where(or_(equivalences.c.from_unit_id.in_(category_units), equivalences.c.to_unit_id.in_(category_units)))
    )
    edges: dict[str, list[tuple[str, Decimal]]] = {}
    for a, b, factor in conn.execute(query):
        edges.setdefault(a, []).append((b, factor))
        edges.setdefault(b, []).append((a, 1 / factor))
    with localcontext() as ctx:
        ctx.prec = 34
        reached = {from_code: Decimal(1)}
        todo = deque([from_code])
        while todo:
            code = todo.popleft()
            for neighbour, factor in edges.get(code, []):
                if neighbour not in reached:
                    reached[neighbour] = reached[code] * factor
                    todo.append(neighbour)
    if to_code not in reached:
        raise ConversionError(f"no equivalence links {from_code} to {to_code}")
    return reached[to_code]


def convert(conn: Connection, value: Decimal, from_code: str, to_code: str) -> dict:
    factor = factor_between(conn, from_code, to_code)
    with localcontext() as ctx:
        ctx.prec = 34
        result = value * factor
    return {
        "value": render(value),
        "from": from_code,
        "to": to_code,
        "result": render(result),
        "factor": render(factor),
    }
