"""Full confident learning kernels against cleanlab, composed over batches as a pipeline would.

Each case splits the data into batches of uneven sizes and runs the passes the Beam pipeline
will run: exact thresholds; the sparse confident joint and the confident-learning count; one
plan; then per filter_by the selection passes (for prune_by_noise_rate a bound pass first, then a
keyed histogram for each cell's or class's cut, then the lowest by (value, id) at the boundary
bin), the removal of agreeing rows, and compares with cleanlab on the same values in float64.
No Beam needed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest

import oracle_filter
from beam_labelissues import confident_joint as cj
from beam_labelissues import kernels
from datasets import DatasetSpec, make_dataset

DEMO_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "beam_labelissues",
                         "demo_data")
NUM_BINS = 1 << 10  # coarse on purpose: many rows share the boundary bin


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def _mnist():
    return (np.load(os.path.join(DEMO_DATA, "mnist_test_set_labels.npy")),
            np.load(os.path.join(DEMO_DATA, "mnist_test_set_pred_probs.npy")))


def _unseen_label(labels, probs, cls=3):
    """No row is labelled ``cls`` (its rows are relabelled to the next class)."""
    labels = labels.copy()
    labels[labels == cls] = (cls + 1) % probs.shape[1]
    return labels, probs


def _never_predicted(labels, probs, cls=2):
    """Class ``cls`` keeps tiny probabilities: never the argmax, never confident."""
    probs = probs.astype(np.float64)
    probs[:, cls] *= 1e-3
    probs /= probs.sum(axis=1, keepdims=True)
    return labels, probs.astype(np.float32)


def _rare_classes(labels, probs):
    """Class 0 has one row, class 1 thirty (below min_examples_per_class=50), class 2 none."""
    labels = labels.copy()
    k = probs.shape[1]
    for cls, keep in ((0, 1), (1, 30), (2, 0)):
        rows = np.flatnonzero(labels == cls)
        labels[rows[keep:]] = cls + 3 + np.arange(len(rows) - keep) % (k - cls - 3)
    return labels, probs


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    spec: Optional[DatasetSpec] = None        # None: the real MNIST predictions
    transform: Optional[Callable] = None
    frac_noise: float = 1.0
    min_examples_per_class: int = 1
    num_to_remove: Optional[Callable] = None  # label counts -> num_to_remove_per_class
    filters: Tuple[str, ...] = cj.FILTER_BY
    num_batches: int = 5
    seed: int = 0

    def data(self):
        if self.spec is None:
            labels, probs = _mnist()
        else:
            labels, probs = make_dataset(self.spec)
        if self.transform is not None:
            labels, probs = self.transform(labels, probs)
        return labels, probs


def _tenth(counts):
    return [int(c // 10) for c in counts]


def _mixed(counts):
    rng = np.random.default_rng(7)
    return [int(rng.integers(0, c // 4 + 1)) if c else 0 for c in counts]


PRUNING = cj.PRUNING_FILTERS
S = DatasetSpec
CASES = [
    Case("mnist"),
    Case("mnist-frac0.3", frac_noise=0.3, filters=PRUNING),
    Case("mnist-min50", min_examples_per_class=50, filters=PRUNING),
    Case("mnist-min0", min_examples_per_class=0, filters=PRUNING),
    Case("mnist-remove-tenth", num_to_remove=_tenth, filters=PRUNING),
    Case("k2-low", S(2000, 2, "float64", noise=0.05, seed=1)),
    Case("k2-heavy", S(5000, 2, "float32", noise=0.4, seed=2)),
    Case("k3-f16", S(3000, 3, "float16", noise=0.2, seed=3)),
    Case("k5-low", S(10000, 5, "float32", noise=0.02, seed=4)),
    Case("k10-200k", S(200_000, 10, "float32", noise=0.1, seed=5), num_batches=9),
    Case("k4-200k-f16-heavy", S(200_000, 4, "float16", noise=0.3, seed=6), num_batches=7,
         filters=("prune_by_noise_rate", "both", "low_self_confidence")),
    Case("k10-heavy", S(20000, 10, "float64", noise=0.5, seed=7, accuracy_boost=1.0)),
    Case("k20", S(8000, 20, "float32", noise=0.2, seed=8)),
    Case("k50", S(10000, 50, "float32", noise=0.1, seed=9)),
    Case("k100", S(20000, 100, "float32", noise=0.15, seed=10, accuracy_boost=3.0)),
    Case("k300", S(10000, 300, "float32", noise=0.1, seed=11, accuracy_boost=3.0)),
    Case("k1000", S(10000, 1000, "float32", noise=0.1, seed=12, accuracy_boost=4.0),
         filters=("prune_by_noise_rate", "both", "confident_learning", "low_normalized_margin")),
    Case("k1000-f16-heavy", S(5000, 1000, "float16", noise=0.3, seed=13, accuracy_boost=4.0),
         filters=("prune_by_class", "predicted_neq_given", "low_self_confidence")),
    Case("k5-quantized", S(5000, 5, "float32", noise=0.2, seed=14, quantize=20)),
    Case("k3-quantized-f16", S(3000, 3, "float16", noise=0.1, seed=15, quantize=10)),
    Case("k10-unseen-label", S(5000, 10, "float32", noise=0.1, seed=16), _unseen_label),
    Case("k10-unseen-label-min0", S(5000, 10, "float32", noise=0.1, seed=16), _unseen_label,
         min_examples_per_class=0, filters=PRUNING),
    Case("k6-never-predicted", S(5000, 6, "float32", noise=0.15, seed=17), _never_predicted),
    Case("k8-unseen-and-never-predicted", S(4000, 8, "float32", noise=0.1, seed=18),
         lambda l, p: _never_predicted(*_unseen_label(l, p, 2), 2)),
    Case("k12-rare-classes", S(6000, 12, "float32", noise=0.2, seed=19), _rare_classes),
    Case("k12-rare-classes-min50", S(6000, 12, "float32", noise=0.2, seed=19), _rare_classes,
         min_examples_per_class=50, filters=PRUNING),
    Case("k12-rare-classes-min0", S(6000, 12, "float32", noise=0.2, seed=19), _rare_classes,
         min_examples_per_class=0, filters=PRUNING),
    Case("k10-frac0.3", S(20000, 10, "float32", noise=0.2, seed=20), frac_noise=0.3, filters=PRUNING),
    Case("k50-frac0.3-heavy", S(10000, 50, "float64", noise=0.4, seed=21), frac_noise=0.3, filters=PRUNING),
    Case("k7-frac0.3-min50", S(3000, 7, "float32", noise=0.3, seed=22), frac_noise=0.3,
         min_examples_per_class=50, filters=PRUNING),
    Case("k3-min50-small", S(400, 3, "float32", noise=0.3, seed=23), min_examples_per_class=50,
         filters=PRUNING),
    Case("k20-small-heavy-min50", S(1500, 20, "float32", noise=0.5, seed=31), min_examples_per_class=50,
         filters=PRUNING),
    Case("k6-never-predicted-remove", S(5000, 6, "float32", noise=0.15, seed=17), _never_predicted,
         num_to_remove=_tenth, filters=PRUNING),
    Case("k10-remove-tenth", S(10000, 10, "float32", noise=0.1, seed=24), num_to_remove=_tenth,
         filters=PRUNING),
    Case("k25-remove-mixed", S(10000, 25, "float32", noise=0.2, seed=25), num_to_remove=_mixed,
         filters=PRUNING),
    Case("k10-remove-frac0.3-min0", S(5000, 10, "float32", noise=0.2, seed=26), num_to_remove=_tenth,
         frac_noise=0.3, min_examples_per_class=0, filters=PRUNING),
    Case("k10-unseen-remove-min0", S(5000, 10, "float32", noise=0.1, seed=27), _unseen_label,
         num_to_remove=_tenth, min_examples_per_class=0, filters=PRUNING),
    Case("k2-50k-f16", S(50_000, 2, "float16", noise=0.25, seed=28, accuracy_boost=1.0), num_batches=6),
    Case("k30-one-batch", S(3000, 30, "float32", noise=0.2, seed=29), num_batches=1),
    Case("k200-many-batches", S(6000, 200, "float32", noise=0.2, seed=30, accuracy_boost=3.0),
         num_batches=40, filters=("prune_by_noise_rate", "prune_by_class", "confident_learning")),
]


def _batch_slices(num_rows: int, num_batches: int, seed: int) -> List[slice]:
    """Uneven contiguous batches covering every row."""
    rng = np.random.default_rng(seed + 101)
    cuts = np.sort(rng.choice(np.arange(1, num_rows), size=min(num_batches, num_rows) - 1, replace=False))
    bounds = [0] + cuts.tolist() + [num_rows]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


# ---------------------------------------------------------------------------------------------
# The passes, as the pipeline will run them
# ---------------------------------------------------------------------------------------------


def _merge_as_a_combiner(parts):
    """Merges accumulators pairwise in a tree, as bundles and workers would."""
    parts = list(parts) or [(np.zeros(0, np.int64), np.zeros(0, np.int64))]
    while len(parts) > 1:
        parts = [cj.merge_sparse_counts(parts[i:i + 2]) for i in range(0, len(parts), 2)]
    return parts[0]


@dataclasses.dataclass
class JointPass:
    """What passes 1 and 2 leave behind (small), and the per-row flags row-local filters use."""

    thresholds: np.ndarray
    label_counts: np.ndarray
    cell_codes: np.ndarray
    cell_counts: np.ndarray
    num_confident_learning_issues: int


def joint_pass(labels, probs, batches) -> JointPass:
    k = probs.shape[1]
    sums, label_counts = [0] * k, np.zeros(k, dtype=np.int64)
    for b in batches:
        confidence = kernels.self_confidence(labels[b], probs[b])
        for c, value in enumerate(kernels.exact_sums_by_class(labels[b], confidence, k)):
            sums[c] += value
        label_counts += np.bincount(labels[b], minlength=k)
    thresholds = cj.filter_thresholds(kernels.confident_thresholds(sums, label_counts), label_counts)
    parts, num_issues = [], 0
    for b in batches:
        likely = cj.likely_true_labels(probs[b], thresholds)
        parts.append(cj.confident_joint_cells(labels[b], likely, k))
        agrees = kernels.predictions(labels[b], probs[b])[2]
        num_issues += int(cj.confident_learning_issues(labels[b], likely, agrees).sum())
    codes, counts = _merge_as_a_combiner(parts)
    return JointPass(thresholds, label_counts, codes, counts, num_issues)


def _lowest_per_key_over_batches(batches, keys_values_of, take):
    """Two passes: a keyed histogram for each key's cut, then the rows below it and the lowest
    (value, id) of those at it. ``keys_values_of(b)`` gives (keys, values, ids) for batch b."""
    histograms = []
    for b in batches:
        keys, values, _ = keys_values_of(b)
        histograms.append(cj.keyed_histogram(keys, cj.value_bins(values, -1.0, 1.0, NUM_BINS), NUM_BINS))
    cut_bin, take_at_cut = cj.lowest_per_key_cuts(*_merge_as_a_combiner(histograms), NUM_BINS, take)
    sure, candidates = [], []
    for b in batches:
        keys, values, ids = keys_values_of(b)
        bins = cj.value_bins(values, -1.0, 1.0, NUM_BINS)
        cut = cut_bin[keys]
        sure.append(ids[bins < cut])
        at = bins == cut
        candidates.append((keys[at], values[at], ids[at]))
    keys = np.concatenate([c[0] for c in candidates] + [np.zeros(0, np.int64)])
    values = np.concatenate([c[1] for c in candidates] + [np.zeros(0)])
    ids = np.concatenate([c[2] for c in candidates] + [np.zeros(0, np.int64)])
    chosen = ids[cj.lowest_per_key(keys, values, ids, take_at_cut)]
    return np.concatenate(sure + [chosen]).astype(np.int64)


def noise_rate_bounds(labels, probs, batches, plan: cj.LabelIssuePlan):
    """The bound pass: one histogram entry per row, keyed by its (label, runner-up) cell."""
    histograms = []
    for b in batches:
        runner_up, upper = cj.runner_up_margins(labels[b], probs[b])
        cells = cj.cell_indices(plan.noise_rate_given, plan.noise_rate_true, plan.num_classes, labels[b], runner_up)
        listed = cells >= 0
        bins = cj.value_bins(-upper[listed], -1.0, 1.0, NUM_BINS)
        histograms.append(cj.keyed_histogram(cells[listed], bins, NUM_BINS))
    return cj.noise_rate_bound_bins(*_merge_as_a_combiner(histograms), NUM_BINS, plan.noise_rate_take)


def select_issues(labels, probs, batches, plan: cj.LabelIssuePlan, joint: JointPass,
                  bound_margins: bool = True) -> np.ndarray:
    """Sorted ids of the issues the pipeline would report for ``plan.filter_by``; with
    ``bound_margins`` the noise-rate passes skip rows that cannot reach a cell's cut."""
    filter_by = plan.filter_by
    ids_of = lambda b: np.arange(b.start, b.stop, dtype=np.int64)  # noqa: E731
    agrees = np.concatenate([kernels.predictions(labels[b], probs[b])[2] for b in batches])
    if filter_by in cj.ROW_LOCAL_FILTERS:
        flags = []
        for b in batches:
            row_agrees = agrees[b]
            if filter_by == "confident_learning":
                likely = cj.likely_true_labels(probs[b], joint.thresholds)
                flags.append(cj.confident_learning_issues(labels[b], likely, row_agrees))
            else:
                flags.append(cj.predicted_neq_given_issues(row_agrees))
        return np.flatnonzero(np.concatenate(flags))
    if filter_by in cj.LOW_SCORE_FILTERS:
        method = cj.LOW_SCORE_FILTERS[filter_by]
        scores = np.concatenate([kernels.label_quality_scores(labels[b], probs[b], joint.thresholds, method)
                                 for b in batches])
        ids = np.arange(len(labels))
        return np.sort(ids[kernels.lowest_by_score_then_id(scores, ids, plan.num_low_score_issues)])

    bounds = noise_rate_bounds(labels, probs, batches, plan) if bound_margins else None

    def noise_rate_rows(b):
        upper_bins = None
        if bounds is not None:
            upper_bins = cj.value_bins(-cj.runner_up_margins(labels[b], probs[b])[1], -1.0, 1.0, NUM_BINS)
        rows, cells, margins = cj.noise_rate_margins(labels[b], probs[b], plan.noise_rate_given, plan.noise_rate_true,
                                                     upper_bins=upper_bins, cell_bound_bins=bounds)
        return cells, -margins, ids_of(b)[rows]  # largest margin = lowest negated margin

    def class_rows(b):
        wanted = plan.class_take[labels[b]] > 0
        confidence = kernels.self_confidence(labels[b], probs[b])
        return labels[b][wanted].astype(np.int64), confidence[wanted], ids_of(b)[wanted]

    selected = None
    if filter_by in ("prune_by_noise_rate", "both"):
        selected = np.unique(_lowest_per_key_over_batches(batches, noise_rate_rows, plan.noise_rate_take))
    if filter_by in ("prune_by_class", "both"):
        by_class = np.unique(_lowest_per_key_over_batches(batches, class_rows, plan.class_take))
        selected = by_class if selected is None else np.intersect1d(selected, by_class)
    return selected[~agrees[selected]]


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tie_log():
    log: Dict[str, List[str]] = {"selection": [], "rounding": []}
    yield log
    print(f"\nissue sets differing from cleanlab only at tied selection boundaries: "
          f"{len(log['selection'])} ({', '.join(log['selection'])}); "
          f"calibrated joints with a rounding tie (equal to cleanlab's all the same): "
          f"{len(log['rounding'])} ({', '.join(log['rounding'])})")


