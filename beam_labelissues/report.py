"""A self-contained HTML report of one run's output directory.

The report is built only from `summary.json` and the `label_issues-*.parquet`
files, so it stays cheap however large the dataset was: the per-example
`label_quality_scores-*.parquet` files are never opened. Figures are drawn
with matplotlib (imported lazily, through the object API, so neither this
module's import nor the user's pyplot state is touched) and embedded as base64
PNG data URIs; the page loads nothing from the network.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import glob
import html
import io
import json
import math
import os
import posixpath
from typing import Any, Iterator, Sequence

import numpy as np

REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"
ISSUES_PATTERN = "label_issues-*.parquet"

TOP_ISSUES = 50  # rows in the table of the most severe issues
CLASS_TABLE_MAX_K = 50  # per-class table (with thresholds) only up to this many classes
CLASS_BARS_MAX = 40  # classes drawn in the issues-per-class chart
HEATMAP_FULL_MAX_K = 60  # above this, the heat map aggregates classes into blocks
HEATMAP_BLOCKS = 50  # number of blocks per axis when aggregating
HEATMAP_ANNOTATE_MAX_K = 20  # write counts into the cells up to this many classes
TOP_PAIRS = 15  # rows in the table of the most frequent (given, predicted) pairs
READ_BATCH_ROWS = 65536

_ISSUE_COLOR = "#c0392b"
_BASE_COLOR = "#2c6fbb"
_MUTED_COLOR = "#9aa5b1"


# --------------------------------------------------------------------------
# Input and output. Local paths use os/glob; paths with a scheme (gs://, s3://)
# go through Beam's FileSystems, imported only when such a path is seen.


def _is_remote(path: str) -> bool:
    return "://" in path


def _join(directory: str, name: str) -> str:
    if _is_remote(directory):
        return posixpath.join(directory, name)
    return os.path.join(directory, name)


def _glob(directory: str, pattern: str) -> list[str]:
    """Files in `directory` matching `pattern`, sorted so reads are deterministic."""
    if not _is_remote(directory):
        return sorted(glob.glob(os.path.join(glob.escape(directory), pattern)))
    from apache_beam.io.filesystems import FileSystems

    matches = FileSystems.match([_join(directory, pattern)])[0].metadata_list
    paths = [m.path for m in matches]
    return sorted(p for p in paths if fnmatch.fnmatch(posixpath.basename(p), pattern))


def _read_bytes(path: str) -> bytes:
    if not _is_remote(path):
        with open(path, "rb") as f:
            return f.read()
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        return f.read()


def _write_bytes(path: str, data: bytes) -> None:
    if not _is_remote(path):
        with open(path, "wb") as f:
            f.write(data)
        return
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path, mime_type="text/html") as f:
        f.write(data)


def _open_parquet(path: str):
    """A pyarrow ParquetFile; remote files are opened through FileSystems."""
    import pyarrow.parquet as pq

    if not _is_remote(path):
        return pq.ParquetFile(path)
    from apache_beam.io.filesystems import FileSystems

    return pq.ParquetFile(FileSystems.open(path))


# --------------------------------------------------------------------------
# Reading the run's results.


def load_class_names(path: str) -> list[str]:
    """Class names from a file: a JSON list of strings, or one name per line.

    Line k names class k, so blank lines inside the list and duplicate names
    are rejected rather than silently shifting or merging classes.
    """
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"class names file {path} is not UTF-8 text: {e}") from None
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"class names file {path} is empty")
    if stripped.startswith("["):
        try:
            names = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ValueError(f"class names file {path} is not a valid JSON list: {e}") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"class names file {path} must hold a JSON list of strings")
        names = [n.strip() for n in names]
    else:
        names = [line.strip() for line in stripped.splitlines()]
    if not names:
        raise ValueError(f"class names file {path} holds no names")
    empty = [i for i, n in enumerate(names) if not n]
    if empty:
        raise ValueError(
            f"class names file {path} has an empty name for class {empty[0]} "
            "(one name per line, line k naming class k)"
        )
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise ValueError(
                f"class names file {path} names classes {seen[n]} and {i} both {n!r}"
            )
        seen[n] = i
    return names


def _read_summary(output_dir: str) -> dict:
    path = _join(output_dir, SUMMARY_FILE)
    try:
        data = _read_bytes(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: is {output_dir} a run's output directory?") from None
    summary = json.loads(data.decode("utf-8"))
    for key in ("num_examples", "num_classes", "num_label_issues", "examples_per_class",
                "confident_thresholds"):
        if key not in summary:
            raise ValueError(f"{path} lacks the key {key!r}")
    return summary


@dataclasses.dataclass
class IssueTable:
    """What the report needs from the issues files, gathered in one streaming pass.

    pair_codes/pair_counts hold a sparse given x predicted count matrix
    (code = given * K + predicted), so memory follows the distinct pairs, not K*K.
    """

    num_rows: int
    pair_codes: np.ndarray
    pair_counts: np.ndarray
    top_rows: list[dict]
    score_counts: np.ndarray | None  # issues per bin of the summary's score histogram
    score_min: float | None
    score_max: float | None


_TOP_COLUMNS = ("rank", "id", "given_label", "predicted_label", "label_quality")


def _iter_issue_batches(paths: Sequence[str], columns: Sequence[str]) -> Iterator[Any]:
    for path in paths:
        pf = _open_parquet(path)
        present = [c for c in columns if c in pf.schema_arrow.names]
        missing = set(_TOP_COLUMNS) - set(present)
        if missing:
            raise ValueError(f"{path} lacks the columns {sorted(missing)}")
        yield from pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=present)


def _merge_pairs(codes: np.ndarray, counts: np.ndarray, new_codes: np.ndarray,
                 new_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    all_codes = np.concatenate([codes, new_codes])
    all_counts = np.concatenate([counts, new_counts])
    uniq, inverse = np.unique(all_codes, return_inverse=True)
    return uniq, np.bincount(inverse, weights=all_counts, minlength=len(uniq)).astype(np.int64)


def _read_issues(output_dir: str, num_classes: int,
                 bin_edges: Sequence[float] | None = None) -> IssueTable:
    """Stream the issues files once: pair counts, score range, score histogram, top rows."""
    paths = _glob(output_dir, ISSUES_PATTERN)
    columns = list(_TOP_COLUMNS) + ["given_label_name", "predicted_label_name"]
    codes = np.zeros(0, np.int64)
    counts = np.zeros(0, np.int64)
    top: list[dict] = []
    num_rows = 0
    score_min, score_max = math.inf, -math.inf
    edges = None if bin_edges is None else np.asarray(bin_edges, dtype=float)
    score_counts = None if edges is None else np.zeros(len(edges) - 1, dtype=np.int64)
    for batch in _iter_issue_batches(paths, columns):
        if batch.num_rows == 0:
            continue
        num_rows += batch.num_rows
        given = batch.column("given_label").to_numpy(zero_copy_only=False).astype(np.int64)
        pred = batch.column("predicted_label").to_numpy(zero_copy_only=False).astype(np.int64)
        bad = (given < 0) | (given >= num_classes) | (pred < 0) | (pred >= num_classes)
        if bad.any():
            raise ValueError(
                f"label issues hold a label outside 0..{num_classes - 1}: "
                f"given={given[bad][0]}, predicted={pred[bad][0]}"
            )
        batch_codes, batch_counts = np.unique(given * num_classes + pred, return_counts=True)
        codes, counts = _merge_pairs(codes, counts, batch_codes, batch_counts)
        scores = batch.column("label_quality").to_numpy(zero_copy_only=False)
        score_min = min(score_min, float(scores.min()))
        score_max = max(score_max, float(scores.max()))
        if edges is not None:
            score_counts += np.histogram(scores, bins=edges)[0]
        ranks = batch.column("rank").to_numpy(zero_copy_only=False)
        keep = np.argsort(ranks, kind="stable")[:TOP_ISSUES]
        top.extend(batch.take(keep).to_pylist())
        top = sorted(top, key=lambda r: r["rank"])[:TOP_ISSUES]
    return IssueTable(
        num_rows=num_rows,
        pair_codes=codes,
        pair_counts=counts,
        top_rows=top,
        score_counts=score_counts,
        score_min=None if num_rows == 0 else score_min,
        score_max=None if num_rows == 0 else score_max,
    )


# --------------------------------------------------------------------------
# Small formatting helpers.


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt_int(value: Any) -> str:
    return f"{int(value):,}"


def _fmt_pct(part: float, whole: float) -> str:
    if not whole:
        return "–"
    return f"{100.0 * part / whole:.2f}%"


def _fmt_score(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0 or abs(value) >= 1e-3:
        return f"{value:.4f}"
    return f"{value:.3e}"


def _class_label(k: int, names: Sequence[str] | None) -> str:
    """How a class is shown everywhere: "name (k)" when names exist, else "k"."""
    if names:
        return f"{names[k]} ({k})"
    return str(k)


def _short_label(k: int, names: Sequence[str] | None, width: int = 18) -> str:
    """A class label short enough for an axis tick."""
    label = _class_label(k, names)
    return label if len(label) <= width else label[: width - 1] + "…"


# --------------------------------------------------------------------------
# Figures. Each returns a PNG as bytes; none touches pyplot's global state.


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


def _score_histogram_figure(bin_edges: Sequence[float], counts: Sequence[int],
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
                   label=f"issues' scores: {_fmt_score(lo)} to {_fmt_score(hi)}")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("label quality score (low = likely mislabeled)")
    ax.legend(loc="best", frameon=False)
    return _png(fig)


def _class_order_for_bars(issues_per_class: np.ndarray) -> tuple[np.ndarray, bool]:
    """All classes in order when few; otherwise those with the most issues."""
    k = len(issues_per_class)
    if k <= CLASS_BARS_MAX:
        return np.arange(k), False
    order = np.lexsort((np.arange(k), -issues_per_class))[:CLASS_BARS_MAX]
    return order, True


def _issues_per_class_figure(issues_per_class: np.ndarray, examples_per_class: np.ndarray,
                             names: Sequence[str] | None) -> bytes:
    """Issues by given class beside the class's share of all examples.

    Side by side, a class that holds many issues only because it is large can be
    told from one that is flagged out of proportion to its size.
    """
    order, _ = _class_order_for_bars(issues_per_class)
    total = max(int(examples_per_class.sum()), 1)
    labels = [_short_label(int(k), names, 24) for k in order]
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


def _confusion_figure(pair_codes: np.ndarray, pair_counts: np.ndarray, num_classes: int,
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
            tick_labels = [_short_label(int(k), names, 16) for k in ticks]
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


def _thresholds_figure(thresholds: np.ndarray, examples_per_class: np.ndarray,
                       names: Sequence[str] | None) -> bytes:
    """Per-class confident thresholds; classes without examples are greyed out."""
    k = len(thresholds)
    x = np.arange(k)
    fig = _new_figure(10, 3.6 if k <= 30 else 3.0)
    ax = fig.add_subplot()
    _style_axes(ax)
    colors = np.where(examples_per_class > 0, _BASE_COLOR, _MUTED_COLOR)
    ax.bar(x, thresholds, color=colors, width=0.8 if k <= 200 else 1.0)
    if k <= 30:
        ax.set_xticks(x, [_short_label(int(i), names, 16) for i in x], rotation=45,
                      ha="right", fontsize=8)
    else:
        ax.set_xlabel("class")
    ax.set_xlim(-0.7, k - 0.3)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("confident threshold")
    if (examples_per_class == 0).any():
        from matplotlib.patches import Patch

        empty = np.flatnonzero(examples_per_class == 0)
        ax.scatter(empty, np.full(len(empty), 0.02), marker="x", color=_MUTED_COLOR, zorder=3)
        ax.legend(handles=[Patch(color=_MUTED_COLOR, label="× class has no examples (threshold is the 2e-6 floor)")],
                  loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    return _png(fig)


# --------------------------------------------------------------------------
# HTML sections. Each returns a string of escaped HTML.


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


def _figure_card(key: str, label: str, value: Any, shown: str, note: str = "") -> str:
    note_html = f'<div class="note">{_esc(note)}</div>' if note else ""
    return (
        f'<div class="card" data-key="{_esc(key)}" data-value="{_esc(value)}">'
        f'<div class="value">{_esc(shown)}</div><div class="label">{_esc(label)}</div>'
        f"{note_html}</div>"
    )


def _headline_section(summary: dict) -> str:
    """The figures a reader wants first, and the settings that produced them."""
    n = int(summary["num_examples"])
    issues = int(summary["num_label_issues"])
    estimated = summary.get("num_issues_estimated")
    invalid = summary.get("num_invalid_records", 0)
    cards = [
        _figure_card("num_examples", "Examples read", n, _fmt_int(n)),
        _figure_card("num_invalid_records", "Invalid records", invalid, _fmt_int(invalid or 0),
                     "skipped, not scored"),
        _figure_card("num_issues_estimated", "Estimated issues", estimated,
                     "–" if estimated is None else _fmt_int(estimated)),
        _figure_card("num_label_issues", "Issues returned", issues, _fmt_int(issues),
                     "after dropping those the model agrees with"),
        _figure_card("issue_share", "Share of the dataset", issues / n if n else 0,
                     _fmt_pct(issues, n)),
        _figure_card("num_classes", "Classes", summary["num_classes"],
                     _fmt_int(summary["num_classes"])),
    ]
    settings = [
        ("method", "Scoring method"),
        ("adjust_pred_probs", "adjust_pred_probs"),
        ("estimation_method", "Estimation method"),
        ("input", "Input"),
    ]
    rows = "".join(
        f'<tr data-key="{_esc(key)}"><th>{_esc(label)}</th><td>{_esc(summary.get(key, "–"))}</td></tr>'
        for key, label in settings
    )
    return (
        '<section id="headline"><div class="cards">' + "".join(cards) + "</div>"
        f'<table class="settings">{rows}</table></section>'
    )


def _histogram_section(summary: dict, issue_counts: np.ndarray | None,
                       issue_range: Sequence[float] | None) -> str:
    hist = summary.get("score_histogram")
    intro = (
        "<p>Label quality score of every example. Low scores mark labels the model "
        "doubts most."
    )
    if issue_range is not None:
        intro += (
            " Red: the label issues; the dashed line is the highest score among them "
            f"(their scores range from {_esc(_fmt_score(issue_range[0]))} to "
            f"{_esc(_fmt_score(issue_range[1]))}).</p>"
        )
    else:
        intro += " No label issues were found, so no range is marked.</p>"
    if not hist or not hist.get("counts"):
        return f'<section id="scores"><h2>Label quality scores</h2>{intro}<p class="empty">summary.json has no score histogram.</p></section>'
    png = _score_histogram_figure(hist["bin_edges"], hist["counts"], issue_counts, issue_range)
    return f'<section id="scores"><h2>Label quality scores</h2>{intro}{_img(png, "Histogram of label quality scores")}</section>'


def _per_class_section(issues_per_class: np.ndarray, examples_per_class: np.ndarray,
                       names: Sequence[str] | None) -> str:
    _, truncated = _class_order_for_bars(issues_per_class)
    note = (
        f"<p>The {CLASS_BARS_MAX} of {len(issues_per_class):,} classes with the most issues.</p>"
        if truncated else ""
    )
    empty = int((examples_per_class == 0).sum())
    if empty:
        note += f"<p>{empty:,} class{'es have' if empty > 1 else ' has'} no examples.</p>"
    png = _issues_per_class_figure(issues_per_class, examples_per_class, names)
    return (
        '<section id="per-class"><h2>Issues per given class</h2>'
        "<p>Left: how many issues carry each given label (and what share of that class "
        "they are). Right: the class's share of all examples.</p>"
        f"{note}{_img(png, 'Issues per given class and share of examples')}</section>"
    )


def _top_pairs_table(pair_codes: np.ndarray, pair_counts: np.ndarray, num_classes: int,
                     total: int, names: Sequence[str] | None) -> str:
    """The most frequent confusions, exact whatever K is."""
    order = np.lexsort((pair_codes, -pair_counts))[:TOP_PAIRS]
    rows = []
    for code, count in zip(pair_codes[order], pair_counts[order]):
        g, p = divmod(int(code), num_classes)
        rows.append(
            f"<tr><td>{_esc(_class_label(g, names))}</td><td>{_esc(_class_label(p, names))}</td>"
            f'<td class="num">{_fmt_int(count)}</td><td class="num">{_fmt_pct(int(count), total)}</td></tr>'
        )
    return (
        f"<h3>Most frequent confusions</h3><table><thead><tr><th>Given</th><th>Predicted</th>"
        f'<th class="num">Issues</th><th class="num">Share of issues</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _confusion_section(issues: IssueTable, num_classes: int, names: Sequence[str] | None) -> str:
    head = '<section id="confusion"><h2>Given label × predicted label</h2>'
    if issues.num_rows == 0:
        return head + '<p class="empty">No label issues, so there is nothing to cross-tabulate.</p></section>'
    png, block = _confusion_figure(issues.pair_codes, issues.pair_counts, num_classes, names)
    if block == 1:
        intro = "<p>Count of issues for each pair of given (row) and predicted (column) label.</p>"
    else:
        intro = (
            f"<p>Count of issues for each pair of given (row) and predicted (column) label, "
            f"with the {num_classes:,} classes grouped into blocks of {block} consecutive "
            "class indices; the table below lists the exact pairs.</p>"
        )
    table = _top_pairs_table(issues.pair_codes, issues.pair_counts, num_classes,
                             issues.num_rows, names)
    return head + intro + _img(png, "Heat map of issues by given and predicted label") + table + "</section>"


def _class_table(thresholds: np.ndarray, examples_per_class: np.ndarray,
                 issues_per_class: np.ndarray, names: Sequence[str] | None) -> str:
    total = int(examples_per_class.sum())
    rows = []
    for k in range(len(thresholds)):
        n_k = int(examples_per_class[k])
        rows.append(
            f'<tr data-class="{k}"><td>{_esc(_class_label(k, names))}</td>'
            f'<td class="num">{_fmt_int(n_k)}</td><td class="num">{_fmt_pct(n_k, total)}</td>'
            f'<td class="num">{_fmt_int(issues_per_class[k])}</td>'
            f'<td class="num">{_fmt_pct(int(issues_per_class[k]), n_k)}</td>'
            f'<td class="num">{_esc(_fmt_score(float(thresholds[k])))}</td></tr>'
        )
    return (
        '<table class="classes"><thead><tr><th>Class</th><th class="num">Examples</th>'
        '<th class="num">Share</th><th class="num">Issues</th><th class="num">Flagged</th>'
        '<th class="num">Confident threshold</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _thresholds_section(thresholds: np.ndarray, examples_per_class: np.ndarray,
                        issues_per_class: np.ndarray, names: Sequence[str] | None) -> str:
    png = _thresholds_figure(thresholds, examples_per_class, names)
    table = ""
    if len(thresholds) <= CLASS_TABLE_MAX_K:
        table = _class_table(thresholds, examples_per_class, issues_per_class, names)
    return (
        '<section id="thresholds"><h2>Confident thresholds</h2>'
        "<p>Each class's threshold is the model's mean predicted probability for that class "
        "over the examples labelled with it; a prediction counts as confident when it "
        "reaches its class's threshold.</p>"
        f"{_img(png, 'Confident threshold per class')}{table}</section>"
    )


def _top_issues_section(rows: list[dict], num_issues: int, names: Sequence[str] | None) -> str:
    head = f'<section id="top-issues"><h2>The {TOP_ISSUES} most severe issues</h2>'
    if not rows:
        return head + '<p class="empty">No label issues were found.</p></section>'
    body = []
    for r in rows:
        given, pred = int(r["given_label"]), int(r["predicted_label"])
        body.append(
            f'<tr data-rank="{_esc(r["rank"])}" data-id="{_esc(r["id"])}">'
            f'<td class="num">{_esc(r["rank"])}</td><td class="id">{_esc(r["id"])}</td>'
            f"<td>{_esc(_class_label(given, names))}</td><td>{_esc(_class_label(pred, names))}</td>"
            f'<td class="num">{_esc(_fmt_score(r["label_quality"]))}</td></tr>'
        )
    shown = f"<p>Showing {len(rows):,} of {num_issues:,} issues, most severe first.</p>"
    return (
        head + shown + '<table class="issues"><thead><tr><th class="num">Rank</th><th>ID</th>'
        '<th>Given label</th><th>Predicted label</th><th class="num">Label quality</th></tr>'
        f"</thead><tbody>{''.join(body)}</tbody></table></section>"
    )


_CSS = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif;
       color: #1f2933; background: #f4f6f8; margin: 0; line-height: 1.45; }
main { max-width: 1060px; margin: 0 auto; padding: 24px 28px 48px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0; color: #52606d; }
section { background: #fff; border-radius: 8px; padding: 18px 22px; margin-top: 20px;
          box-shadow: 0 1px 3px rgba(15, 23, 42, .08); }
h2 { font-size: 19px; margin: 0 0 8px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p { margin: 6px 0; }
img { display: block; max-width: 100%; height: auto; margin: 10px auto; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.card { border: 1px solid #e4e7eb; border-radius: 8px; padding: 12px 14px; }
.card .label { font-size: 13px; color: #3e4c59; font-weight: 500; margin-top: 2px; }
.card .value { font-size: 26px; font-weight: 600; line-height: 1.2; }
.card .note { font-size: 11px; color: #7b8794; }
.card[data-key="num_label_issues"] .value { color: #c0392b; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin-top: 10px; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #e4e7eb; vertical-align: top; }
thead th { background: #f0f2f5; font-weight: 600; }
tbody tr:nth-child(even) { background: #fafbfc; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.id { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; word-break: break-all; }
table.settings th { width: 190px; color: #52606d; font-weight: 500; }
table.settings td { word-break: break-word; }
.empty { color: #52606d; font-style: italic; }
.warning { background: #fff4e5; border-left: 4px solid #f0a202; padding: 8px 12px; }
footer { color: #7b8794; font-size: 12px; margin-top: 20px; }
"""


