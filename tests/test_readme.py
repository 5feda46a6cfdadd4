"""The README's promises: its Python examples (batches, and RunInference with a
scikit-learn model) run and give cleanlab's answer; its commands are the ones CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pickle

import numpy as np
from cleanlab.experimental.label_issues_batched import find_label_issues_batched

from harness import REPO_ROOT, read_output_dir
from oracle import assert_matches, cleanlab_expected


def _readme():
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as handle:
        return handle.read()


def test_pipeline_example_runs_and_matches_cleanlab(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", _readme(), flags=re.S)
    example = next(b for b in blocks if "FindLabelIssues(num_classes=3)" in b)
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    labels, probs = [], []
    for start in (0, 1000, 2000):
        rng = np.random.default_rng(start)
        logits = rng.normal(size=(1000, 3))
        probs.append(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
        labels.append(rng.integers(0, 3, size=1000))
    expected = find_label_issues_batched(np.concatenate(labels), np.concatenate(probs), verbose=False)
    assert f"{len(expected)} issues" in result.stdout
    assert "estimated" in result.stdout


def test_runinference_example_runs_and_matches_cleanlab(tmp_path):
    """The README's RunInference example as a user runs it; the oracle is cleanlab on the
    probabilities of the model the example trained and saved."""
    from sklearn.datasets import make_classification

    blocks = re.findall(r"```python\n(.*?)```", _readme(), flags=re.S)
    example = next(b for b in blocks if "RunInference(model_handler)" in b)
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    features, labels = make_classification(n_samples=4000, n_features=8, n_informative=6, n_classes=3,
                                           class_sep=2.0, random_state=0)
    flipped = np.random.default_rng(0).random(4000) < 0.05
    labels[flipped] = (labels[flipped] + 1) % 3
    with open(tmp_path / "model.pkl", "rb") as handle:
        probs = pickle.load(handle).predict_proba(features[:2000])
    expected = cleanlab_expected(labels[:2000], probs)
    out = read_output_dir(str(tmp_path / "runinference_label_issues"))
    assert_matches(expected, out["issues"], out["summary"])
    assert f"{len(expected.issue_ids)} label issues in 2000 examples" in result.stdout
    found = set(out["issues"]["id"])
    assert len(found & set(np.flatnonzero(flipped[:2000]).tolist())) > len(found) / 2, "mostly the flipped labels"


def test_ci_runs_the_readme_test_command():
    readme = _readme()
    command = ".venv/bin/pip install -e '.[test]' -c templates/constraints.txt && .venv/bin/python -m pytest"
    assert command in readme
    with open(os.path.join(REPO_ROOT, ".ci", "run"), encoding="utf-8") as handle:
        ci = handle.read()
    assert "pip install -q -e '.[test]' -c templates/constraints.txt" in ci and "python -m pytest" in ci


def _python_block(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", _readme(), flags=re.S)
    return next(b for b in blocks if containing in b)


def _run_block_on_cifar(tmp_path, block: str, name: str) -> np.ndarray:
    """Runs a README block in a folder holding CIFAR-10's labels.npy and pred_probs.npy, as a
    user would, and returns its ``issues``."""
    from conftest import real_dataset_paths

    paths = real_dataset_paths("cifar10")
    np.save(tmp_path / "labels.npy", np.load(paths["labels"]))
    np.save(tmp_path / "pred_probs.npy", np.load(paths["pred_probs"]))
    script = block + f"\nimport numpy\nnumpy.save({name + '.npy'!r}, issues)\n"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return np.load(tmp_path / f"{name}.npy")


def test_migration_from_cleanlab_is_the_import_line(tmp_path):
    """The README's three lines give cleanlab's set, ranked by (score, index)."""
    from cleanlab.experimental.label_issues_batched import LabelInspector as CleanlabInspector

    block = _python_block("from beam_labelissues import find_label_issues_batched")
    assert "# from cleanlab.experimental.label_issues_batched import find_label_issues_batched" in block
    ours = _run_block_on_cifar(tmp_path, block, "issues")
    labels, probs = np.load(tmp_path / "labels.npy"), np.load(tmp_path / "pred_probs.npy")
    theirs = find_label_issues_batched(labels_file=str(tmp_path / "labels.npy"),
                                       pred_probs_file=str(tmp_path / "pred_probs.npy"), batch_size=10000,
                                       verbose=False)
    assert len(theirs) > 0 and sorted(ours.tolist()) == sorted(theirs.tolist())
    inspector = CleanlabInspector(num_class=10, verbose=False)
    inspector.update_confident_thresholds(labels, probs)
    scores = inspector.score_label_quality(labels, probs)
    keys = [(scores[i], i) for i in ours]
    assert keys == sorted(keys), "most severe first, ties by index"


def test_label_inspector_example_matches_cleanlabs_inspector(tmp_path):
    from cleanlab.experimental.label_issues_batched import LabelInspector as CleanlabInspector

    ours = _run_block_on_cifar(tmp_path, _python_block("from beam_labelissues import LabelInspector"), "inspector")
    labels, probs = np.load(tmp_path / "labels.npy"), np.load(tmp_path / "pred_probs.npy")
    theirs = CleanlabInspector(num_class=10, verbose=False)
    for start in range(0, len(labels), 1000):
        theirs.update_confident_thresholds(labels[start:start + 1000], probs[start:start + 1000])
    for start in range(0, len(labels), 1000):
        theirs.score_label_quality(labels[start:start + 1000], probs[start:start + 1000])
    expected = theirs.get_label_issues()
    scores = theirs.get_quality_scores()
    assert len(expected) > 0 and sorted(ours.tolist()) == sorted(expected.tolist())
    keys = [(scores[i], i) for i in ours]
    assert keys == sorted(keys)
