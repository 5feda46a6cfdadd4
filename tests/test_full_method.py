"""Full confident learning (``filter_by``) and the dataset's health as real pipelines on real
files, with cleanlab as the oracle (tests/oracle_filter.py).

Each run is a ``FindLabelIssues`` in a pipeline that holds many (tests/harness.py), reading a
.npy pair in batches of uneven size, and its output directory is read back through
``beam_labelissues.io.outputs``. For every run:

- the issue set equals ``cleanlab.filter.find_label_issues(..., filter_by=X, n_jobs=1)`` for the
  same options, or differs only in rows tied at a selection boundary (cleanlab's unstable
  argsort picks among them arbitrarily; we take the lower id);
- the issues are ranked by (label_quality, id) with the label quality of the run's method;
- ``num_issues_estimated`` is the number of rows the method selected before the rows where the
  model agrees were dropped, computed here directly;
- the health equals cleanlab's on the same data: the calibrated confident joint cell for cell,
  the class and overlap tables exactly, the health score within 1e-9 (and equal to
  ``overall_label_health_score``), ``count.num_label_issues``, and ``py`` and both noise
  matrices of ``estimate_py_and_noise_matrices_from_probabilities`` exactly.

Datasets: the real MNIST and CIFAR-10 test-set predictions under every filter_by (and the
batched method, whose run writes the same health), and the generated cases of
test_confident_joint.py (N up to 200,000, K 2 to 1,000, float16/32/64, low and heavy noise, a
class never given, a class never predicted, frac_noise 0.3, num_to_remove_per_class,
min_examples_per_class 0, 1 and 50), each under two or three filter_by values in turn.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import oracle_filter
from conftest import real_dataset_paths
from datasets import DatasetSpec, make_dataset, write_npy
from harness import REPO_ROOT, read_output_dir, run_pipeline
from input_files import examples_table
from test_confident_joint import CASES, PRUNING, _batch_slices, joint_pass

from beam_labelissues import ParquetDataset, ReadParquetExamples
from beam_labelissues import confident_joint as cj
from beam_labelissues import kernels
from beam_labelissues.io import outputs
from beam_labelissues.io.human_review import load_human_review, review_of_issues

FILTERS = cj.FILTER_BY


@dataclasses.dataclass
class Run:
    """One FindLabelIssues of a pipeline and what its answer is checked against."""

    name: str
    labels: np.ndarray
    probs: np.ndarray
    output_dir: str
    filter_by: Optional[str]
    options: Dict
    check_health: bool
    num_batches: int = 5
    seed: int = 0


def _pipeline_runs(runs: List[Run], paths: Dict[str, tuple]):
    specs = []
    for run in runs:
        labels_path, probs_path = paths[run.name]
        batch_size = max(1, -(-len(run.labels) // run.num_batches) + run.seed % 7)
        # Quantized cases do not sum to 1 per row: the row-sum rule (tested elsewhere) is off here.
        specs.append(dict(labels_path=labels_path, pred_probs_path=probs_path, output_dir=run.output_dir,
                          batch_size=batch_size, filter_by=run.filter_by, row_sum_tolerance=None, **run.options))
    run_pipeline(specs)


def _selected_before_agreement(labels, probs, filter_by, plan: cj.LabelIssuePlan, thresholds) -> int:
    """How many rows the method selects before rows where the model agrees are dropped,
    straight from the definitions (all rows at once, ties by id)."""
    n = len(labels)
    rows = np.arange(n)
    if filter_by == "confident_learning":
        likely = cj.likely_true_labels(probs, thresholds)
        return int(((likely >= 0) & (likely != labels)).sum())
    if filter_by == "predicted_neq_given":
        return int((np.argmax(probs, axis=1) != labels).sum())
    if filter_by in cj.LOW_SCORE_FILTERS:
        return min(plan.num_low_score_issues, n)
    selected = None
    if filter_by in ("prune_by_noise_rate", "both"):
        taken = []
        for given, true, take in zip(plan.noise_rate_given, plan.noise_rate_true, plan.noise_rate_take):
            members = rows[labels == given]
            values = probs[members, given] - probs[members, true]
            taken.append(members[np.lexsort((members, values))[:take]])
        selected = np.unique(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)
    if filter_by in ("prune_by_class", "both"):
        taken = []
        for k in np.flatnonzero(plan.class_take):
            members = rows[labels == k]
            taken.append(members[np.lexsort((members, probs[members, k]))[:plan.class_take[k]]])
        by_class = np.unique(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)
        selected = by_class if selected is None else np.intersect1d(selected, by_class)
    return len(selected)


def _check_issues(run: Run, out, labels64, probs64, plan_of, tie_log):
    issues, summary = out["issues"], out["summary"]
    ranks = np.asarray(issues["rank"], dtype=np.int64)
    order = np.argsort(ranks)
    assert (ranks[order] == np.arange(len(ranks))).all(), f"{run.output_dir}: ranks are not 0..n-1"
    ids = np.asarray(issues["id"], dtype=np.int64)[order]
    quality = np.asarray(issues["label_quality"], dtype=np.float64)[order]
    thresholds_batched = np.asarray(summary["confident_thresholds"])
    method = run.options.get("method", "self_confidence")
    adjust = run.options.get("adjust_pred_probs", False)
    expected_quality = kernels.label_quality_scores(labels64[ids], probs64[ids], thresholds_batched,
                                                    method=method, adjust=adjust)
    np.testing.assert_array_equal(quality, expected_quality)
    np.testing.assert_array_equal(ids, ids[np.lexsort((ids, quality))], err_msg="not ranked by (score, id)")
    np.testing.assert_array_equal(np.asarray(issues["given_label"])[order], labels64[ids])
    np.testing.assert_array_equal(np.asarray(issues["predicted_label"])[order], np.argmax(probs64[ids], axis=1))
    assert summary["num_label_issues"] == len(ids)
    if run.filter_by is None:
        return
    assert summary["filter_by"] == run.filter_by
    pruning = {k: v for k, v in run.options.items() if k in ("frac_noise", "num_to_remove_per_class",
                                                              "min_examples_per_class")}
    theirs = np.flatnonzero(oracle_filter.find_label_issues(labels64, probs64, run.filter_by, **pruning))
    ours = np.sort(ids)
    plan = plan_of(run.filter_by, pruning)
    filter_thresholds = cj.filter_thresholds(thresholds_batched, np.asarray(summary["examples_per_class"]))
    expected_selected = _selected_before_agreement(labels64, probs64, run.filter_by, plan, filter_thresholds)
    assert summary["num_issues_estimated"] == expected_selected, (run.output_dir, summary["num_issues_estimated"],
                                                                  expected_selected)
    if np.array_equal(ours, theirs):
        return
    ambiguity = oracle_filter.ambiguous_rows(labels64, probs64, plan)
    differing = np.setxor1d(ours, theirs)
    assert ambiguity.tied_selections > 0, (
        f"{run.output_dir}: {len(differing)} rows differ from cleanlab and no boundary is tied: {differing[:20]}")
    assert np.isin(differing, ambiguity.rows).all(), (
        f"{run.output_dir}: rows differ beyond the tied boundaries: {differing[~np.isin(differing, ambiguity.rows)][:20]}")
    tie_log.append(f"{os.path.basename(run.output_dir)} ({len(differing)} rows)")


def _check_health(run: Run, out, labels64, probs64):
    summary = out["summary"]
    output_dir = run.output_dir
    parsed = outputs.read_summary(output_dir)
    k = probs64.shape[1]
    n = len(labels64)
    joint = outputs.read_health_table(output_dir, parsed, outputs.CONFIDENT_JOINT_PREFIX)
    dense = np.zeros((k, k), dtype=np.int64)
    dense[joint.column("given_label").to_numpy(), joint.column("likely_true_label").to_numpy()] = \
        joint.column("count").to_numpy()
    theirs_joint = oracle_filter.calibrated_joint(labels64, probs64)
    np.testing.assert_array_equal(dense, theirs_joint, err_msg=f"{output_dir}: calibrated joint")
    assert (joint.column("count").to_numpy() != 0).all()

    theirs = oracle_filter.health(labels64, probs64)
    score = summary["overall_label_health_score"]
    assert abs(score - theirs["overall_label_health_score"]) <= 1e-9
    assert score == theirs["overall_label_health_score_direct"]
    assert summary["num_confident_learning_issues"] == oracle_filter.count.num_label_issues(labels64, probs64)

    classes = outputs.read_health_table(output_dir, parsed, outputs.CLASS_HEALTH_PREFIX).to_pydict()
    table = oracle_filter.class_table_in_canonical_order(theirs["classes_by_label_quality"])
    for ours_name, theirs_name in [("class_index", "Class Index"), ("label_issues", "Label Issues"),
                                   ("inverse_label_issues", "Inverse Label Issues"), ("label_noise", "Label Noise"),
                                   ("inverse_label_noise", "Inverse Label Noise"),
                                   ("label_quality_score", "Label Quality Score")]:
        np.testing.assert_array_equal(classes[ours_name], table[theirs_name].to_numpy(), err_msg=ours_name)

    overlaps = outputs.read_health_table(output_dir, parsed, outputs.OVERLAPPING_CLASSES_PREFIX).to_pydict()
    table = oracle_filter.overlap_table_in_canonical_order(theirs["overlapping_classes"])
    for ours_name, theirs_name in [("class_index_a", "Class Index A"), ("class_index_b", "Class Index B"),
                                   ("num_overlapping_examples", "Num Overlapping Examples"),
                                   ("joint_probability", "Joint Probability")]:
        np.testing.assert_array_equal(overlaps[ours_name], table[theirs_name].to_numpy(), err_msg=ours_name)

    py, noise, inverse, _ = oracle_filter.latent_estimates(labels64, probs64)
    np.testing.assert_array_equal(summary["py"], py)
    if k <= 100:
        np.testing.assert_array_equal(summary["noise_matrix"], noise)
        np.testing.assert_array_equal(summary["inverse_noise_matrix"], inverse)
        assert parsed.noise_matrices_files == []
    else:
        assert summary["noise_matrix"] is None and summary["inverse_noise_matrix"] is None
        cells = outputs.read_health_table(output_dir, parsed, outputs.NOISE_MATRICES_PREFIX).to_pydict()
        given, true = np.asarray(cells["given_label"]), np.asarray(cells["true_label"])
        ours_noise = np.zeros((k, k))
        ours_noise[given, true] = cells["noise_rate"]
        ours_inverse = np.zeros((k, k))
        ours_inverse[true, given] = cells["inverse_noise_rate"]
        np.testing.assert_array_equal(ours_noise, noise)
        np.testing.assert_array_equal(ours_inverse, inverse)
    assert n == summary["num_examples"]


def _run_and_check(runs: List[Run], tmp_path, tie_log):
    paths = {}
    for run in runs:
        if run.name not in paths:
            paths[run.name] = write_npy(str(tmp_path / "data" / run.name), run.labels, run.probs)
    _pipeline_runs(runs, paths)
    plans = {}
    for run in runs:
        labels64, probs64 = oracle_filter.as_float64(run.labels, run.probs)
        if run.name not in plans:
            joint = joint_pass(labels64, run.probs, _batch_slices(len(labels64), run.num_batches, run.seed))
            assert oracle_filter.thresholds_decide_alike(labels64, probs64, joint.thresholds)

            def plan_of(filter_by, pruning, joint=joint):
                return cj.plan_label_issues(joint.cell_codes, joint.cell_counts, joint.label_counts,
                                            joint.num_confident_learning_issues, filter_by=filter_by, **pruning)
            plans[run.name] = plan_of
        out = read_output_dir(run.output_dir)
        _check_issues(run, out, labels64, probs64, plans[run.name], tie_log)
        if run.check_health:
            _check_health(run, out, labels64, probs64)


@pytest.fixture(scope="module")
def tie_log():
    log: List[str] = []
    yield log
    print(f"\nissue sets differing from cleanlab only at tied selection boundaries: {len(log)} ({', '.join(log)})")


# --- the real predictions -----------------------------------------------------------------


def _readme_review_figures() -> Dict[str, Dict[str, List[int]]]:
    """README's table of human-review figures: method -> dataset -> [flagged, reviewed, not upheld]."""
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    lines = text[text.index("<!-- review-figures"):].splitlines()[1:]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["method", "MNIST flagged", "reviewed", "not upheld", "CIFAR-10 flagged", "reviewed",
                      "not upheld"], header
    figures = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        numbers = [int(cell.replace(",", "")) for cell in cells[1:]]
        figures[cells[0]] = {"mnist": numbers[:3], "cifar10": numbers[3:]}
    return figures


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_real_predictions_every_filter_by_and_health_equal_cleanlab(dataset, tmp_path, tie_log):
    """Every filter_by (and the batched method) on the real predictions; the README's figures
    of how the human review of the study judged each method's flags are these runs'."""
    paths = real_dataset_paths(dataset)
    labels, probs = np.load(paths["labels"]), np.load(paths["pred_probs"])
    runs = [Run(dataset, labels, probs, str(tmp_path / f"{dataset}-{f or 'batched'}"), f, {},
                check_health=f in (None, "prune_by_noise_rate"))
            for f in (None,) + FILTERS]
    # The ranking's score is independent of the selection: rank by another method too.
    runs.append(Run(dataset, labels, probs, str(tmp_path / f"{dataset}-margin-ranked"), "prune_by_class",
                    {"method": "normalized_margin", "adjust_pred_probs": True}, check_health=False))
    _run_and_check(runs, tmp_path, tie_log)

    review = load_human_review(paths["review"])
    readme = _readme_review_figures()
    assert set(readme) == {"batched", *FILTERS}
    for run in runs[:len(FILTERS) + 1]:
        flagged = read_output_dir(run.output_dir)["issues"]["id"]
        figures = review_of_issues(flagged, review)
        ours = [len(flagged), figures["reviewed"], figures["not_upheld"]]
        assert readme[run.filter_by or "batched"][dataset] == ours, (run.filter_by, ours)