def _page(title: str, sections: Sequence[str], footer: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>"
        + "".join(sections)
        + f"<footer>{footer}</footer></main></body></html>\n"
    )


def _resolve_class_names(class_names: Sequence[str] | None, summary: dict) -> list[str] | None:
    names = class_names if class_names is not None else summary.get("class_names")
    if names is None:
        return None
    names = [str(n) for n in names]
    if len(names) != int(summary["num_classes"]):
        raise ValueError(
            f"{len(names)} class names given for {summary['num_classes']} classes"
        )
    return names


def build_report_html(output_dir: str, class_names: Sequence[str] | None = None) -> str:
    """The report as an HTML string (write_report writes it to the directory)."""
    summary = _read_summary(output_dir)
    num_classes = int(summary["num_classes"])
    names = _resolve_class_names(class_names, summary)
    thresholds = np.asarray(summary["confident_thresholds"], dtype=float)
    examples_per_class = np.asarray(summary["examples_per_class"], dtype=np.int64)
    if len(thresholds) != num_classes or len(examples_per_class) != num_classes:
        raise ValueError("summary.json: confident_thresholds and examples_per_class need num_classes entries")

    hist = summary.get("score_histogram") or {}
    issues = _read_issues(output_dir, num_classes, hist.get("bin_edges") or None)
    issues_per_class = np.bincount(issues.pair_codes // num_classes, weights=issues.pair_counts,
                                   minlength=num_classes).astype(np.int64)
    issue_range = summary.get("issue_score_range")
    if issue_range is None and issues.num_rows:
        issue_range = [issues.score_min, issues.score_max]

    sections = [
        "<header><h1>Label issues report</h1>"
        f"<p>{_esc(summary.get('input', output_dir))}</p></header>"
    ]
    if issues.num_rows != int(summary["num_label_issues"]):
        sections.append(
            f'<p class="warning">summary.json reports {_fmt_int(summary["num_label_issues"])} '
            f"issues but the label_issues files hold {_fmt_int(issues.num_rows)} rows.</p>"
        )
    sections += [
        _headline_section(summary),
        _histogram_section(summary, issues.score_counts, issue_range),
        _per_class_section(issues_per_class, examples_per_class, names),
        _confusion_section(issues, num_classes, names),
        _thresholds_section(thresholds, examples_per_class, issues_per_class, names),
        _top_issues_section(issues.top_rows, issues.num_rows, names),
    ]
    files = summary.get("label_issues_files") or []
    footer = "Generated by beam-labelissues from summary.json"
    if files:
        footer += " and " + ", ".join(_esc(f) for f in files)
    return _page("Label issues report", sections, footer + ".")


def write_report(output_dir: str, class_names: list[str] | None = None) -> str:
    """Build report.html in `output_dir` from a finished run's outputs; return its path.

    `class_names` overrides the names recorded in summary.json.
    """
    page = build_report_html(output_dir, class_names)
    path = _join(output_dir, REPORT_FILE)
    _write_bytes(path, page.encode("utf-8"))
    return path
