"""How the report writes one number: a table cell or a figure in a sentence, "—" for what is missing."""

from __future__ import annotations

import math

MISSING = "—"


def num(value: float | None, digits: int = 2) -> str:
    """Fixed-point, or :data:`MISSING` for ``None`` and NaN."""
    return (
        MISSING
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def grouped(value: float, digits: int = 2) -> str:
    """Fixed-point with thousands separators: ``1,000,000``."""
    return f"{value:,.{digits}f}"


def seconds(value: float) -> str:
    """Three significant figures, trailing zeros kept: ``1.50``, ``0.0123``."""
    return f"{value:#.3g}"


def relative(value: float, reference: float) -> float | None:
    """The change from ``reference`` in percent; ``None`` against a zero reference."""
    return None if reference == 0 else (value - reference) / reference * 100


def change(value: float | None) -> str:
    """A signed percentage change: ``-11.1%``."""
    return MISSING if value is None else f"{value:+.1f}%"


def ratio(value: float, reference: float) -> str:
    """``value`` as a multiple of ``reference``: ``0.125x``."""
    return MISSING if reference == 0 else f"{value / reference:.3f}x"


def p_value(p: float | None) -> str:
    return MISSING if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"
