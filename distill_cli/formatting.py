"""How numbers read in distill's text: percentages and US dollars, in one place.

Each stage shows them a little differently for a reason (a gate's per-call cost
needs six places, a report's totals two), so the functions take that as a
parameter; the text a given call site prints never changes. JSON numbers are
rounded here too (`round_usd`, `share`), so the CLI and the library agree.
Nothing here reads, prints or raises.
"""

from __future__ import annotations


def pct(value: float | None, digits: int | None = 1, *, none: str = "n/a") -> str:
    """A share as a percentage: `12.3%` (`digits` places); `none` for None.

    digits=None: whole percents from 10% (and 0%), one place below (`3.4%`), as the report's tables show shares.
    """
    if value is None:
        return none
    if digits is None:
        digits = 0 if value >= 0.1 or value == 0 else 1
    return f"{value * 100:.{digits}f}%"


def usd(value: float | None, places: int = 2, *, small: int = 4, trim: bool = True, none: str = "?") -> str:
    """An amount in dollars with thousands separators: `$1,234.50`, `-$3.00`; `none` for None.

    Below a cent (not zero) `small` places show it, trailing zeros dropped when `trim`: `$0.0042`.
    """
    if value is None:
        return none
    if value != 0 and abs(value) < 0.01:
        text = f"${value:.{small}f}"
        return text.rstrip("0") if trim else text
    return f"-${-value:,.{places}f}" if value < 0 else f"${value:,.{places}f}"


def usd_exact(value: float | None, *, none: str = "unknown") -> str:
    """A price per call to the microdollar, without trailing zeros: `$0.00042`, `$0`; `none` for None."""
    if value is None:
        return none
    return f"${value:.6f}".rstrip("0").rstrip(".") if value else "$0"


def round_usd(x: float) -> float:
    """A dollar amount as JSON holds it: to the microdollar."""
    return round(x, 6)


def share(n: int, total: int) -> float:
    """n / total to 4 places; 0.0 of nothing."""
    return round(n / total, 4) if total else 0.0
