"""The report's figures as inline SVG, written by hand: no plotting library is needed.

Each function returns one ``<svg>`` element as a string, ready to sit inside the
HTML page. Every piece of user text (class names) goes through ``esc``; numbers
are written with a fixed precision, so the markup stays small and the output is
deterministic. Marks carry ``data-*`` attributes with the numbers they draw (the
tests compare them with summary.json) and a ``<title>`` that browsers show on hover.

Large K stays readable: the per-class bars show the classes with the most issues,
the issues heat map groups classes into blocks, the confident-joint heat map shows the
classes with the most off-diagonal mass, and the thresholds are drawn per block of
classes (lowest, mean and highest threshold) past a few hundred classes. Both heat maps
are drawn by one function, ``_heat_map``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from beam_labelissues.report.format import class_label, clip_label, esc, fmt_int, fmt_score, short_label

CLASS_BARS_MAX = 40  # classes drawn in the issues-per-class chart
HEATMAP_FULL_MAX_K = 60  # above this, the heat map aggregates classes into blocks
HEATMAP_BLOCKS = 50  # number of blocks per axis when aggregating
HEATMAP_ANNOTATE_MAX_K = 20  # write counts into the cells up to this many classes
HEATMAP_TICK_LABELS_MAX_K = 30  # class names as tick labels up to this many classes
JOINT_TOP_CLASSES = 30  # classes in the confident-joint heat map past HEATMAP_FULL_MAX_K
THRESHOLD_BARS_MAX = 400  # one bar per class up to this many classes, then blocks
REVIEW_BUCKETS = 10  # rank ranges in the human-review chart

ISSUE_COLOR = "#c0392b"
BASE_COLOR = "#2c6fbb"
UPHELD_COLOR = "#2c6fbb"
MUTED_COLOR = "#9aa5b1"
GRID_COLOR = "#e5e8eb"
TEXT_COLOR = "#333"
# ColorBrewer's YlOrRd ramp, light to dark: few issues pale, many dark red.
_HEAT_RAMP = ("#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#bd0026", "#800026")

_WIDTH = 880  # every figure is this many user units wide; the page scales it to fit


# --- drawing primitives ---------------------------------------------------------------


def _n(value: float) -> str:
    """A coordinate with one decimal, without a trailing ``.0``."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _text(x: float, y: float, content: str, anchor: str = "start", size: int = 12, extra: str = "") -> str:
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" font-size="{size}"{extra}>'
        f"{esc(content)}</text>"
    )


def _svg(height: float, title: str, body: Sequence[str], figure: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="figure" data-figure="{figure}" '
        f'viewBox="0 0 {_WIDTH} {_n(height)}" width="{_WIDTH}" height="{_n(height)}" '
        f'role="img" aria-label="{esc(title)}" font-family="DejaVu Sans, Arial, sans-serif" '
        f'fill="{TEXT_COLOR}"><title>{esc(title)}</title>' + "".join(body) + "</svg>"
    )