# --- generated datasets ----------------------------------------------------------------------


def _chosen_filters():
    """Per case, the filter_by values its runs use: two (one for the largest datasets), a
    pruning one and, where the case allows, another, each rotating over the cases so every
    value runs on several datasets. test_confident_joint.py runs every case under every value
    through the same kernels, without Beam."""
    chosen, turn, other_turn = [], 0, 0
    for case in CASES:
        labels_count = case.spec.num_examples if case.spec is not None else 10_000
        large = labels_count > 20_000 or (case.spec is not None and case.spec.num_classes >= 1000)
        pruning = [f for f in case.filters if f in PRUNING]
        rest = [f for f in case.filters if f not in PRUNING]
        picks = []
        if pruning:
            picks.append(pruning[turn % len(pruning)])
        if rest and (not large or not picks):
            picks.append(rest[other_turn % len(rest)])
            other_turn += 1
        if not large and len(picks) < 2 and len(pruning) > 1:
            picks.append(pruning[(turn + 1) % len(pruning)])
        chosen.append(picks[:1] if large else picks)
        turn += 1
    return chosen


def _generated_runs(group: int, num_groups: int, tmp_path) -> List[Run]:
    """The runs of one group of cases (every ``num_groups``-th case of ``CASES``)."""
    runs = []
    for index, (case, filters) in enumerate(zip(CASES, _chosen_filters())):
        if index % num_groups != group:
            continue
        labels, probs = case.data()
        counts = np.bincount(labels.astype(np.int64), minlength=probs.shape[1])
        for i, filter_by in enumerate(filters):
            options = {}
            if filter_by in PRUNING:
                options = dict(frac_noise=case.frac_noise, min_examples_per_class=case.min_examples_per_class)
                if case.num_to_remove is not None:
                    options["num_to_remove_per_class"] = tuple(case.num_to_remove(counts))
            runs.append(Run(case.name, labels, probs, str(tmp_path / f"{case.name}-{filter_by}"), filter_by, options,
                            check_health=i == 0, num_batches=case.num_batches, seed=case.seed + index))
    return runs


