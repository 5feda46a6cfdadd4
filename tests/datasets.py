"""Generated classification datasets written as real .npy files."""

from __future__ import annotations

import dataclasses
import os

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    num_examples: int
    num_classes: int
    prob_dtype: str = "float32"
    label_dtype: str = "int64"
    noise: float = 0.1
    seed: int = 0
    accuracy_boost: float = 2.0
    quantize: int = 0  # round probabilities to multiples of 1/quantize: many tied scores

    @property
    def name(self) -> str:
        return (f"n{self.num_examples}-k{self.num_classes}-{self.prob_dtype}-{self.label_dtype}"
                f"-noise{self.noise}-s{self.seed}" + (f"-q{self.quantize}" if self.quantize else ""))


def make_dataset(spec: DatasetSpec):
    """Softmax of random logits with the true class boosted; ``noise`` of labels flipped."""
    rng = np.random.default_rng(spec.seed)
    n, k = spec.num_examples, spec.num_classes
    truth = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), truth] += spec.accuracy_boost + rng.exponential(1.0, size=n)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    if spec.quantize:
        probs = np.round(probs * spec.quantize) / spec.quantize
    labels = truth.copy()
    flip = rng.random(n) < spec.noise
    labels[flip] = (truth[flip] + rng.integers(1, k, size=int(flip.sum()))) % k
    return labels.astype(spec.label_dtype), probs.astype(spec.prob_dtype)


def write_npy(directory: str, labels: np.ndarray, pred_probs: np.ndarray, **save_kwargs):
    os.makedirs(directory, exist_ok=True)
    labels_path = os.path.join(directory, "labels.npy")
    probs_path = os.path.join(directory, "pred_probs.npy")
    np.save(labels_path, labels)
    np.save(probs_path, pred_probs, **save_kwargs)
    return labels_path, probs_path
