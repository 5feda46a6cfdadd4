#!/usr/bin/env python
"""Benchmark: ``beam_labelissues.find_label_issues_batched`` vs cleanlab's, same data.

Each contender runs in a fresh Python process, measured from outside: wall time
and the peak memory of the whole process tree (RSS summed over the process and
its descendants, polled every 20 ms), plus the time of the call itself and the
RSS once the inputs are loaded, reported by the child. The answers are compared
(same issue set; ours ranked).

    python benchmarks/batched_api.py                      # 1M x 10, the default
    python benchmarks/batched_api.py --rows 200000 --classes 100 --input memmap

From Python (what the lead can call)::

    from benchmarks.batched_api import benchmark_batched_api
    rows = benchmark_batched_api(num_examples=1_000_000, num_classes=10)

Inputs: ``array`` (np.load into memory), ``memmap`` (np.load(mmap_mode="r")) or
``npy`` (labels_file / pred_probs_file). Contenders: ``cleanlab`` (n_jobs=1),
``ours`` with n_jobs 1 and 2 (the worker kind it picks itself), ``ours-processes``
(n_jobs=2 forced onto worker processes, to compare) and ``ours-sample0.1``
(threshold_sample_fraction=0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import json, sys, time, resource
import numpy as np
spec = json.loads(sys.argv[1])
import psutil
if spec["input"] == "npy":
    inputs = dict(labels_file=spec["labels"], pred_probs_file=spec["pred_probs"])
else:
    mode = "r" if spec["input"] == "memmap" else None
    inputs = dict(labels=np.load(spec["labels"], mmap_mode=mode),
                  pred_probs=np.load(spec["pred_probs"], mmap_mode=mode))
loaded_rss = psutil.Process().memory_info().rss
kwargs = dict(batch_size=spec["batch_size"], n_jobs=spec["n_jobs"], verbose=False)
if spec["contender"] == "cleanlab":
    from cleanlab.experimental.label_issues_batched import find_label_issues_batched
else:
    from beam_labelissues import api
    from beam_labelissues.api import find_label_issues_batched
    if spec.get("force_processes"):
        api.PROCESSES_FROM_BYTES = 0
    if spec.get("fraction", 1.0) != 1.0:
        kwargs["threshold_sample_fraction"] = spec["fraction"]
started = time.perf_counter()
issues = find_label_issues_batched(**inputs, **kwargs)
call_s = time.perf_counter() - started
np.save(spec["out"], np.asarray(issues, dtype=np.int64))
print(json.dumps({"call_s": call_s, "loaded_rss": loaded_rss}))
"""


def make_dataset(num_examples: int, num_classes: int, seed: int = 0, noise: float = 0.1,
                 chunk_rows: int = 1 << 20):
    """float32 softmax of normal logits with the true class boosted; ``noise`` of labels flipped."""
    rng = np.random.default_rng(seed)
    labels = np.empty(num_examples, dtype=np.int64)
    probs = np.empty((num_examples, num_classes), dtype=np.float32)
    for start in range(0, num_examples, chunk_rows):
        n = min(chunk_rows, num_examples - start)
        truth = rng.integers(0, num_classes, size=n)
        logits = rng.normal(size=(n, num_classes))
        logits[np.arange(n), truth] += 2.0 + rng.exponential(1.0, size=n)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs[start:start + n] = p / p.sum(axis=1, keepdims=True)
        flip = rng.random(n) < noise
        truth[flip] = (truth[flip] + rng.integers(1, num_classes, size=int(flip.sum()))) % num_classes
        labels[start:start + n] = truth
    return labels, probs


def _tree_rss(process) -> int:
    import psutil

    total = 0
    for p in [process] + process.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _run_child(spec: Dict, env: Dict[str, str]) -> Dict:
    import psutil

    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(spec)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        peak = max(peak, _tree_rss(process))
        time.sleep(0.02)
    wall = time.perf_counter() - started
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"{spec['contender']} failed:\n{err[-3000:]}")
    reported = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": wall, "call_s": reported["call_s"], "peak_rss_mib": peak / 2**20,
            "loaded_rss_mib": reported["loaded_rss"] / 2**20}


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = set(a.tolist()), set(b.tolist())
    return len(a & b) / len(a | b) if a or b else 1.0