NUM_GROUPS = 4


def test_generated_cases_cover_what_the_issue_asks():
    assert len(CASES) >= 30
    specs = [c.spec for c in CASES if c.spec is not None]
    assert max(s.num_examples for s in specs) >= 200_000
    assert {s.num_classes for s in specs} >= {2, 1000}
    assert {s.prob_dtype for s in specs} == {"float16", "float32", "float64"}
    assert {c.frac_noise for c in CASES} >= {0.3, 1.0}
    assert {c.min_examples_per_class for c in CASES} >= {0, 1, 50}
    assert any(c.num_to_remove is not None for c in CASES)
    chosen = [f for filters in _chosen_filters() for f in filters]
    assert {f: chosen.count(f) >= 4 for f in FILTERS} == {f: True for f in FILTERS}, chosen


@pytest.mark.parametrize("group", range(NUM_GROUPS))
def test_generated_datasets_equal_cleanlab(group, tmp_path, tie_log):
    _run_and_check(_generated_runs(group, NUM_GROUPS, tmp_path), tmp_path, tie_log)


# --- string ids, invalid records, every example's flag, class names, empty input -------------


def _scores_flags(out):
    scores = out["scores"]
    return {i: flag for i, flag in zip(scores["id"], scores["is_label_issue"])}


def test_string_ids_invalid_records_scores_and_empty_input(tmp_path):
    """Parquet with string ids in a shuffled order and NaN rows skipped, with class names and
    every example's flag (both); the flags of other methods; a run on no example."""
    labels, probs = make_dataset(DatasetSpec(6000, 6, "float32", noise=0.25, seed=41))
    n, k = probs.shape
    bad = np.arange(7, n, 997)  # invalid records: a NaN probability
    probs_with_bad = probs.copy()
    probs_with_bad[bad, 1] = np.nan
    order = np.random.default_rng(11).permutation(n)
    ids = np.array([f"row-{i:05d}" for i in range(n)], dtype=object)
    parts = np.array_split(order, 3)
    for i, rows in enumerate(parts):
        table = examples_table(labels[rows], probs_with_bad[rows], ids=list(ids[rows]), id_type=pa.string())
        pq.write_table(table, str(tmp_path / f"part-{i}.parquet"), row_group_size=900)
    dataset = ParquetDataset.open(str(tmp_path / "part-*.parquet"), id_column="example_id")
    names = [f"class {j}" for j in range(k)]
    npy = write_npy(str(tmp_path / "npy"), labels, probs)
    empty = write_npy(str(tmp_path / "empty"), np.zeros(0, np.int64), np.zeros((0, k), np.float32))
    runs = [dict(source=ReadParquetExamples(dataset, batch_size=700), num_classes=k,
                 output_dir=str(tmp_path / "strings-both"), filter_by="both", with_scores=True, on_invalid="skip",
                 class_names=names)]
    for filter_by in ("prune_by_noise_rate", "confident_learning", "low_self_confidence", "predicted_neq_given"):
        runs.append(dict(labels_path=npy[0], pred_probs_path=npy[1], batch_size=1234, with_scores=True,
                         output_dir=str(tmp_path / f"scores-{filter_by}"), filter_by=filter_by))
    runs.append(dict(labels_path=empty[0], pred_probs_path=empty[1], output_dir=str(tmp_path / "empty"),
                     filter_by="prune_by_noise_rate", with_scores=True))
    run_pipeline(runs)

    valid = np.setdiff1d(np.arange(n), bad)
    labels64, probs64 = oracle_filter.as_float64(labels[valid], probs[valid])
    out = read_output_dir(str(tmp_path / "strings-both"))
    theirs = set(ids[valid[oracle_filter.find_label_issues(labels64, probs64, "both")]])
    assert set(out["issues"]["id"]) == theirs and len(out["issues"]["id"]) == len(theirs)
    assert out["issues"]["given_label_name"][:3] == [names[g] for g in out["issues"]["given_label"][:3]]
    flags = _scores_flags(out)
    assert len(flags) == len(valid) and {i for i, f in flags.items() if f} == theirs
    assert sorted(r["id"] for r in out["invalid"]) == sorted(ids[bad])
    summary = outputs.read_summary(str(tmp_path / "strings-both"))
    assert summary.num_invalid_records == len(bad) and summary.num_examples == len(valid)
    class_table = outputs.read_health_table(str(tmp_path / "strings-both"), summary, outputs.CLASS_HEALTH_PREFIX)
    assert class_table.column("class_name").to_pylist() == [names[j] for j in
                                                             class_table.column("class_index").to_pylist()]
    joint = outputs.read_health_table(str(tmp_path / "strings-both"), summary, outputs.CONFIDENT_JOINT_PREFIX)
    assert joint.schema.names[-2:] == ["given_label_name", "likely_true_label_name"]

    labels64, probs64 = oracle_filter.as_float64(labels, probs)
    for filter_by in ("prune_by_noise_rate", "confident_learning", "low_self_confidence", "predicted_neq_given"):
        out = read_output_dir(str(tmp_path / f"scores-{filter_by}"))
        flagged = {i for i, f in _scores_flags(out).items() if f}
        assert flagged == set(out["issues"]["id"]), filter_by
        assert len(_scores_flags(out)) == n
        np.testing.assert_array_equal(np.sort(out["issues"]["id"]),
                                      np.flatnonzero(oracle_filter.find_label_issues(labels64, probs64, filter_by)))

    empty_summary = outputs.read_summary(str(tmp_path / "empty"))
    assert empty_summary.num_examples == 0 and empty_summary.num_label_issues == 0
    assert empty_summary.overall_label_health_score is None and empty_summary.health_files == []
    assert empty_summary.label_issues_files == ["label_issues-00000-of-00001.parquet"]

