"""Edge cases through real pipelines: unseen classes, zero issues, batch sizes, workers, layouts."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from datasets import DatasetSpec, make_dataset, write_npy
from oracle import assert_matches, cleanlab_expected
from harness import read_output_dir, run_pipeline


def _run_cases(tmp_path, cases, beam_args=None):
    """cases: name -> (labels, probs, run options). Runs all in one pipeline; returns outputs."""
    runs = []
    for name, (labels, probs, options) in cases.items():
        labels_path, probs_path = write_npy(str(tmp_path / name), labels, probs, **options.pop("save", {}))
        runs.append(dict(labels_path=labels_path, pred_probs_path=probs_path,
                         output_dir=str(tmp_path / name / "out"), **options))
    run_pipeline(runs, beam_args)
    return {name: read_output_dir(str(tmp_path / name / "out")) for name in cases}


def test_unseen_class_zero_issues_and_layouts(tmp_path):
    labels, probs = make_dataset(DatasetSpec(3000, 5, "float64", "int32", 0.1, seed=11))
    unseen = labels.copy()
    unseen[unseen == 4] = 3  # class 4 never occurs as a label
    clean = np.arange(600) % 6
    clean_probs = np.full((600, 6), 0.02)
    clean_probs[np.arange(600), clean] = 0.9
    big_endian = probs.astype(">f8")
    cases = {
        "unseen": (unseen, probs, {}),
        "clean": (clean, clean_probs, {}),
        "fortran": (labels, np.asfortranarray(probs), {"batch_size": 333}),
        "bigendian": (labels.astype(">i4"), big_endian, {}),
    }
    out = _run_cases(tmp_path, {k: (v[0], v[1], dict(v[2])) for k, v in cases.items()})

    expected = cleanlab_expected(unseen, probs)
    assert_matches(expected, out["unseen"]["issues"], out["unseen"]["summary"])
    assert out["unseen"]["summary"]["confident_thresholds"][4] == 2e-6
    assert out["unseen"]["summary"]["examples_per_class"][4] == 0

    assert out["clean"]["summary"]["num_label_issues"] == 0
    table = pq.read_table(out["clean"]["issue_files"][0])
    assert table.num_rows == 0
    assert table.schema.names == ["rank", "id", "given_label", "predicted_label", "label_quality",
                                     "given_label_prob", "predicted_label_prob"]

    for layout in ("fortran", "bigendian"):
        assert_matches(cleanlab_expected(labels, probs), out[layout]["issues"], out[layout]["summary"])


def _outputs_equal(a, b):
    assert a["issues"] == b["issues"]  # files are read in name order, which is rank order
    assert a["scores"] == b["scores"] or sorted(zip(*a["scores"].values())) == sorted(zip(*b["scores"].values()))
    # The number of score shards follows the bundles and "input" names the files; the rest is identical.
    shards = ("label_quality_scores_files", "label_issues_files", "input")
    summary_a = {k: v for k, v in a["summary"].items() if k not in shards}
    summary_b = {k: v for k, v in b["summary"].items() if k not in shards}
    assert summary_a == summary_b


def test_results_do_not_depend_on_batch_size(tmp_path):
    labels, probs = make_dataset(DatasetSpec(400, 7, "float32", "uint8", 0.3, seed=12, quantize=10))
    # Rounded to tenths, rows no longer sum to 1: the row-sum rule is off for this data.
    cases = {f"batch{size}": (labels, probs, {"batch_size": size, "with_scores": True,
                                              "method": "normalized_margin", "row_sum_tolerance": None})
             for size in (1, 7, 10_000_000)}
    out = _run_cases(tmp_path, cases)
    expected = cleanlab_expected(labels, probs, method="normalized_margin")
    assert_matches(expected, out["batch1"]["issues"], out["batch1"]["summary"], out["batch1"]["scores"])
    _outputs_equal(out["batch1"], out["batch7"])
    _outputs_equal(out["batch1"], out["batch10000000"])


def test_multi_process_workers_give_the_same_output(tmp_path):
    labels, probs = make_dataset(DatasetSpec(30000, 10, "float32", "int64", 0.1, seed=13))
    options = {"batch_size": 1000, "with_scores": True, "estimation_method": "off_diagonal_calibrated"}
    single = _run_cases(tmp_path / "single", {"d": (labels, probs, dict(options))})["d"]
    multi = _run_cases(tmp_path / "multi", {"d": (labels, probs, dict(options))},
                       ["--runner=FnApiRunner", "--direct_num_workers=2",
                        "--direct_running_mode=multi_processing"])["d"]
    assert_matches(cleanlab_expected(labels, probs, estimation_method="off_diagonal_calibrated"),
                   single["issues"], single["summary"], single["scores"])
    _outputs_equal(single, multi)


def test_ranking_in_score_ranges_equals_ranking_in_one_place(tmp_path):
    """A tiny memory budget splits the ranking over many score ranges; the output is the same."""
    labels, probs = make_dataset(DatasetSpec(20000, 10, "float32", "int64", 0.3, seed=14, quantize=50))
    options = {"with_scores": True, "method": "normalized_margin", "row_sum_tolerance": None}  # rounded rows
    cases = {f"budget{b}": (labels, probs, dict(options, max_issues_per_worker=b)) for b in (1, 97, 10**9)}
    out = _run_cases(tmp_path, cases)
    whole = out["budget1000000000"]
    assert len(whole["issue_files"]) == 1
    assert_matches(cleanlab_expected(labels, probs, method="normalized_margin"),
                   whole["issues"], whole["summary"], whole["scores"])
    for budget in ("budget1", "budget97"):
        assert len(out[budget]["issue_files"]) > 10
        _outputs_equal(whole, out[budget])


def test_holding_the_disagreeing_rows_gives_the_same_outputs_as_reading_again(tmp_path):
    """The default run holds the rows the model disagrees with and reads the data once more
    only for the cutoff bin; forced to read again instead, every output is identical."""
    labels, probs = make_dataset(DatasetSpec(20000, 6, "float32", "int64", 0.2, seed=15, quantize=40))
    cases = {f"hold{h}-{m}": (labels, probs, {"hold_disagreeing_rows": h, "with_scores": True, "method": m,
                                              "max_issues_per_worker": 500, "batch_size": 999,
                                              "row_sum_tolerance": None})
             for h in (True, False) for m in ("self_confidence", "confidence_weighted_entropy")}
    out = _run_cases(tmp_path, cases)
    for method in ("self_confidence", "confidence_weighted_entropy"):
        held, reread = out[f"holdTrue-{method}"], out[f"holdFalse-{method}"]
        assert_matches(cleanlab_expected(labels, probs, method=method), held["issues"], held["summary"],
                       held["scores"])
        assert len(held["issue_files"]) > 1
        _outputs_equal(held, reread)


def test_a_local_runner_holds_the_disagreeing_rows_only_within_its_memory_budget():
    """On the local runner the held rows are in memory, so by default a run holds them only
    while every row could be held within the budget; elsewhere they are in the shuffle."""
    from beam_labelissues import runners
    from beam_labelissues.options import HELD_ROW_BYTES, LOCAL_HOLD_BUDGET_BYTES, LabelIssuesOptions

    most = LOCAL_HOLD_BUDGET_BYTES // HELD_ROW_BYTES
    default = LabelIssuesOptions(num_classes=3)
    assert default.holds_disagreeing_rows(True, most, local_runner=True)
    assert not default.holds_disagreeing_rows(True, most + 1, local_runner=True)
    assert not default.holds_disagreeing_rows(True, None, local_runner=True)  # size unknown
    assert default.holds_disagreeing_rows(True, 10 * most, local_runner=False)
    assert not default.holds_disagreeing_rows(False, 10, local_runner=False)  # re-reading is cheap
    forced = LabelIssuesOptions(num_classes=3, hold_disagreeing_rows=True)
    assert forced.holds_disagreeing_rows(False, 10 * most, local_runner=True)
    adjusted = LabelIssuesOptions(num_classes=3, hold_disagreeing_rows=True, adjust_pred_probs=True)
    assert not adjusted.holds_disagreeing_rows(True, 10, local_runner=False)

    from apache_beam.runners.direct.direct_runner import DirectRunner
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.test_pipeline import TestPipeline
    for local in (DirectRunner(), FnApiRunner(), "DirectRunner", "PrismRunner", TestPipeline().runner):
        assert runners.is_local(local), local
    for remote in ("DataflowRunner", "FlinkRunner", "PortableRunner", "SparkRunner"):
        assert not runners.is_local(remote), remote


def test_the_plan_follows_the_budget_on_a_real_parquet_pipeline(tmp_path, monkeypatch):
    """A Parquet input within the budget is read twice (the held-rows stages appear);
    one row over it is read three times; both give cleanlab's answer."""
    import apache_beam as beam
    from beam_labelissues import options as options_module
    from beam_labelissues.io.outputs import WriteLabelIssues
    from beam_labelissues.io.parquet import ParquetDataset, ReadParquetExamples
    from beam_labelissues.transforms import FindLabelIssues
    from input_files import examples_table

    labels, probs = make_dataset(DatasetSpec(1200, 4, "float32", "int64", 0.2, seed=8))
    path = tmp_path / "examples.parquet"
    pq.write_table(examples_table(labels, probs), path, row_group_size=500)
    expected = cleanlab_expected(labels, probs)

    def run(budget_rows):
        monkeypatch.setattr(options_module, "LOCAL_HOLD_BUDGET_BYTES", budget_rows * options_module.HELD_ROW_BYTES)
        output_dir = str(tmp_path / f"out-{budget_rows}")
        pipeline = beam.Pipeline(runner="DirectRunner")
        source = ReadParquetExamples(ParquetDataset.open(str(path)))
        _ = pipeline | FindLabelIssues(num_classes=4, source=source) | WriteLabelIssues(output_dir)
        pipeline.run().wait_until_finish()
        transforms = pipeline.to_runner_api().components.transforms.values()
        stages = {transform.unique_name.rsplit("/", 1)[-1] for transform in transforms}
        return stages, read_output_dir(output_dir)

    held_stages, held = run(1200)
    reread_stages, reread = run(1199)
    assert "CountHeldRows" in held_stages and "CountIssues" not in held_stages
    assert "CountIssues" in reread_stages and "CountHeldRows" not in reread_stages
    assert_matches(expected, held["issues"], held["summary"])
    assert held["issues"] == reread["issues"] and held["summary"] == reread["summary"]