def benchmark_batched_api(
    num_examples: int = 1_000_000,
    num_classes: int = 10,
    inputs: Sequence[str] = ("array",),
    contenders: Optional[Sequence[str]] = None,
    batch_size: int = 10000,
    repeats: int = 1,
    work_dir: Optional[str] = None,
    log=print,
) -> List[Dict]:
    """Runs every contender on every input kind; returns one dict per (input, contender)
    (and logs a table). With ``repeats`` > 1 the contenders take turns, in a rotating
    order, and the figures are medians.

    Each dict: input, contender, wall_s, call_s, peak_rss_mib, loaded_rss_mib,
    num_issues, same_set_as_cleanlab (or, for a sampled run, jaccard_vs_exact).
    """
    contenders = list(contenders or ["cleanlab", "ours-n1", "ours-n2", "ours-processes", "ours-sample0.1"])
    own_dir = work_dir is None
    work_dir = work_dir or tempfile.mkdtemp(prefix="batched_api_bench_")
    labels, probs = make_dataset(num_examples, num_classes)
    labels_path, probs_path = os.path.join(work_dir, "labels.npy"), os.path.join(work_dir, "pred_probs.npy")
    np.save(labels_path, labels)
    np.save(probs_path, probs)
    del labels, probs
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    results = []
    for input_kind in inputs:
        answers, measured = {}, {c: [] for c in contenders}
        for repeat in range(repeats):
            for contender in contenders[repeat % len(contenders):] + contenders[:repeat % len(contenders)]:
                out = os.path.join(work_dir, f"{input_kind}-{contender}.npy")
                spec = {"input": input_kind, "labels": labels_path, "pred_probs": probs_path, "out": out,
                        "batch_size": batch_size, "n_jobs": 1, "contender": contender}
                if contender.startswith("ours"):
                    spec["contender"] = "ours"
                    spec["n_jobs"] = 2 if contender in ("ours-n2", "ours-processes") else 1
                    spec["force_processes"] = contender == "ours-processes"
                    if contender.startswith("ours-sample"):
                        spec["fraction"] = float(contender[len("ours-sample"):])
                measured[contender].append(_run_child(spec, env))
                answers[contender] = np.load(out)
        for contender in contenders:
            row = {"input": input_kind, "contender": contender}
            for key in measured[contender][0]:
                row[key] = float(np.median([run[key] for run in measured[contender]]))
            row["num_issues"] = int(len(answers[contender]))
            results.append(row)
        reference = answers.get("cleanlab")
        exact = answers.get("ours-n1")
        for row in results:
            if row["input"] != input_kind:
                continue
            ids = answers[row["contender"]]
            if row["contender"].startswith("ours-sample") and exact is not None:
                row["jaccard_vs_exact"] = _jaccard(ids, exact)
            elif reference is not None:
                row["same_set_as_cleanlab"] = bool(np.array_equal(np.sort(ids), np.sort(reference)))
    if own_dir:
        for name in os.listdir(work_dir):
            os.remove(os.path.join(work_dir, name))
        os.rmdir(work_dir)
    log(f"{num_examples:,} x {num_classes}, batch_size {batch_size}, medians of {repeats}")
    log(f"{'input':7} {'contender':15} {'wall s':>7} {'call s':>7} {'peak MiB':>9} {'loaded MiB':>10} "
        f"{'issues':>8}  agreement")
    for row in results:
        agreement = (f"jaccard {row['jaccard_vs_exact']:.4f} vs exact" if "jaccard_vs_exact" in row
                     else f"same set as cleanlab: {row.get('same_set_as_cleanlab', '-')}")
        log(f"{row['input']:7} {row['contender']:15} {row['wall_s']:7.2f} {row['call_s']:7.2f} "
            f"{row['peak_rss_mib']:9.0f} {row['loaded_rss_mib']:10.0f} {row['num_issues']:8,}  {agreement}")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--input", action="append", choices=["array", "memmap", "npy"],
                        help="input kind (repeatable); default: array")
    parser.add_argument("--contender", action="append",
                        help="cleanlab, ours-n1, ours-n2, ours-processes, ours-sampleF (repeatable)")
    parser.add_argument("--batch_size", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    results = benchmark_batched_api(args.rows, args.classes, args.input or ["array"], args.contender,
                                    args.batch_size, args.repeats)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