def _assert_same_issues(name, labels, probs, ours, theirs_mask, plan, tie_log):
    theirs = np.flatnonzero(theirs_mask)
    if np.array_equal(ours, theirs):
        return
    ambiguity = oracle_filter.ambiguous_rows(labels, probs, plan)
    differing = np.setxor1d(ours, theirs)
    assert ambiguity.tied_selections > 0, (
        f"{name}: {len(differing)} rows differ from cleanlab and no selection boundary is tied: "
        f"{differing[:20]}")
    assert np.isin(differing, ambiguity.rows).all(), (
        f"{name}: rows differ beyond the {ambiguity.tied_selections} tied boundaries: "
        f"{differing[~np.isin(differing, ambiguity.rows)][:20]}")
    tie_log["selection"].append(name)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_full_confident_learning_equals_cleanlab(case: Case, tie_log):
    labels, probs = case.data()
    labels64, probs64 = oracle_filter.as_float64(labels, probs)
    batches = _batch_slices(len(labels), case.num_batches, case.seed)
    joint = joint_pass(labels64, probs, batches)
    assert oracle_filter.thresholds_decide_alike(labels64, probs64, joint.thresholds)

    ntr = case.num_to_remove(joint.label_counts) if case.num_to_remove else None
    options = dict(frac_noise=case.frac_noise, min_examples_per_class=case.min_examples_per_class,
                   num_to_remove_per_class=ntr)
    base = cj.plan_label_issues(joint.cell_codes, joint.cell_counts, joint.label_counts,
                                joint.num_confident_learning_issues, filter_by="confident_learning")

    # The calibrated joint (compute_confident_joint(calibrate=True)): equal even where equal
    # remainders met at a rounding cut, since the default tie break sorts as cleanlab does.
    theirs_calibrated = oracle_filter.calibrated_joint(labels64, probs64)
    np.testing.assert_array_equal(base.calibrated_joint.matrix.to_dense(), theirs_calibrated)
    if base.calibrated_joint.rounding_ties:
        tie_log["rounding"].append(case.name)
    # The raw joint and the confident-learning count behind the low_* n and the health score.
    raw = cj.confident_joint_from_counts(joint.cell_codes, joint.cell_counts, probs.shape[1]).to_dense()
    theirs_raw, off_diagonal_rows = oracle_filter.count.compute_confident_joint(
        labels64, probs64, calibrate=False, return_indices_of_off_diagonals=True)
    np.testing.assert_array_equal(raw, theirs_raw)
    agrees = kernels.predictions(labels64, probs64)[2]
    assert joint.num_confident_learning_issues == int((~agrees[off_diagonal_rows]).sum())

    for filter_by in case.filters:
        plan = cj.plan_label_issues(joint.cell_codes, joint.cell_counts, joint.label_counts,
                                    joint.num_confident_learning_issues, filter_by=filter_by,
                                    **(options if filter_by in PRUNING else {}))
        if filter_by in PRUNING and ntr is None:
            expected_prune = oracle_filter.prune_count_matrix(
                theirs_calibrated, frac_noise=case.frac_noise, min_examples_per_class=case.min_examples_per_class)
            np.testing.assert_array_equal(plan.prune_counts.matrix.to_dense(), expected_prune)
        ours = select_issues(labels64, probs, batches, plan, joint)
        theirs = oracle_filter.find_label_issues(labels64, probs64, filter_by,
                                                 **(options if filter_by in PRUNING else {}))
        _assert_same_issues(f"{case.name}/{filter_by}", labels64, probs64, ours, theirs, plan, tie_log)


