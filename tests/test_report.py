"""Tests of the HTML report, on output directories the real pipeline writes from real MNIST data.

`make_output_dir` runs ``FindLabelIssues`` on the given labels and predictions
(a .npy pair, or Parquet with a string id column) and writes the output directory
the report reads; cleanlab is the oracle of the pipeline itself (tests/test_parity.py).
The figures are inline SVG: each is parsed as XML and its marks' numbers are
compared with summary.json and the issues files.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from browser import dump_dom_after, find_chromium, screenshot
from datasets import write_npy
from harness import run_pipeline
from input_files import PrefixedLocalFileSystem, examples_table

from beam_labelissues import demo, report
from beam_labelissues.io import NpyPair, ParquetDataset, ReadNpyExamples, ReadParquetExamples, outputs
from beam_labelissues.io.class_names import load_class_names
from beam_labelissues.io.human_review import load_human_review, review_of_issues
from beam_labelissues.report import figures, thumbnails

MNIST_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SVG_NS = "{http://www.w3.org/2000/svg}"


# --------------------------------------------------------------------------
# Building output directories.


def make_output_dir(
    tmp_path: Path,
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    ids: list | np.ndarray | None = None,
    class_names: list[str] | None = None,
    input_dir_name: str = "input",
    name: str = "out",
    **settings,
) -> Path:
    """Runs the pipeline on the data (ids -> Parquet with a string id column, else .npy)."""
    data_dir = tmp_path / input_dir_name
    if ids is None:
        source = ReadNpyExamples(NpyPair.open(*write_npy(str(data_dir), labels, pred_probs)))
    else:
        data_dir.mkdir(parents=True)
        table = examples_table(np.asarray(labels), np.asarray(pred_probs), ids=list(ids), id_type=pa.string())
        pq.write_table(table, str(data_dir / "examples.parquet"), row_group_size=1000)
        source = ReadParquetExamples(ParquetDataset.open(str(data_dir / "*.parquet"), id_column="example_id"))
    out = tmp_path / name
    run_pipeline([dict(source=source, num_classes=pred_probs.shape[1], output_dir=str(out),
                       class_names=class_names, **settings)])
    return out


@pytest.fixture(scope="module")
def mnist():
    return np.load(demo.DEMO_LABELS).astype(np.int64), np.load(demo.DEMO_PRED_PROBS)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory, mnist):
    labels, pred_probs = mnist
    out = make_output_dir(tmp_path_factory.mktemp("mnist"), labels, pred_probs)
    report.write_report(str(out))
    return out


def flip_labels(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """MNIST's test labels with `count` of them moved to another class, for more than 50 issues."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    idx = rng.choice(len(labels), count, replace=False)
    noisy[idx] = (noisy[idx] + rng.integers(1, 10, count)) % 10
    return noisy


@pytest.fixture(scope="module")
def mnist_named_dir(tmp_path_factory, mnist):
    """Noisy MNIST labels (some 300 issues), class names, non-default settings, three files."""
    labels, pred_probs = mnist
    out = make_output_dir(tmp_path_factory.mktemp("mnist_named"), flip_labels(labels, 300), pred_probs,
                          class_names=MNIST_NAMES, method="normalized_margin",
                          estimation_method="off_diagonal_calibrated", max_issues_per_worker=60)
    assert len(list(out.glob("label_issues-*.parquet"))) >= 3
    report.write_report(str(out), human_review=demo.DEMO_HUMAN_REVIEW)
    return out


# --------------------------------------------------------------------------
# Reading the report back.


