"""The reference data the seed loads: categories, units, and each unit's factor to its category's base unit.

Factors are exact where a definition exists (the international yard and
pound, the US gallon).  ``1 unit = factor base``.
"""

from __future__ import annotations

from decimal import Decimal

SOURCE = "SI / international definitions"

# code -> (name, base unit code)
CATEGORIES = {
    "length": ("Length", "m"),
    "mass": ("Mass", "kg"),
    "volume": ("Volume", "l"),
    "time": ("Time", "s"),
}

# code -> (name, category code, factor to the category's base unit; None for the base itself)
UNITS: dict[str, tuple[str, str, Decimal | None]] = {
    "m": ("metre", "length", None),
    "km": ("kilometre", "length", Decimal("1000")),
    "cm": ("centimetre", "length", Decimal("0.01")),
    "mm": ("millimetre", "length", Decimal("0.001")),
    "mi": ("mile", "length", Decimal("1609.344")),
    "yd": ("yard", "length", Decimal("0.9144")),
    "ft": ("foot", "length", Decimal("0.3048")),
    "in": ("inch", "length", Decimal("0.0254")),
    "nmi": ("nautical mile", "length", Decimal("1852")),
    "kg": ("kilogram", "mass", None),
    "g": ("gram", "mass", Decimal("0.001")),
    "t": ("tonne", "mass", Decimal("1000")),
    "lb": ("pound", "mass", Decimal("0.45359237")),
    "oz": ("ounce", "mass", Decimal("0.028349523125")),
    "l": ("litre", "volume", None),
    "ml": ("millilitre", "volume", Decimal("0.001")),
    "m3": ("cubic metre", "volume", Decimal("1000")),
    "gal_us": ("US gallon", "volume", Decimal("3.785411784")),
    "fl_oz_us": ("US fluid ounce", "volume", Decimal("0.0295735295625")),
    "s": ("second", "time", None),
    "min": ("minute", "time", Decimal("60")),
    "h": ("hour", "time", Decimal("3600")),
    "d": ("day", "time", Decimal("86400")),
    "wk": ("week", "time", Decimal("604800")),
}