HEALTH_CASES = [c for c in CASES if c.filters == cj.FILTER_BY and c.num_batches < 9]


@pytest.mark.parametrize("case", HEALTH_CASES, ids=[c.name for c in HEALTH_CASES])
def test_health_and_noise_matrices_equal_cleanlab(case: Case):
    labels, probs = case.data()
    labels64, probs64 = oracle_filter.as_float64(labels, probs)
    batches = _batch_slices(len(labels), case.num_batches, case.seed)
    joint = joint_pass(labels64, probs, batches)
    plan = cj.plan_label_issues(joint.cell_codes, joint.cell_counts, joint.label_counts,
                                joint.num_confident_learning_issues)
    calibrated = plan.calibrated_joint.matrix
    n = len(labels)

    theirs = oracle_filter.health(labels64, probs64)
    score = cj.overall_label_health_score(joint.num_confident_learning_issues, n)
    assert abs(score - theirs["overall_label_health_score"]) <= 1e-9
    assert score == theirs["overall_label_health_score_direct"]
    np.testing.assert_array_equal(cj.joint_distribution(calibrated).to_dense(), theirs["joint"])

    classes = cj.class_label_quality(calibrated, n)
    table = oracle_filter.class_table_in_canonical_order(theirs["classes_by_label_quality"])
    np.testing.assert_array_equal(classes.class_index, table["Class Index"])
    np.testing.assert_array_equal(classes.label_issues, table["Label Issues"])
    np.testing.assert_array_equal(classes.inverse_label_issues, table["Inverse Label Issues"])
    np.testing.assert_array_equal(classes.label_noise, table["Label Noise"])
    np.testing.assert_array_equal(classes.inverse_label_noise, table["Inverse Label Noise"])
    np.testing.assert_array_equal(classes.label_quality_score, table["Label Quality Score"])

    overlaps = cj.overlapping_classes(calibrated, n)
    table = oracle_filter.overlap_table_in_canonical_order(theirs["overlapping_classes"])
    np.testing.assert_array_equal(overlaps.class_index_a, table["Class Index A"])
    np.testing.assert_array_equal(overlaps.class_index_b, table["Class Index B"])
    np.testing.assert_array_equal(overlaps.num_overlapping_examples, table["Num Overlapping Examples"])
    np.testing.assert_array_equal(overlaps.joint_probability, table["Joint Probability"])

    py, noise, inverse, theirs_calibrated = oracle_filter.latent_estimates(labels64, probs64)
    np.testing.assert_array_equal(calibrated.to_dense(), theirs_calibrated)
    ours = cj.latent_noise_estimates(calibrated, joint.label_counts)
    np.testing.assert_array_equal(ours.py, py)
    np.testing.assert_array_equal(ours.noise_matrix.to_dense(), noise)
    np.testing.assert_array_equal(ours.inverse_noise_matrix.to_dense(), inverse)


