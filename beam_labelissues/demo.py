"""The bundled demo data: real MNIST test-set predictions and their human review.

From the "pervasive label errors" study (Northcutt, Athalye and Mueller, 2021),
Apache-2.0; see demo_data/LICENSE and demo_data/NOTICE.
"""

from __future__ import annotations

import os

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_data")
DEMO_LABELS = os.path.join(DEMO_DIR, "mnist_test_set_labels.npy")
DEMO_PRED_PROBS = os.path.join(DEMO_DIR, "mnist_test_set_pred_probs.npy")
DEMO_HUMAN_REVIEW = os.path.join(DEMO_DIR, "mnist_mturk.json")
