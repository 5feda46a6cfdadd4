"""Confident thresholds from a deterministic sample of ids (threshold_sample_fraction).

The sample is re-derived here from the documented hash in pure Python, and the
expected thresholds are exact means over it (fractions.Fraction), so nothing
in this file trusts the code under test to choose the rows.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np
import pytest
from cleanlab.experimental.label_issues_batched import LabelInspector as CleanlabInspector

from beam_labelissues import LabelInspector, find_label_issues_batched, sampling
from beam_labelissues.batches import ExampleBatch
from beam_labelissues.combiners import ConfidentThresholdsFn
from datasets import DatasetSpec, make_dataset, write_npy
from harness import read_output_dir, run_pipeline

MASK = (1 << 64) - 1


def splitmix64(value: int) -> int:
    z = (value + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def sampled_ids(ids, fraction):
    """The ids in the sample, by the rule in beam_labelissues/sampling.py's docstring."""
    limit = int(Fraction(fraction) * (1 << 64))
    keep = []
    for i in ids:
        value = i
        if isinstance(i, str):
            value = int.from_bytes(hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest(), "little")
        if splitmix64(value & MASK) < limit:
            keep.append(i)
    return keep


def exact_thresholds_over(labels, probs, rows, num_classes):
    thresholds = []
    for k in range(num_classes):
        values = [float(probs[i, k]) for i in rows if labels[i] == k]
        mean = float(sum(map(Fraction, values), Fraction(0)) / len(values)) if values else 0.0
        thresholds.append(max(mean, 2e-6))
    return np.array(thresholds)


def test_hash_follows_the_documented_rule():
    ids = np.array([0, 1, 2, 3, 12345, 2**40 + 7, -1, -(2**63), 2**63 - 1], dtype=np.int64)
    expected = [splitmix64(int(i) & MASK) for i in ids]
    assert sampling.id_hashes(ids).tolist() == expected
    for dtype in (np.int32, np.uint16, np.uint64):
        assert sampling.id_hashes(ids[:5].astype(dtype)).tolist() == expected[:5]
    words = np.array(["a", "example-17", "ü"], dtype=object)
    assert sampling.in_sample(words, 0.5).tolist() == [w in sampled_ids(list(words), 0.5) for w in words]
    rng = np.random.default_rng(0)
    many = rng.integers(-(2**62), 2**62, size=5000)
    for fraction in (0.01, 0.3, 0.999):
        chosen = set(sampled_ids([int(i) for i in many], fraction))
        assert sampling.in_sample(many, fraction).tolist() == [int(i) in chosen for i in many]
    assert sampling.in_sample(many, 1.0).all()
    assert abs(sampling.in_sample(np.arange(100000), 0.3).mean() - 0.3) < 0.01


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_fraction_must_be_in_zero_one(fraction):
    with pytest.raises(ValueError, match=r"threshold_sample_fraction must be in \(0, 1\]"):
        ConfidentThresholdsFn(3, fraction)
    with pytest.raises(ValueError, match=r"threshold_sample_fraction must be in \(0, 1\]"):
        LabelInspector(num_class=3, threshold_sample_fraction=fraction)


def test_combiner_same_thresholds_whatever_the_batches():
    labels, probs = make_dataset(DatasetSpec(3000, 5, "float32", "int64", 0.2, seed=1))
    fraction = 0.25
    rows = sampled_ids(range(3000), fraction)
    expected = exact_thresholds_over(labels, probs.astype(np.float64), rows, 5)
    fn = ConfidentThresholdsFn(5, fraction)
    for size in (1, 7, 1000, 3000):
        batches = [ExampleBatch(np.arange(s, min(s + size, 3000)), labels[s:s + size], probs[s:s + size])
                   for s in range(0, 3000, size)]
        accumulators = [fn.create_accumulator() for _ in range(3)]
        for i, batch in enumerate(batches[::-1]):  # reversed, spread over three accumulators
            accumulators[i % 3] = fn.add_input(accumulators[i % 3], batch)
        stats = fn.extract_output(fn.merge_accumulators(accumulators))
        np.testing.assert_array_equal(stats.thresholds, expected, err_msg=f"batch size {size}")
        np.testing.assert_array_equal(stats.examples_per_class, np.bincount(labels, minlength=5))
        np.testing.assert_array_equal(stats.sampled_examples_per_class, np.bincount(labels[rows], minlength=5))
    whole = fn.extract_output(fn.add_input(fn.create_accumulator(), ExampleBatch(np.arange(3000), labels, probs)))
    exact = ConfidentThresholdsFn(5).extract_output(
        ConfidentThresholdsFn(5).add_input(ConfidentThresholdsFn(5).create_accumulator(),
                                           ExampleBatch(np.arange(3000), labels, probs)))
    assert whole.thresholds.tobytes() != exact.thresholds.tobytes()  # the sample is a real subset


def test_string_ids_are_sampled_by_id_not_position():
    labels, probs = make_dataset(DatasetSpec(400, 3, "float64", "int64", 0.2, seed=2))
    ids = np.array([f"row-{i}" for i in range(400)], dtype=object)
    fn = ConfidentThresholdsFn(3, 0.5)
    order = np.random.default_rng(3).permutation(400)
    forward = fn.extract_output(fn.add_input(fn.create_accumulator(), ExampleBatch(ids, labels, probs)))
    shuffled = fn.extract_output(fn.add_input(fn.create_accumulator(),
                                              ExampleBatch(ids[order], labels[order], probs[order])))
    np.testing.assert_array_equal(forward.thresholds, shuffled.thresholds)
    rows = [int(i[4:]) for i in sampled_ids(list(ids), 0.5)]
    np.testing.assert_array_equal(forward.thresholds, exact_thresholds_over(labels, probs, rows, 3))


