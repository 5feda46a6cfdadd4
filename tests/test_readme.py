"""The README's promises: its Python example runs and gives cleanlab's answer; its
commands are the ones CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
from cleanlab.experimental.label_issues_batched import find_label_issues_batched

from harness import REPO_ROOT


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


def test_ci_runs_the_readme_test_command():
    readme = _readme()
    command = ".venv/bin/pip install -e '.[test]' -c templates/constraints.txt && .venv/bin/python -m pytest"
    assert command in readme
    with open(os.path.join(REPO_ROOT, ".ci", "run"), encoding="utf-8") as handle:
        ci = handle.read()
    assert "pip install -q -e '.[test]' -c templates/constraints.txt" in ci and "python -m pytest" in ci