# ---------------------------------------------------------------------------------------------
# The other tie break, and the large-K code paths
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["k10-heavy", "k50", "k12-rare-classes"])
def test_class_index_tie_break_differs_only_where_a_tie_was_met(name):
    """The portable tie break: the same row totals; where no tie met a cut, the same joint;
    and given that joint, cleanlab selects what the plan selects."""
    case = next(c for c in CASES if c.name == name)
    labels, probs = case.data()
    labels64, probs64 = oracle_filter.as_float64(labels, probs)
    batches = _batch_slices(len(labels), case.num_batches, case.seed)
    joint = joint_pass(labels64, probs, batches)
    theirs = oracle_filter.calibrated_joint(labels64, probs64)
    for filter_by in PRUNING:
        plan = cj.plan_label_issues(joint.cell_codes, joint.cell_counts, joint.label_counts,
                                    joint.num_confident_learning_issues, filter_by=filter_by,
                                    tie_break="class_index")
        ours = plan.calibrated_joint.matrix.to_dense()
        np.testing.assert_array_equal(ours.sum(axis=1), theirs.sum(axis=1))
        differing_rows = np.flatnonzero((ours != theirs).any(axis=1))
        assert len(differing_rows) <= plan.calibrated_joint.rounding_ties
        assert np.abs(ours - theirs).max() <= 1
        expected = oracle_filter.find_label_issues(labels64, probs64, filter_by, confident_joint=ours)
        selected = select_issues(labels64, probs, batches, plan, joint)
        np.testing.assert_array_equal(selected, np.flatnonzero(expected))
    assert plan.calibrated_joint.rounding_ties > 0  # these cases do meet ties


