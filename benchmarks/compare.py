"""Comparing an answer (issue ids in rank order) with a reference answer.

Scores are cleanlab's default label quality score, self-confidence
(``pred_probs[i, label_i]``), looked up in the dataset's .npy files.
"""

import numpy as np


def compare(ids, ref, scores_of):
    """ids: an answer in rank order; ref: cleanlab's answer (any order).
    same_set: exact set equality.  same_order_up_to_ties: same set, and the
    ranked scores equal cleanlab's scores sorted, i.e. the orders differ at
    most among equal scores (cleanlab's argsort is not stable).
    ties_by_id: within equal scores, ids ascend (our determinism rule).

    The keys say "cleanlab" for the reference, whichever it is (the caller
    records which in "reference")."""
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


def score_lookup(files):
    """A function of issue ids -> their self-confidence scores, from the .npy files."""
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
