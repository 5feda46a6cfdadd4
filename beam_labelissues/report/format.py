"""How numbers and classes are written in the report."""

from __future__ import annotations

import html
from typing import Any, Sequence

def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt_int(value: Any) -> str:
    return f"{int(value):,}"


def fmt_pct(part: float, whole: float) -> str:
    if not whole:
        return "–"
    return f"{100.0 * part / whole:.2f}%"


def fmt_score(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0 or abs(value) >= 1e-3:
        return f"{value:.4f}"
    return f"{value:.3e}"


def class_label(k: int, names: Sequence[str] | None) -> str:
    """How a class is shown everywhere: "name (k)" when names exist, else "k"."""
    if names:
        return f"{names[k]} ({k})"
    return str(k)


def short_label(k: int, names: Sequence[str] | None, width: int = 18) -> str:
    """A class label short enough for an axis tick."""
    return clip_label(class_label(k, names), width)


def clip_label(label: str, width: int) -> str:
    """``label`` cut to ``width`` characters, the last one an ellipsis when cut."""
    return label if len(label) <= width else label[: width - 1] + "…"