@pytest.mark.parametrize("name", ["k300", "k25-remove-mixed"])
def test_sums_split_as_for_a_large_k_still_equal_cleanlab(name, monkeypatch):
    """With the dense budget cut to 1000 elements, every sum runs the paths K = 10,000 takes
    (the recursive split of the K^2 total, rows in blocks of one): the results do not move."""
    monkeypatch.setattr(cj, "_DENSE_SUM_ELEMENTS", 1000)
    case = next(c for c in CASES if c.name == name)
    labels, probs = case.data()
    labels64, probs64 = oracle_filter.as_float64(labels, probs)
    batches = _batch_slices(len(labels), case.num_batches, case.seed)
    joint = joint_pass(labels64, probs, batches)
    ntr = case.num_to_remove(joint.label_counts) if case.num_to_remove else None
    plan = cj.plan_label_issues(joint.cell_codes, joint.cell_counts, joint.label_counts,
                                joint.num_confident_learning_issues, filter_by="both",
                                num_to_remove_per_class=ntr, frac_noise=0.3)
    np.testing.assert_array_equal(plan.calibrated_joint.matrix.to_dense(),
                                  oracle_filter.calibrated_joint(labels64, probs64))
    ours = select_issues(labels64, probs, batches, plan, joint, bound_margins=False)
    theirs = oracle_filter.find_label_issues(labels64, probs64, "both", num_to_remove_per_class=ntr, frac_noise=0.3)
    np.testing.assert_array_equal(ours, np.flatnonzero(theirs))
    py, noise, inverse, _ = oracle_filter.latent_estimates(labels64, probs64)
    latent = cj.latent_noise_estimates(plan.calibrated_joint.matrix, joint.label_counts)
    np.testing.assert_array_equal(latent.py, py)
    np.testing.assert_array_equal(latent.noise_matrix.to_dense(), noise)
    np.testing.assert_array_equal(latent.inverse_noise_matrix.to_dense(), inverse)


