"""The report page: self-contained HTML with inline SVG figures and an inline script.

The page loads nothing from the network (no CDN, no web font, no remote image),
so it can be mailed or archived as is.

The page is a list of sections, each a function of the ``ReportData`` that
returns its HTML (or "" to leave itself out); ``SECTIONS`` sets their order.
A new section is one more such function added to ``SECTIONS``; what it shows
comes from ``ReportData``, which reads every file of the output directory the
report needs once, through ``io.outputs`` (``report.data``).
"""

from __future__ import annotations

import json
from typing import Callable, List, Optional, Sequence

import numpy as np

from beam_labelissues import example_uris
from beam_labelissues._version import __version__
from beam_labelissues.io import outputs
from beam_labelissues.report import data, figures
from beam_labelissues.report.data import ReportData
from beam_labelissues.report.format import class_label, esc, fmt_int, fmt_pct, fmt_score

CLASS_TABLE_MAX_K = 50  # per-class table (with thresholds) only up to this many classes
TOP_PAIRS = 15  # rows in the table of the most frequent (given, predicted) pairs
HEALTH_CLASSES_MAX = 50  # rows of the classes ranked by label quality (the lowest first)
TOP_OVERLAPS = 15  # rows of the most overlapping class pairs
ISSUES_PAGE_ROWS = 100  # rows per page of the interactive issues table

Section = Callable[[ReportData], str]
_NUM_CLASS = ' class="num"'


def _figure_card(key: str, label: str, value, shown: str, note: str = "") -> str:
    note_html = f'<div class="note">{esc(note)}</div>' if note else ""
    return (
        f'<div class="card" data-key="{esc(key)}" data-value="{esc(value)}">'
        f'<div class="value">{esc(shown)}</div><div class="label">{esc(label)}</div>'
        f"{note_html}</div>"
    )


# --- sections -------------------------------------------------------------------------------------


def header_section(report: ReportData) -> str:
    summary = report.summary
    warning = ""
    if report.issues.num_rows != int(summary.num_label_issues):
        warning = (
            f'<p class="warning">summary.json reports {fmt_int(summary.num_label_issues)} '
            f"issues but the label_issues files hold {fmt_int(report.issues.num_rows)} rows.</p>"
        )
    return (
        "<header><h1>Label issues report</h1>"
        f"<p>{esc(summary.input or report.output_dir)}</p></header>{warning}"
    )


def _run_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _options_text(options) -> str:
    if not options:
        return "–"
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in options.items())


def headline_section(report: ReportData) -> str:
    """The figures a reader wants first, and how the run was made."""
    summary = report.summary
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
        ("method", "Scoring method", summary.method),
        ("adjust_pred_probs", "adjust_pred_probs", summary.adjust_pred_probs),
        ("estimation_method", "Estimation method", summary.estimation_method),
        ("input", "Input", summary.input if summary.input is not None else "–"),
        ("tool_version", "Tool version", f"beam-labelissues {summary.tool_version}" if summary.tool_version else "–"),
        ("started_at", "Run started", summary.started_at or "–"),
        ("run_seconds", "Run time", _run_time(summary.run_seconds)),
        ("options", "Options", _options_text(summary.options)),
    ]
    rows = "".join(
        f'<tr data-key="{esc(key)}"><th>{esc(label)}</th><td>{esc(value)}</td></tr>'
        for key, label, value in settings
    )
    return (
        '<section id="headline"><div class="cards">' + "".join(cards) + "</div>"
        f'<table class="settings">{rows}</table></section>'
    )


