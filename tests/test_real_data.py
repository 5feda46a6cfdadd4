"""The real MNIST and CIFAR-10 test-set predictions: identical to cleanlab, every option."""

from __future__ import annotations

import os

import numpy as np
import pytest

from oracle import assert_matches, cleanlab_expected
from pipeline_runs import read_output_dir, run_on_npy
from test_parity import OPTION_COMBOS


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_real_predictions_match_cleanlab_for_every_option(dataset, label_errors_dir, tmp_path):
    labels_path = os.path.join(label_errors_dir, f"{dataset}_test_set_labels.npy")
    probs_path = os.path.join(label_errors_dir, f"{dataset}_test_set_pred_probs.npy")
    runs = [dict(labels_path=labels_path, pred_probs_path=probs_path, output_dir=str(tmp_path / f"run{i}"),
                 with_scores=i == 0, **options)
            for i, options in enumerate(OPTION_COMBOS)]
    run_on_npy(runs)
    labels, probs = np.load(labels_path), np.load(probs_path)
    found = []
    for i, options in enumerate(OPTION_COMBOS):
        out = read_output_dir(str(tmp_path / f"run{i}"))
        expected = cleanlab_expected(labels, probs, **options)
        assert_matches(expected, out["issues"], out["summary"], out["scores"], check_cleanlab_set=True)
        found.append(len(expected.issue_ids))
    assert min(found[:1]) > 0 and sum(found) > 0, found
