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