def _ranked_classes_table(health: data.DatasetHealth, names: Optional[Sequence[str]], files: str) -> str:
    """The classes with the lowest label quality score, all of them up to HEALTH_CLASSES_MAX."""
    head = "<h3>Classes ranked by label quality</h3>"
    if health.classes is None:
        return head + '<p class="empty">This run wrote no class_health file.</p>'
    rows = health.classes.slice(0, HEALTH_CLASSES_MAX).to_pylist()
    total = health.classes.num_rows
    if total > len(rows):
        note = (f"<p>The {fmt_int(len(rows))} of {fmt_int(total)} classes with the lowest label quality "
                f"score; {esc(files)} lists every class.</p>")
    else:
        note = "<p>Every class, the lowest label quality score first.</p>"
    note += (
        "<p>Label issues: examples given the class that likely belong to another; inverse label issues: "
        "examples of the class given another label. Label noise is the share of the examples given the "
        "class that likely belong to another, inverse label noise the share of the class's likely members "
        "given another label; the label quality score is 1 − label noise.</p>"
    )
    body = "".join(
        f'<tr data-class-index="{row["class_index"]}"><td>{esc(class_label(row["class_index"], names))}</td>'
        f'<td class="num">{fmt_int(row["label_issues"])}</td>'
        f'<td class="num">{fmt_int(row["inverse_label_issues"])}</td>'
        f'<td class="num">{esc(fmt_score(row["label_noise"]))}</td>'
        f'<td class="num">{esc(fmt_score(row["inverse_label_noise"]))}</td>'
        f'<td class="num">{esc(fmt_score(row["label_quality_score"]))}</td></tr>'
        for row in rows
    )
    return (
        head + note + '<table class="health-classes"><thead><tr><th>Class</th>'
        '<th class="num">Label issues</th><th class="num">Inverse label issues</th>'
        '<th class="num">Label noise</th><th class="num">Inverse label noise</th>'
        f'<th class="num">Label quality score</th></tr></thead><tbody>{body}</tbody></table>'
    )


def _overlapping_pairs_table(health: data.DatasetHealth, names: Optional[Sequence[str]], files: str) -> str:
    """The TOP_OVERLAPS class pairs with the largest joint probability."""
    head = "<h3>Most overlapping class pairs</h3>"
    if health.overlapping is None:
        return head + '<p class="empty">This run wrote no overlapping_classes file.</p>'
    total = health.overlapping.num_rows
    if total == 0:
        return head + '<p class="empty">No two classes overlap: the confident joint has no off-diagonal cell.</p>'
    rows = health.overlapping.slice(0, TOP_OVERLAPS).to_pylist()
    shown = (f"The {fmt_int(len(rows))} of {fmt_int(total)} overlapping pairs with the largest joint probability "
             f"({esc(files)} lists them all)" if total > len(rows) else f"All {fmt_int(total)} overlapping pairs")
    note = (
        f"<p>{shown}. A pair's joint probability is the estimated share of the dataset whose given label is "
        "one class of the pair and whose true label is the other, both ways; overlapping examples are that "
        "share times the number of examples.</p>"
    )
    body = "".join(
        f'<tr data-class-a="{row["class_index_a"]}" data-class-b="{row["class_index_b"]}">'
        f'<td>{esc(class_label(row["class_index_a"], names))}</td>'
        f'<td>{esc(class_label(row["class_index_b"], names))}</td>'
        f'<td class="num">{fmt_int(row["num_overlapping_examples"])}</td>'
        f'<td class="num">{esc(fmt_score(row["joint_probability"]))}</td></tr>'
        for row in rows
    )
    return (
        head + note + '<table class="overlaps"><thead><tr><th>Class A</th><th>Class B</th>'
        '<th class="num">Overlapping examples</th><th class="num">Joint probability</th></tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _confident_joint_figure(health: data.DatasetHealth, num_classes: int, names: Optional[Sequence[str]],
                            files: str) -> str:
    head = "<h3>Confident joint</h3>"
    if not health.has_joint:
        return head + '<p class="empty">This run wrote no confident_joint file.</p>'
    svg, truncated = figures.confident_joint_figure(health.joint_given, health.joint_likely_true,
                                                    health.joint_counts, num_classes, names)
    intro = (
        "<p>The calibrated confident joint: how many examples of each given label (row) likely belong to each "
        "class (column). The diagonal holds the labels confident learning agrees with; every off-diagonal "
        "cell is a likely kind of label error.</p>"
    )
    if truncated:
        intro += (
            f"<p>The {figures.JOINT_TOP_CLASSES} of {fmt_int(num_classes)} classes with the most off-diagonal "
            "mass (examples given the class that likely belong to another, plus examples of another given "
            f"label that likely belong to it), in class order; {esc(files)} holds every cell.</p>"
        )
    return head + intro + svg