# ---------------------------------------------------------------------------------------------
# The kernels one by one
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dense_limit", [1 << 22, 300])
def test_pairwise_sums_equal_numpy_sum_of_the_dense_vector(dense_limit, monkeypatch):
    monkeypatch.setattr(cj, "_DENSE_SUM_ELEMENTS", dense_limit)
    rng = np.random.default_rng(3)
    for length in [1, 7, 8, 9, 100, 128, 129, 1000, 5003, 40_000]:
        for fill in [0.0005, 0.05, 0.9]:
            dense = np.where(rng.random(length) < fill, rng.random(length) * 10.0 ** rng.integers(-8, 8, length), 0.0)
            positions = np.flatnonzero(dense)
            assert cj.pairwise_sum(positions, dense[positions], length) == np.sum(dense)
    shape = (60, 700)
    matrix = np.where(rng.random(shape) < 0.05, rng.random(shape) * 10.0 ** rng.integers(-8, 8, shape), 0.0)
    lines, positions = np.nonzero(matrix)
    shuffled = rng.permutation(len(lines))
    sums = cj.pairwise_line_sums(lines[shuffled], positions[shuffled], matrix[lines, positions][shuffled], 60, 700)
    np.testing.assert_array_equal(sums, matrix.sum(axis=1))
    np.testing.assert_array_equal(cj.sequential_line_sums(positions, matrix[lines, positions], 700),
                                  matrix.sum(axis=0))