class _ReportParser(HTMLParser):
    """Collects what the tests check: tags with their attributes, cards, static issue rows, scripts."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.cards: dict[str, dict] = {}
        self.issue_rows: list[dict] = []
        self.scripts: list[tuple[dict, str]] = []
        self._card = None
        self._card_field = None
        self._row = None
        self._cell = None
        self._script = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        classes = (attrs.get("class") or "").split()
        if tag == "script":
            self._script = (attrs, [])
        elif tag == "div" and "card" in classes:
            self._card = {"value": attrs["data-value"], "text": {}}
            self.cards[attrs["data-key"]] = self._card
        elif tag == "div" and self._card is not None and classes:
            self._card_field = classes[0]
            self._card["text"][self._card_field] = ""
        elif tag == "tr" and "data-rank" in attrs:
            self._row = {"attrs": attrs, "cells": [], "links": [], "images": []}
            self.issue_rows.append(self._row)
        elif tag == "td" and self._row is not None:
            self._cell = ""
        elif tag == "a" and self._row is not None:
            self._row["links"].append(attrs)
        elif tag == "img" and self._row is not None:
            self._row["images"].append(attrs)

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None
        elif tag == "div" and self._card_field is not None:
            self._card_field = None
        elif tag == "div" and self._card is not None:
            self._card = None
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._script is not None:
            self._script[1].append(data)
        if self._card_field is not None:
            self._card["text"][self._card_field] += data
        if self._cell is not None:
            self._cell += data


def parse_report(out: Path) -> tuple[str, _ReportParser]:
    text = (out / "report.html").read_text(encoding="utf-8")
    parser = _ReportParser()
    parser.feed(text)
    parser.close()
    return text, parser


def svgs(text: str) -> dict[str, ET.Element]:
    """Every inline figure, parsed as XML (so each must be well-formed), by its data-figure."""
    found = {}
    for markup in re.findall(r"<svg\b.*?</svg>", text, flags=re.S):
        root = ET.fromstring(markup)
        assert root.tag == SVG_NS + "svg"
        found[root.get("data-figure")] = root
    return found


def marks(svg: ET.Element, **attrs) -> list[ET.Element]:
    """The <rect> elements of a figure whose attributes equal ``attrs`` (data_x -> data-x)."""
    wanted = {k.replace("_", "-"): str(v) for k, v in attrs.items()}
    return [r for r in svg.iter(SVG_NS + "rect") if all(r.get(k) == v for k, v in wanted.items())]


def embedded_issues(parser: _ReportParser) -> dict:
    data = [body for attrs, body in parser.scripts if attrs.get("id") == "issues-data"]
    assert len(data) == 1 and parser.scripts[0][0].get("type") == "application/json"
    return json.loads(data[0])


def read_issues(out: Path):
    tables = [pq.read_table(p) for p in sorted(out.glob("label_issues-*.parquet"))]
    return pa.concat_tables(tables).sort_by("rank").to_pylist()


def assert_self_contained(out: Path, expected_figures: set[str]) -> dict[str, ET.Element]:
    """Nothing is loaded from elsewhere; the figures are the expected inline SVGs, well-formed."""
    text, parser = parse_report(out)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), "CSS must not load anything"
    assert "@import" not in text
    for tag, attrs in parser.tags:
        for attr in ("src", "srcset", "data", "href" if tag in ("link", "script", "image", "use") else "-"):
            value = (attrs.get(attr) or "").strip().lower()
            assert not value.startswith(("http://", "https://", "//")), (tag, attr, value[:80])
        if tag == "img":
            assert attrs["src"].startswith("data:image/"), attrs["src"][:60]
        if tag == "script":
            assert "src" not in attrs
        assert tag not in ("link", "iframe", "object", "embed"), tag
    ids = [attrs["id"] for _, attrs in parser.tags if "id" in attrs]
    assert len(ids) == len(set(ids)), "inline SVGs share the page's ids: each must be unique"
    figures_found = svgs(text)
    assert set(figures_found) == expected_figures
    for root in figures_found.values():
        assert root.get("role") == "img" and root.get("aria-label")
        assert root.find(SVG_NS + "title").text
        width, height = (float(v) for v in root.get("viewBox").split()[2:])
        assert width == 880 and 100 < height < 2000
    return figures_found


BASE_FIGURES = {"scores", "per-class", "confusion", "thresholds", "confident-joint"}


class _TableRows(HTMLParser):
    """The rows of the page's <table class="{table_class}">: each row's attributes and cell texts."""

    def __init__(self, table_class: str):
        super().__init__(convert_charrefs=True)
        self.table_class = table_class
        self.rows: list[tuple[dict, list[str]]] = []
        self._inside = False
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._inside = self.table_class in (attrs.get("class") or "").split()
        elif self._inside and tag == "tr" and any(k.startswith("data-") for k in attrs):
            self.rows.append((attrs, []))
        elif self._inside and tag == "td" and self.rows:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._inside = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1][1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def table_rows(text: str, table_class: str) -> list[tuple[dict, list[str]]]:
    parser = _TableRows(table_class)
    parser.feed(text)
    parser.close()
    return parser.rows


def health_file(out: Path, prefix: str) -> list[dict]:
    """A health file's rows as the run wrote them, read with pyarrow alone."""
    return pq.read_table(out / f"{prefix}-00000-of-00001.parquet").to_pylist()


def joint_cells(svg: ET.Element) -> dict[tuple[int, int], int]:
    """The confident-joint heat map's cells: (given, likely true) -> count."""
    return {(int(r.get("data-given")), int(r.get("data-likely-true"))): int(r.get("data-count"))
            for r in marks(svg) if r.get("data-count") is not None}


def close_to(shown: str, value: float) -> bool:
    """A number as the page writes it (4 decimals, or 4 significant digits below 1e-3)."""
    return float(shown) == pytest.approx(value, rel=1e-3, abs=1e-4)


# --------------------------------------------------------------------------
# Tests.


def test_report_written_and_self_contained(mnist_dir):
    path = mnist_dir / "report.html"
    assert path.is_file()
    assert report.write_report(str(mnist_dir)) == str(path)
    assert_self_contained(mnist_dir, BASE_FIGURES)


def test_figures_draw_the_numbers_of_the_run(mnist_named_dir):
    """Every mark equals summary.json or the issues files."""
    summary = json.loads((mnist_named_dir / "summary.json").read_text())
    issues = read_issues(mnist_named_dir)
    figs = assert_self_contained(mnist_named_dir, BASE_FIGURES | {"human-review"})

    counts = summary["score_histogram"]["counts"]
    bars = {int(r.get("data-bin")): int(r.get("data-count")) for r in marks(figs["scores"], data_series="all")}
    assert bars == {i: c for i, c in enumerate(counts) if c}
    edges = np.asarray(summary["score_histogram"]["bin_edges"])
    expected_issue_bins = np.histogram([r["label_quality"] for r in issues], bins=edges)[0]
    issue_bars = {int(r.get("data-bin")): int(r.get("data-count")) for r in marks(figs["scores"], data_series="issues")}
    assert issue_bars == {i: int(c) for i, c in enumerate(expected_issue_bins) if c}
    assert sum(issue_bars.values()) == summary["num_label_issues"]

    per_class = np.bincount([r["given_label"] for r in issues], minlength=10)
    drawn = {int(r.get("data-class")): int(r.get("data-count")) for r in figs["per-class"].iter(SVG_NS + "rect")
             if r.get("data-count") is not None}
    assert drawn == dict(enumerate(per_class.tolist()))
    shares = {int(r.get("data-class")): float(r.get("data-share")) for r in figs["per-class"].iter(SVG_NS + "rect")
              if r.get("data-share") is not None}
    total = sum(summary["examples_per_class"])
    assert shares == pytest.approx({k: 100 * n / total for k, n in enumerate(summary["examples_per_class"])}, rel=1e-5)

    cells = {(int(r.get("data-given")), int(r.get("data-predicted"))): int(r.get("data-count"))
             for r in marks(figs["confusion"]) if r.get("data-count") is not None}
    pairs: dict = {}
    for r in issues:
        key = (r["given_label"], r["predicted_label"])
        pairs[key] = pairs.get(key, 0) + 1
    assert cells == pairs

    thresholds = {int(r.get("data-class")): float(r.get("data-value")) for r in figs["thresholds"].iter(SVG_NS + "rect")
                  if r.get("data-value") is not None}
    assert thresholds == dict(enumerate(summary["confident_thresholds"]))  # written exactly (repr)

    labels = [t.text for t in figs["thresholds"].iter(SVG_NS + "text")]
    assert "seven (7)" in labels and "confident threshold" in labels


