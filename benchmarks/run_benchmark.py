#!/usr/bin/env python
"""Side-by-side benchmark: our Beam CLI vs cleanlab's find_label_issues_batched.

For every dataset (synthetic, fixed seeds, float32) this runs, as separate
subprocesses and alternating per repeat:

  cleanlab  cleanlab.experimental.label_issues_batched.find_label_issues_batched
            on the .npy files (batch_size=10000, n_jobs=1);
  numpy     a plain two-pass numpy loop over the same .npy files, the
            "practical limit" of a single-process implementation; it must give
            cleanlab's answer;
  ours      pipelines/find_label_issues.py on the .npy files and/or on Parquet.

Each run is measured from outside: wall time, CPU time of the whole process
tree (user+sys, children included) and peak memory of the whole process tree
(RSS summed over the process and all its descendants, polled every ~20 ms).
Medians over the repeats are printed as a table per dataset and input and
written to JSON.  See benchmarks/README.md.

The script is also its own child: ``run_benchmark.py _child cleanlab|numpy
LABELS PRED_PROBS OUT_PREFIX`` runs one contender and saves the issue indices
to OUT_PREFIX.npy (plus a few numbers in OUT_PREFIX.json).  The child imports
only numpy (and cleanlab), so its cost is not inflated by the harness.
"""

import json
import os
import sys
import time

import numpy as np

# Bump when the generated data would change (logits, seeds, chunking, layout).
GENERATOR_VERSION = 2
GEN_SEED = 20240517
ACCURACY = 0.88        # P(argmax == true class)
FLIP_FRACTION = 0.10   # share of given labels flipped to another class
DEFAULT_DATASETS = "1Mx10,1Mx100,10Mx10,200kx1000"

FLOATING_POINT_COMPARISON = 1e-6   # cleanlab.internal.constants
THRESHOLD_LOWER_BOUND = 2e-6       # CONFIDENT_THRESHOLDS_LOWER_BOUND
NUMPY_BATCH_BYTES = 16 << 20       # pred_probs bytes per batch in the numpy loop


# --------------------------------------------------------------------------
# Children (keep these free of harness imports: psutil, pyarrow, beam).
# --------------------------------------------------------------------------

def _child_cleanlab(labels_file, pred_probs_file, out_prefix):
    t0 = time.perf_counter()
    from cleanlab.experimental.label_issues_batched import find_label_issues_batched
    t1 = time.perf_counter()
    issues = find_label_issues_batched(
        labels_file=labels_file, pred_probs_file=pred_probs_file,
        batch_size=10000, n_jobs=1, verbose=False)
    t2 = time.perf_counter()
    np.save(out_prefix + ".npy", np.asarray(issues, dtype=np.int64))
    with open(out_prefix + ".json", "w") as f:
        json.dump({"import_s": t1 - t0, "inner_s": t2 - t1,
                   "num_issues": int(len(issues))}, f)


def _drop_mapped_pages(*arrays):
    """Unmap the pages already read (they stay in the page cache), so that the
    loop's RSS shows its working set rather than the whole file."""
    import mmap
    for a in arrays:
        mm = getattr(a, "_mmap", None)
        if mm is not None:
            mm.madvise(mmap.MADV_DONTNEED)