def test_sparse_joint_counts_merge_in_any_order_to_the_dense_count():
    rng = np.random.default_rng(4)
    k = 37
    labels = rng.integers(0, k, 5000)
    likely = np.where(rng.random(5000) < 0.2, -1, rng.integers(0, k, 5000))
    parts = [cj.confident_joint_cells(labels[s], likely[s], k) for s in _batch_slices(5000, 9, 1)]
    expected = np.zeros((k, k), dtype=np.int64)
    np.add.at(expected, (labels[likely >= 0], likely[likely >= 0]), 1)
    for order in (range(9), rng.permutation(9)):
        codes, counts = _merge_as_a_combiner([parts[i] for i in order])
        np.testing.assert_array_equal(cj.SparseSquare.from_codes(k, codes, counts).to_dense(), expected)
        assert len(codes) == np.count_nonzero(expected)
    assert sum(len(c) for c, _ in parts) <= 5000  # at most one cell per row and batch


def test_likely_true_label_is_the_argmax_over_all_classes_when_several_are_confident():
    thresholds = np.array([0.9, 0.25, 0.1])
    probs = np.array([
        [0.5, 0.3, 0.2],      # classes 1 and 2 confident, argmax 0 (not confident) wins
        [0.05, 0.9, 0.05],    # only class 1
        [0.85, 0.1, 0.05],    # none: 0.85 < 0.9 - 1e-6, 0.1 < 0.25, 0.05 < 0.1
        [0.8999995, 0.1, 0.0000005],  # within 1e-6 of the threshold counts as confident
    ], dtype=np.float32)
    likely = cj.likely_true_labels(probs, thresholds)
    np.testing.assert_array_equal(likely, [0, 1, -1, 0])
    labels = np.array([1, 1, 0, 0])
    joint, _ = oracle_filter.count.compute_confident_joint(labels, probs.astype(np.float64), thresholds=thresholds,
                                                           calibrate=False, return_indices_of_off_diagonals=True)
    ours = cj.confident_joint_from_counts(*cj.confident_joint_cells(labels, likely, 3), 3).to_dense()
    np.testing.assert_array_equal(ours, joint)


def test_filter_thresholds_give_an_unseen_class_what_get_confident_thresholds_gives():
    labels = np.array([0, 0, 2, 2, 2])
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    sums = kernels.exact_sums_by_class(labels, kernels.self_confidence(labels, probs), 3)
    counts = np.bincount(labels, minlength=3)
    ours = cj.filter_thresholds(kernels.confident_thresholds(sums, counts), counts)
    theirs = oracle_filter.count.get_confident_thresholds(labels, probs)
    assert ours[1] == theirs[1] == cj.UNSEEN_CLASS_THRESHOLD
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15)


def test_lowest_per_key_takes_per_key_and_breaks_ties_by_id():
    keys = np.array([0, 1, 0, 0, 1, 1, 0, 2])
    values = np.array([0.5, 0.1, 0.2, 0.5, 0.1, 0.3, 0.5, 0.9])
    ids = np.array([30, 11, 20, 10, 9, 12, 40, 1])
    chosen = cj.lowest_per_key(keys, values, ids, np.array([3, 2, 0]))
    assert ids[chosen].tolist() == [20, 10, 30, 9, 11]
    string_ids = np.array(["d", "b", "c", "a", "z", "y", "e", "x"], dtype=object)
    chosen = cj.lowest_per_key(keys, values, string_ids, np.array([2, 1, 5]))
    assert string_ids[chosen].tolist() == ["c", "a", "b", "x"]


def test_cuts_per_key_leave_exactly_the_lowest_rows_to_pick():
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 6, 3000)
    values = np.round(rng.random(3000) * 2 - 1, 2)  # many equal values
    ids = rng.permutation(3000)
    take = np.array([0, 1, 40, 499, 600, 10_000])
    bins = cj.value_bins(values, -1.0, 1.0, 64)
    cut, take_at_cut = cj.lowest_per_key_cuts(*cj.keyed_histogram(keys, bins, 64), 64, take)
    at = bins == cut[keys]
    at_cut = ids[at][cj.lowest_per_key(keys[at], values[at], ids[at], take_at_cut)]
    picked = np.concatenate([ids[bins < cut[keys]], at_cut])
    expected = ids[cj.lowest_per_key(keys, values, ids, take)]
    np.testing.assert_array_equal(np.sort(picked), np.sort(expected))
    assert cut[0] == -1 and take_at_cut[0] == 0
    assert take_at_cut[5] == (bins[keys == 5] == cut[5]).sum()  # fewer rows than asked: all