def test_headline_figures_and_run_record_equal_summary(mnist_dir):
    summary = json.loads((mnist_dir / "summary.json").read_text())
    assert summary["num_label_issues"] > 0
    assert summary["tool_version"] == report.html.__version__
    assert summary["options"]["method"] == "self_confidence" and summary["run_seconds"] >= 0
    text, parser = parse_report(mnist_dir)
    for key in ("num_examples", "num_invalid_records", "num_issues_estimated", "num_label_issues",
                "num_classes"):
        card = parser.cards[key]
        assert int(card["value"]) == summary[key], key
        assert card["text"]["value"] == f"{summary[key]:,}", key
    share = parser.cards["issue_share"]
    assert float(share["value"]) == pytest.approx(summary["num_label_issues"] / summary["num_examples"])
    assert share["text"]["value"] == f"{100 * summary['num_label_issues'] / summary['num_examples']:.2f}%"

    def setting(key):
        row = re.search(rf'<tr data-key="{key}"><th>[^<]*</th><td>([^<]*)</td>', text)
        return row and row.group(1)

    for key in ("method", "adjust_pred_probs", "estimation_method", "input", "started_at"):
        assert setting(key) == str(summary[key]), key
    assert setting("tool_version") == f"beam-labelissues {summary['tool_version']}"
    assert setting("run_seconds") == f"{summary['run_seconds']:.1f} s"
    assert 'method=&quot;self_confidence&quot;' in setting("options")


