"""Tests of the HTML report, on output directories the real pipeline writes from real MNIST data.

`make_output_dir` runs ``FindLabelIssues`` on the given labels and predictions
(a .npy pair, or Parquet with an id column) and writes the output directory the
report reads; cleanlab is the oracle of the pipeline itself (tests/test_parity.py).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from browser import count_loaded_images, find_chromium, screenshot
from datasets import write_npy
from harness import run_pipeline
from input_files import PrefixedLocalFileSystem, examples_table

from beam_labelissues import demo, report
from beam_labelissues.io import NpyPair, ParquetDataset, ReadNpyExamples, ReadParquetExamples
from beam_labelissues.io.class_names import load_class_names

MNIST_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    report.write_report(str(out))
    return out


# --------------------------------------------------------------------------
# Reading the report back.


class _ReportParser(HTMLParser):
    """Collects what the tests check: tags with their attributes, cards, and table rows."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.cards: dict[str, dict] = {}
        self.issue_rows: list[dict] = []
        self._card = None
        self._card_field = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        classes = (attrs.get("class") or "").split()
        if tag == "div" and "card" in classes:
            self._card = {"value": attrs["data-value"], "text": {}}
            self.cards[attrs["data-key"]] = self._card
        elif tag == "div" and self._card is not None and classes:
            self._card_field = classes[0]
            self._card["text"][self._card_field] = ""
        elif tag == "tr" and "data-rank" in attrs:
            self._row = {"attrs": attrs, "cells": []}
            self.issue_rows.append(self._row)
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "div" and self._card_field is not None:
            self._card_field = None
        elif tag == "div" and self._card is not None:
            self._card = None
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
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


def read_issues(out: Path):
    tables = [pq.read_table(p) for p in sorted(out.glob("label_issues-*.parquet"))]
    return pa.concat_tables(tables).sort_by("rank").to_pylist()


def assert_self_contained(out: Path, expected_images: int) -> None:
    from PIL import Image

    text, parser = parse_report(out)
    assert "<script" not in text.lower()
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), "CSS must not load anything"
    for tag, attrs in parser.tags:
        for attr in ("src", "href", "srcset", "data"):
            value = (attrs.get(attr) or "").strip().lower()
            assert not value.startswith(("http://", "https://", "//")), (tag, attr, value[:80])
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == expected_images
    for attrs in images:
        src = attrs["src"]
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:60]
        png = base64.b64decode(src[len(prefix):], validate=True)
        assert png.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and im.width > 200 and im.height > 100
        assert attrs.get("alt")


# --------------------------------------------------------------------------
# Tests.


def test_report_written_and_self_contained(mnist_dir):
    path = mnist_dir / "report.html"
    assert path.is_file()
    assert report.write_report(str(mnist_dir)) == str(path)
    # histogram, issues per class, heat map, thresholds
    assert_self_contained(mnist_dir, expected_images=4)


def test_headline_figures_equal_summary(mnist_dir):
    summary = json.loads((mnist_dir / "summary.json").read_text())
    assert summary["num_label_issues"] > 0
    text, parser = parse_report(mnist_dir)
    for key in ("num_examples", "num_invalid_records", "num_issues_estimated", "num_label_issues",
                "num_classes"):
        card = parser.cards[key]
        assert int(card["value"]) == summary[key], key
        assert card["text"]["value"] == f"{summary[key]:,}", key
    share = parser.cards["issue_share"]
    assert float(share["value"]) == pytest.approx(summary["num_label_issues"] / summary["num_examples"])
    assert share["text"]["value"] == f"{100 * summary['num_label_issues'] / summary['num_examples']:.2f}%"
    for key in ("method", "adjust_pred_probs", "estimation_method", "input"):
        row = re.search(rf'<tr data-key="{key}"><th>[^<]*</th><td>([^<]*)</td>', text)
        assert row and row.group(1) == str(summary[key]), key


