"""beam_labelissues.find_label_issues_batched against cleanlab's, through the real pipeline.

Every call runs FindLabelIssues on Beam's local runner. cleanlab (tests/oracle.py)
gives the expected answer: the issues ranked by (score, id), and cleanlab's own
set and mask wherever no score ties at the boundary of the n lowest.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from beam_labelissues import InputFileError, InvalidRecordError, demo, find_label_issues_batched
from datasets import DatasetSpec, make_dataset, write_npy
from oracle import cleanlab_expected

OPTION_COMBOS = [
    dict(method=m, adjust_pred_probs=a, estimation_method=e)
    for m, a, e in itertools.product(
        ["self_confidence", "normalized_margin", "confidence_weighted_entropy"],
        [False, True],
        ["off_diagonal", "off_diagonal_calibrated"],
    )
    if not (a and m == "confidence_weighted_entropy")
]

# Sizes, dtypes and noise levels of the generated datasets; each runs with one option combo
# (in turn), with the ranked indices or, every other one, the mask.
SPECS = [
    DatasetSpec(1, 2, "float64", "int64", 0.0, seed=1),
    DatasetSpec(37, 4, "float32", "int8", 0.3, seed=2),
    DatasetSpec(500, 3, "float16", "uint16", 0.4, seed=3),
    DatasetSpec(1000, 50, "float32", "int32", 0.1, seed=4),
    DatasetSpec(2500, 7, "float64", "uint8", 0.2, seed=5),
    DatasetSpec(3000, 10, "float32", "int64", 0.1, seed=6, quantize=20),
    DatasetSpec(3000, 4, "float64", "uint32", 0.3, seed=7, quantize=5),
    DatasetSpec(5000, 2, "float32", "int16", 0.15, seed=8),
    DatasetSpec(8000, 20, "float32", "int64", 0.05, seed=9),
    DatasetSpec(12000, 100, "float16", "int32", 0.1, seed=10),
    DatasetSpec(20000, 10, "float64", "uint64", 0.1, seed=11),
    DatasetSpec(4000, 5, "float32", "int64", 0.0, seed=12),
]


def _kwargs(options):
    return dict(
        quality_score_kwargs={"method": options["method"], "adjust_pred_probs": options["adjust_pred_probs"]},
        num_issue_kwargs={"estimation_method": options["estimation_method"]},
    )


def _assert_same_as_cleanlab(found, expected, return_mask):
    if return_mask:
        flagged = np.zeros(len(expected.scores), dtype=bool)
        flagged[expected.issue_ids] = True
        assert found.dtype == bool and found.shape == flagged.shape
        np.testing.assert_array_equal(found, flagged)
        if not expected.boundary_tied:
            np.testing.assert_array_equal(found, expected.mask, err_msg="mask differs from cleanlab's")
        return
    np.testing.assert_array_equal(found, expected.issue_ids, err_msg="issues or their ranking differ")
    if not expected.boundary_tied:
        np.testing.assert_array_equal(np.sort(found), np.flatnonzero(expected.mask),
                                      err_msg="issue set differs from cleanlab's find_label_issues_batched")


@pytest.mark.parametrize("options", OPTION_COMBOS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_mnist_demo_data_every_option(options):
    labels, probs = np.load(demo.DEMO_LABELS), np.load(demo.DEMO_PRED_PROBS)
    expected = cleanlab_expected(labels, probs, **options)
    found = find_label_issues_batched(
        labels_file=demo.DEMO_LABELS, pred_probs_file=demo.DEMO_PRED_PROBS, batch_size=3000, verbose=False,
        **_kwargs(options),
    )
    if options["method"] == "self_confidence":
        assert len(found) > 0  # MNIST has real label errors; entropy scores find none of them
    _assert_same_as_cleanlab(found, expected, return_mask=False)


@pytest.mark.parametrize("index", range(len(SPECS)), ids=[s.name for s in SPECS])
def test_generated_datasets(index):
    spec = SPECS[index]
    options = OPTION_COMBOS[index % len(OPTION_COMBOS)]
    return_mask = index % 2 == 1
    labels, probs = make_dataset(spec)
    expected = cleanlab_expected(labels, probs, **options)
    # Quantized probabilities do not sum to 1: the row-sum rule is turned off for them.
    found = find_label_issues_batched(
        labels, probs, batch_size=777, verbose=False, return_mask=return_mask,
        row_sum_tolerance=None if spec.quantize else 1e-2, **_kwargs(options)
    )
    _assert_same_as_cleanlab(found, expected, return_mask)


def test_every_option_is_covered_by_the_generated_datasets():
    covered = {tuple(OPTION_COMBOS[i % len(OPTION_COMBOS)].values()) for i in range(len(SPECS))}
    assert covered == {tuple(o.values()) for o in OPTION_COMBOS}
    assert len(SPECS) >= 10


def test_arrays_memmaps_files_and_zarr_stores_and_workers_agree(tmp_path):
    zarr = pytest.importorskip("zarr")
    labels, probs = make_dataset(DatasetSpec(30000, 8, "float32", "int32", 0.15, seed=21))
    labels_path, probs_path = write_npy(str(tmp_path), labels, probs)
    zarr.create_array(str(tmp_path / "labels.zarr"), data=labels, chunks=(4099,), zarr_format=2)
    zarr.create_array(str(tmp_path / "probs.zarr"), data=probs, chunks=(3001, 5))
    options = dict(quality_score_kwargs={"method": "normalized_margin", "adjust_pred_probs": True},
                   num_issue_kwargs={"estimation_method": "off_diagonal_calibrated"})
    expected = cleanlab_expected(labels, probs, method="normalized_margin", adjust_pred_probs=True,
                                 estimation_method="off_diagonal_calibrated")
    memmaps = dict(labels=np.load(labels_path, mmap_mode="r"), pred_probs=np.load(probs_path, mmap_mode="r"))
    runs = {
        "numpy": (dict(labels=labels, pred_probs=probs), 1),
        "numpy-2-workers": (dict(labels=labels, pred_probs=probs), 2),
        "memmap": (memmaps, 1),
        "memmap-2-workers": (memmaps, 2),
        "npy-files": (dict(labels_file=labels_path, pred_probs_file=probs_path), 1),
        "npy-files-2-workers": (dict(labels_file=labels_path, pred_probs_file=probs_path), 2),
        "zarr-stores": (dict(labels_file=str(tmp_path / "labels.zarr"),
                             pred_probs_file=str(tmp_path / "probs.zarr")), 1),
        "zarr-arrays-2-workers": (dict(labels=zarr.open_array(str(tmp_path / "labels.zarr"), mode="r"),
                                       pred_probs=zarr.open_array(str(tmp_path / "probs.zarr"), mode="r")), 2),
        "mixed": (dict(labels=labels.tolist(), pred_probs_file=str(tmp_path / "probs.zarr")), 1),
    }
    results = {}
    for name, (inputs, n_jobs) in runs.items():
        results[name] = find_label_issues_batched(**inputs, batch_size=2048, n_jobs=n_jobs, verbose=False, **options)
    _assert_same_as_cleanlab(results["numpy"], expected, return_mask=False)
    for name, found in results.items():
        np.testing.assert_array_equal(found, results["numpy"], err_msg=name)


def test_results_do_not_depend_on_batch_size_and_mask_matches_indices():
    labels, probs = make_dataset(DatasetSpec(6000, 6, "float32", "int64", 0.2, seed=31))
    ranked = [find_label_issues_batched(labels, probs, batch_size=size, verbose=False) for size in (1000, 6000, 100000)]
    for other in ranked[1:]:
        np.testing.assert_array_equal(other, ranked[0])
    mask = find_label_issues_batched(labels, probs, batch_size=999, verbose=False, return_mask=True)
    np.testing.assert_array_equal(np.flatnonzero(mask), np.sort(ranked[0]))


def test_empty_input_gives_no_issues():
    found = find_label_issues_batched(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), verbose=False)
    assert found.dtype == np.int64 and len(found) == 0
    mask = find_label_issues_batched(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), verbose=False, return_mask=True)
    assert mask.dtype == bool and mask.shape == (0,)


def test_verbose_logs_progress_to_stderr(capfd):
    labels, probs = make_dataset(DatasetSpec(2000, 4, "float32", "int64", 0.1, seed=41))
    found = find_label_issues_batched(labels, probs, verbose=True)
    err = capfd.readouterr().err
    assert "finding label issues in" in err and "2,000 x 4" in err
    assert f"{len(found):,} label issues" in err and "estimated number of label issues" in err
    find_label_issues_batched(labels, probs, verbose=False)
    assert "beam_labelissues:" not in capfd.readouterr().err


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_invalid_record_is_named(n_jobs):
    labels, probs = make_dataset(DatasetSpec(5000, 3, "float64", "int64", 0.1, seed=51))
    probs[4321, 1] = np.nan
    with pytest.raises(InvalidRecordError, match=r"id=4321: pred_probs\[1\] is nan"):
        find_label_issues_batched(labels, probs, n_jobs=n_jobs, verbose=False)
    labels[17] = 3
    probs[4321, 1] = 0.5
    with pytest.raises(InvalidRecordError, match=r"id=17: label 3 is not a class in \[0, 3\)"):
        find_label_issues_batched(labels, probs, verbose=False)


def test_argument_and_file_errors(tmp_path):
    labels, probs = make_dataset(DatasetSpec(100, 3, "float32", "int64", 0.1, seed=61))
    labels_path, probs_path = write_npy(str(tmp_path), labels, probs)
    with pytest.raises(ValueError, match="only specify one of: `labels` or `labels_file`"):
        find_label_issues_batched(labels, probs, labels_file=labels_path, verbose=False)
    with pytest.raises(ValueError, match="must provide one of: `pred_probs` or `pred_probs_file`"):
        find_label_issues_batched(labels, verbose=False)
    with pytest.raises(InputFileError, match="no such file"):
        find_label_issues_batched(labels_file=str(tmp_path / "missing.npy"), pred_probs_file=probs_path, verbose=False)
    with pytest.raises(InputFileError, match="different lengths"):
        np.save(tmp_path / "short.npy", labels[:50])
        find_label_issues_batched(labels_file=str(tmp_path / "short.npy"), pred_probs_file=probs_path, verbose=False)
    with pytest.raises(ValueError, match="labels must have an integer dtype"):
        find_label_issues_batched(labels.astype(float), probs, verbose=False)
    with pytest.raises(ValueError, match="quality_score_kwargs supports method and adjust_pred_probs"):
        find_label_issues_batched(labels, probs, quality_score_kwargs={"methd": "x"}, verbose=False)
    with pytest.raises(ValueError, match="estimation_method must be one of"):
        find_label_issues_batched(labels, probs, num_issue_kwargs={"estimation_method": "x"}, verbose=False)


def test_worker_processes_reopen_files_memmaps_and_zarr_stores(tmp_path, monkeypatch):
    """File-backed inputs travel to worker processes as paths, never as data."""
    zarr = pytest.importorskip("zarr")
    from beam_labelissues import api

    monkeypatch.setattr(api, "PROCESSES_FROM_BYTES", 0)  # processes from the first byte, for this test
    labels, probs = make_dataset(DatasetSpec(9000, 5, "float32", "int64", 0.2, seed=71))
    labels_path, probs_path = write_npy(str(tmp_path), labels, probs)
    zarr.create_array(str(tmp_path / "probs.zarr"), data=probs, chunks=(1000, 5))
    expected = find_label_issues_batched(labels, probs, verbose=False)
    found = find_label_issues_batched(
        np.load(labels_path, mmap_mode="r"), pred_probs_file=str(tmp_path / "probs.zarr"), n_jobs=2, verbose=False
    )
    np.testing.assert_array_equal(found, expected)
    labels[5] = -1
    np.save(labels_path, labels)
    with pytest.raises(InvalidRecordError, match=r"id=5: label -1 is not a class"):
        find_label_issues_batched(labels_file=labels_path, pred_probs_file=probs_path, n_jobs=2, verbose=False)


def test_read_tasks_carry_no_data(tmp_path):
    """What Beam pickles into the pipeline for a read is a few hundred bytes, whatever N:
    in-memory arrays stay in this process, files and stores are named, not copied."""
    import pickle

    zarr = pytest.importorskip("zarr")
    from beam_labelissues.api import open_source

    labels, probs = make_dataset(DatasetSpec(200000, 10, "float32", "int64", 0.1, seed=81))
    labels_path, probs_path = write_npy(str(tmp_path), labels, probs)
    zarr.create_array(str(tmp_path / "probs.zarr"), data=probs, chunks=(50000, 10))
    for inputs in [(labels, probs), (np.load(labels_path, mmap_mode="r"), np.load(probs_path, mmap_mode="r")),
                   (labels_path, probs_path), (labels.tolist(), str(tmp_path / "probs.zarr"))]:
        source = open_source(*inputs, batch_size=10000)
        assert len(pickle.dumps(source.read_dofn())) < 2000
        assert len(pickle.dumps(source.read_tasks())) < 2000
