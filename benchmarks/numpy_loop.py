"""A plain two-pass numpy loop over mmap'd .npy files: cleanlab's default batched
method (self_confidence, off_diagonal), the "practical limit" of a single-process
implementation. It must give cleanlab's answer.

Imports numpy only: it runs in the child process (``child.py``).
"""

import numpy as np

FLOATING_POINT_COMPARISON = 1e-6   # cleanlab.internal.constants
THRESHOLD_LOWER_BOUND = 2e-6       # CONFIDENT_THRESHOLDS_LOWER_BOUND
NUMPY_BATCH_BYTES = 16 << 20       # pred_probs bytes per batch in the numpy loop


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