def test_an_older_summary_without_the_run_record_still_reports(mnist_dir, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(mnist_dir, out)
    summary = json.loads((out / "summary.json").read_text())
    for key in ("tool_version", "options", "started_at", "run_seconds", "export_files"):
        del summary[key]
    (out / "summary.json").write_text(json.dumps(summary))
    report.write_report(str(out))
    text, _ = parse_report(out)
    assert re.search(r'<tr data-key="run_seconds"><th>Run time</th><td>–</td>', text)


@pytest.mark.parametrize("which", ["mnist_dir", "mnist_named_dir"])
def test_static_rows_are_the_most_severe_issues_in_order(which, request):
    out = request.getfixturevalue(which)
    _, parser = parse_report(out)
    issues = read_issues(out)
    expected = issues[: report.TOP_ISSUES]
    assert len(parser.issue_rows) == len(expected) == min(report.TOP_ISSUES, len(issues))
    if which == "mnist_named_dir":
        assert len(issues) > report.TOP_ISSUES  # the cap is exercised
    for row, want in zip(parser.issue_rows, expected):
        rank, id_, given, predicted, score, p_given, p_predicted = row["cells"][:7]
        assert int(rank) == want["rank"] and int(row["attrs"]["data-rank"]) == want["rank"]
        assert id_ == str(want["id"])
        if want.get("given_label_name") is None:
            assert given == str(want["given_label"])
            assert predicted == str(want["predicted_label"])
        else:
            assert given == f"{want['given_label_name']} ({want['given_label']})"
            assert predicted == f"{want['predicted_label_name']} ({want['predicted_label']})"
        assert float(score) == pytest.approx(want["label_quality"], rel=1e-3, abs=1e-4)
        assert float(p_given) == pytest.approx(want["given_label_prob"], rel=1e-3, abs=1e-4)
        assert float(p_predicted) == pytest.approx(want["predicted_label_prob"], rel=1e-3, abs=1e-4)


def test_every_issue_is_embedded_for_the_script(mnist_named_dir):
    _, parser = parse_report(mnist_named_dir)
    payload = embedded_issues(parser)
    issues = read_issues(mnist_named_dir)
    assert payload["total"] == len(issues) == len(payload["rank"])
    assert payload["rank"] == [r["rank"] for r in issues]
    assert payload["id"] == [r["id"] for r in issues]
    assert payload["given"] == [r["given_label"] for r in issues]
    assert payload["predicted"] == [r["predicted_label"] for r in issues]
    assert payload["quality"] == pytest.approx([r["label_quality"] for r in issues], rel=1e-5)
    assert payload["given_prob"] == pytest.approx([r["given_label_prob"] for r in issues], rel=1e-5)
    assert payload["predicted_prob"] == pytest.approx([r["predicted_label_prob"] for r in issues], rel=1e-5)
    assert payload["names"] == [f"{n} ({k})" for k, n in enumerate(MNIST_NAMES)]
    assert [c["key"] for c in payload["columns"]] == [
        "rank", "id", "given", "predicted", "quality", "given_prob", "predicted_prob", "review"]


def test_at_most_shown_issues_are_embedded_and_the_page_says_where_the_rest_are(tmp_path):
    rng = np.random.default_rng(3)
    n, k = 40_000, 4
    labels = rng.integers(0, k, n)
    pred_probs = rng.dirichlet(np.ones(k), n)  # an uninformative model: most labels look wrong
    out = make_output_dir(tmp_path, labels, pred_probs)
    summary = outputs.read_summary(str(out))
    assert summary.num_label_issues > report.SHOWN_ISSUES
    report.write_report(str(out))
    text, parser = parse_report(out)
    payload = embedded_issues(parser)
    assert payload["total"] == summary.num_label_issues
    assert payload["rank"] == list(range(report.SHOWN_ISSUES))
    assert (f"This page holds the {report.SHOWN_ISSUES:,} most severe of the {summary.num_label_issues:,} "
            "issues; all of them are in label_issues-00000-of-00001.parquet") in text
    assert (out / "report.html").stat().st_size < 2_000_000


def test_human_review_section_and_column(mnist_named_dir):
    text, parser = parse_report(mnist_named_dir)
    issues = read_issues(mnist_named_dir)
    review = load_human_review(demo.DEMO_HUMAN_REVIEW)
    expected = review_of_issues([r["id"] for r in issues], review)
    assert expected["reviewed"] > 0
    found = re.search(r'data-reviewed="(\d+)" data-not-upheld="(\d+)"', text)
    assert (int(found.group(1)), int(found.group(2))) == (expected["reviewed"], expected["not_upheld"])
    assert f"the reviewers did not uphold the given label for {expected['not_upheld']} of them" in text
    fig = svgs(text)["human-review"]
    assert sum(int(r.get("data-not-upheld")) for r in fig.iter(SVG_NS + "rect")
               if r.get("data-not-upheld") is not None) == expected["not_upheld"]
    assert sum(int(r.get("data-upheld")) for r in fig.iter(SVG_NS + "rect")
               if r.get("data-upheld") is not None) == expected["reviewed"] - expected["not_upheld"]
    payload = embedded_issues(parser)
    for i, row in enumerate(issues):
        votes = review.get(row["id"])
        if votes is None:
            assert payload["review"][i] == ""
        else:
            verdict = "not upheld" if votes["given"] < 3 else "upheld"
            assert payload["review"][i].startswith(verdict + f" ({votes['given']}/")


def test_class_names_argument_overrides_summary(mnist_named_dir, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(mnist_named_dir, out)
    names = [f"digit-{d}" for d in range(10)]
    report.write_report(str(out), class_names=names)
    text, parser = parse_report(out)
    assert "digit-3 (3)" in text
    assert parser.issue_rows[0]["cells"][2].startswith("digit-")
    with pytest.raises(ValueError, match="3 class names given for 10 classes"):
        report.write_report(str(out), class_names=["a", "b", "c"])


def test_zero_issues(tmp_path, mnist):
    _, pred_probs = mnist
    agreeing = pred_probs.argmax(axis=1)  # every label agrees with the model: cleanlab finds none
    out = make_output_dir(tmp_path, agreeing, pred_probs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_label_issues"] == 0 and summary["issue_score_range"] is None
    report.write_report(str(out))
    text, parser = parse_report(out)
    assert parser.cards["num_label_issues"]["text"]["value"] == "0"
    assert parser.issue_rows == [] and parser.scripts == []
    assert "No label issues were found." in text
    assert "nothing to cross-tabulate" in text
    figs = assert_self_contained(out, {"scores", "per-class", "thresholds", "confident-joint"})
    assert marks(figs["scores"], data_series="issues") == []
    assert parser.cards["overall_label_health_score"]["value"] == "1.0" == str(summary["overall_label_health_score"])
    assert "No two classes overlap" in text and table_rows(text, "overlaps") == []
    cells = joint_cells(figs["confident-joint"])
    assert all(g == t for g, t in cells) and sum(cells.values()) == summary["num_examples"]


def test_a_missing_issues_file_is_a_clear_error(tmp_path, mnist):
    labels, pred_probs = mnist
    out = make_output_dir(tmp_path, labels[:3000], pred_probs[:3000])
    for p in out.glob("label_issues-*.parquet"):
        p.unlink()
    with pytest.raises(Exception, match="label_issues-00000-of-00001.parquet"):
        report.write_report(str(out))


def test_class_without_examples(tmp_path, mnist):
    labels, pred_probs = mnist
    keep = labels != 9
    out = make_output_dir(tmp_path, labels[keep], pred_probs[keep], class_names=MNIST_NAMES)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples_per_class"][9] == 0 and summary["num_label_issues"] > 0
    report.write_report(str(out))
    text, _ = parse_report(out)
    row = re.search(r'<tr data-class="9">(.*?)</tr>', text).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
    assert cells[:5] == ["nine (9)", "0", "0.00%", "0", "–"]
    assert "1 class has no examples." in text
    figs = assert_self_contained(out, BASE_FIGURES)
    empty_bar = marks(figs["thresholds"], data_class=9)[0]
    assert empty_bar.get("fill") == figures.MUTED_COLOR
    assert "no examples" in "".join(figs["per-class"].itertext())


def test_string_ids_and_hostile_text_are_escaped(tmp_path, mnist):
    labels, pred_probs = mnist
    n = 3000
    ids = np.array([f"img<{i:05d}>&\"x\"" for i in range(n)])
    names = [f"<script>alert({d})</script>" if d == 3 else f"c&{d}" for d in range(10)]
    out = make_output_dir(tmp_path, labels[:n], pred_probs[:n], ids=ids, class_names=names,
                          input_dir_name='in<"x">')
    report.write_report(str(out))
    text, parser = parse_report(out)
    assert "<script>alert" not in text and "</script>alert" not in text
    assert "&lt;script&gt;alert(3)&lt;/script&gt; (3)" in text
    assert 'in&lt;&quot;x&quot;&gt;' in text and 'in<"x">' not in text
    expected = read_issues(out)
    assert [r["cells"][1] for r in parser.issue_rows] == [w["id"] for w in expected[: report.TOP_ISSUES]]
    assert embedded_issues(parser)["id"] == [w["id"] for w in expected]  # the JSON round-trips them
    # The class names reach the figures as text, escaped for XML (the parse would fail otherwise).
    figs = svgs(text)
    health_names = {int(a["data-class-index"]): cells[0] for a, cells in table_rows(text, "health-classes")}
    assert health_names[3] == "<script>alert(3)</script> (3)" and health_names[1] == "c&1 (1)"
    assert re.search(r'<tr data-class-index="3"><td>&lt;script&gt;alert\(3\)&lt;/script&gt; \(3\)</td>', text)
    joint_ticks = [t.text for t in figs["confident-joint"].iter(SVG_NS + "text")]
    assert "<script>alert(3…" in joint_ticks and "c&1 (1)" in joint_ticks
    tick_labels = [t.text for t in figs["thresholds"].iter(SVG_NS + "text")]
    assert "<script>alert(3" in "".join(tick_labels)
    assert any((t.text or "").startswith("c&1") for t in figs["per-class"].iter(SVG_NS + "text"))


def test_many_classes_aggregates_heat_map(tmp_path):
    rng = np.random.default_rng(0)
    n, k = 4000, 300
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += 4.0
    pred_probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    out = make_output_dir(tmp_path, labels, pred_probs)
    report.write_report(str(out))
    text, parser = parse_report(out)
    assert "grouped into blocks of 6" in text
    assert "Most frequent confusions" in text
    assert 'data-class="' not in re.sub(r"<svg.*?</svg>", "", text, flags=re.S)  # no per-class table above 50
    figs = assert_self_contained(out, BASE_FIGURES)
    cells = marks(figs["confusion"])
    assert max(int(c.get("data-given") or 0) for c in cells) < 50
    assert sum(int(c.get("data-count") or 0) for c in cells) == len(read_issues(out))
    assert len([r for r in marks(figs["per-class"]) if r.get("data-class")]) == 2 * figures.CLASS_BARS_MAX


def test_figures_stay_small_and_readable_for_ten_thousand_classes():
    """K = 10,000: blocks in the heat map and the thresholds, 40 bars per class chart."""
    rng = np.random.default_rng(1)
    k = 10_000
    given, predicted = rng.integers(0, k, 50_000), rng.integers(0, k, 50_000)
    codes, counts = np.unique(given * k + predicted, return_counts=True)
    svg, block = figures.confusion_figure(codes, counts, k, [f"class <{i}>" for i in range(k)])
    assert block == 200
    root = ET.fromstring(svg)
    cells = marks(root)
    assert sum(int(c.get("data-count") or 0) for c in cells) == 50_000
    assert "blocks of 200 classes" in "".join(root.itertext())
    thresholds = rng.uniform(0.2, 0.9, k)
    root = ET.fromstring(figures.thresholds_figure(thresholds, np.ones(k, np.int64), None))
    bars = [r for r in root.iter(SVG_NS + "rect") if r.get("data-min") is not None]
    assert len(bars) == figures.THRESHOLD_BARS_MAX
    assert min(float(b.get("data-min")) for b in bars) == thresholds.min()
    assert max(float(b.get("data-max")) for b in bars) == thresholds.max()
    per_class = np.bincount(given, minlength=k)
    root = ET.fromstring(figures.issues_per_class_figure(per_class, np.full(k, 100), None))
    assert len([r for r in marks(root) if r.get("data-class")]) == 2 * figures.CLASS_BARS_MAX
    assert len(svg) < 600_000


def test_does_not_read_quality_scores(tmp_path, mnist):
    labels, pred_probs = mnist
    out = make_output_dir(tmp_path, labels[:2000], pred_probs[:2000])
    # Not a parquet file: reading it would fail.
    (out / "label_quality_scores-00000-of-00001.parquet").write_bytes(b"not parquet")
    report.write_report(str(out))
    assert (out / "report.html").is_file()


def test_missing_summary_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="summary.json"):
        report.write_report(str(tmp_path))


# --------------------------------------------------------------------------
# Dataset health: the summary's score and the health files.

HEALTH_SUMMARY_KEYS = ("overall_label_health_score", "num_confident_learning_issues", "calibration_rounding_ties",
                       "py", "noise_matrix", "inverse_noise_matrix", "confident_joint_files", "class_health_files",
                       "overlapping_classes_files", "noise_matrices_files")


def test_health_section_equals_the_health_files(mnist_named_dir):
    """Noisy MNIST, K = 10: every class ranked, the 15 most overlapping pairs, the whole joint."""
    summary = json.loads((mnist_named_dir / "summary.json").read_text())
    text, parser = parse_report(mnist_named_dir)
    assert text.index('id="headline"') < text.index('id="health"') < text.index('id="human-review"')

    score, n_cl, n = (summary[k] for k in ("overall_label_health_score", "num_confident_learning_issues",
                                           "num_examples"))
    assert score == 1 - n_cl / n and n_cl > 300
    card = parser.cards["overall_label_health_score"]
    assert float(card["value"]) == score and card["text"]["value"] == f"{score:.4f}"
    card = parser.cards["num_confident_learning_issues"]
    assert int(card["value"]) == n_cl and card["text"]["value"] == f"{n_cl:,}"
    assert card["text"]["note"] == f"of {n:,} examples ({100 * n_cl / n:.2f}%)"

    classes = health_file(mnist_named_dir, "class_health")
    rows = table_rows(text, "health-classes")
    assert len(rows) == len(classes) == 10
    for (attrs, cells), want in zip(rows, classes):
        k = want["class_index"]
        assert int(attrs["data-class-index"]) == k
        assert cells[0] == f"{MNIST_NAMES[k]} ({k})"
        assert [int(c.replace(",", "")) for c in cells[1:3]] == [want["label_issues"], want["inverse_label_issues"]]
        for cell, key in zip(cells[3:], ("label_noise", "inverse_label_noise", "label_quality_score")):
            assert close_to(cell, want[key]), key
    assert "Every class, the lowest label quality score first." in text

    pairs = health_file(mnist_named_dir, "overlapping_classes")
    rows = table_rows(text, "overlaps")
    assert len(pairs) > 15 and len(rows) == 15
    for (attrs, cells), want in zip(rows, pairs):
        a, b = want["class_index_a"], want["class_index_b"]
        assert (int(attrs["data-class-a"]), int(attrs["data-class-b"])) == (a, b)
        assert cells[:3] == [f"{MNIST_NAMES[a]} ({a})", f"{MNIST_NAMES[b]} ({b})",
                             f"{want['num_overlapping_examples']:,}"]
        assert close_to(cells[3], want["joint_probability"])
    assert f"The 15 of {len(pairs)} overlapping pairs" in text

    joint = {(r["given_label"], r["likely_true_label"]): r["count"]
             for r in health_file(mnist_named_dir, "confident_joint")}
    fig = svgs(text)["confident-joint"]
    assert joint_cells(fig) == joint
    assert sum(joint.values()) == n  # the calibrated joint sums to N
    labels = [t.text for t in fig.iter(SVG_NS + "text")]
    assert "seven (7)" in labels and "likely true label" in labels
    assert "most off-diagonal" not in text
    assert "class_health-00000-of-00001.parquet" in text.split("<footer>")[1]


@pytest.fixture(scope="module")
def many_classes_dir(tmp_path_factory):
    """K = 120 (> 100, so the noise matrices are a file), names to escape, a few classes with
    much label noise: 20 classes lose a third of their labels to the next class."""
    rng = np.random.default_rng(7)
    n, k = 6000, 120
    true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), true] += 5.0
    pred_probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = true.copy()
    flip = (true < 20) & (rng.random(n) < 0.33)
    labels[flip] = true[flip] + 1
    names = [f"k{c}&<{c}>" for c in range(k)]
    out = make_output_dir(tmp_path_factory.mktemp("many"), labels, pred_probs, class_names=names)
    assert (out / "noise_matrices-00000-of-00001.parquet").is_file()
    report.write_report(str(out))
    return out


