"""Shared fixtures: where the real data lives, and the repository root."""

from __future__ import annotations

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

# The shared data folder sits beside the checkout (as in CI); override with LABEL_ERRORS_DIR.
LABEL_ERRORS_DIR = os.environ.get(
    "LABEL_ERRORS_DIR", os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "label-errors")
)


@pytest.fixture(scope="session")
def label_errors_dir():
    if not os.path.isdir(LABEL_ERRORS_DIR):
        pytest.fail(f"the real label-errors data is missing: {LABEL_ERRORS_DIR} (set LABEL_ERRORS_DIR)")
    return LABEL_ERRORS_DIR
