"""The report page: self-contained HTML with the figures embedded as PNG data URIs.

The page loads nothing from the network, so it can be mailed or archived as is.
"""

from __future__ import annotations

import base64
from typing import Any, Sequence

import numpy as np

from beam_labelissues.io.outputs import Summary
from beam_labelissues.report import data, figures
from beam_labelissues.report.data import IssueTable, ReportData
from beam_labelissues.report.format import class_label, esc, fmt_int, fmt_pct, fmt_score

CLASS_TABLE_MAX_K = 50  # per-class table (with thresholds) only up to this many classes
TOP_PAIRS = 15  # rows in the table of the most frequent (given, predicted) pairs


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def _figure_card(key: str, label: str, value: Any, shown: str, note: str = "") -> str:
    note_html = f'<div class="note">{esc(note)}</div>' if note else ""
    return (
        f'<div class="card" data-key="{esc(key)}" data-value="{esc(value)}">'
        f'<div class="value">{esc(shown)}</div><div class="label">{esc(label)}</div>'
        f"{note_html}</div>"
    )


def _headline_section(summary: Summary) -> str:
    """The figures a reader wants first, and the settings that produced them."""
    n = int(summary.num_examples)
    issues = int(summary.num_label_issues)
    estimated = summary.num_issues_estimated
    invalid = summary.num_invalid_records
    cards = [
        _figure_card("num_examples", "Examples read", n, fmt_int(n)),
        _figure_card("num_invalid_records", "Invalid records", invalid, fmt_int(invalid or 0),
                     "skipped, not scored"),
        _figure_card("num_issues_estimated", "Estimated issues", estimated,
                     "–" if estimated is None else fmt_int(estimated)),
        _figure_card("num_label_issues", "Issues returned", issues, fmt_int(issues),
                     "after dropping those the model agrees with"),
        _figure_card("issue_share", "Share of the dataset", issues / n if n else 0,
                     fmt_pct(issues, n)),
        _figure_card("num_classes", "Classes", summary.num_classes,
                     fmt_int(summary.num_classes)),
    ]
    settings = [
        ("method", "Scoring method"),
        ("adjust_pred_probs", "adjust_pred_probs"),
        ("estimation_method", "Estimation method"),
        ("input", "Input"),
    ]
    rows = "".join(
        f'<tr data-key="{esc(key)}"><th>{esc(label)}</th><td>{esc(getattr(summary, key, "–"))}</td></tr>'
        for key, label in settings
    )
    return (
        '<section id="headline"><div class="cards">' + "".join(cards) + "</div>"
        f'<table class="settings">{rows}</table></section>'
    )


def _histogram_section(summary: Summary, issue_counts: np.ndarray | None,
                       issue_range: Sequence[float] | None) -> str:
    hist = summary.score_histogram
    intro = (
        "<p>Label quality score of every example. Low scores mark labels the model "
        "doubts most."
    )
    if issue_range is not None:
        intro += (
            " Red: the label issues; the dashed line is the highest score among them "
            f"(their scores range from {esc(fmt_score(issue_range[0]))} to "
            f"{esc(fmt_score(issue_range[1]))}).</p>"
        )
    else:
        intro += " No label issues were found, so no range is marked.</p>"
    if not hist or not hist.get("counts"):
        return f'<section id="scores"><h2>Label quality scores</h2>{intro}<p class="empty">summary.json has no score histogram.</p></section>'
    png = figures.score_histogram_figure(hist["bin_edges"], hist["counts"], issue_counts, issue_range)
    return f'<section id="scores"><h2>Label quality scores</h2>{intro}{_img(png, "Histogram of label quality scores")}</section>'


