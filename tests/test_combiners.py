"""CombineFns without a pipeline: one accumulator, or split + merge + compact, agree exactly."""

from __future__ import annotations

import numpy as np

from beam_labelissues import kernels
from beam_labelissues.batches import ExampleBatch, IssueCandidates, ScoredBatch
from beam_labelissues.combiners import ConfidentThresholdsFn, IssueCountFn, LowestScoresFn
from datasets import DatasetSpec, make_dataset
from harness import combine_split, combine_whole


def _batches(n=20000, k=10, size=1000, seed=0):
    labels, probs = make_dataset(DatasetSpec(n, k, "float32", "int64", 0.1, seed=seed))
    return [ExampleBatch(np.arange(i, min(i + size, n)), labels[i:i + size], probs[i:i + size])
            for i in range(0, n, size)], labels, probs


def test_thresholds_do_not_depend_on_split_or_order():
    batches, labels, probs = _batches()
    fn = ConfidentThresholdsFn(10)
    whole = combine_whole(fn, batches)
    split = combine_split(fn, batches[::-1], 3)
    assert whole.thresholds.tobytes() == split.thresholds.tobytes()
    np.testing.assert_array_equal(whole.examples_per_class, np.bincount(labels, minlength=10))
    assert whole.num_examples == len(labels)


def test_thresholds_of_empty_input_are_the_lower_bound():
    out = ConfidentThresholdsFn(4).extract_output(ConfidentThresholdsFn(4).create_accumulator())
    assert out.num_examples == 0 and (out.thresholds == kernels.CONFIDENT_THRESHOLDS_LOWER_BOUND).all()


def test_issue_counts_do_not_depend_on_split():
    batches, _, _ = _batches(seed=1)
    thresholds = np.full(10, 0.5)
    scored = []
    for b in batches:
        predicted = kernels.predicted_labels(b.pred_probs)
        scored.append(ScoredBatch(b, predicted, kernels.self_confidence(b.labels, b.pred_probs),
                                  kernels.confident_predictions(b.pred_probs[np.arange(len(b)), predicted], predicted, thresholds),
                                  kernels.predictions(b.labels, b.pred_probs)[2]))
    fn = IssueCountFn(10)
    whole, split = combine_whole(fn, scored), combine_split(fn, scored, 4)
    for name in ("prune_counts", "normalization", "class_counts", "score_histogram", "issue_histogram"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(split, name))
    assert whole.score_histogram.sum() == 20000
    assert 0 < whole.issue_histogram.sum() < 20000


def test_lowest_scores_keeps_exactly_the_n_lowest_by_score_then_id():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(50000), 3)  # many ties
    ids = rng.permutation(50000)
    parts = [IssueCandidates(ids[i:i + 997], np.zeros(997, int)[: len(ids[i:i + 997])],
                             np.zeros(len(ids[i:i + 997]), int), scores[i:i + 997],
                             np.zeros(len(ids[i:i + 997]), bool), 30000,
                             scores[i:i + 997], np.ones(len(ids[i:i + 997])))
             for i in range(0, 50000, 997)]
    fn = LowestScoresFn()
    expected = np.lexsort((ids, scores))[:30000]
    for out in (combine_whole(fn, parts), combine_split(fn, parts, 5)):
        np.testing.assert_array_equal(out.ids, ids[expected])
        np.testing.assert_array_equal(out.scores, scores[expected])


def test_lowest_scores_of_nothing_is_empty():
    out = LowestScoresFn().extract_output(LowestScoresFn().create_accumulator())
    assert len(out) == 0