def nice_ticks(low: float, high: float, count: int = 5) -> List[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    k = first
    while k * step <= high + step * 1e-9:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks


def _tick_label(value: float) -> str:
    if value == int(value):
        return fmt_int(value)
    return f"{value:g}"


class _Scale:
    """Maps data values to pixels on one axis, linear or log10."""

    def __init__(self, low: float, high: float, start: float, end: float, log: bool = False):
        self.log = log
        self.low, self.high = (math.log10(low), math.log10(high)) if log else (low, high)
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        span = self.high - self.low or 1.0
        return self.start + (v - self.low) / span * (self.end - self.start)


def _count_axis(max_count: float, min_positive: float, start: float, end: float):
    """A count axis: log10 when the counts span more than a factor 100, else linear from 0.

    Returns (scale, ticks, label suffix, the value bars start from).
    """
    if min_positive > 0 and max_count / min_positive > 100:
        low = 10 ** math.floor(math.log10(min_positive))
        high = 10 ** math.ceil(math.log10(max_count))
        ticks = [10.0 ** e for e in range(int(math.log10(low)), int(math.log10(high)) + 1)]
        return _Scale(low, high, start, end, log=True), ticks, " (log scale)", low
    ticks = nice_ticks(0, max(max_count, 1))
    top = max(ticks[-1], max_count, 1)
    ticks = [t for t in ticks if t == int(t)] or [0.0]  # counts are whole numbers
    return _Scale(0, top, start, end), ticks, "", 0.0


# --- the score histogram -------------------------------------------------------------------


def score_histogram_figure(bin_edges: Sequence[float], counts: Sequence[int],
                            issue_counts: Optional[np.ndarray],
                            issue_range: Optional[Sequence[float]]) -> str:
    """Scores of every example, with the issues drawn over them and their score range marked.

    A log axis keeps the rare low scores visible next to the mass near 1.
    """
    edges = np.asarray(bin_edges, dtype=float)
    values = np.asarray(counts, dtype=np.int64)
    issues = np.zeros(len(values), np.int64) if issue_counts is None else np.asarray(issue_counts, np.int64)
    left, right, top, bottom = 78, 20, 40, 52
    height = 330
    x = _Scale(float(edges[0]), float(edges[-1]), left, _WIDTH - right)
    positive = values[values > 0]
    y, ticks, suffix, floor = _count_axis(
        float(values.max()) if len(values) else 1.0, float(positive.min()) if positive.size else 0.0,
        height - bottom, top,
    )
    body = [f'<rect x="0" y="0" width="{_WIDTH}" height="{height}" fill="#fff"/>']
    for t in ticks:
        ty = y(t)
        body.append(f'<path d="M{left} {_n(ty)}H{_WIDTH - right}" stroke="{GRID_COLOR}" stroke-width="1"/>')
        body.append(_text(left - 6, ty + 4, _tick_label(t), "end", 11))
    if issue_range is not None:
        lo, hi = float(issue_range[0]), float(issue_range[1])
        x0, x1 = x(lo), x(hi)
        body.append(
            f'<rect class="issue-range" x="{_n(x0)}" y="{top}" width="{_n(max(x1 - x0, 1))}" '
            f'height="{height - bottom - top}" fill="{ISSUE_COLOR}" fill-opacity="0.12"/>'
        )
    bars, issue_bars = [], []
    for i, count in enumerate(values):
        x0, x1 = x(edges[i]), x(edges[i + 1])
        tip = (f"scores {edges[i]:.4g} to {edges[i + 1]:.4g}: {fmt_int(count)} examples, "
               f"{fmt_int(issues[i])} label issues")
        for value, color, out, kind in ((count, BASE_COLOR, bars, "all"), (issues[i], ISSUE_COLOR, issue_bars, "issues")):
            if value <= 0:
                continue
            y0 = y(max(value, floor)) if y.log else y(value)
            out.append(
                f'<rect data-series="{kind}" data-bin="{i}" data-count="{int(value)}" x="{_n(x0)}" '
                f'y="{_n(y0)}" width="{_n(max(x1 - x0, 0.6) + 0.4)}" height="{_n(max(y(floor) - y0, 0.6))}" '
                f'fill="{color}"><title>{esc(tip)}</title></rect>'
            )
    body.append(f'<g shape-rendering="crispEdges" fill-opacity="0.85">{"".join(bars)}</g>')
    body.append(f'<g shape-rendering="crispEdges">{"".join(issue_bars)}</g>')
    if issue_range is not None:
        xh = x(float(issue_range[1]))
        body.append(
            f'<path class="issue-max" d="M{_n(xh)} {top}V{height - bottom}" stroke="{ISSUE_COLOR}" '
            'stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
    body.append(f'<path d="M{left} {height - bottom}H{_WIDTH - right}" stroke="#555"/>')
    for t in nice_ticks(float(edges[0]), float(edges[-1])):
        tx = x(t)
        body.append(f'<path d="M{_n(tx)} {height - bottom}v5" stroke="#555"/>')
        body.append(_text(tx, height - bottom + 18, f"{t:g}", "middle", 11))
    body.append(_text((left + _WIDTH - right) / 2, height - 10, "label quality score (low = likely mislabeled)", "middle"))
    body.append(_text(16, (top + height - bottom) / 2, "examples" + suffix, "middle",
                      extra=f' transform="rotate(-90 16 {_n((top + height - bottom) / 2)})"'))
    legend = [(BASE_COLOR, f"all examples ({fmt_int(values.sum())})")]
    if issues.any():
        legend.append((ISSUE_COLOR, f"label issues ({fmt_int(issues.sum())})"))
    if issue_range is not None:
        legend.append((None, f"issues' scores: {fmt_score(float(issue_range[0]))} to {fmt_score(float(issue_range[1]))}"))
    body.append(_legend(legend, left, 16))
    return _svg(height, "Histogram of label quality scores", body, "scores")


def _legend(entries: Sequence[Tuple[Optional[str], str]], x: float, y: float) -> str:
    """A row of legend entries; a None colour draws the dashed issue line."""
    parts = []
    for color, label in entries:
        if color is None:
            parts.append(f'<path d="M{_n(x)} {_n(y - 4)}h14" stroke="{ISSUE_COLOR}" stroke-width="1.5" stroke-dasharray="4 2"/>')
        else:
            parts.append(f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="12" height="10" fill="{color}"/>')
        parts.append(_text(x + 18, y, label, size=12))
        x += 30 + 6.6 * len(label)
    return '<g class="legend">' + "".join(parts) + "</g>"


# --- issues per class --------------------------------------------------------------------


def class_order_for_bars(issues_per_class: np.ndarray) -> Tuple[np.ndarray, bool]:
    """All classes in order when few; otherwise those with the most issues (ties: lower index)."""
    k = len(issues_per_class)
    if k <= CLASS_BARS_MAX:
        return np.arange(k), False
    order = np.lexsort((np.arange(k), -issues_per_class))[:CLASS_BARS_MAX]
    return order, True


def issues_per_class_figure(issues_per_class: np.ndarray, examples_per_class: np.ndarray,
                             names: Optional[Sequence[str]]) -> str:
    """Issues by given class beside the class's share of all examples.

    Side by side, a class that holds many issues only because it is large can be
    told from one that is flagged out of proportion to its size.
    """
    order, _ = class_order_for_bars(issues_per_class)
    total = max(int(examples_per_class.sum()), 1)
    row, top, bottom = 22, 34, 40
    label_w, left_w, gap, right_w = 190, 380, 40, 230
    height = top + row * len(order) + bottom
    x_issues = label_w
    x_share = label_w + left_w + gap
    counts = issues_per_class[order].astype(np.int64)
    shares = 100.0 * examples_per_class[order] / total
    count_scale = _Scale(0, max(int(counts.max(initial=0)), 1) * 1.55, x_issues, x_issues + left_w)
    share_scale = _Scale(0, max(float(shares.max(initial=0)), 1e-9) * 1.35, x_share, x_share + right_w)
    body = [f'<rect x="0" y="0" width="{_WIDTH}" height="{_n(height)}" fill="#fff"/>',
            _text(x_issues, 18, "label issues with this given label", size=12, extra=' font-weight="600"'),
            _text(x_share, 18, "share of all examples", size=12, extra=' font-weight="600"')]
    for t in nice_ticks(0, count_scale.high):
        if t == int(t) and t <= count_scale.high:
            tx = count_scale(t)
            body.append(f'<path d="M{_n(tx)} {top - 4}V{_n(height - bottom + 4)}" stroke="{GRID_COLOR}"/>')
            body.append(_text(tx, height - bottom + 18, _tick_label(t), "middle", 11))
    for t in nice_ticks(0, share_scale.high, 4):
        if t <= share_scale.high:
            tx = share_scale(t)
            body.append(f'<path d="M{_n(tx)} {top - 4}V{_n(height - bottom + 4)}" stroke="{GRID_COLOR}"/>')
            body.append(_text(tx, height - bottom + 18, f"{t:g}%", "middle", 11))
    bars = []
    for i, k in enumerate(order):
        k = int(k)
        yc = top + row * i + row / 2
        n_k = int(examples_per_class[k])
        count = int(counts[i])
        full = class_label(k, names)
        body.append(_text(label_w - 8, yc + 4, short_label(k, names, 26), "end", 12))
        note = fmt_int(count) + (f"  ({100 * count / n_k:.1f}% of class)" if n_k else "  (no examples)")
        xe = count_scale(count)
        bars.append(
            f'<rect data-class="{k}" data-count="{count}" x="{x_issues}" y="{_n(yc - 7)}" '
            f'width="{_n(xe - x_issues)}" height="14" fill="{ISSUE_COLOR}">'
            f"<title>{esc(full)}: {esc(note.strip())}</title></rect>"
        )
        body.append(_text(xe + 5, yc + 4, note, size=11))
        xs = share_scale(shares[i])
        color = BASE_COLOR if n_k else MUTED_COLOR
        bars.append(
            f'<rect data-class="{k}" data-share="{shares[i]:.6g}" x="{x_share}" y="{_n(yc - 7)}" '
            f'width="{_n(xs - x_share)}" height="14" fill="{color}">'
            f"<title>{esc(full)}: {fmt_int(n_k)} examples ({shares[i]:.2f}%)</title></rect>"
        )
        body.append(_text(xs + 5, yc + 4, f"{shares[i]:.1f}%" if n_k else "no examples", size=11))
    body.append(f'<g shape-rendering="crispEdges">{"".join(bars)}</g>')
    for x0 in (x_issues, x_share):
        body.append(f'<path d="M{x0} {top - 4}V{_n(height - bottom + 4)}" stroke="#555"/>')
    return _svg(height, "Issues per given class and share of examples", body, "per-class")


# --- given x predicted heat map ---------------------------------------------------------------


def heatmap_block(num_classes: int) -> int:
    """Classes per heat-map cell: 1 up to HEATMAP_FULL_MAX_K classes, else blocks."""
    return 1 if num_classes <= HEATMAP_FULL_MAX_K else math.ceil(num_classes / HEATMAP_BLOCKS)


def dense_confusion(pair_codes: np.ndarray, pair_counts: np.ndarray, num_classes: int,
                    block: int) -> np.ndarray:
    """Given x predicted issue counts, classes grouped into blocks of ``block``."""
    size = math.ceil(num_classes / block)
    matrix = np.zeros((size, size), dtype=np.int64)
    given, pred = np.divmod(np.asarray(pair_codes, np.int64), num_classes)
    np.add.at(matrix, (given // block, pred // block), np.asarray(pair_counts, np.int64))
    return matrix


def _heat_color(t: float) -> str:
    """The ramp's colour at t in [0, 1], interpolated between its anchors."""
    t = min(max(t, 0.0), 1.0) * (len(_HEAT_RAMP) - 1)
    i = min(int(t), len(_HEAT_RAMP) - 2)
    f = t - i
    a, b = _HEAT_RAMP[i], _HEAT_RAMP[i + 1]
    rgb = [round(int(a[j:j + 2], 16) * (1 - f) + int(b[j:j + 2], 16) * f) for j in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


@dataclasses.dataclass(frozen=True)
class _HeatAxes:
    """What a heat map's rows, columns and cells stand for."""

    row_attr: str  # the data-* attribute of a cell's row key, and the word in its hover text
    col_attr: str
    row_word: str
    col_word: str
    unit: str  # what a cell counts, for the hover text and the colour bar


def _heat_map(matrix: np.ndarray, keys: Sequence[int], labels: Sequence[str], tick_numbers: Sequence[int],
              named_ticks: bool, axes: _HeatAxes, axis_labels: Tuple[str, str], outline: bool,
              figure: str, title: str) -> str:
    """A square heat map of counts on the YlOrRd ramp, with its colour bar.

    ``matrix[i, j]`` is drawn at row i, column j; ``keys[i]`` is the number position i's
    cells carry in their data-* attributes (a class or block index) and ``labels[i]`` its
    text. Ticks are the labels, shortened (``named_ticks``), or every few positions'
    ``tick_numbers``. ``axis_labels`` is (x, y). Counts are written into the cells up to
    HEATMAP_ANNOTATE_MAX_K positions; the colour scale turns log10 past a count of 50, so a
    few heavy cells do not wash out the rest.
    """
    size = matrix.shape[0]
    vmax = max(2, int(matrix.max(initial=0)))
    log = vmax > 50

    def level(value: int) -> float:
        return math.log(value) / math.log(vmax) if log else value / vmax

    ticks = [clip_label(label, 16) for label in labels] if named_ticks else []
    longest = max((len(t) for t in ticks), default=1)
    left = 40 + 7 * longest if named_ticks else 80
    top = 20
    cell = min(56.0, 560.0 / size)
    grid = cell * size
    bottom = 40 + 5 * longest if named_ticks else 50
    height = top + grid + bottom
    body = [f'<rect x="0" y="0" width="{_WIDTH}" height="{_n(height)}" fill="#fff"/>',
            f'<rect x="{left}" y="{top}" width="{_n(grid)}" height="{_n(grid)}" fill="#fff" stroke="#bbb"/>']
    if outline and size <= 100:  # outline the cells so empty ones still read as a grid
        lines = "".join(f"M{_n(left + cell * i)} {top}v{_n(grid)}M{left} {_n(top + cell * i)}h{_n(grid)}"
                        for i in range(1, size))
        body.append(f'<path d="{lines}" stroke="{GRID_COLOR}" stroke-width="0.8"/>')
    cells, notes = [], []
    for i, j in zip(*np.nonzero(matrix)):
        value = int(matrix[i, j])
        t = level(value)
        what = f"{axes.row_word} {labels[i]}, {axes.col_word} {labels[j]}"
        cx, cy = left + cell * j, top + cell * i
        cells.append(
            f'<rect data-{axes.row_attr}="{int(keys[i])}" data-{axes.col_attr}="{int(keys[j])}" '
            f'data-count="{value}" x="{_n(cx)}" y="{_n(cy)}" width="{_n(cell)}" height="{_n(cell)}" '
            f'fill="{_heat_color(t)}"><title>{esc(what)}: {fmt_int(value)} {axes.unit}</title></rect>'
        )
        if size <= HEATMAP_ANNOTATE_MAX_K:
            color = "#fff" if t > 0.6 else "#222"
            notes.append(_text(cx + cell / 2, cy + cell / 2 + 4, fmt_int(value), "middle", 10,
                               extra=f' fill="{color}"'))
    body.append(f'<g class="cells" shape-rendering="crispEdges">{"".join(cells)}</g>')
    body.extend(notes)
    if named_ticks:
        for k, label in enumerate(ticks):
            cy = top + cell * k + cell / 2 + 4
            body.append(_text(left - 6, cy, label, "end", 11))
            cx = left + cell * k + cell / 2
            ty = top + grid + 8
            body.append(_text(cx, ty, label, "end", 11, extra=f' transform="rotate(-60 {_n(cx)} {_n(ty)})"'))
    else:
        for k in range(0, size, max(1, size // 10)):
            body.append(_text(left - 6, top + cell * k + cell / 2 + 4, str(tick_numbers[k]), "end", 11))
            body.append(_text(left + cell * k + cell / 2, top + grid + 16, str(tick_numbers[k]), "middle", 11))
    x_label, y_label = axis_labels
    body.append(_text(left + grid / 2, height - 12, x_label, "middle"))
    body.append(_text(16, top + grid / 2, y_label, "middle",
                      extra=f' transform="rotate(-90 16 {_n(top + grid / 2)})"'))
    body.append(_colorbar(left + grid + 40, top, min(grid, 300.0), vmax, log, axes.unit, f"heat-ramp-{figure}"))
    return _svg(height, title, body, figure)


_CONFUSION_AXES = _HeatAxes("given", "predicted", "given", "predicted", "label issues")


def confusion_figure(pair_codes: np.ndarray, pair_counts: np.ndarray, num_classes: int,
                      names: Optional[Sequence[str]]) -> Tuple[str, int]:
    """Heat map of issues by (given, predicted); large K is drawn in class blocks.

    Returns the SVG and the block size (1 when every class has its own cell).
    """
    block = heatmap_block(num_classes)
    matrix = dense_confusion(pair_codes, pair_counts, num_classes, block)
    size = matrix.shape[0]
    firsts = [k * block for k in range(size)]
    if block == 1:
        labels = [class_label(k, names) for k in range(size)]
        axis_labels = ("predicted label", "given label")
    else:
        labels = [f"{first}–{min(first + block, num_classes) - 1}" for first in firsts]
        axis_labels = (f"predicted label (blocks of {block} classes, by first class index)",
                       f"given label (blocks of {block} classes)")
    svg = _heat_map(matrix, range(size), labels, firsts, block == 1 and size <= HEATMAP_TICK_LABELS_MAX_K,
                    _CONFUSION_AXES, axis_labels, outline=block == 1, figure="confusion",
                    title="Heat map of issues by given and predicted label")
    return svg, block


def _colorbar(x: float, y: float, length: float, vmax: int, log: bool, unit: str, gradient_id: str) -> str:
    """A vertical colour bar from the ramp with its count ticks (log or linear).

    ``gradient_id`` must be unique in the page: every inline SVG shares the document's ids.
    """
    stops = "".join(
        f'<stop offset="{i / (len(_HEAT_RAMP) - 1):.3f}" stop-color="{c}"/>' for i, c in enumerate(reversed(_HEAT_RAMP))
    )
    parts = [
        f'<defs><linearGradient id="{gradient_id}" x1="0" y1="0" x2="0" y2="1">{stops}</linearGradient></defs>',
        f'<rect x="{_n(x)}" y="{_n(y)}" width="16" height="{_n(length)}" fill="url(#{gradient_id})" stroke="#bbb"/>',
    ]
    if log:
        ticks = [10 ** e for e in range(0, int(math.log10(vmax)) + 1)]
        position = [math.log(t) / math.log(vmax) for t in ticks]
    else:
        ticks = [t for t in nice_ticks(0, vmax, 4) if t == int(t) and t <= vmax]
        position = [t / vmax for t in ticks]
    for t, p in zip(ticks, position):
        ty = y + length * (1 - p)
        parts.append(f'<path d="M{_n(x + 16)} {_n(ty)}h4" stroke="#555"/>')
        parts.append(_text(x + 24, ty + 4, fmt_int(t), size=11))
    label = unit + (" (log scale)" if log else "")
    cx = x + 80
    parts.append(_text(cx, y + length / 2, label, "middle", 12,
                       extra=f' transform="rotate(-90 {_n(cx)} {_n(y + length / 2)})"'))
    return '<g class="colorbar">' + "".join(parts) + "</g>"


# --- the calibrated confident joint ------------------------------------------------------------


def joint_heatmap_classes(given: np.ndarray, likely_true: np.ndarray, counts: np.ndarray,
                          num_classes: int) -> Tuple[np.ndarray, bool]:
    """The classes the confident-joint heat map draws, and whether that is fewer than all.

    Every class up to HEATMAP_FULL_MAX_K; past that the JOINT_TOP_CLASSES with the most
    off-diagonal mass (the examples given the class whose likely true label is another, plus
    those of another given label likely of this class; ties by the lower index). Either way
    in index order, so the diagonal stays the diagonal and a class is found by its number.
    """
    if num_classes <= HEATMAP_FULL_MAX_K:
        return np.arange(num_classes), False
    off = given != likely_true
    weights = counts[off].astype(np.float64)
    mass = (np.bincount(given[off], weights=weights, minlength=num_classes)
            + np.bincount(likely_true[off], weights=weights, minlength=num_classes))
    return np.sort(np.lexsort((np.arange(num_classes), -mass))[:JOINT_TOP_CLASSES]), True


_JOINT_AXES = _HeatAxes("given", "likely-true", "given", "likely true", "examples")


def confident_joint_figure(given: np.ndarray, likely_true: np.ndarray, counts: np.ndarray, num_classes: int,
                           names: Optional[Sequence[str]]) -> Tuple[str, bool]:
    """Heat map of the calibrated confident joint: examples by (given, likely true label).

    The cells are the joint's non-zero cells (``given``, ``likely_true``, ``counts``, as in
    ``confident_joint-*.parquet``). Past HEATMAP_FULL_MAX_K classes only the classes of
    ``joint_heatmap_classes`` are drawn. Returns the SVG and
    whether classes were left out.
    """
    given = np.asarray(given, np.int64)
    likely_true = np.asarray(likely_true, np.int64)
    counts = np.asarray(counts, np.int64)
    classes, truncated = joint_heatmap_classes(given, likely_true, counts, num_classes)
    position = np.full(num_classes, -1, np.int64)
    position[classes] = np.arange(len(classes))
    rows, cols = position[given], position[likely_true]
    kept = (rows >= 0) & (cols >= 0)
    matrix = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(matrix, (rows[kept], cols[kept]), counts[kept])
    labels = [class_label(int(k), names) for k in classes]
    axis_labels = ("likely true label", "given label")
    if truncated:
        axis_labels = (f"likely true label ({len(classes)} of {num_classes:,} classes with the most off-diagonal mass)",
                       "given label")
    svg = _heat_map(matrix, classes, labels, classes.tolist(),
                    truncated or len(classes) <= HEATMAP_TICK_LABELS_MAX_K, _JOINT_AXES, axis_labels,
                    outline=True, figure="confident-joint",
                    title="Heat map of the calibrated confident joint: given label by likely true label")
    return svg, truncated


# --- confident thresholds ------------------------------------------------------------------


def threshold_block(num_classes: int) -> int:
    """Classes per threshold bar: 1 up to THRESHOLD_BARS_MAX classes, else blocks."""
    return 1 if num_classes <= THRESHOLD_BARS_MAX else math.ceil(num_classes / THRESHOLD_BARS_MAX)


def thresholds_figure(thresholds: np.ndarray, examples_per_class: np.ndarray,
                       names: Optional[Sequence[str]]) -> str:
    """Per-class confident thresholds; classes without examples are greyed out.

    Past THRESHOLD_BARS_MAX classes, each bar is a block of consecutive classes
    drawn from its lowest to its highest threshold, with a tick at the mean.
    """
    k = len(thresholds)
    block = threshold_block(k)
    named = k <= 30
    left, right, top = 64, 20, 34
    longest = max((len(short_label(c, names, 16)) for c in range(k)), default=1) if named else 0
    bottom = 44 + 5 * longest if named else 50
    plot_h = 220
    height = top + plot_h + bottom
    size = math.ceil(k / block)
    x = _Scale(0, size, left, _WIDTH - right)
    y = _Scale(0, 1, top + plot_h, top)
    width = (x.end - x.start) / size
    body = [f'<rect x="0" y="0" width="{_WIDTH}" height="{_n(height)}" fill="#fff"/>']
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(f'<path d="M{left} {_n(y(t))}H{_WIDTH - right}" stroke="{GRID_COLOR}"/>')
        body.append(_text(left - 6, y(t) + 4, f"{t:g}", "end", 11))
    bars, marks = [], []
    for b in range(size):
        lo_k, hi_k = b * block, min((b + 1) * block, k)
        values = np.asarray(thresholds[lo_k:hi_k], dtype=float)
        has_examples = examples_per_class[lo_k:hi_k] > 0
        x0 = x(b) + (width * 0.1 if width > 3 else 0)
        w = width * 0.8 if width > 3 else max(width, 0.5)
        color = BASE_COLOR if has_examples.any() else MUTED_COLOR
        if block == 1:
            value = float(values[0])
            tip = f"{class_label(lo_k, names)}: {fmt_score(value)}" + ("" if has_examples[0] else " (no examples)")
            bars.append(
                f'<rect data-class="{lo_k}" data-value="{value!r}" x="{_n(x0)}" y="{_n(y(value))}" '
                f'width="{_n(w)}" height="{_n(max(y(0) - y(value), 0.5))}" fill="{color}">'
                f"<title>{esc(tip)}</title></rect>"
            )
            if not has_examples[0]:
                marks.append(_text(x0 + w / 2, y(0) - 4, "×", "middle", 11, extra=f' fill="{MUTED_COLOR}"'))
        else:
            lo, hi, mean = float(values.min()), float(values.max()), float(values.mean())
            tip = f"classes {lo_k}–{hi_k - 1}: {fmt_score(lo)} to {fmt_score(hi)}, mean {fmt_score(mean)}"
            bars.append(
                f'<rect data-classes="{lo_k}-{hi_k - 1}" data-min="{lo!r}" data-max="{hi!r}" '
                f'x="{_n(x0)}" y="{_n(y(hi))}" width="{_n(w)}" height="{_n(max(y(lo) - y(hi), 0.8))}" '
                f'fill="{color}" fill-opacity="0.55"><title>{esc(tip)}</title></rect>'
            )
            marks.append(f'<path d="M{_n(x0)} {_n(y(mean))}h{_n(w)}" stroke="#1a3f6b" stroke-width="1.2"/>')
    body.append(f'<g shape-rendering="crispEdges">{"".join(bars)}</g>')
    body.extend(marks)
    body.append(f'<path d="M{left} {_n(y(0))}H{_WIDTH - right}" stroke="#555"/>')
    if named:
        for c in range(k):
            cx = x(c) + width / 2
            ty = y(0) + 10
            body.append(_text(cx, ty, short_label(c, names, 16), "end", 11,
                              extra=f' transform="rotate(-45 {_n(cx)} {_n(ty)})"'))
    else:
        for t in nice_ticks(0, k):
            if t <= k - 1:
                tx = x(t / block) + width / 2
                body.append(_text(tx, y(0) + 16, fmt_int(t), "middle", 11))
        x_label = "class" if block == 1 else f"class (blocks of {block}: lowest to highest threshold, line at the mean)"
        body.append(_text((left + _WIDTH - right) / 2, height - 12, x_label, "middle"))
    body.append(_text(16, top + plot_h / 2, "confident threshold", "middle",
                      extra=f' transform="rotate(-90 16 {_n(top + plot_h / 2)})"'))
    if (examples_per_class == 0).any():
        body.append(_text(_WIDTH - right, 16, "grey ×: class has no examples (threshold is the 2e-6 floor)", "end", 11,
                          extra=f' fill="{MUTED_COLOR}"'))
    return _svg(height, "Confident threshold per class", body, "thresholds")


# --- human review --------------------------------------------------------------------------


def human_review_figure(ranks: np.ndarray, not_upheld: np.ndarray, num_issues: int) -> str:
    """Reviewed issues by rank range: how many the reviewers upheld and how many they did not.

    ``ranks`` are the ranks of the reviewed issues, ``not_upheld`` whether the
    reviewers rejected each one's given label.
    """
    buckets = max(1, min(REVIEW_BUCKETS, num_issues))
    edges = np.linspace(0, num_issues, buckets + 1).round().astype(np.int64)
    which = np.clip(np.searchsorted(edges, ranks, side="right") - 1, 0, buckets - 1)
    rejected = np.bincount(which[not_upheld], minlength=buckets)
    upheld = np.bincount(which[~not_upheld], minlength=buckets)
    row, top, bottom, label_w = 24, 40, 44, 190
    height = top + row * buckets + bottom
    most = max(int((rejected + upheld).max(initial=0)), 1)
    x = _Scale(0, most * 1.25, label_w, _WIDTH - 150)
    body = [f'<rect x="0" y="0" width="{_WIDTH}" height="{_n(height)}" fill="#fff"/>',
            _legend([(ISSUE_COLOR, "reviewers did not uphold the given label"),
                      (UPHELD_COLOR, "reviewers upheld it")], label_w, 18)]
    for t in nice_ticks(0, x.high):
        if t == int(t) and t <= x.high:
            body.append(f'<path d="M{_n(x(t))} {top - 4}V{_n(height - bottom + 4)}" stroke="{GRID_COLOR}"/>')
            body.append(_text(x(t), height - bottom + 18, fmt_int(t), "middle", 11))
    bars = []
    for b in range(buckets):
        yc = top + row * b + row / 2
        first, last = int(edges[b]), int(edges[b + 1]) - 1
        span = f"rank {fmt_int(first)}" if last <= first else f"ranks {fmt_int(first)}–{fmt_int(last)}"
        body.append(_text(label_w - 8, yc + 4, span, "end", 12))
        r, u = int(rejected[b]), int(upheld[b])
        x_mid = x(r)
        bars.append(f'<rect data-bucket="{b}" data-not-upheld="{r}" x="{label_w}" y="{_n(yc - 8)}" '
                    f'width="{_n(x_mid - label_w)}" height="16" fill="{ISSUE_COLOR}"/>')
        bars.append(f'<rect data-bucket="{b}" data-upheld="{u}" x="{_n(x_mid)}" y="{_n(yc - 8)}" '
                    f'width="{_n(x(r + u) - x_mid)}" height="16" fill="{UPHELD_COLOR}"/>')
        reviewed = r + u
        note = f"{r} of {reviewed} not upheld" if reviewed else "none reviewed"
        body.append(_text(x(reviewed) + 6, yc + 4, note, size=11))
    body.append(f'<g shape-rendering="crispEdges">{"".join(bars)}</g>')
    body.append(_text((label_w + _WIDTH - 150) / 2, height - 10, "reviewed label issues", "middle"))
    return _svg(height, "Human review of the label issues by rank", body, "human-review")