def numpy_label_issues(labels_file, pred_probs_file, batch_bytes=NUMPY_BATCH_BYTES):
    """cleanlab's default batched method (self_confidence, off_diagonal) in
    two passes over mmap'd .npy files.  Returns (issue ids ranked by
    (score, id), info dict)."""
    labels = np.load(labels_file, mmap_mode="r")
    pred_probs = np.load(pred_probs_file, mmap_mode="r")
    n_rows, k = pred_probs.shape
    if len(labels) != n_rows:
        raise ValueError("labels and pred_probs differ in length")
    rows = max(1, batch_bytes // (k * pred_probs.dtype.itemsize))

    # Pass 1: per-class sum and count of pred_probs[i, label_i].
    sums = np.zeros(k, dtype=np.float64)
    counts = np.zeros(k, dtype=np.int64)
    for a in range(0, n_rows, rows):
        lab = np.array(labels[a:a + rows], dtype=np.int64)
        p = np.array(pred_probs[a:a + rows])
        s = p[np.arange(len(lab)), lab]
        sums += np.bincount(lab, weights=s, minlength=k)
        counts += np.bincount(lab, minlength=k)
        _drop_mapped_pages(labels, pred_probs)
    thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    thresholds = np.clip(thresholds, THRESHOLD_LOWER_BOUND, None)
    adj = thresholds - FLOATING_POINT_COMPARISON

    # Pass 2: scores, the off-diagonal count n, and candidates for the n
    # lowest scores.  n is only known at the end of the pass, so the running
    # count cannot bound the candidates.  Instead: every counted row has
    # p[label] <= p[argmax] with label != argmax, so p[label] <= rowsum / 2,
    # i.e. at least n rows score <= ~0.5.  Keeping every row that scores
    # <= BOUND is therefore exact as soon as at least n rows were kept
    # (checked below; a third pass over all scores handles anything else).
    bound = np.float32(0.5 + 1e-3)
    n_issues = 0
    cand_score, cand_id, cand_agree = [], [], []
    for a in range(0, n_rows, rows):
        lab = np.array(labels[a:a + rows], dtype=np.int64)
        p = np.array(pred_probs[a:a + rows])
        r = np.arange(len(lab))
        s = p[r, lab]
        am = p.argmax(axis=1)
        n_issues += int(np.count_nonzero((am != lab) & (p[r, am] >= adj[am])))
        c = np.flatnonzero(s <= bound)
        pc = p[c]
        pc[np.arange(len(c)), lab[c]] += FLOATING_POINT_COMPARISON  # input dtype, as cleanlab
        cand_agree.append(pc.argmax(axis=1) == lab[c])
        cand_score.append(s[c])
        cand_id.append(c + a)
        _drop_mapped_pages(labels, pred_probs)
    score = np.concatenate(cand_score) if cand_score else np.zeros(0, pred_probs.dtype)
    ids = np.concatenate(cand_id) if cand_id else np.zeros(0, np.int64)
    agree = np.concatenate(cand_agree) if cand_agree else np.zeros(0, bool)
    del cand_score, cand_id, cand_agree
    fallback = len(score) < n_issues
    if fallback:  # not normalised probabilities: keep every row instead
        score, ids, agree = _all_scores(labels, pred_probs, rows)

    # The n lowest (score, id); candidates are in id order.
    if n_issues == 0:
        sel = np.zeros(0, np.int64)
    else:
        kth = np.partition(score, n_issues - 1)[n_issues - 1]
        below = np.flatnonzero(score < kth)
        at = np.flatnonzero(score == kth)[: n_issues - len(below)]
        sel = np.concatenate([below, at])
        sel = sel[np.lexsort((ids[sel], score[sel]))]
    sel = sel[~agree[sel]]
    info = {"n_off_diagonal": n_issues, "candidates": int(len(score)),
            "fallback_pass": bool(fallback), "batch_rows": int(rows),
            "thresholds": thresholds.tolist()}
    return ids[sel], info


def _all_scores(labels, pred_probs, rows):
    n_rows = len(labels)
    score = np.empty(n_rows, pred_probs.dtype)
    agree = np.empty(n_rows, bool)
    for a in range(0, n_rows, rows):
        lab = np.array(labels[a:a + rows], dtype=np.int64)
        p = np.array(pred_probs[a:a + rows])
        r = np.arange(len(lab))
        score[a:a + len(lab)] = p[r, lab]
        p[r, lab] += FLOATING_POINT_COMPARISON
        agree[a:a + len(lab)] = p.argmax(axis=1) == lab
        _drop_mapped_pages(labels, pred_probs)
    return score, np.arange(n_rows, dtype=np.int64), agree


def _child_numpy(labels_file, pred_probs_file, out_prefix):
    t0 = time.perf_counter()
    issues, info = numpy_label_issues(labels_file, pred_probs_file)
    t1 = time.perf_counter()
    np.save(out_prefix + ".npy", issues.astype(np.int64))
    info.update({"inner_s": t1 - t0, "num_issues": int(len(issues))})
    with open(out_prefix + ".json", "w") as f:
        json.dump(info, f)


# --------------------------------------------------------------------------
# Synthetic datasets.
# --------------------------------------------------------------------------

def parse_dataset(name):
    import re
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMbB]?)x(\d+)", name.strip())
    if not m:
        raise SystemExit(f"bad dataset name {name!r}; expected e.g. 1Mx10, 200kx1000")
    mult = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9}[m.group(2).lower()]
    n, k = int(round(float(m.group(1)) * mult)), int(m.group(3))
    if n < 1 or k < 2:
        raise SystemExit(f"dataset {name!r}: need at least 1 row and 2 classes")
    return n, k