def _per_class_section(issues_per_class: np.ndarray, examples_per_class: np.ndarray,
                       names: Sequence[str] | None) -> str:
    _, truncated = figures.class_order_for_bars(issues_per_class)
    note = (
        f"<p>The {figures.CLASS_BARS_MAX} of {len(issues_per_class):,} classes with the most issues.</p>"
        if truncated else ""
    )
    empty = int((examples_per_class == 0).sum())
    if empty:
        note += f"<p>{empty:,} class{'es have' if empty > 1 else ' has'} no examples.</p>"
    png = figures.issues_per_class_figure(issues_per_class, examples_per_class, names)
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
            f"<tr><td>{esc(class_label(g, names))}</td><td>{esc(class_label(p, names))}</td>"
            f'<td class="num">{fmt_int(count)}</td><td class="num">{fmt_pct(int(count), total)}</td></tr>'
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
    png, block = figures.confusion_figure(issues.pair_codes, issues.pair_counts, num_classes, names)
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
            f'<tr data-class="{k}"><td>{esc(class_label(k, names))}</td>'
            f'<td class="num">{fmt_int(n_k)}</td><td class="num">{fmt_pct(n_k, total)}</td>'
            f'<td class="num">{fmt_int(issues_per_class[k])}</td>'
            f'<td class="num">{fmt_pct(int(issues_per_class[k]), n_k)}</td>'
            f'<td class="num">{esc(fmt_score(float(thresholds[k])))}</td></tr>'
        )
    return (
        '<table class="classes"><thead><tr><th>Class</th><th class="num">Examples</th>'
        '<th class="num">Share</th><th class="num">Issues</th><th class="num">Flagged</th>'
        '<th class="num">Confident threshold</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _thresholds_section(thresholds: np.ndarray, examples_per_class: np.ndarray,
                        issues_per_class: np.ndarray, names: Sequence[str] | None) -> str:
    png = figures.thresholds_figure(thresholds, examples_per_class, names)
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
    head = f'<section id="top-issues"><h2>The {data.TOP_ISSUES} most severe issues</h2>'
    if not rows:
        return head + '<p class="empty">No label issues were found.</p></section>'
    body = []
    for r in rows:
        given, pred = int(r["given_label"]), int(r["predicted_label"])
        body.append(
            f'<tr data-rank="{esc(r["rank"])}" data-id="{esc(r["id"])}">'
            f'<td class="num">{esc(r["rank"])}</td><td class="id">{esc(r["id"])}</td>'
            f"<td>{esc(class_label(given, names))}</td><td>{esc(class_label(pred, names))}</td>"
            f'<td class="num">{esc(fmt_score(r["label_quality"]))}</td></tr>'
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
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body><main>"
        + "".join(sections)
        + f"<footer>{footer}</footer></main></body></html>\n"
    )


def build_report_html(report: ReportData) -> str:
    """The report as one HTML string."""
    summary, issues, names = report.summary, report.issues, report.class_names
    num_classes = report.num_classes
    thresholds = np.asarray(summary.confident_thresholds, dtype=float)
    examples_per_class = np.asarray(summary.examples_per_class, dtype=np.int64)
    issues_per_class = report.issues_per_class
    sections = [
        "<header><h1>Label issues report</h1>"
        f"<p>{esc(summary.input or report.output_dir)}</p></header>"
    ]
    if issues.num_rows != int(summary.num_label_issues):
        sections.append(
            f'<p class="warning">summary.json reports {fmt_int(summary.num_label_issues)} '
            f"issues but the label_issues files hold {fmt_int(issues.num_rows)} rows.</p>"
        )
    sections += [
        _headline_section(summary),
        _histogram_section(summary, issues.score_counts, report.issue_score_range),
        _per_class_section(issues_per_class, examples_per_class, names),
        _confusion_section(issues, num_classes, names),
        _thresholds_section(thresholds, examples_per_class, issues_per_class, names),
        _top_issues_section(issues.top_rows, issues.num_rows, names),
    ]
    footer = "Generated by beam-labelissues from summary.json"
    if summary.label_issues_files:
        footer += " and " + ", ".join(esc(f) for f in summary.label_issues_files)
    return _page("Label issues report", sections, footer + ".")