@pytest.mark.parametrize("which", ["mnist_dir", "mnist_named_dir"])
def test_top_table_lists_most_severe_issues_in_order(which, request):
    out = request.getfixturevalue(which)
    _, parser = parse_report(out)
    issues = read_issues(out)
    expected = issues[: report.TOP_ISSUES]
    assert len(parser.issue_rows) == len(expected) == min(report.TOP_ISSUES, len(issues))
    if which == "mnist_named_dir":
        assert len(issues) > report.TOP_ISSUES  # the cap is exercised
    for row, want in zip(parser.issue_rows, expected):
        rank, id_, given, predicted, score = row["cells"]
        assert int(rank) == want["rank"] and int(row["attrs"]["data-rank"]) == want["rank"]
        assert id_ == str(want["id"])
        if want.get("given_label_name") is None:
            assert given == str(want["given_label"])
            assert predicted == str(want["predicted_label"])
        else:
            assert given == f"{want['given_label_name']} ({want['given_label']})"
            assert predicted == f"{want['predicted_label_name']} ({want['predicted_label']})"
        assert float(score) == pytest.approx(want["label_quality"], abs=1e-4)
    scores = [float(r["cells"][4]) for r in parser.issue_rows]
    assert scores == sorted(scores)


def test_class_names_from_summary(mnist_named_dir):
    text, parser = parse_report(mnist_named_dir)
    expected = read_issues(mnist_named_dir)[: report.TOP_ISSUES]
    for row, want in zip(parser.issue_rows, expected):
        assert row["cells"][2] == f"{want['given_label_name']} ({want['given_label']})"
        assert row["cells"][3] == f"{want['predicted_label_name']} ({want['predicted_label']})"
    assert "seven (7)" in text
    assert "off_diagonal_calibrated" in text and "normalized_margin" in text


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
    assert parser.issue_rows == []
    assert "No label issues were found." in text
    assert "nothing to cross-tabulate" in text
    # histogram, issues per class, thresholds; no heat map without issues
    assert_self_contained(out, expected_images=3)


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
    assert_self_contained(out, expected_images=4)


def test_string_ids_and_hostile_text_are_escaped(tmp_path, mnist):
    labels, pred_probs = mnist
    n = 3000
    ids = np.array([f"img<{i:05d}>&\"x\"" for i in range(n)])
    names = [f"<script>alert({d})</script>" if d == 3 else f"c&{d}" for d in range(10)]
    out = make_output_dir(tmp_path, labels[:n], pred_probs[:n], ids=ids, class_names=names,
                          input_dir_name='in<"x">')
    report.write_report(str(out))
    text, parser = parse_report(out)
    assert "<script" not in text
    assert "&lt;script&gt;alert(3)&lt;/script&gt; (3)" in text
    assert 'in&lt;&quot;x&quot;&gt;' in text and 'in<"x">' not in text
    expected = read_issues(out)[: report.TOP_ISSUES]
    assert [r["cells"][1] for r in parser.issue_rows] == [w["id"] for w in expected]


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
    assert 'data-class="' not in text  # no per-class table above 50 classes
    assert len(parser.issue_rows) == min(report.TOP_ISSUES, json.loads((out / "summary.json").read_text())["num_label_issues"])
    assert_self_contained(out, expected_images=4)


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


def test_importing_report_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys; import beam_labelissues.report; print('matplotlib' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip().endswith("False")


def test_report_renders_in_chromium(mnist_named_dir, tmp_path):
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

    _, parser = parse_report(mnist_named_dir)
    num_img = sum(1 for tag, _ in parser.tags if tag == "img")
    loaded, total = count_loaded_images(chromium, page)
    assert total == num_img == 4
    assert loaded == total


def test_reads_and_writes_through_beam_filesystems(mnist_named_dir, tmp_path):
    """A gs://-style path: the report reads and writes through Beam's FileSystems only."""
    out = tmp_path / "copy"
    shutil.copytree(mnist_named_dir, out)
    (out / "report.html").unlink()
    remote = PrefixedLocalFileSystem.remote(str(out))
    path = report.write_report(remote)
    assert path == PrefixedLocalFileSystem.remote(str(out / "report.html"))
    _, parser = parse_report(out)
    assert len(parser.issue_rows) == report.TOP_ISSUES
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    assert load_class_names(PrefixedLocalFileSystem.remote(str(names))) == ["a", "b"]