def test_health_section_with_many_classes(many_classes_dir):
    """K > 60: the 50 worst classes, the 15 top pairs, the 30 classes with the most off-diagonal mass."""
    out = many_classes_dir
    k = 120
    text, parser = parse_report(out)
    summary = json.loads((out / "summary.json").read_text())
    assert float(parser.cards["overall_label_health_score"]["value"]) == summary["overall_label_health_score"]

    classes = health_file(out, "class_health")
    rows = table_rows(text, "health-classes")
    assert len(classes) == k and len(rows) == 50
    assert [int(a["data-class-index"]) for a, _ in rows] == [r["class_index"] for r in classes[:50]]
    assert [cells[0] for _, cells in rows] == [f"k{r['class_index']}&<{r['class_index']}> ({r['class_index']})"
                                               for r in classes[:50]]
    assert [int(cells[1].replace(",", "")) for _, cells in rows] == [r["label_issues"] for r in classes[:50]]
    assert all(close_to(cells[5], r["label_quality_score"]) for (_, cells), r in zip(rows, classes))
    assert "The 50 of 120 classes with the lowest label quality score" in text
    assert 'k3&amp;&lt;3&gt; (3)' in text and "k3&<3>" not in text

    pairs = health_file(out, "overlapping_classes")
    rows = table_rows(text, "overlaps")
    assert [(int(a["data-class-a"]), int(a["data-class-b"])) for a, _ in rows] == [
        (r["class_index_a"], r["class_index_b"]) for r in pairs[:15]]

    joint = health_file(out, "confident_joint")
    mass = np.zeros(k)
    for r in joint:
        if r["given_label"] != r["likely_true_label"]:
            mass[r["given_label"]] += r["count"]
            mass[r["likely_true_label"]] += r["count"]
    top = sorted(sorted(range(k), key=lambda c: (-mass[c], c))[:30])
    assert set(range(21)) <= set(top)  # the classes that gave up labels and the one that took the last
    fig = svgs(text)["confident-joint"]
    assert joint_cells(fig) == {(r["given_label"], r["likely_true_label"]): r["count"] for r in joint
                                if r["given_label"] in top and r["likely_true_label"] in top}
    row_ticks = [t.text for t in fig.iter(SVG_NS + "text") if t.get("text-anchor") == "end" and not t.get("transform")]
    full = [f"k{c}&<{c}> ({c})" for c in top]
    assert row_ticks == [label if len(label) <= 16 else label[:15] + "…" for label in full]
    assert "The 30 of 120 classes with the most off-diagonal mass" in text


