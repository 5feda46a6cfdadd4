"""Tests of the HTML report, on output directories computed with cleanlab on real MNIST data.

`make_output_dir` writes an output directory by the pipeline's contract with values
from cleanlab's batched implementation; it is the one place to switch to the real
pipeline later.
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

from beam_labelissues import report

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.browser import count_loaded_images, find_chromium, screenshot
except ImportError:
    from browser import count_loaded_images, find_chromium, screenshot

DATA_DIR = Path("/work/shared/data/label-errors")
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
    method: str = "self_confidence",
    adjust_pred_probs: bool = False,
    estimation_method: str = "off_diagonal",
    num_files: int = 2,
    histogram_bins: int = 50,
    num_invalid_records: int = 0,
    input_description: str = "npy: labels.npy, pred_probs.npy",
    name: str = "out",
) -> Path:
    """Write label_issues-*.parquet and summary.json as the pipeline would, values from cleanlab."""
    from cleanlab.experimental.label_issues_batched import LabelInspector, find_label_issues_batched

    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    n, k = pred_probs.shape
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids)
    quality_kwargs = {"method": method, "adjust_pred_probs": adjust_pred_probs}
    issue_kwargs = {"estimation_method": estimation_method}
    batch = 2500

    inspector = LabelInspector(num_class=k, verbose=False, n_jobs=1,
                               quality_score_kwargs=quality_kwargs, num_issue_kwargs=issue_kwargs)
    for start in range(0, n, batch):
        inspector.update_confident_thresholds(labels[start:start + batch], pred_probs[start:start + batch])
    for start in range(0, n, batch):
        inspector.score_label_quality(labels[start:start + batch], pred_probs[start:start + batch])
    thresholds = inspector.get_confident_thresholds(silent=True)
    scores = inspector.get_quality_scores()
    num_estimated = int(inspector.get_num_issues(silent=True))
    issue_idx = find_label_issues_batched(labels, pred_probs, batch_size=batch, n_jobs=1, verbose=False,
                                          quality_score_kwargs=quality_kwargs, num_issue_kwargs=issue_kwargs)
    ranked = sorted(issue_idx.tolist(), key=lambda i: (scores[i], ids[i]))
    predicted = pred_probs.argmax(axis=1)

    columns = {
        "rank": pa.array(np.arange(len(ranked), dtype=np.int64)),
        "id": pa.array([ids[i].item() for i in ranked],
                       type=pa.string() if ids.dtype.kind in "USO" else pa.int64()),
        "given_label": pa.array(labels[ranked].astype(np.int64), type=pa.int64()),
        "predicted_label": pa.array(predicted[ranked].astype(np.int64), type=pa.int64()),
        "label_quality": pa.array(scores[ranked].astype(np.float64), type=pa.float64()),
    }
    if class_names is not None:
        columns["given_label_name"] = pa.array([class_names[labels[i]] for i in ranked], type=pa.string())
        columns["predicted_label_name"] = pa.array([class_names[predicted[i]] for i in ranked],
                                                   type=pa.string())
    table = pa.table(columns)

    out = tmp_path / name
    out.mkdir(parents=True)
    files = []
    for f in range(num_files):
        # Round-robin rows across files so no file is a contiguous run of ranks.
        part = table.take(np.arange(f, table.num_rows, num_files))
        file_name = f"label_issues-{f:05d}-of-{num_files:05d}.parquet"
        pq.write_table(part, out / file_name)
        files.append(file_name)

    counts, edges = np.histogram(scores, bins=histogram_bins, range=(0.0, 1.0))
    summary = {
        "num_examples": int(n),
        "num_classes": int(k),
        "num_label_issues": len(ranked),
        "num_issues_estimated": num_estimated,
        "confident_thresholds": [float(t) for t in thresholds],
        "examples_per_class": np.bincount(labels, minlength=k).astype(int).tolist(),
        "method": method,
        "adjust_pred_probs": adjust_pred_probs,
        "estimation_method": estimation_method,
        "num_invalid_records": num_invalid_records,
        "score_histogram": {"bin_edges": edges.tolist(), "counts": counts.astype(int).tolist()},
        "issue_score_range": [float(scores[ranked].min()), float(scores[ranked].max())] if ranked else None,
        "class_names": class_names,
        "input": input_description,
        "label_issues_files": files,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return out


@pytest.fixture(scope="module")
def mnist():
    labels = np.load(DATA_DIR / "mnist_test_set_labels.npy").astype(np.int64)
    pred_probs = np.load(DATA_DIR / "mnist_test_set_pred_probs.npy")
    return labels, pred_probs


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory, mnist):
    labels, pred_probs = mnist
    out = make_output_dir(tmp_path_factory.mktemp("mnist"), labels, pred_probs,
                          input_description="npy: mnist_test_set_labels.npy, mnist_test_set_pred_probs.npy")
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
                          estimation_method="off_diagonal_calibrated", num_files=3)
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
    out = make_output_dir(tmp_path, agreeing, pred_probs, num_files=1)
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


def test_no_issue_files_and_zero_issues(tmp_path, mnist):
    _, pred_probs = mnist
    out = make_output_dir(tmp_path, pred_probs.argmax(axis=1), pred_probs, num_files=1)
    for p in out.glob("label_issues-*.parquet"):
        p.unlink()
    report.write_report(str(out))
    assert "No label issues were found." in (out / "report.html").read_text()


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
                          input_description='parquet: <gs://bucket/"x">')
    report.write_report(str(out))
    text, parser = parse_report(out)
    assert "<script" not in text
    assert "&lt;script&gt;alert(3)&lt;/script&gt; (3)" in text
    assert 'parquet: &lt;gs://bucket/&quot;x&quot;&gt;' in text
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
    assert report.load_class_names(str(path)) == expected


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
        report.load_class_names(str(path))


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


def test_reads_and_writes_through_beam_filesystems(mnist_named_dir, tmp_path, monkeypatch):
    """The gs:// code path, exercised on a local directory through Beam's FileSystems."""
    out = tmp_path / "copy"
    shutil.copytree(mnist_named_dir, out)
    (out / "report.html").unlink()
    monkeypatch.setattr(report, "_is_remote", lambda path: True)
    path = report.write_report(str(out))
    assert path == str(out / "report.html")
    _, parser = parse_report(out)
    assert len(parser.issue_rows) == report.TOP_ISSUES
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    assert report.load_class_names(str(names)) == ["a", "b"]