def _health_score_text(score: Optional[float]) -> str:
    """Four decimals, more where four would round a score below 1 up to 1.0000."""
    if score is None:
        return "–"
    for digits in range(4, 10):
        text = f"{score:.{digits}f}"
        if score >= 1 or float(text) < 1:
            return text
    return repr(score)


def health_section(report: ReportData) -> str:
    """The dataset's health as confident learning sees it: the overall score, the classes ranked
    by label quality, the most overlapping class pairs and the confident joint."""
    head = '<section id="health"><h2>Dataset health</h2>'
    health, summary = report.health, report.summary
    if int(summary.num_examples) == 0:
        return head + '<p class="empty">No valid example was read, so there is no health to show.</p></section>'
    if health is None:
        return head + (
            '<p class="empty">This output directory holds no dataset health figures: the run that wrote it '
            "predates them. A new run of the same data adds them.</p></section>"
        )
    n = int(summary.num_examples)
    score, issues = health.overall_label_health_score, health.num_confident_learning_issues
    cards = [
        _figure_card("overall_label_health_score", "Overall label health score", score,
                     _health_score_text(score), "1 − confident-learning issues / examples"),
        _figure_card("num_confident_learning_issues", "Confident-learning issues", issues,
                     "–" if issues is None else fmt_int(issues),
                     "" if issues is None else f"of {fmt_int(n)} examples ({fmt_pct(issues, n)})"),
    ]
    intro = (
        "<p>Confident learning's estimate of the whole dataset's label quality, from its confident joint "
        "(cleanlab's <code>dataset.health_summary</code> figures). The confident-learning issues are the "
        "examples the confident joint counts off its diagonal whose label the model does not agree with "
        "(cleanlab's <code>count.num_label_issues</code>), whatever method chose the issues below.</p>"
    )
    files = {prefix: ", ".join(report.summary.files_of(prefix)) for prefix in
             (outputs.CLASS_HEALTH_PREFIX, outputs.OVERLAPPING_CLASSES_PREFIX, outputs.CONFIDENT_JOINT_PREFIX)}
    k, names = report.num_classes, report.class_names
    return (
        head + intro + '<div class="cards">' + "".join(cards) + "</div>"
        + _ranked_classes_table(health, names, files[outputs.CLASS_HEALTH_PREFIX])
        + _overlapping_pairs_table(health, names, files[outputs.OVERLAPPING_CLASSES_PREFIX])
        + _confident_joint_figure(health, k, names, files[outputs.CONFIDENT_JOINT_PREFIX])
        + "</section>"
    )


def human_review_section(report: ReportData) -> str:
    """How the issues fare against a human review, when one was given."""
    review = report.review
    if review is None:
        return ""
    total = report.issues.num_rows
    head = (
        '<section id="human-review"><h2>Human review</h2>'
        f'<p data-reviewed="{review.reviewed}" data-not-upheld="{review.num_not_upheld}">'
        f"{esc(review.name)}: {fmt_int(review.reviewed)} of the {fmt_int(total)} flagged examples were "
        f"reviewed; the reviewers did not uphold the given label for {fmt_int(review.num_not_upheld)} "
        f"of them ({fmt_pct(review.num_not_upheld, review.reviewed)}). A given label is not upheld when "
        "fewer than 3 of the 5 reviewers voted for it.</p>"
    )
    if review.reviewed == 0 or total == 0:
        return head + "</section>"
    svg = figures.human_review_figure(review.ranks, review.not_upheld, total)
    return head + svg + "</section>"


def scores_section(report: ReportData) -> str:
    hist = report.summary.score_histogram
    issue_range = report.issue_score_range
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
    head = f'<section id="scores"><h2>Label quality scores</h2>{intro}'
    if not hist or not hist.get("counts"):
        return head + '<p class="empty">summary.json has no score histogram.</p></section>'
    svg = figures.score_histogram_figure(hist["bin_edges"], hist["counts"], report.issues.score_counts, issue_range)
    return head + svg + "</section>"