def test_value_bins_are_monotone_and_cover_the_range():
    values = np.sort(np.concatenate([np.linspace(-1, 1, 10_001), [-1 - 1e-5, 1 + 1e-5, 0.0, np.nextafter(0, 1)]]))
    bins = cj.value_bins(values, -1.0, 1.0, 1024)
    assert (np.diff(bins) >= 0).all() and bins[0] == 0 and bins[-1] == 1023


def test_plan_refuses_what_cleanlab_refuses():
    codes, counts = np.array([0, 3]), np.array([5, 5])
    with pytest.raises(ValueError, match="filter_by"):
        cj.plan_label_issues(codes, counts, np.array([5, 5]), 0, filter_by="prune_by_margin")
    with pytest.raises(ValueError, match="num_to_remove_per_class"):
        cj.plan_label_issues(codes, counts, np.array([5, 5]), 0, filter_by="confident_learning",
                             num_to_remove_per_class=[1, 1])
    with pytest.raises(ValueError, match="tie_break"):
        cj.plan_label_issues(codes, counts, np.array([5, 5]), 0, tie_break="random")


def test_a_class_with_one_row_or_too_few_gives_up_nothing():
    label_counts = np.array([1, 30, 0, 500, 2])
    eligible = cj.eligible_classes(label_counts, 1)
    assert eligible.tolist() == [False, True, False, True, True]
    assert cj.eligible_classes(label_counts, 0).tolist() == [False, True, False, True, True]
    assert cj.eligible_classes(label_counts, 50).tolist() == [False, False, False, True, False]


def test_runner_up_margin_is_the_largest_margin_of_the_row():
    labels, probs = make_dataset(DatasetSpec(2000, 7, "float32", noise=0.3, seed=40, quantize=10))
    labels = labels.astype(np.int64)
    runner_up, upper = cj.runner_up_margins(labels, probs)
    p = probs.astype(np.float64)
    margins = p - p[np.arange(len(labels)), labels][:, None]
    margins[np.arange(len(labels)), labels] = -np.inf
    np.testing.assert_array_equal(upper, margins.max(axis=1))
    np.testing.assert_array_equal(runner_up, np.argmax(margins, axis=1))
    np.testing.assert_array_equal(upper, 1 - 2 * kernels.normalized_margin(labels, probs))


@pytest.mark.parametrize("name", ["k10-200k", "k100", "k5-quantized"])
def test_bounding_the_margins_skips_rows_but_no_issue(name):
    case = next(c for c in CASES if c.name == name)
    labels, probs = case.data()
    labels = labels.astype(np.int64)
    batches = _batch_slices(len(labels), case.num_batches, case.seed)
    joint = joint_pass(labels, probs, batches)
    plan = cj.plan_label_issues(joint.cell_codes, joint.cell_counts, joint.label_counts,
                                joint.num_confident_learning_issues)
    bounds = noise_rate_bounds(labels, probs, batches, plan)
    upper_bins = cj.value_bins(-cj.runner_up_margins(labels, probs)[1], -1.0, 1.0, NUM_BINS)
    everything = cj.noise_rate_margins(labels, probs, plan.noise_rate_given, plan.noise_rate_true)[0]
    bounded = cj.noise_rate_margins(labels, probs, plan.noise_rate_given, plan.noise_rate_true,
                                    upper_bins=upper_bins, cell_bound_bins=bounds)[0]
    assert len(bounded) < 0.75 * len(everything)  # measured: 9.0 -> 1.0 per row for K=10, 75 -> 14 for K=100
    np.testing.assert_array_equal(select_issues(labels, probs, batches, plan, joint, bound_margins=True),
                                  select_issues(labels, probs, batches, plan, joint, bound_margins=False))


def test_bit_mask_counts_are_right_when_threads_build_the_tables_at_once():
    """The SDK harness runs DoFns in several threads (Flink --parallelism 3 did): the first
    calls, made together, must each see complete tables."""
    import threading

    rng = np.random.default_rng(3)
    confident = rng.random((5000, 10)) < 0.2
    expected = (np.count_nonzero(confident, axis=1), np.where(confident.any(axis=1), np.argmax(confident, axis=1), -1))
    for _ in range(20):
        cj._bit_tables.cache_clear()
        start, results, errors = threading.Barrier(8), [], []

        def count():
            start.wait()
            try:
                results.append(cj.confident_counts_and_first(confident))
            except Exception as error:  # collected, asserted below
                errors.append(error)

        threads = [threading.Thread(target=count) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors and len(results) == 8
        for counts, first in results:
            assert np.array_equal(counts, expected[0]) and np.array_equal(first, expected[1])
