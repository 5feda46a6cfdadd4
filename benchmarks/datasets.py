"""Synthetic datasets: their NxK names and their generation into DATA_DIR/NAME/.

Each dataset is float32 predictions from fixed seeds (a softmax of random normal
logits with the true class boosted so the model is ACCURACY accurate) with
FLIP_FRACTION of the given labels flipped to another class, written once as
``labels.npy`` + ``pred_probs.npy`` and as ``data.parquet``, and reused until
GENERATOR_VERSION or the row-group size changes.
"""

import json
import os
import re
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# Bump when the generated data would change (logits, seeds, chunking, layout).
GENERATOR_VERSION = 2
GEN_SEED = 20240517
ACCURACY = 0.88        # P(argmax == true class)
FLIP_FRACTION = 0.10   # share of given labels flipped to another class
DEFAULT_DATASETS = ("1Mx10", "1Mx100", "10Mx10", "200kx1000")
# Known but not run by default: 100Mx10 takes ~9 GiB of disk (.npy + Parquet).
OPTIONAL_DATASETS = ("100Mx10",)
FILES = ("labels.npy", "pred_probs.npy", "data.parquet")

_NAME = re.compile(r"(\d+(?:\.\d+)?)([kKmMbB]?)x(\d+)")


def parse_dataset(name):
    """(N, K) of a name such as 1Mx10, 200kx1000 or 50kx5."""
    m = _NAME.fullmatch(name.strip())
    if not m:
        raise SystemExit(f"bad dataset name {name!r}; expected e.g. 1Mx10, 200kx1000")
    mult = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9}[m.group(2).lower()]
    n, k = int(round(float(m.group(1)) * mult)), int(m.group(3))
    if n < 1 or k < 2:
        raise SystemExit(f"dataset {name!r}: need at least 1 row and 2 classes")
    return n, k


def expand_names(text):
    """The dataset names of a --datasets value: NxK names, 'default' for the
    defaults, 'optional' for the optional ones; 'none' or '' for none."""
    names = []
    for part in (s.strip() for s in text.split(",")):
        if not part or part == "none":
            continue
        group = {"default": DEFAULT_DATASETS, "optional": OPTIONAL_DATASETS}.get(part, (part,))
        for name in group:
            parse_dataset(name)
            if name not in names:
                names.append(name)
    return names


def display_name(name):
    """'1Mx10' -> '1M x 10', as the README's table writes it."""
    m = _NAME.fullmatch(name.strip())
    return f"{m.group(1)}{m.group(2)} x {m.group(3)}" if m else name


def disk_bytes(n, k):
    """About what a dataset takes on disk: .npy pair plus Parquet, int64 labels, float32 probabilities."""
    return n * (8 + 4 * k) * 2


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
    """Generate (or reuse) DATA_DIR/NAME/{labels.npy,pred_probs.npy,data.parquet}.

    Returns (meta, files): the generator metadata (with the accuracy reached and
    the share of flipped labels) and the three paths by file name.
    """
    n, k = parse_dataset(name)
    d = os.path.join(data_dir, name)
    meta_path = os.path.join(d, "meta.json")
    want = {"generator_version": GENERATOR_VERSION, "n": n, "k": k,
            "seed": GEN_SEED, "row_group_rows": row_group_rows}
    files = {f: os.path.join(d, f) for f in FILES}
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if all(meta.get(key) == v for key, v in want.items()) and all(
                os.path.exists(p) for p in files.values()):
            return meta, files
        log(f"[{name}] stale data (generator or layout changed): regenerating")
        os.remove(meta_path)
    os.makedirs(d, exist_ok=True)
    need = disk_bytes(n, k)
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
