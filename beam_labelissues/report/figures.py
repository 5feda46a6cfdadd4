"""The report's figures, drawn with matplotlib's object API (pyplot's state is never touched).

Each function returns a PNG as bytes. matplotlib is imported inside the
functions, so importing this module costs nothing without the ``report`` extra.
"""

from __future__ import annotations

import io
import math
from typing import Sequence, Tuple

import numpy as np

from beam_labelissues.report.format import fmt_score, short_label

CLASS_BARS_MAX = 40  # classes drawn in the issues-per-class chart
THRESHOLD_BARS_MAX = 2000  # above this many classes the thresholds are drawn as one filled step line
HEATMAP_FULL_MAX_K = 60  # above this, the heat map aggregates classes into blocks
HEATMAP_BLOCKS = 50  # number of blocks per axis when aggregating
HEATMAP_ANNOTATE_MAX_K = 20  # write counts into the cells up to this many classes

_ISSUE_COLOR = "#c0392b"
_BASE_COLOR = "#2c6fbb"
_MUTED_COLOR = "#9aa5b1"



def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def _integer_ticks(axis) -> None:
    """Counts are whole numbers: never tick them at 0.5."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    return buf.getvalue()


def _style_axes(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#e5e8eb", linewidth=0.8)
    ax.set_axisbelow(True)


def score_histogram_figure(bin_edges: Sequence[float], counts: Sequence[int],
                            issue_counts: np.ndarray | None,
                            issue_range: Sequence[float] | None) -> bytes:
    """Scores of every example with the issues' share drawn over them.

    A log axis keeps the rare low scores visible next to the mass near 1.
    """
    from matplotlib.ticker import FuncFormatter

    edges = np.asarray(bin_edges, dtype=float)
    values = np.asarray(counts, dtype=float)
    fig = _new_figure(10, 3.6)
    ax = fig.add_subplot()
    _style_axes(ax)
    ax.stairs(values, edges, fill=True, color=_BASE_COLOR, alpha=0.85, label="all examples")
    if issue_counts is not None and issue_counts.any():
        ax.stairs(issue_counts.astype(float), edges, fill=True, color=_ISSUE_COLOR,
                  label=f"label issues ({int(issue_counts.sum()):,})")
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > 100:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else ""))
        ax.set_ylabel("examples (log scale)")
    else:
        _integer_ticks(ax.yaxis)
        ax.set_ylabel("examples")
    if issue_range is not None:
        lo, hi = float(issue_range[0]), float(issue_range[1])
        ax.axvspan(lo, hi, color=_ISSUE_COLOR, alpha=0.12, lw=0)
        ax.axvline(hi, color=_ISSUE_COLOR, lw=1.2, ls="--",
                   label=f"issues' scores: {fmt_score(lo)} to {fmt_score(hi)}")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("label quality score (low = likely mislabeled)")
    ax.legend(loc="best", frameon=False)
    return _png(fig)


def class_order_for_bars(issues_per_class: np.ndarray) -> tuple[np.ndarray, bool]:
    """All classes in order when few; otherwise those with the most issues."""
    k = len(issues_per_class)
    if k <= CLASS_BARS_MAX:
        return np.arange(k), False
    order = np.lexsort((np.arange(k), -issues_per_class))[:CLASS_BARS_MAX]
    return order, True


def issues_per_class_figure(issues_per_class: np.ndarray, examples_per_class: np.ndarray,
                             names: Sequence[str] | None) -> bytes:
    """Issues by given class beside the class's share of all examples.

    Side by side, a class that holds many issues only because it is large can be
    told from one that is flagged out of proportion to its size.
    """
    order, _ = class_order_for_bars(issues_per_class)
    total = max(int(examples_per_class.sum()), 1)
    labels = [short_label(int(k), names, 24) for k in order]
    y = np.arange(len(order))
    fig = _new_figure(10, 1.2 + 0.28 * len(order))
    ax_issues, ax_share = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    for ax in (ax_issues, ax_share):
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.grid(axis="x", color="#e5e8eb", linewidth=0.8)
        ax.set_axisbelow(True)
    counts = issues_per_class[order]
    ax_issues.barh(y, counts, color=_ISSUE_COLOR, height=0.7)
    for yi, c, k in zip(y, counts, order):
        n_k = examples_per_class[k]
        note = f"{int(c):,}" + (f"  ({100 * c / n_k:.1f}% of class)" if n_k else "  (no examples)")
        ax_issues.text(c, yi, " " + note, va="center", fontsize=8, color="#333")
    ax_issues.set_xlim(0, max(1, counts.max()) * 1.45)
    _integer_ticks(ax_issues.xaxis)
    ax_issues.set_yticks(y, labels)
    ax_issues.invert_yaxis()
    ax_issues.set_xlabel("label issues with this given label")
    shares = 100.0 * examples_per_class[order] / total
    colors = [_BASE_COLOR if examples_per_class[k] else _MUTED_COLOR for k in order]
    ax_share.barh(y, shares, color=colors, height=0.7)
    for yi, s, k in zip(y, shares, order):
        ax_share.text(s, yi, f" {s:.1f}%" if examples_per_class[k] else " no examples",
                      va="center", fontsize=8, color="#333")
    ax_share.set_xlim(0, max(1e-9, shares.max()) * 1.3)
    ax_share.set_xlabel("share of all examples (%)")
    ax_share.tick_params(axis="y", left=False)
    return _png(fig)


def _dense_confusion(pair_codes: np.ndarray, pair_counts: np.ndarray, num_classes: int,
                     block: int) -> np.ndarray:
    """Given x predicted issue counts, classes grouped into blocks of `block`."""
    size = math.ceil(num_classes / block)
    matrix = np.zeros((size, size), dtype=np.int64)
    given, pred = np.divmod(pair_codes, num_classes)
    np.add.at(matrix, (given // block, pred // block), pair_counts)
    return matrix


def confusion_figure(pair_codes: np.ndarray, pair_counts: np.ndarray, num_classes: int,
                      names: Sequence[str] | None) -> tuple[bytes, int]:
    """Heat map of issues by (given, predicted); large K is drawn in class blocks.

    Returns the PNG and the block size (1 when every class has its own cell).
    """
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    block = 1 if num_classes <= HEATMAP_FULL_MAX_K else math.ceil(num_classes / HEATMAP_BLOCKS)
    matrix = _dense_confusion(pair_codes, pair_counts, num_classes, block)
    size = matrix.shape[0]
    side = min(8.5, 3.5 + 0.3 * size) if block == 1 else 8.5
    fig = _new_figure(side + 1.6, side)
    ax = fig.add_subplot()
    masked = np.ma.masked_equal(matrix, 0)
    import matplotlib

    cmap = matplotlib.colormaps["YlOrRd"].with_extremes(bad="white")
    vmax = max(2, int(matrix.max()))
    if vmax > 50:  # a few heavy pairs would wash out the rest on a linear scale
        norm, scale_note = LogNorm(vmin=1, vmax=vmax), " (log scale)"
    else:
        norm, scale_note = Normalize(vmin=0, vmax=vmax), ""
    image = ax.imshow(masked, cmap=cmap, norm=norm, interpolation="nearest", aspect="equal")
    bar = fig.colorbar(image, ax=ax, shrink=0.8, label="label issues" + scale_note)
    bar.ax.yaxis.set_major_formatter(ScalarFormatter())
    bar.ax.yaxis.set_minor_formatter(NullFormatter())
    if not isinstance(norm, LogNorm):
        _integer_ticks(bar.ax.yaxis)
    if block == 1 and size <= 100:  # outline the cells so empty ones still read as a grid
        ax.set_xticks(np.arange(-0.5, size), minor=True)
        ax.set_yticks(np.arange(-0.5, size), minor=True)
        ax.grid(which="minor", color="#e4e7eb", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
    if block == 1:
        if size <= 30:
            ticks = np.arange(size)
            tick_labels = [short_label(int(k), names, 16) for k in ticks]
            ax.set_xticks(ticks, tick_labels, rotation=60, ha="right", fontsize=8)
            ax.set_yticks(ticks, tick_labels, fontsize=8)
        ax.set_xlabel("predicted label")
        ax.set_ylabel("given label")
    else:
        step = max(1, size // 10)
        ticks = np.arange(0, size, step)
        ax.set_xticks(ticks, [str(t * block) for t in ticks], fontsize=8)
        ax.set_yticks(ticks, [str(t * block) for t in ticks], fontsize=8)
        ax.set_xlabel(f"predicted label (blocks of {block} classes, by first class index)")
        ax.set_ylabel(f"given label (blocks of {block} classes)")
    if block == 1 and size <= HEATMAP_ANNOTATE_MAX_K:
        for (i, j), value in np.ndenumerate(matrix):
            if value:
                ax.text(j, i, f"{value:,}", ha="center", va="center", fontsize=8,
                        color="white" if norm(value) > 0.6 else "#222")
    return _png(fig), block


def thresholds_figure(thresholds: np.ndarray, examples_per_class: np.ndarray,
                       names: Sequence[str] | None) -> bytes:
    """Per-class confident thresholds; classes without examples are greyed out."""
    k = len(thresholds)
    x = np.arange(k)
    fig = _new_figure(10, 3.6 if k <= 30 else 3.0)
    ax = fig.add_subplot()
    _style_axes(ax)
    if k <= THRESHOLD_BARS_MAX:
        colors = np.where(examples_per_class > 0, _BASE_COLOR, _MUTED_COLOR)
        ax.bar(x, thresholds, color=colors, width=0.8 if k <= 200 else 1.0)
    else:  # one artist for all classes: a bar per class costs seconds per thousand classes
        ax.stairs(thresholds, np.arange(k + 1) - 0.5, fill=True, color=_BASE_COLOR)
    if k <= 30:
        ax.set_xticks(x, [short_label(int(i), names, 16) for i in x], rotation=45,
                      ha="right", fontsize=8)
    else:
        ax.set_xlabel("class")
    ax.set_xlim(-0.7, k - 0.3)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("confident threshold")
    if (examples_per_class == 0).any():
        from matplotlib.patches import Patch

        empty = np.flatnonzero(examples_per_class == 0)
        ax.scatter(empty, np.full(len(empty), 0.02), marker="x", color=_MUTED_COLOR, zorder=3,
                   rasterized=len(empty) > THRESHOLD_BARS_MAX)
        ax.legend(handles=[Patch(color=_MUTED_COLOR, label="× class has no examples (threshold is the 2e-6 floor)")],
                  loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    return _png(fig)
