"""The child process of the contenders that are Python functions on the .npy files.

    python -m benchmarks.child NAME LABELS_FILE PRED_PROBS_FILE OUT_PREFIX

runs FUNCTIONS[NAME] once and saves the issue ids, in the order the function
returns them, to OUT_PREFIX.npy and a few numbers (``inner_s``: the time inside
the call; ``num_issues``; whatever the function adds) to OUT_PREFIX.json.

Keep this module free of the harness's imports (psutil, pyarrow, Beam): it
imports numpy and the function it measures, nothing else, so that a contender
does not pay for what the harness needs.
"""

import json
import sys
import time

import numpy as np


def cleanlab_batched(labels_file, pred_probs_file):
    """cleanlab.experimental.label_issues_batched.find_label_issues_batched."""
    t0 = time.perf_counter()
    from cleanlab.experimental.label_issues_batched import find_label_issues_batched
    t1 = time.perf_counter()
    issues = find_label_issues_batched(
        labels_file=labels_file, pred_probs_file=pred_probs_file,
        batch_size=10000, n_jobs=1, verbose=False)
    t2 = time.perf_counter()
    return issues, {"import_s": t1 - t0, "inner_s": t2 - t1}


def numpy_loop(labels_file, pred_probs_file):
    """The plain two-pass numpy loop (numpy_loop.numpy_label_issues)."""
    from benchmarks.numpy_loop import numpy_label_issues
    t0 = time.perf_counter()
    issues, info = numpy_label_issues(labels_file, pred_probs_file)
    info["inner_s"] = time.perf_counter() - t0
    return issues, info


# NAME -> function(labels_file, pred_probs_file) -> (issue ids, info dict with inner_s)
FUNCTIONS = {
    "cleanlab": cleanlab_batched,
    "numpy": numpy_loop,
}


def main(argv):
    name, labels_file, pred_probs_file, out_prefix = argv
    issues, info = FUNCTIONS[name](labels_file, pred_probs_file)
    issues = np.asarray(issues, dtype=np.int64)
    np.save(out_prefix + ".npy", issues)
    info["num_issues"] = int(len(issues))
    with open(out_prefix + ".json", "w") as f:
        json.dump(info, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