def _cleanlab_issues_with_thresholds(labels, probs, thresholds, **settings):
    """cleanlab's inspector scoring and counting with the given thresholds; issues ranked
    by (score, id), dropping rows where the model agrees, as find_label_issues_batched does."""
    inspector = CleanlabInspector(num_class=probs.shape[1], verbose=False, **settings)
    inspector.update_confident_thresholds(labels, probs)
    inspector.confident_thresholds = thresholds
    inspector.score_label_quality(labels, probs)
    scores = inspector.get_quality_scores()
    lowest = np.lexsort((np.arange(len(scores)), scores))[: inspector.get_num_issues(silent=True)]
    bumped = probs.copy()
    bumped[np.arange(len(labels)), labels] += 1e-6
    return lowest[np.argmax(bumped[lowest], axis=1) != labels[lowest]]


def test_pipeline_and_both_apis_agree_on_sampled_thresholds(tmp_path):
    labels, probs = make_dataset(DatasetSpec(20000, 8, "float32", "int64", 0.15, seed=4))
    probs64 = probs.astype(np.float64)
    labels_path, probs_path = write_npy(str(tmp_path), labels, probs)
    fraction = 0.1
    expected = exact_thresholds_over(labels, probs64, sampled_ids(range(20000), fraction), 8)
    settings = dict(quality_score_kwargs={"adjust_pred_probs": True},
                    num_issue_kwargs={"estimation_method": "off_diagonal_calibrated"})
    runs = [dict(labels_path=labels_path, pred_probs_path=probs_path, output_dir=str(tmp_path / f"f{size}"),
                 batch_size=size, threshold_sample_fraction=fraction, adjust_pred_probs=True,
                 estimation_method="off_diagonal_calibrated")
            for size in (100, 1777, None)]
    runs += [dict(labels_path=labels_path, pred_probs_path=probs_path, output_dir=str(tmp_path / "one"),
                  threshold_sample_fraction=1.0),
             dict(labels_path=labels_path, pred_probs_path=probs_path, output_dir=str(tmp_path / "default"))]
    run_pipeline(runs)
    sampled = [read_output_dir(run["output_dir"]) for run in runs[:3]]
    for out in sampled:
        np.testing.assert_array_equal(out["summary"]["confident_thresholds"], expected)
        assert out["summary"]["threshold_sample_fraction"] == fraction
        assert out["summary"]["examples_per_class"] == np.bincount(labels, minlength=8).tolist()
        assert out["issues"] == sampled[0]["issues"]
    one, default = read_output_dir(str(tmp_path / "one")), read_output_dir(str(tmp_path / "default"))
    assert one == {**default, "issue_files": one["issue_files"]}
    assert default["summary"]["threshold_sample_fraction"] == 1.0

    issues = _cleanlab_issues_with_thresholds(labels, probs64, expected, **settings)
    found = find_label_issues_batched(labels, probs, threshold_sample_fraction=fraction, verbose=False, **settings)
    np.testing.assert_array_equal(found, issues)
    ranked = [sampled[0]["issues"]["id"][i] for i in np.argsort(sampled[0]["issues"]["rank"])]
    np.testing.assert_array_equal(found, ranked)

    inspector = LabelInspector(num_class=8, verbose=False, threshold_sample_fraction=fraction, **settings)
    for start in range(0, 20000, 3333):
        inspector.update_confident_thresholds(labels[start:start + 3333], probs[start:start + 3333])
    np.testing.assert_array_equal(inspector.get_confident_thresholds(silent=True), expected)
    assert int(inspector._stats().sampled_examples_per_class.sum()) == len(sampled_ids(range(20000), fraction))


def test_command_line_samples_by_string_id_and_records_the_fraction(tmp_path):
    """--threshold_sample_fraction on a Parquet input with string ids: the sample is chosen by
    id (hashed), so the thresholds are the exact means over the documented sample."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness import run_cli

    labels, probs = make_dataset(DatasetSpec(6000, 5, "float32", "int64", 0.2, seed=9))
    ids = [f"img-{i:05d}" for i in range(len(labels))]
    table = pa.table({"image": ids, "label": labels,
                      "pred_probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.ravel()), 5)})
    data = tmp_path / "preds.parquet"
    pq.write_table(table, data, row_group_size=1000)
    out = tmp_path / "out"
    done = run_cli("--input", data, "--id_column", "image", "--threshold_sample_fraction", "0.25",
                   "--output", out, "--no_report", "--quiet")
    assert done.returncode == 0, done.stderr
    rows = [i for i, name in enumerate(ids) if name in set(sampled_ids(ids, 0.25))]
    assert 0 < len(rows) < len(ids)
    summary = read_output_dir(str(out))["summary"]
    assert summary["threshold_sample_fraction"] == 0.25
    np.testing.assert_array_equal(summary["confident_thresholds"],
                                  exact_thresholds_over(labels, probs.astype(np.float64), rows, 5))

    for bad in ("0", "1.5", "nan"):
        refused = run_cli("--input", data, "--threshold_sample_fraction", bad, "--output", tmp_path / f"bad{bad}")
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().count("\n") == 0 and "threshold_sample_fraction" in refused.stderr
        assert not (tmp_path / f"bad{bad}").exists()
