"""The real MNIST and CIFAR-10 test-set predictions: identical to cleanlab, every option."""

from __future__ import annotations

import numpy as np

from harness import read_output_dir, run_pipeline
from oracle import assert_matches, cleanlab_expected
from test_parity import OPTION_COMBOS


def test_real_predictions_match_cleanlab_for_every_option(real_dataset, tmp_path):
    _, paths = real_dataset
    runs = [dict(labels_path=paths["labels"], pred_probs_path=paths["pred_probs"],
                 output_dir=str(tmp_path / f"run{i}"), with_scores=i == 0, **options)
            for i, options in enumerate(OPTION_COMBOS)]
    run_pipeline(runs)
    labels, probs = np.load(paths["labels"]), np.load(paths["pred_probs"])
    found = []
    for i, options in enumerate(OPTION_COMBOS):
        out = read_output_dir(str(tmp_path / f"run{i}"))
        expected = cleanlab_expected(labels, probs, **options)
        assert_matches(expected, out["issues"], out["summary"], out["scores"], check_cleanlab_set=True)
        found.append(len(expected.issue_ids))
    assert found[0] > 0, found
