"""Shared fixtures: the real predictions of the "pervasive label errors" study.

MNIST is the package's demo data (beam_labelissues/demo_data); CIFAR-10 ships in
tests/data/label_errors. Both are in the repository: the suite needs nothing beside it.
"""

from __future__ import annotations

import os

import pytest

from beam_labelissues import demo

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
CIFAR10_DIR = os.path.join(TESTS_DIR, "data", "label_errors")


def real_dataset_paths(name: str) -> dict:
    """labels, pred_probs and human review paths of ``mnist`` or ``cifar10``."""
    if name == "mnist":
        return {"labels": demo.DEMO_LABELS, "pred_probs": demo.DEMO_PRED_PROBS, "review": demo.DEMO_HUMAN_REVIEW}
    return {
        "labels": os.path.join(CIFAR10_DIR, f"{name}_test_set_labels.npy"),
        "pred_probs": os.path.join(CIFAR10_DIR, f"{name}_test_set_pred_probs.npy"),
        "review": os.path.join(CIFAR10_DIR, f"{name}_mturk.json"),
    }


@pytest.fixture(params=["mnist", "cifar10"])
def real_dataset(request):
    """The real labels and cross-validated predictions of MNIST and CIFAR-10 (10,000 x 10 each)."""
    return request.param, real_dataset_paths(request.param)