def per_class_section(report: ReportData) -> str:
    issues_per_class = report.issues_per_class
    examples_per_class = np.asarray(report.summary.examples_per_class, dtype=np.int64)
    _, truncated = figures.class_order_for_bars(issues_per_class)
    note = (
        f"<p>The {figures.CLASS_BARS_MAX} of {len(issues_per_class):,} classes with the most issues.</p>"
        if truncated else ""
    )
    empty = int((examples_per_class == 0).sum())
    if empty:
        note += f"<p>{empty:,} class{'es have' if empty > 1 else ' has'} no examples.</p>"
    svg = figures.issues_per_class_figure(issues_per_class, examples_per_class, report.class_names)
    return (
        '<section id="per-class"><h2>Issues per given class</h2>'
        "<p>Left: how many issues carry each given label (and what share of that class "
        "they are). Right: the class's share of all examples.</p>"
        f"{note}{svg}</section>"
    )


def _top_pairs_table(pair_codes: np.ndarray, pair_counts: np.ndarray, num_classes: int,
                     total: int, names: Optional[Sequence[str]]) -> str:
    """The most frequent confusions, exact whatever K is."""
    order = np.lexsort((pair_codes, -pair_counts))[:TOP_PAIRS]
    rows = []
    for code, count in zip(pair_codes[order], pair_counts[order]):
        g, p = divmod(int(code), num_classes)
        rows.append(
            f'<tr data-given="{g}" data-predicted="{p}"><td>{esc(class_label(g, names))}</td>'
            f"<td>{esc(class_label(p, names))}</td>"
            f'<td class="num">{fmt_int(count)}</td><td class="num">{fmt_pct(int(count), total)}</td></tr>'
        )
    return (
        '<h3>Most frequent confusions</h3><table class="pairs"><thead><tr><th>Given</th><th>Predicted</th>'
        '<th class="num">Issues</th><th class="num">Share of issues</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def confusion_section(report: ReportData) -> str:
    issues, num_classes, names = report.issues, report.num_classes, report.class_names
    head = '<section id="confusion"><h2>Given label × predicted label</h2>'
    if issues.num_rows == 0:
        return head + '<p class="empty">No label issues, so there is nothing to cross-tabulate.</p></section>'
    svg, block = figures.confusion_figure(issues.pair_codes, issues.pair_counts, num_classes, names)
    if block == 1:
        intro = "<p>Count of issues for each pair of given (row) and predicted (column) label.</p>"
    else:
        intro = (
            f"<p>Count of issues for each pair of given (row) and predicted (column) label, "
            f"with the {num_classes:,} classes grouped into blocks of {block} consecutive "
            "class indices; the table below lists the exact pairs.</p>"
        )
    table = _top_pairs_table(issues.pair_codes, issues.pair_counts, num_classes, issues.num_rows, names)
    return head + intro + svg + table + "</section>"


def _class_table(thresholds: np.ndarray, examples_per_class: np.ndarray,
                 issues_per_class: np.ndarray, names: Optional[Sequence[str]]) -> str:
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


def thresholds_section(report: ReportData) -> str:
    thresholds = np.asarray(report.summary.confident_thresholds, dtype=float)
    examples_per_class = np.asarray(report.summary.examples_per_class, dtype=np.int64)
    svg = figures.thresholds_figure(thresholds, examples_per_class, report.class_names)
    table = ""
    if len(thresholds) <= CLASS_TABLE_MAX_K:
        table = _class_table(thresholds, examples_per_class, report.issues_per_class, report.class_names)
    return (
        '<section id="thresholds"><h2>Confident thresholds</h2>'
        "<p>Each class's threshold is the model's mean predicted probability for that class "
        "over the examples labelled with it; a prediction counts as confident when it "
        "reaches its class's threshold.</p>"
        f"{svg}{table}</section>"
    )


# --- the issues table ----------------------------------------------------------------------------


def _review_text(votes: Optional[dict]) -> str:
    if votes is None:
        return ""
    total = sum(int(v) for v in votes.values())
    verdict = "not upheld" if votes["given"] < 3 else "upheld"
    return f"{verdict} ({votes['given']}/{total} for given)"


def _js_safe_id(value):
    """Ids as JSON: integers beyond 2^53 would lose digits in JavaScript, so they go as text."""
    if isinstance(value, int) and abs(value) > (1 << 53) - 1:
        return str(value)
    return value


def _floats_json(values) -> str:
    return "[" + ",".join(f"{v:.6g}" for v in values) + "]"


def _script_json(value) -> str:
    """JSON that is safe inside a <script> element (no '<', '>' or '&' left as such)."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _IssueRows:
    """The shown issues as Python lists, and how one row is written as static HTML."""

    def __init__(self, report: ReportData):
        shown = report.issues.shown
        self.names = report.class_names
        self.count = shown.num_rows
        self.rank = shown.column("rank").to_pylist()
        self.id = shown.column("id").to_pylist()
        self.given = shown.column("given_label").to_pylist()
        self.predicted = shown.column("predicted_label").to_pylist()
        self.quality = shown.column("label_quality").to_pylist()
        columns = shown.schema.names
        self.given_prob = shown.column("given_label_prob").to_pylist() if "given_label_prob" in columns else None
        self.predicted_prob = (shown.column("predicted_label_prob").to_pylist()
                               if "predicted_label_prob" in columns else None)
        uris = shown.column("uri").to_pylist() if "uri" in columns else None
        self.uri = uris
        self.link = None if uris is None else [None if u is None else example_uris.browser_link(u) for u in uris]
        self.review = None
        if report.review is not None:
            self.review = [_review_text(report.review.votes.get(i)) for i in self.id]
        self.thumbs = report.thumbnails

    def headers(self) -> List[tuple]:
        """(key, label, numeric) of each column, in order."""
        cols = [("rank", "Rank", True), ("id", "ID", False), ("given", "Given label", False),
                ("predicted", "Predicted label", False), ("quality", "Label quality", True)]
        if self.given_prob is not None:
            cols += [("given_prob", "P(given)", True), ("predicted_prob", "P(predicted)", True)]
        if self.review is not None:
            cols.append(("review", "Human review", False))
        if self.thumbs:
            cols.append(("image", "Image", False))
        return cols

    def static_row(self, i: int) -> str:
        given, pred = int(self.given[i]), int(self.predicted[i])
        id_text = esc(self.id[i])
        link = self.link[i] if self.link is not None else None
        id_cell = (f'<a href="{esc(link)}" title="{esc(self.uri[i])}">{id_text}</a>' if link else id_text)
        cells = [
            f'<td class="num">{esc(self.rank[i])}</td>', f'<td class="id">{id_cell}</td>',
            f"<td>{esc(class_label(given, self.names))}</td>", f"<td>{esc(class_label(pred, self.names))}</td>",
            f'<td class="num">{esc(fmt_score(self.quality[i]))}</td>',
        ]
        if self.given_prob is not None:
            cells += [f'<td class="num">{esc(fmt_score(self.given_prob[i]))}</td>',
                      f'<td class="num">{esc(fmt_score(self.predicted_prob[i]))}</td>']
        if self.review is not None:
            cells.append(f"<td>{esc(self.review[i])}</td>")
        if self.thumbs:
            image = self.thumbs.get(i)
            cells.append(f'<td class="thumb"><img src="{image}" alt="example {id_text}"></td>' if image else "<td></td>")
        return f'<tr data-rank="{esc(self.rank[i])}" data-id="{id_text}">' + "".join(cells) + "</tr>"

    def payload(self, total: int) -> str:
        """The shown issues for the script, column-wise and compact."""
        parts = {
            "total": total,
            "pageRows": ISSUES_PAGE_ROWS,
            "columns": [{"key": k, "label": label, "num": num} for k, label, num in self.headers()],
            "names": [class_label(k, self.names) for k in range(len(self.names))] if self.names else None,
            "rank": self.rank,
            "id": [_js_safe_id(v) for v in self.id],
            "given": self.given,
            "predicted": self.predicted,
            "link": self.link,
            "uri": self.uri,
            "review": self.review,
            "thumbs": {str(k): v for k, v in self.thumbs.items()},
        }
        text = json.dumps(parts, separators=(",", ":"))[:-1]
        floats = [("quality", self.quality), ("given_prob", self.given_prob), ("predicted_prob", self.predicted_prob)]
        for key, values in floats:
            if values is not None:
                text += f',"{key}":{_floats_json(values)}'
        return _script_json(text + "}")


def issues_section(report: ReportData) -> str:
    """The most severe issues (up to SHOWN_ISSUES), sortable by any column and filterable."""
    total = report.issues.num_rows
    head = '<section id="issues"><h2>Label issues</h2>'
    if total == 0:
        return head + '<p class="empty">No label issues were found.</p></section>'
    rows = _IssueRows(report)
    files = ", ".join(report.summary.label_issues_files) or "label_issues-*.parquet"
    if rows.count < total:
        intro = (
            f'<p class="shown-note">This page holds the {fmt_int(rows.count)} most severe of the '
            f"{fmt_int(total)} issues; all of them are in {esc(files)}.</p>"
        )
    else:
        intro = f'<p class="shown-note">All {fmt_int(total)} issues, most severe first (also in {esc(files)}).</p>'
    if report.summary.export_files:
        intro += f"<p>Exported for relabelling: {esc(', '.join(report.summary.export_files))}.</p>"
    if rows.thumbs:
        intro += f"<p>Thumbnails of the local images of the {fmt_int(len(rows.thumbs))} most severe issues.</p>"
    controls = (
        '<div class="controls">'
        '<label>Given <select id="filter-given"><option value="">any class</option></select></label>'
        '<label>Predicted <select id="filter-predicted"><option value="">any class</option></select></label>'
        '<label>Find <input id="filter-text" type="search" placeholder="id or class name"></label>'
        '<span id="issues-status" class="status"></span>'
        '<span class="pager"><button type="button" id="page-prev">‹ previous</button>'
        '<button type="button" id="page-next">next ›</button></span></div>'
    )
    header = "".join(
        f'<th data-key="{key}"{_NUM_CLASS if num else ""} aria-sort="none">{esc(label)}</th>'
        for key, label, num in rows.headers()
    )
    static = "".join(rows.static_row(i) for i in range(min(data.TOP_ISSUES, rows.count)))
    script_note = (
        f'<noscript><p>The table shows the {data.TOP_ISSUES} most severe issues; '
        "sorting and filtering need JavaScript.</p></noscript>"
    )
    return (
        head + intro + controls + script_note
        + f'<table class="issues" id="issues-table"><thead><tr>{header}</tr></thead><tbody>{static}</tbody></table>'
        + f'<script type="application/json" id="issues-data">{rows.payload(total)}</script></section>'
    )


# The issues table's behaviour: sort by a header click, filter by class and text, page
# through the rows. Written for any browser of the last decade; no library. State can
# also come from the page's query string (?sort=label&dir=desc&given=3&q=cat&page=2),
# so a link can share a view.
_ISSUES_SCRIPT = r"""
(function () {
  "use strict";
  var source = document.getElementById("issues-data");
  if (!source) { return; }
  var d = JSON.parse(source.textContent);
  var n = d.rank.length;
  var table = document.getElementById("issues-table");
  var body = table.tBodies[0];
  var status = document.getElementById("issues-status");
  var selGiven = document.getElementById("filter-given");
  var selPred = document.getElementById("filter-predicted");
  var text = document.getElementById("filter-text");
  var prev = document.getElementById("page-prev");
  var next = document.getElementById("page-next");
  var state = {sort: "rank", dir: 1, given: "", predicted: "", q: "", page: 0};

  function label(k) { return d.names ? d.names[k] : String(k); }
  function score(v) {
    if (v === 0 || Math.abs(v) >= 1e-3) { return v.toFixed(4); }
    return v.toExponential(3).replace(/e([+-])(\d)$/, "e$10$2");
  }
  function fmtInt(v) { return v.toLocaleString("en-US"); }
  function value(key, i) {
    if (key === "given") { return label(d.given[i]).toLowerCase(); }
    if (key === "predicted") { return label(d.predicted[i]).toLowerCase(); }
    if (key === "review") { return d.review[i] || ""; }
    if (key === "image") { return d.thumbs[i] ? 0 : 1; }
    return d[key][i];
  }
  function compare(a, b) {
    if (typeof a === typeof b) { return a < b ? -1 : (a > b ? 1 : 0); }
    return typeof a === "number" ? -1 : 1;
  }
  function fillSelect(select, codes) {
    var seen = {}, list = [];
    for (var i = 0; i < n; i++) { if (!seen[codes[i]]) { seen[codes[i]] = true; list.push(codes[i]); } }
    list.sort(function (a, b) { return a - b; });
    for (var j = 0; j < list.length; j++) {
      var option = document.createElement("option");
      option.value = String(list[j]);
      option.textContent = label(list[j]);
      select.appendChild(option);
    }
  }
  function matches(i) {
    if (state.given !== "" && String(d.given[i]) !== state.given) { return false; }
    if (state.predicted !== "" && String(d.predicted[i]) !== state.predicted) { return false; }
    if (state.q) {
      var hay = (String(d.id[i]) + " " + label(d.given[i]) + " " + label(d.predicted[i]) + " " +
                 (d.uri ? (d.uri[i] || "") : "")).toLowerCase();
      if (hay.indexOf(state.q) < 0) { return false; }
    }
    return true;
  }
  function cell(row, content, numeric) {
    var td = document.createElement("td");
    if (numeric) { td.className = "num"; }
    if (content !== null) { td.textContent = content; }
    row.appendChild(td);
    return td;
  }
  function render() {
    var rows = [];
    for (var i = 0; i < n; i++) { if (matches(i)) { rows.push(i); } }
    var key = state.sort, dir = state.dir;
    rows.sort(function (a, b) {
      return dir * compare(value(key, a), value(key, b)) || (d.rank[a] - d.rank[b]);
    });
    var pages = Math.max(1, Math.ceil(rows.length / d.pageRows));
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    var first = state.page * d.pageRows, last = Math.min(rows.length, first + d.pageRows);
    var fragment = document.createDocumentFragment();
    for (var r = first; r < last; r++) {
      var i2 = rows[r], tr = document.createElement("tr");
      tr.setAttribute("data-rank", String(d.rank[i2]));
      tr.setAttribute("data-id", String(d.id[i2]));
      for (var c = 0; c < d.columns.length; c++) {
        var col = d.columns[c].key;
        if (col === "rank") { cell(tr, String(d.rank[i2]), true); }
        else if (col === "id") {
          var td = cell(tr, null, false);
          td.className = "id";
          if (d.link && d.link[i2]) {
            var a = document.createElement("a");
            a.href = d.link[i2];
            a.title = d.uri[i2];
            a.textContent = String(d.id[i2]);
            td.appendChild(a);
          } else { td.textContent = String(d.id[i2]); }
        }
        else if (col === "given") { cell(tr, label(d.given[i2]), false); }
        else if (col === "predicted") { cell(tr, label(d.predicted[i2]), false); }
        else if (col === "review") { cell(tr, d.review[i2] || "", false); }
        else if (col === "image") {
          var holder = cell(tr, null, false);
          if (d.thumbs[i2]) {
            holder.className = "thumb";
            var img = document.createElement("img");
            img.src = d.thumbs[i2];
            img.alt = "example " + String(d.id[i2]);
            holder.appendChild(img);
          }
        }
        else { cell(tr, score(d[col][i2]), true); }
      }
      fragment.appendChild(tr);
    }
    body.textContent = "";
    body.appendChild(fragment);
    var heads = table.tHead.rows[0].cells;
    for (var h = 0; h < heads.length; h++) {
      var k = heads[h].getAttribute("data-key");
      heads[h].setAttribute("aria-sort", k === key ? (dir > 0 ? "ascending" : "descending") : "none");
    }
    table.setAttribute("data-matching", String(rows.length));
    table.setAttribute("data-page", String(state.page));
    status.textContent = rows.length ? ("rows " + fmtInt(first + 1) + "–" + fmtInt(last) + " of " +
      fmtInt(rows.length) + (rows.length < n ? " matching" : "") + " (page " + (state.page + 1) + " of " + pages + ")")
      : "no issue matches";
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
  }

  fillSelect(selGiven, d.given);
  fillSelect(selPred, d.predicted);
  var params = new URLSearchParams(window.location.search);
  var known = {};
  for (var c0 = 0; c0 < d.columns.length; c0++) { known[d.columns[c0].key] = true; }
  if (known[params.get("sort")]) { state.sort = params.get("sort"); }
  if (params.get("dir") === "desc") { state.dir = -1; }
  state.given = params.get("given") || "";
  state.predicted = params.get("predicted") || "";
  state.q = (params.get("q") || "").toLowerCase();
  state.page = Math.max(0, (parseInt(params.get("page"), 10) || 1) - 1);
  selGiven.value = state.given;
  selPred.value = state.predicted;
  text.value = params.get("q") || "";

  table.tHead.addEventListener("click", function (event) {
    var th = event.target.closest("th");
    if (!th) { return; }
    var k = th.getAttribute("data-key");
    state.dir = state.sort === k ? -state.dir : 1;
    state.sort = k;
    state.page = 0;
    render();
  });
  selGiven.addEventListener("change", function () { state.given = selGiven.value; state.page = 0; render(); });
  selPred.addEventListener("change", function () { state.predicted = selPred.value; state.page = 0; render(); });
  text.addEventListener("input", function () { state.q = text.value.toLowerCase(); state.page = 0; render(); });
  prev.addEventListener("click", function () { state.page -= 1; render(); });
  next.addEventListener("click", function () { state.page += 1; render(); });
  render();
})();
"""


# The sections in page order. A later section is one more function here.
SECTIONS: List[Section] = [
    header_section,
    headline_section,
    health_section,
    human_review_section,
    scores_section,
    per_class_section,
    confusion_section,
    thresholds_section,
    issues_section,
]


_CSS = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif;
       color: #1f2933; background: #f4f6f8; margin: 0; line-height: 1.45; }
main { max-width: 1060px; margin: 0 auto; padding: 24px 28px 48px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0; color: #52606d; word-break: break-all; }
section { background: #fff; border-radius: 8px; padding: 18px 22px; margin-top: 20px;
          box-shadow: 0 1px 3px rgba(15, 23, 42, .08); }
h2 { font-size: 19px; margin: 0 0 8px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p { margin: 6px 0; }
svg.figure { display: block; width: 100%; height: auto; margin: 10px auto; }
svg.figure text { font-variant-numeric: tabular-nums; }
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
td.thumb img { display: block; max-width: 64px; max-height: 64px; }
table.settings th { width: 190px; color: #52606d; font-weight: 500; }
table.settings td { word-break: break-word; }
table.issues thead th { cursor: pointer; user-select: none; white-space: nowrap; }
table.issues thead th[aria-sort="ascending"]::after { content: " ▲"; font-size: 10px; }
table.issues thead th[aria-sort="descending"]::after { content: " ▼"; font-size: 10px; }
.controls { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; margin-top: 10px; font-size: 13px; }
.controls select, .controls input { font: inherit; margin-left: 4px; max-width: 220px; }
.controls .status { color: #52606d; }
.controls .pager { margin-left: auto; }
.controls button { font: inherit; margin-left: 4px; }
.empty { color: #52606d; font-style: italic; }
.warning { background: #fff4e5; border-left: 4px solid #f0a202; padding: 8px 12px; }
footer { color: #7b8794; font-size: 12px; margin-top: 20px; }
"""


def _page(title: str, sections: Sequence[str], footer: str, script: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body><main>"
        + "".join(sections)
        + f"<footer>{footer}</footer></main>"
        + (f"<script>{script}</script>" if script else "")
        + "</body></html>\n"
    )


def build_report_html(report: ReportData, sections: Sequence[Section] = SECTIONS) -> str:
    """The report as one HTML string, its sections in the order given."""
    parts = [section(report) for section in sections]
    summary = report.summary
    footer = f"Generated by beam-labelissues {esc(__version__)} from summary.json"
    read = summary.label_issues_files + (report.health.files if report.health is not None else [])
    if read:
        footer += " and " + ", ".join(esc(f) for f in read)
    script = _ISSUES_SCRIPT if report.issues.num_rows else ""
    return _page("Label issues report", parts, footer + ".", script)
