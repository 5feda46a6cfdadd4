"""The child process of the contenders that are Python functions on the .npy files.

    python -m benchmarks.child NAME LABELS_FILE PRED_PROBS_FILE OUT_PREFIX [ARGS...]

runs FUNCTIONS[NAME] once (with ARGS, such as a filter_by, when the function takes
them) and saves the issue ids, in the order the function returns them, to
OUT_PREFIX.npy and a few numbers (``inner_s``: the time inside the call;
``num_issues``; whatever the function adds) to OUT_PREFIX.json.

Keep this module free of the harness's imports (psutil, pyarrow, Beam): it
imports numpy and the function it measures, nothing else, so that a contender
does not pay for what the harness needs.
"""

import importlib
import json
import sys
import time

import numpy as np


def _batched_from(module_name, labels_file, pred_probs_file):
    """``module_name.find_label_issues_batched`` on the files with the arguments every
    batched contender gets; its import timed apart from the call."""
    t0 = time.perf_counter()
    find_label_issues_batched = importlib.import_module(module_name).find_label_issues_batched
    t1 = time.perf_counter()
    issues = find_label_issues_batched(
        labels_file=labels_file, pred_probs_file=pred_probs_file,
        batch_size=10000, n_jobs=1, verbose=False)
    t2 = time.perf_counter()
    return issues, {"import_s": t1 - t0, "inner_s": t2 - t1}


def cleanlab_batched(labels_file, pred_probs_file):
    """cleanlab.experimental.label_issues_batched.find_label_issues_batched."""
    return _batched_from("cleanlab.experimental.label_issues_batched", labels_file, pred_probs_file)


def cleanlab_filter(labels_file, pred_probs_file, filter_by="prune_by_noise_rate"):
    """cleanlab.filter.find_label_issues(labels, pred_probs, filter_by=..., n_jobs=1): the full
    method; it needs both arrays in memory, so the time to load the .npy files is counted
    (``load_s``) as part of the run."""
    t0 = time.perf_counter()
    from cleanlab.filter import find_label_issues
    t1 = time.perf_counter()
    labels = np.load(labels_file)
    pred_probs = np.load(pred_probs_file)
    t2 = time.perf_counter()
    mask = find_label_issues(labels, pred_probs, filter_by=filter_by, n_jobs=1)
    t3 = time.perf_counter()
    return np.flatnonzero(mask), {"import_s": t1 - t0, "load_s": t2 - t1, "inner_s": t3 - t1,
                                  "filter_by": filter_by}


def ours_function(labels_file, pred_probs_file):
    """beam_labelissues.find_label_issues_batched: cleanlab's signature and arguments, run
    as the FindLabelIssues pipeline on the local runner (one worker, as cleanlab's n_jobs=1)."""
    return _batched_from("beam_labelissues", labels_file, pred_probs_file)


def numpy_loop(labels_file, pred_probs_file):
    """The plain two-pass numpy loop (numpy_loop.numpy_label_issues)."""
    from benchmarks.numpy_loop import numpy_label_issues
    t0 = time.perf_counter()
    issues, info = numpy_label_issues(labels_file, pred_probs_file)
    info["inner_s"] = time.perf_counter() - t0
    return issues, info


# NAME -> function(labels_file, pred_probs_file, *args) -> (issue ids, info dict with inner_s)
FUNCTIONS = {
    "cleanlab": cleanlab_batched,
    "cleanlab_filter": cleanlab_filter,
    "ours_api": ours_function,
    "numpy": numpy_loop,
}


def main(argv):
    name, labels_file, pred_probs_file, out_prefix, *args = argv
    issues, info = FUNCTIONS[name](labels_file, pred_probs_file, *args)
    issues = np.asarray(issues, dtype=np.int64)
    np.save(out_prefix + ".npy", issues)
    info["num_issues"] = int(len(issues))
    with open(out_prefix + ".json", "w") as f:
        json.dump(info, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