def _gen_rows(k):
    return max(256, min(65536, (1 << 22) // k))  # ~32 MiB of float64 logits


def _boost_for_accuracy(k, accuracy=ACCURACY, samples=200_000):
    """Logit boost b of the true class so that P(z_true + b > max z_other) is
    `accuracy` for z ~ N(0, 1): the `accuracy` quantile of max_other - z_true."""
    rng = np.random.default_rng([GEN_SEED, k, 0xCA11B])
    diffs = []
    step = max(1, (1 << 22) // k)
    for a in range(0, samples, step):
        m = min(step, samples - a)
        z = rng.standard_normal((m, k))
        diffs.append(z[:, 1:].max(axis=1) - z[:, 0])
    return float(np.quantile(np.concatenate(diffs), accuracy))


def _generate_chunk(n_start, m, k, boost, chunk_index, n):
    rng = np.random.default_rng([GEN_SEED, n, k, chunk_index])
    true = rng.integers(0, k, size=m)
    z = rng.standard_normal((m, k))
    z[np.arange(m), true] += boost
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    probs = z.astype(np.float32)
    flip = rng.random(m) < FLIP_FRACTION
    given = true.copy()
    given[flip] = (true[flip] + rng.integers(1, k, size=int(flip.sum()))) % k
    return true, given.astype(np.int64), probs


def _npy_header(f, dtype, shape):
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False, "shape": tuple(shape)})


def ensure_dataset(data_dir, name, row_group_rows, log=print):
    """Generate (or reuse) DATA_DIR/NAME/{labels.npy,pred_probs.npy,data.parquet}."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    n, k = parse_dataset(name)
    d = os.path.join(data_dir, name)
    meta_path = os.path.join(d, "meta.json")
    want = {"generator_version": GENERATOR_VERSION, "n": n, "k": k,
            "seed": GEN_SEED, "row_group_rows": row_group_rows}
    files = {f: os.path.join(d, f) for f in ("labels.npy", "pred_probs.npy", "data.parquet")}
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if all(meta.get(key) == v for key, v in want.items()) and all(
                os.path.exists(p) for p in files.values()):
            return meta, files
        log(f"[{name}] stale data (generator or layout changed): regenerating")
        os.remove(meta_path)
    os.makedirs(d, exist_ok=True)
    need = n * (8 + 4 * k) * 2
    free = _free_bytes(d)
    if free < need * 1.1:
        raise SystemExit(f"[{name}] needs ~{need / 2**30:.1f} GiB, only "
                         f"{free / 2**30:.1f} GiB free in {d}")
    t0 = time.time()
    log(f"[{name}] generating {n:,} x {k} ({need / 2**30:.2f} GiB on disk) ...")
    boost = _boost_for_accuracy(k)
    schema = pa.schema([("label", pa.int64()),
                        ("pred_probs", pa.list_(pa.float32(), k))])
    tmp = {key: p + ".tmp" for key, p in files.items()}
    gen_rows = _gen_rows(k)
    rg_lab = np.empty(row_group_rows, np.int64)
    rg_prob = np.empty((row_group_rows, k), np.float32)
    rg_fill = 0
    correct_true = correct_given = flipped = 0

    def flush_row_group(writer, m):
        table = pa.Table.from_arrays(
            [pa.array(rg_lab[:m]),
             pa.FixedSizeListArray.from_arrays(pa.array(rg_prob[:m].reshape(-1)), k)],
            schema=schema)
        writer.write_table(table, row_group_size=m)

    with open(tmp["labels.npy"], "wb") as fl, open(tmp["pred_probs.npy"], "wb") as fp, \
            pq.ParquetWriter(tmp["data.parquet"], schema, compression="snappy",
                             use_dictionary=False) as writer:
        _npy_header(fl, np.int64, (n,))
        _npy_header(fp, np.float32, (n, k))
        for ci, a in enumerate(range(0, n, gen_rows)):
            m = min(gen_rows, n - a)
            true, given, probs = _generate_chunk(a, m, k, boost, ci, n)
            pred = probs.argmax(axis=1)
            correct_true += int((pred == true).sum())
            correct_given += int((pred == given).sum())
            flipped += int((given != true).sum())
            given.tofile(fl)
            probs.tofile(fp)
            off = 0
            while off < m:  # copy into the row-group buffer
                take = min(m - off, row_group_rows - rg_fill)
                rg_lab[rg_fill:rg_fill + take] = given[off:off + take]
                rg_prob[rg_fill:rg_fill + take] = probs[off:off + take]
                rg_fill += take
                off += take
                if rg_fill == row_group_rows:
                    flush_row_group(writer, rg_fill)
                    rg_fill = 0
        if rg_fill:
            flush_row_group(writer, rg_fill)
    for key in files:
        os.replace(tmp[key], files[key])
    meta = dict(want, boost=boost, accuracy_true=correct_true / n,
                accuracy_given=correct_given / n, flipped=flipped / n,
                gen_seconds=round(time.time() - t0, 2),
                bytes={key: os.path.getsize(p) for key, p in files.items()})
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    log(f"[{name}] done in {meta['gen_seconds']} s: model accuracy "
        f"{meta['accuracy_true']:.3f} (vs given labels {meta['accuracy_given']:.3f}), "
        f"{meta['flipped']:.3f} flipped")
    return meta, files


def _free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


# --------------------------------------------------------------------------
# Measuring a process tree.
# --------------------------------------------------------------------------

def run_measured(cmd, cwd, env, log_prefix, timeout, interval=0.02):
    """Run cmd; return wall, CPU (tree) and peak memory (tree) and exit code."""
    import subprocess
    import threading
    import psutil

    load0 = os.getloadavg()[0]
    psi0 = _cpu_pressure_us()
    out = open(log_prefix + ".stdout", "wb")
    err = open(log_prefix + ".stderr", "wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
    stats = {"peak_rss": 0, "peak_anon": 0, "max_procs": 0, "samples": 0}
    cpu_seen = {}
    stop = threading.Event()

    def poll():
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                procs = [root]
            rss = anon = 0
            for p in procs:
                try:
                    with p.oneshot():
                        mi = p.memory_info()
                        ct = p.cpu_times()
                        key = (p.pid, p.create_time())
                except psutil.Error:
                    continue
                rss += mi.rss
                anon += mi.rss - mi.shared
                cpu_seen[key] = ct.user + ct.system  # own time; children_* would double count
            stats["peak_rss"] = max(stats["peak_rss"], rss)
            stats["peak_anon"] = max(stats["peak_anon"], anon)
            stats["max_procs"] = max(stats["max_procs"], len(procs))
            stats["samples"] += 1
            stop.wait(interval)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    timed_out = False
    deadline = time.monotonic() + timeout
    while True:  # wait4 gives the rusage of the child and its reaped descendants
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            timed_out = True
            _kill_tree(proc.pid)
            pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    th.join()
    out.close()
    err.close()
    psi1 = _cpu_pressure_us()
    cpu_rusage = ru.ru_utime + ru.ru_stime
    cpu_polled = sum(cpu_seen.values())
    return {
        "rc": proc.returncode, "timed_out": timed_out,
        "wall_s": wall,
        # rusage misses descendants nobody reaped; polling misses the last
        # interval of each process: take the larger.
        "cpu_s": max(cpu_rusage, cpu_polled),
        "cpu_rusage_s": cpu_rusage, "cpu_polled_s": cpu_polled,
        "peak_mib": stats["peak_rss"] / 2**20,
        "peak_anon_mib": stats["peak_anon"] / 2**20,
        "max_single_rss_mib": ru.ru_maxrss / 1024,
        "max_procs": stats["max_procs"], "samples": stats["samples"],
        # Other work on the machine inflates wall time (not CPU or memory):
        # 1-minute load average at start and end, and the seconds some task
        # waited for a CPU during the run (Linux PSI), if available.
        "loadavg_start": load0, "loadavg_end": os.getloadavg()[0],
        "cpu_wait_s": None if psi0 is None or psi1 is None else (psi1 - psi0) / 1e6,
    }


def _cpu_pressure_us():
    try:
        with open("/proc/pressure/cpu") as f:
            first = f.readline().split()
        return int(dict(x.split("=") for x in first[1:])["total"])
    except (OSError, KeyError, ValueError):
        return None


def _kill_tree(pid):
    import psutil
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def _tail(path, n=1500):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------
# Contenders.
# --------------------------------------------------------------------------

class Contender:
    def __init__(self, key, label, input_kind):
        self.key, self.label, self.input_kind = key, label, input_kind
        self.runs = []
        self.skipped = None   # reason, when this contender cannot run


def _child_cmd(kind, files, out_prefix):
    return [sys.executable, os.path.abspath(__file__), "_child", kind,
            files["labels.npy"], files["pred_probs.npy"], out_prefix]


def _ours_cmd(args, files, input_kind, outdir):
    import shlex
    cmd = [sys.executable, os.path.join("pipelines", "find_label_issues.py")]
    if input_kind == "npy":
        cmd += ["--labels_file", files["labels.npy"], "--pred_probs_file", files["pred_probs.npy"]]
    else:
        cmd += ["--input", os.path.join(os.path.dirname(files["data.parquet"]), "*.parquet")]
    # The job itself, as cleanlab's function does it: no HTML report, no console summary.
    return cmd + ["--output", outdir, "--no_report", "--quiet"] + shlex.split(args.extra_args)


def _read_ours(outdir):
    import glob
    import pyarrow.parquet as pq
    paths = sorted(glob.glob(os.path.join(outdir, "label_issues-*.parquet")))
    if not paths:
        raise RuntimeError(f"no label_issues-*.parquet in {outdir}")
    ranks, ids = [], []
    for p in paths:
        t = pq.read_table(p, columns=["rank", "id"])
        ranks.append(t.column("rank").to_numpy())
        ids.append(t.column("id").to_numpy())
    ranks, ids = np.concatenate(ranks), np.concatenate(ids)
    return ids[np.argsort(ranks, kind="stable")].astype(np.int64)


def _rejected_option(stderr_text):
    """Whether the CLI failed because it does not take --input (Parquet) yet."""
    s = stderr_text.lower()
    unknown = any(m in s for m in ("unrecognized arguments", "no such option",
                                   "unknown option", "not supported"))
    return (unknown and "--input" in s) or (
        "the following arguments are required" in s and "labels_file" in s)


def _cli_takes_input(repo, env):
    """Ask the CLI's --help whether it has an --input option (None: unknown)."""
    import subprocess
    try:
        p = subprocess.run([sys.executable, os.path.join("pipelines", "find_label_issues.py"),
                            "--help"], cwd=repo, env=env, capture_output=True, text=True,
                           timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    return "--input" in p.stdout


# --------------------------------------------------------------------------
# Comparing answers.
# --------------------------------------------------------------------------

def compare(ids, ref, scores_of):
    """ids: an answer in rank order; ref: cleanlab's answer (any order).
    same_set: exact set equality.  same_order_up_to_ties: same set, and the
    ranked scores equal cleanlab's scores sorted, i.e. the orders differ at
    most among equal scores (cleanlab's argsort is not stable).
    ties_by_id: within equal scores, ids ascend (our determinism rule)."""
    ids = np.asarray(ids, np.int64)
    ref = np.asarray(ref, np.int64)
    res = {"num_issues": int(len(ids)), "num_cleanlab": int(len(ref)),
           "duplicates": int(len(ids) - len(np.unique(ids)))}
    a, b = np.unique(ids), np.unique(ref)
    same_set = res["duplicates"] == 0 and len(a) == len(b) and bool(np.array_equal(a, b))
    res["same_set"] = same_set
    only_ours = np.setdiff1d(a, b)
    only_cl = np.setdiff1d(b, a)
    res["only_ours"] = int(len(only_ours))
    res["only_cleanlab"] = int(len(only_cl))
    s = scores_of(ids)
    s_ref = np.sort(scores_of(ref), kind="stable")
    res["sorted_by_score"] = bool(np.all(s[1:] >= s[:-1])) if len(s) > 1 else True
    res["same_order_up_to_ties"] = bool(same_set and len(s) == len(s_ref)
                                        and np.array_equal(s, s_ref))
    if len(s) > 1:
        eq = s[1:] == s[:-1]
        res["tied_pairs"] = int(eq.sum())
        res["ties_by_id"] = bool(np.all(ids[1:][eq] > ids[:-1][eq]))
    else:
        res["tied_pairs"], res["ties_by_id"] = 0, True
    if not same_set and (len(only_ours) or len(only_cl)):
        diff_scores = np.unique(scores_of(np.concatenate([only_ours, only_cl])))
        res["differing_scores"] = [float(x) for x in diff_scores[:5]]
        # cleanlab cuts the n lowest with an unstable argsort: rows tied at the
        # cut-off score may legitimately be swapped.
        res["differs_only_at_cutoff_tie"] = bool(
            len(diff_scores) == 1 and len(only_ours) == len(only_cl))
    return res


def _score_lookup(files):
    labels = np.load(files["labels.npy"], mmap_mode="r")
    probs = np.load(files["pred_probs.npy"], mmap_mode="r")

    def scores_of(ids):
        ids = np.asarray(ids, np.int64)
        if len(ids) == 0:
            return np.zeros(0, probs.dtype)
        order = np.argsort(ids, kind="stable")
        s = np.empty(len(ids), probs.dtype)
        srt = ids[order]
        s[order] = probs[srt, np.asarray(labels[srt], np.int64)]
        return s
    return scores_of


# --------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------

def machine_info():
    import datetime
    import platform
    import psutil
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__}
    from importlib import metadata
    for dist, key in (("apache-beam", "beam"), ("cleanlab", "cleanlab"), ("pyarrow", "pyarrow"),
                      ("psutil", "psutil")):
        try:
            info[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[key] = "not installed"
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f
                               if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def _median(runs, key):
    vals = [r[key] for r in runs if r.get("ok")]
    return float(np.median(vals)) if vals else None


def summarize(c):
    if not c.runs or not any(r.get("ok") for r in c.runs):
        return None
    return {k: _median(c.runs, k) for k in
            ("wall_s", "cpu_s", "peak_mib", "peak_anon_mib", "inner_s")
            if any(k in r for r in c.runs)}


def fmt(v, spec="{:.2f}"):
    return "-" if v is None else spec.format(v)


def print_table(name, n, k, input_kind, rows, agreements, repeats, busy=None, out=print):
    out("")
    out(f"== {name} ({n:,} x {k}), input {input_kind}, median of {repeats} ==")
    out(f"{'':16}{'wall s':>9}{'CPU s':>9}{'peak MiB':>10}{'anon MiB':>10}{'issues':>10}")
    for label, med, issues, note in rows:
        if med is None:
            out(f"{label:16}{note}")
            continue
        out(f"{label:16}{fmt(med.get('wall_s')):>9}{fmt(med.get('cpu_s')):>9}"
            f"{fmt(med.get('peak_mib'), '{:.0f}'):>10}{fmt(med.get('peak_anon_mib'), '{:.0f}'):>10}"
            f"{fmt(issues, '{:,}'):>10}{note}")
    meds = {label: med for label, med, _, _ in rows}
    ours = next((m for lbl, m in meds.items() if lbl.startswith("ours")), None)
    cl, npy = meds.get("cleanlab"), meds.get("numpy")
    if ours and cl:
        out(f"{'ours/cleanlab':16}{ours['wall_s'] / cl['wall_s']:>8.2f}x{'':9}"
            f"{ours['peak_mib'] / cl['peak_mib']:>9.2f}x")
    if ours and npy:
        out(f"{'ours/numpy':16}{ours['wall_s'] / npy['wall_s']:>8.2f}x")
    if busy:
        out(f"  warning: the machine was busy (1-min load average up to {busy:.1f} on "
            f"{os.cpu_count()} CPUs): wall times are inflated; CPU s and memory are not")
    for who, agr in agreements:
        if agr is None:
            continue
        extra = ""
        if not agr["same_set"]:
            extra = (f" (only {who}: {agr['only_ours']}, only cleanlab: {agr['only_cleanlab']}"
                     + (", all tied at the cut-off score" if agr.get("differs_only_at_cutoff_tie")
                        else "") + ")")
        out(f"  {who} vs cleanlab: same set: {'yes' if agr['same_set'] else 'NO'}{extra}; "
            f"same order up to ties: {'yes' if agr['same_order_up_to_ties'] else 'NO'}"
            f" ({agr['tied_pairs']} tied neighbours, ties by id: "
            f"{'yes' if agr['ties_by_id'] else 'no'})")


def main(argv=None):
    import argparse
    import shutil
    import tempfile

    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=DEFAULT_DATASETS,
                    help=f"comma-separated NxK names (default {DEFAULT_DATASETS})")
    ap.add_argument("--repeats", type=int, default=3, help="runs per contender; median reported")
    ap.add_argument("--inputs", default="npy,parquet", help="inputs for our CLI: npy,parquet")
    ap.add_argument("--json", default=os.path.join(here, "results.json"), help="results file")
    ap.add_argument("--data_dir", default=os.path.join(here, "data"))
    ap.add_argument("--extra_args", default="", help="extra arguments for our CLI (runner settings)")
    ap.add_argument("--skip_cleanlab", action="store_true",
                    help="do not run cleanlab; the numpy loop's answer is the reference")
    ap.add_argument("--skip_numpy", action="store_true")
    ap.add_argument("--skip_ours", action="store_true")
    ap.add_argument("--row_group_rows", type=int, default=65536, help="Parquet row-group rows")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    ap.add_argument("--keep_outputs", action="store_true", help="keep run outputs and logs")
    args = ap.parse_args(argv)

    inputs = [s.strip() for s in args.inputs.split(",") if s.strip()]
    for s in inputs:
        if s not in ("npy", "parquet"):
            raise SystemExit(f"--inputs: unknown input {s!r}")
    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    for s in names:
        parse_dataset(s)
    os.makedirs(args.data_dir, exist_ok=True)
    cli = os.path.join(repo, "pipelines", "find_label_issues.py")
    have_cli = os.path.exists(cli)
    env = dict(os.environ)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONHASHSEED", "0")

    results = {"machine": machine_info(),
               "config": {"datasets": names, "repeats": args.repeats, "inputs": inputs,
                          "extra_args": args.extra_args, "skip_cleanlab": args.skip_cleanlab,
                          "cleanlab_call": "find_label_issues_batched(labels_file=..., "
                          "pred_probs_file=..., batch_size=10000, n_jobs=1, verbose=False)",
                          "poll_interval_s": 0.02, "generator_version": GENERATOR_VERSION},
               "datasets": {}}
    m = results["machine"]
    print(f"machine: {m['nproc']} CPUs, {m['memory_gib']} GiB, python {m['python']}, "
          f"numpy {m['numpy']}, beam {m['beam']}, cleanlab {m['cleanlab']}")
    if not have_cli and not args.skip_ours:
        print(f"note: {os.path.relpath(cli, repo)} not found: our CLI is skipped")
    parquet_skip = None
    if have_cli and not args.skip_ours and "parquet" in inputs:
        if _cli_takes_input(repo, env) is False:
            parquet_skip = "our CLI does not accept Parquet input (--input) yet"
            print(f"note: {parquet_skip}: Parquet runs skipped")

    for name in names:
        meta, files = ensure_dataset(args.data_dir, name, args.row_group_rows)
        n, k = meta["n"], meta["k"]
        contenders = []
        if not args.skip_cleanlab:
            contenders.append(Contender("cleanlab", "cleanlab", "npy"))
        if not args.skip_numpy:
            contenders.append(Contender("numpy", "numpy", "npy"))
        ours = {}
        if not args.skip_ours:
            for inp in inputs:
                c = Contender(f"ours_{inp}", f"ours ({inp})", inp)
                if not have_cli:
                    c.skipped = "CLI pipelines/find_label_issues.py not found"
                elif inp == "parquet" and parquet_skip:
                    c.skipped = parquet_skip
                ours[inp] = c
                contenders.append(c)
        answers = {}   # key -> answer of the first successful run
        work = tempfile.mkdtemp(prefix=f"bench-{name}-")
        try:
            for rep in range(args.repeats):
                shift = rep % len(contenders) if contenders else 0
                order = contenders[shift:] + contenders[:shift]
                for c in order:
                    if c.skipped:
                        continue
                    prefix = os.path.join(work, f"{c.key}-{rep}")
                    if c.key in ("cleanlab", "numpy"):
                        cmd = _child_cmd(c.key, files, prefix)
                    else:
                        outdir = prefix + "-out"
                        cmd = _ours_cmd(args, files, c.input_kind, outdir)
                    print(f"[{name}] repeat {rep + 1}/{args.repeats}: {c.label} ...",
                          end=" ", flush=True)
                    r = run_measured(cmd, repo, env, prefix, args.timeout)
                    r["repeat"] = rep
                    if r["rc"] != 0:
                        stderr = _tail(prefix + ".stderr", 4000)
                        r["ok"] = False
                        r["stderr_tail"] = stderr[-1500:]
                        if c.input_kind == "parquet" and _rejected_option(stderr):
                            c.skipped = "our CLI does not accept Parquet input (--input) yet"
                            print(f"skipped: {c.skipped}")
                        else:
                            what = "timed out" if r["timed_out"] else f"failed (rc {r['rc']})"
                            print(f"{what}:\n{stderr[-1500:]}")
                        c.runs.append(r)
                        continue
                    try:
                        if c.key in ("cleanlab", "numpy"):
                            ans = np.load(prefix + ".npy")
                            with open(prefix + ".json") as f:
                                child = json.load(f)
                            r["inner_s"] = child.pop("inner_s")
                            r["child"] = {key: v for key, v in child.items() if key != "thresholds"}
                        else:
                            ans = _read_ours(outdir)
                    except Exception as e:  # noqa: BLE001 - a broken output is a result
                        r["ok"] = False
                        r["error"] = f"{type(e).__name__}: {e}"
                        print(f"bad output: {r['error']}")
                        c.runs.append(r)
                        continue
                    r["ok"] = True
                    r["num_issues"] = int(len(ans))
                    if c.key in answers:
                        prev = answers[c.key]
                        r["same_as_first_run"] = bool(np.array_equal(np.sort(prev), np.sort(ans)))
                    else:
                        answers[c.key] = ans
                    c.runs.append(r)
                    print(f"{r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU, "
                          f"{r['peak_mib']:.0f} MiB peak, {len(ans):,} issues")
                    if not args.keep_outputs:
                        for suffix in (".npy", ".json"):
                            if os.path.exists(prefix + suffix):
                                os.remove(prefix + suffix)
                        if c.key.startswith("ours"):
                            shutil.rmtree(outdir, ignore_errors=True)
        finally:
            if not args.keep_outputs:
                shutil.rmtree(work, ignore_errors=True)
            else:
                print(f"[{name}] outputs and logs kept in {work}")

        # Agreement with cleanlab (or with numpy when cleanlab is skipped).
        scores_of = _score_lookup(files)
        ref_key = "cleanlab" if "cleanlab" in answers else "numpy"
        ref = answers.get(ref_key)
        agreements = {}
        if ref is not None:
            for key, ans in answers.items():
                if key == ref_key:
                    continue
                agreements[key] = compare(ans, ref, scores_of)
                agreements[key]["reference"] = ref_key
        ds = {"n": n, "k": k, "meta": meta, "reference": ref_key if ref is not None else None,
              "contenders": {}, "agreement": agreements}
        for c in contenders:
            ds["contenders"][c.key] = {"input": c.input_kind, "skipped": c.skipped,
                                       "median": summarize(c), "runs": c.runs}
        results["datasets"][name] = ds

        base = [c for c in contenders if c.key in ("cleanlab", "numpy")]
        show_inputs = [inp for inp in inputs if inp in ours and have_cli] or ["npy"]
        for inp in show_inputs:
            rows = []
            c = ours.get(inp)
            if c is not None and c.skipped and inp != show_inputs[0]:
                print(f"\n== {name}, input {inp}: skipped: {c.skipped} ==")
                continue
            if c is not None:
                note = "" if not c.skipped else f"skipped: {c.skipped}"
                med = summarize(c)
                if med is None and not note:
                    note = "failed (see JSON for stderr)"
                rows.append((c.label, med, c.runs[-1].get("num_issues") if c.runs else None, note))
            for b in base:
                med = summarize(b)
                note = "" if inp == "npy" else "  (.npy files)"
                rows.append((b.label, med, b.runs[-1].get("num_issues") if b.runs else None,
                             note if med else "failed (see JSON for stderr)"))
            agr = []
            if c is not None and c.key in agreements:
                agr.append((c.label, agreements[c.key]))
            if "numpy" in agreements and inp == show_inputs[0]:
                agr.append(("numpy", agreements["numpy"]))
            loads = [r["loadavg_start"] for c in contenders for r in c.runs]
            # our own runs put up to ~1 process per CPU on the machine
            busy = max(loads) if loads and max(loads) > 1.5 * os.cpu_count() else None
            print_table(name, n, k, inp, rows, agr, args.repeats, busy)
        print("")
        _write_json(args.json, results)
    print(f"results written to {args.json}")
    return 0


def _write_json(path, results):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind, labels_file, pred_probs_file, out_prefix = sys.argv[2:6]
        {"cleanlab": _child_cleanlab, "numpy": _child_numpy}[kind](
            labels_file, pred_probs_file, out_prefix)
        sys.exit(0)
    sys.exit(main())