def test_confident_joint_heat_map_for_45_and_10_000_classes():
    """Every class up to 60 (numbered ticks past 30); past that 30 classes, however large K is."""
    rng = np.random.default_rng(2)
    for k in (45, 10_000):
        given = rng.integers(0, k, 20_000)
        likely_true = np.where(rng.random(20_000) < 0.7, given, rng.integers(0, k, 20_000))
        codes, counts = np.unique(given * k + likely_true, return_counts=True)
        svg, truncated = figures.confident_joint_figure(codes // k, codes % k, counts, k, None)
        root = ET.fromstring(svg)
        cells = joint_cells(root)
        assert len(svg) < 20_000 + 200 * len(cells)  # grows with the cells drawn, not with K
        row_ticks = [t.text for t in root.iter(SVG_NS + "text") if t.get("text-anchor") == "end"
                     and not t.get("transform")]
        if k == 45:
            assert not truncated
            assert cells == dict(zip(zip((codes // k).tolist(), (codes % k).tolist()), counts.tolist()))
            assert row_ticks == [str(c) for c in range(0, 45, 4)]
        else:
            off = (codes // k) != (codes % k)
            mass = (np.bincount(codes[off] // k, counts[off], k) + np.bincount(codes[off] % k, counts[off], k))
            top = sorted(np.lexsort((np.arange(k), -mass))[:30].tolist())
            assert truncated and row_ticks == [str(c) for c in top]
            assert cells == {(int(c // k), int(c % k)): int(v) for c, v in zip(codes, counts)
                             if c // k in top and c % k in top}


def test_an_output_without_health_files_still_reports(mnist_dir, tmp_path):
    """An output of a version before the health files: a note instead of the section."""
    out = tmp_path / "old"
    shutil.copytree(mnist_dir, out)
    summary = json.loads((out / "summary.json").read_text())
    for name in summary["confident_joint_files"] + summary["class_health_files"] + summary["overlapping_classes_files"]:
        (out / name).unlink()
    for key in HEALTH_SUMMARY_KEYS:
        del summary[key]
    (out / "summary.json").write_text(json.dumps(summary))
    report.write_report(str(out))
    text, parser = parse_report(out)
    assert "holds no dataset health figures" in text
    assert "overall_label_health_score" not in parser.cards
    assert_self_contained(out, BASE_FIGURES - {"confident-joint"})
    assert len(parser.issue_rows) == summary["num_label_issues"]

    # One health file missing from a newer summary: the rest of the section still shows.
    out = tmp_path / "partial"
    shutil.copytree(mnist_dir, out)
    summary = json.loads((out / "summary.json").read_text())
    summary["class_health_files"] = []
    (out / "summary.json").write_text(json.dumps(summary))
    report.write_report(str(out))
    text, parser = parse_report(out)
    assert "This run wrote no class_health file." in text
    assert float(parser.cards["overall_label_health_score"]["value"]) == summary["overall_label_health_score"]
    assert table_rows(text, "overlaps") and "confident-joint" in svgs(text)


def test_no_valid_example_no_health(tmp_path):
    out = make_output_dir(tmp_path, np.full(50, 7), np.full((50, 3), 1 / 3), on_invalid="skip")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_examples"] == 0 and summary["overall_label_health_score"] is None
    report.write_report(str(out))
    text, parser = parse_report(out)
    assert "No valid example was read, so there is no health to show." in text
    assert "overall_label_health_score" not in parser.cards
    assert "confident-joint" not in svgs(text)


def test_health_rows_are_ranked_whatever_order_the_file_holds(mnist_named_dir, tmp_path):
    out = tmp_path / "shuffled"
    shutil.copytree(mnist_named_dir, out)
    for prefix in ("class_health", "overlapping_classes"):
        path = out / f"{prefix}-00000-of-00001.parquet"
        table = pq.read_table(path)
        pq.write_table(table.take(np.random.default_rng(0).permutation(table.num_rows)), path)
    report.write_report(str(out))
    text, _ = parse_report(out)
    original, _ = parse_report(mnist_named_dir)
    for table_class in ("health-classes", "overlaps"):
        assert table_rows(text, table_class) == table_rows(original, table_class)


# --------------------------------------------------------------------------
# Where each example lives: --example_uri_template.


def _write_png(path: Path, size: int, value: int) -> None:
    from PIL import Image

    Image.new("RGB", (size, size), (value, 255 - value, 90)).save(path)


def test_uri_column_links_and_thumbnails_of_local_images(tmp_path, mnist):
    labels, pred_probs = mnist
    n = 3000
    ids = [f"ex{i:04d}" for i in range(n)]
    images = tmp_path / "images"
    images.mkdir()
    out_probe = make_output_dir(tmp_path, labels[:n], pred_probs[:n], ids=ids, name="probe")
    flagged = [r["id"] for r in read_issues(out_probe)]
    for i, example in enumerate(flagged[:-1]):  # the least severe issue has no image file
        _write_png(images / f"{example}.png", 300, i % 256)
    (images / "not-an-image.png").write_text("hello")
    template = str(images / "{id}.png")
    out = make_output_dir(tmp_path, labels[:n], pred_probs[:n], ids=ids, example_uri_template=template,
                          with_scores=True, input_dir_name="input2")
    issues = read_issues(out)
    assert [r["uri"] for r in issues] == [template.replace("{id}", r["id"]) for r in issues]
    scores = outputs.read_label_quality_scores(str(out), outputs.read_summary(str(out)))
    assert scores.column("uri").to_pylist() == [template.replace("{id}", i) for i in scores.column("id").to_pylist()]

    report.write_report(str(out))
    text, parser = parse_report(out)
    assert_self_contained(out, BASE_FIGURES)
    for row, want in zip(parser.issue_rows, issues):
        (link,) = row["links"]
        assert link["href"] == Path(want["uri"]).as_uri() and link["title"] == want["uri"]
    with_image = [row for row in parser.issue_rows if row["images"]]
    assert len(with_image) == min(len(issues) - 1, report.TOP_ISSUES)
    from PIL import Image

    for row in with_image:
        (img,) = row["images"]
        data = base64.b64decode(img["src"].split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as im:
            assert max(im.size) <= thumbnails.THUMBNAIL_SIDE and im.format == "PNG"
    payload = embedded_issues(parser)
    assert sorted(int(k) for k in payload["thumbs"]) == list(range(len(issues) - 1))
    assert payload["uri"] == [r["uri"] for r in issues]


def test_remote_uris_become_links_and_are_never_read(tmp_path, mnist):
    labels, pred_probs = mnist
    out = make_output_dir(tmp_path, labels[:3000], pred_probs[:3000],
                          example_uri_template="gs://bucket/images/{id}.jpg")
    report.write_report(str(out))
    _, parser = parse_report(out)
    issues = read_issues(out)
    for row, want in zip(parser.issue_rows, issues):
        assert row["links"][0]["href"] == f"https://storage.cloud.google.com/bucket/images/{want['id']}.jpg"
        assert row["images"] == []
    assert embedded_issues(parser)["thumbs"] == {}


def test_thumbnails_only_of_real_images_and_within_the_budget(tmp_path):
    for i in range(5):
        _write_png(tmp_path / f"{i}.png", 40, 50 * i)
    (tmp_path / "fake.png").write_bytes(b"<svg onload=alert(1)>")
    (tmp_path / "script.jpg").write_text("#!/bin/sh")
    uris = [str(tmp_path / "fake.png"), "https://example.com/0.png", str(tmp_path / "script.jpg"),
            (tmp_path / "0.png").as_uri()] + [str(tmp_path / f"{i}.png") for i in range(1, 5)] + [None]
    found = thumbnails.thumbnails(uris)
    assert sorted(found) == [3, 4, 5, 6, 7]
    assert all(v.startswith("data:image/png;base64,") for v in found.values())
    one = len(found[3])
    assert sorted(thumbnails.thumbnails(uris, budget=2 * one + 10)) == [3, 4]
    assert sorted(thumbnails.thumbnails(uris, rows=5)) == [3, 4]


# --------------------------------------------------------------------------
# Class names files, imports, filesystems, browser.


@pytest.mark.parametrize(
    "content, expected",
    [
        ("cat\ndog\nbird\n", ["cat", "dog", "bird"]),
        ("cat\r\n dog \r\nbird", ["cat", "dog", "bird"]),
        ('["cat", "dog", "a \\"bird\\""]', ["cat", "dog", 'a "bird"']),
        ("\ufeffcat\ndog\n\n", ["cat", "dog"]),
    ],
)
def test_load_class_names(tmp_path, content, expected):
    path = tmp_path / "names.txt"
    path.write_text(content, encoding="utf-8")
    assert load_class_names(str(path)) == expected


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("  \n\n", "empty"),
        ("[]", "no names"),
        ('["cat", 3]', "list of strings"),
        ('["cat", "dog"', "not a valid JSON list"),
        ("cat\n\ndog\n", "empty name for class 1"),
        ("cat\ndog\ncat\n", "classes 0 and 2 both 'cat'"),
    ],
)
def test_load_class_names_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "names.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)):
        load_class_names(str(path))


def test_the_report_needs_no_plotting_or_imaging_library():
    import subprocess
    import sys

    code = ("import sys; import beam_labelissues.report; "
            "print(any(m in sys.modules for m in ('matplotlib', 'PIL')))")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip().endswith("False")


def test_reads_and_writes_through_beam_filesystems(mnist_named_dir, tmp_path):
    """A gs://-style path: the report reads and writes through Beam's FileSystems only."""
    out = tmp_path / "copy"
    shutil.copytree(mnist_named_dir, out)
    (out / "report.html").unlink()
    remote = PrefixedLocalFileSystem.remote(str(out))
    path = report.write_report(remote, human_review=PrefixedLocalFileSystem.remote(demo.DEMO_HUMAN_REVIEW))
    assert path == PrefixedLocalFileSystem.remote(str(out / "report.html"))
    text, parser = parse_report(out)
    assert len(parser.issue_rows) == report.TOP_ISSUES
    assert "mnist_mturk.json: " in text
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    assert load_class_names(PrefixedLocalFileSystem.remote(str(names))) == ["a", "b"]


def _rows_of_dom(dom: str) -> list[dict]:
    parser = _ReportParser()
    parser.feed(dom)
    return parser.issue_rows


# Runs after the page's script: clicks the "Label quality" header twice (descending),
# picks a given class in the filter, then records what the table shows.
_CLICK_AND_FILTER = """
var head = document.querySelector('#issues-table th[data-key="quality"]');
head.click(); head.click();
var select = document.getElementById("filter-given");
select.value = select.options[2].value;
select.dispatchEvent(new Event("change"));
document.body.setAttribute("data-picked", select.value);
document.body.setAttribute("data-sort", head.getAttribute("aria-sort"));
"""


def test_report_renders_sorts_and_filters_in_chromium(mnist_named_dir, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not found (install the Debian package 'chromium' or set $CHROMIUM)")
    from PIL import Image

    page = mnist_named_dir / "report.html"
    shot = Path(os.environ.get("REPORT_SCREENSHOT") or tmp_path / "report.png")
    screenshot(chromium, page, shot)
    with Image.open(shot) as im:
        assert im.size == (1280, 4000)
        rgb = im.convert("RGB")
        colors = rgb.getcolors(maxcolors=1 << 20)
        assert colors is None or len(colors) > 50, "screenshot is (nearly) one colour"
        extrema = rgb.getextrema()
        assert any(lo < 100 for lo, _ in extrema) and all(hi > 200 for _, hi in extrema)
        # The heat map's dark red cells are drawn (the SVG rendered, not just the text).
        assert sum(count for count, (r, g, b) in colors or [] if r > 110 and g < 40 and b < 60) > 500

    issues = read_issues(mnist_named_dir)
    page_rows = 100

    # Clicking a header sorts, choosing a class filters: the script's real event handlers.
    dom = dump_dom_after(chromium, page, _CLICK_AND_FILTER)
    picked = int(re.search(r'data-picked="(\d+)"', dom).group(1))
    assert 'data-sort="descending"' in dom
    want = sorted((r for r in issues if r["given_label"] == picked), key=lambda r: (-r["label_quality"], r["rank"]))
    shown = _rows_of_dom(dom)
    assert [int(r["attrs"]["data-rank"]) for r in shown] == [r["rank"] for r in want][:page_rows]
    assert all(r["cells"][2] == f"{MNIST_NAMES[picked]} ({picked})" for r in shown)
    assert re.search(rf'data-matching="{len(want)}"', dom)

    # A view from the query string: sort by id descending, text filter on a class name, page 2.
    dom = dump_dom_after(chromium, page, query="?sort=id&dir=desc&q=SEVEN")
    want = sorted((r for r in issues if "seven" in (r["given_label_name"] + " " + r["predicted_label_name"])),
                  key=lambda r: -r["id"])
    assert [int(r["attrs"]["data-id"]) for r in _rows_of_dom(dom)] == [r["id"] for r in want][:page_rows]
    dom = dump_dom_after(chromium, page, query="?page=2")
    assert [int(r["attrs"]["data-rank"]) for r in _rows_of_dom(dom)] == list(range(page_rows, min(len(issues), 200)))
    assert "rows 101–" in dom
