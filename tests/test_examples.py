"""One element per example: dicts, schema'd Rows, NamedTuples, RunInference's
PredictionResult (plain and keyed) through ``FindLabelIssuesInExamples``, each
against cleanlab; invalid examples through the one validation rule; and the
checks made when the pipeline is built.

One pipeline holds every parity run (Beam's start-up is paid once).
"""

from __future__ import annotations

import typing

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.ml.inference.base import PredictionResult

from datasets import DatasetSpec, make_dataset
from harness import read_output_dir
from oracle import assert_matches, cleanlab_expected

from beam_labelissues import (
    ExampleBatch,
    ExamplesToBatches,
    FindLabelIssues,
    FindLabelIssuesInExamples,
    WriteLabelIssues,
)
from beam_labelissues.examples import elements_to_batch

SPEC = DatasetSpec(1200, 4, "float32", "int64", noise=0.15, seed=8)
NAMES = ("cat", "dog", "bird", "fish")


class Prediction(typing.NamedTuple):
    key: str
    target: int
    scores: typing.List[float]


def _string_id(i):
    return f"img-{i:05d}"


def _inputs(labels, probs):
    """Each kind of per-example element, with the transform that reads it."""
    n = len(labels)
    rows = range(n)
    return {
        # dicts: Beam knows only Dict[str, Union[...]], so the id type comes from id_type.
        "dicts": (
            [{"id": i, "label": int(labels[i]), "pred_probs": probs[i].tolist()} for i in rows],
            dict(id_field="id"),
        ),
        # schema'd Rows with string ids: the id type is inferred from the schema.
        "rows": (
            [beam.Row(image=_string_id(i), label=int(labels[i]), pred_probs=probs[i].tolist()) for i in rows],
            dict(id_field="image"),
        ),
        "named_tuples": (
            [Prediction(_string_id(i), int(labels[i]), probs[i].tolist()) for i in rows],
            dict(id_field="key", label_field="target", pred_probs_field="scores"),
        ),
        # RunInference without a key: id and label live in the example (a dict), probabilities
        # (a float32 numpy row, as models give them) in the inference.
        "prediction_results": (
            [PredictionResult({"id": i, "label": int(labels[i])}, probs[i], "model-1") for i in rows],
            dict(id_field="id"),
        ),
        # RunInference with a KeyedModelHandler: the key carries the id, the label is a class name.
        "keyed_predictions": (
            [({"uid": _string_id(i), "label": NAMES[labels[i]]}, PredictionResult(np.zeros(2), probs[i]))
             for i in rows],
            dict(id_field="uid", class_names=NAMES, id_type=pa.string()),
        ),
        # A function as a field: the label as the key, as Beam's own sklearn example keys it.
        "label_as_key": (
            [(int(labels[i]), PredictionResult(i, probs[i])) for i in rows],
            dict(id_field=lambda element: element[1].example, label_field="key"),
        ),
    }


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    base = tmp_path_factory.mktemp("examples")
    labels, probs = make_dataset(SPEC)
    inputs = _inputs(labels, probs)
    results = {}
    pipeline = beam.Pipeline(runner="FnApiRunner")
    for name, (elements, kwargs) in inputs.items():
        examples = pipeline | f"Create{name}" >> beam.Create(elements, reshuffle=False)
        result = examples | f"Find{name}" >> FindLabelIssuesInExamples(
            SPEC.num_classes, with_scores=True, max_issues_per_worker=40, batch_size=100, **kwargs
        )
        results[name] = result
        result | f"Write{name}" >> WriteLabelIssues(str(base / name))
    pipeline.run().wait_until_finish()
    return dict(expected=cleanlab_expected(labels, probs), base=base, results=results, n=len(labels))


def test_every_kind_of_example_matches_cleanlab(parity):
    """One test for all kinds: they share one pipeline, which xdist must not run twice."""
    lookup = {_string_id(i): i for i in range(parity["n"])}
    failures = {}
    for name, result in parity["results"].items():
        out = read_output_dir(str(parity["base"] / name))
        issues, scores = dict(out["issues"]), dict(out["scores"])
        if pa.types.is_string(result.id_type):
            issues["id"] = [lookup[v] for v in issues["id"]]
            scores["id"] = [lookup[v] for v in scores["id"]]
        try:
            assert_matches(parity["expected"], issues, out["summary"], scores)
        except AssertionError as error:
            failures[name] = str(error)
    assert not failures, failures
    id_types = {name: str(result.id_type) for name, result in parity["results"].items()}
    assert id_types == {
        "dicts": "int64",
        "rows": "string",
        "named_tuples": "string",
        "prediction_results": "int64",
        "keyed_predictions": "string",
        "label_as_key": "int64",
    }
    keyed = read_output_dir(str(parity["base"] / "keyed_predictions"))
    assert keyed["summary"]["class_names"] == list(NAMES)
    issues = keyed["issues"]
    assert [NAMES[k] for k in issues["given_label"]] == issues["given_label_name"]


def test_invalid_examples_go_through_the_one_validation_rule(tmp_path):
    probs = [0.2, 0.3, 0.5]
    elements = [
        {"id": 0, "label": "dog", "pred_probs": probs},
        {"id": 1, "label": "cow", "pred_probs": probs},
        {"id": 2, "label": None, "pred_probs": probs},
        {"id": 3, "pred_probs": probs},
        {"id": 4, "label": "cat", "pred_probs": [0.5, 0.5]},
        {"id": 5, "label": "cat", "pred_probs": [0.5, None, 0.5]},
        {"id": 6, "label": "cat", "pred_probs": [0.5, 0.7, -0.2]},
        {"id": None, "label": "cat", "pred_probs": probs},
        {"id": 8, "label": "bird", "pred_probs": np.array([0.1, 0.1, 0.8], np.float32)},
        {"id": 9, "label": 2.0, "pred_probs": probs},
        {"id": 10, "label": 1.5, "pred_probs": probs},
    ]
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        result = pipeline | beam.Create(elements, reshuffle=False) | FindLabelIssuesInExamples(
            id_field="id", class_names=["cat", "dog", "bird"], on_invalid="skip"
        )
        result | WriteLabelIssues(str(tmp_path / "out"))
    out = read_output_dir(str(tmp_path / "out"))
    reasons = {record["id"]: record["reason"] for record in out["invalid"]}
    assert reasons == {
        1: "label 'cow' is not one of the class names",
        2: "label is null",
        3: "the example has no label field 'label'",
        4: "pred_probs has 2 values, expected 3",
        5: "pred_probs[1] is null",
        6: "pred_probs[2] = -0.2 is outside [0, 1] by more than the tolerance 0.0001",
        None: "id is null",
        10: "label 1.5 is not a class index",
    }
    assert out["summary"]["num_examples"] == 3 and out["summary"]["num_invalid_records"] == 8
    assert out["summary"]["examples_per_class"] == [0, 1, 2]


def test_a_batch_is_shaped_with_numpy_and_keeps_float32():
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=5).astype(np.float32)
    elements = [PredictionResult(np.zeros(4), probs[i]) for i in range(5)]
    keyed = [({"id": 10 + i, "label": i % 3}, element) for i, element in enumerate(elements)]
    batch = elements_to_batch(keyed, num_classes=3, id_field="id")
    assert isinstance(batch, ExampleBatch) and not batch.malformed
    assert batch.ids.tolist() == [10, 11, 12, 13, 14] and batch.ids.dtype == np.int64
    assert batch.labels.tolist() == [0, 1, 2, 0, 1]
    assert batch.pred_probs.dtype == np.float32
    np.testing.assert_array_equal(batch.pred_probs, probs)
    big = elements_to_batch([{"id": 2**63, "label": 0, "pred_probs": [1.0, 0.0]}], num_classes=2, id_field="id")
    assert big.malformed[0].reason == f"id {2**63} does not fit in int64" and len(big) == 0


@pytest.mark.parametrize(
    "elements, kwargs, message",
    [
        ([{"id": "a", "label": 0, "pred_probs": [1.0, 0.0]}], {}, "pass id_type=pa.string() for string ids"),
        ([{"id": 1, "label": 0, "pred_probs": [1.0, 0.0]}], dict(id_type=pa.string()),
         "pass id_type=pa.int64() for integer ids"),
        ([{"id": 1.5, "label": 0, "pred_probs": [1.0, 0.0]}], {}, "ids must be integers or strings"),
        ([{"id": 1, "label": "cat", "pred_probs": [1.0, 0.0]}], {}, "give class_names to map label names"),
        ([{"id": 1, "label": 0, "pred_probs": "0.5,0.5"}], {}, "pred_probs must be a sequence of numbers"),
        ([{"id": 1, "label": 0, "pred_probs": [[1.0, 0.0]]}], {}, "must be a 1-D sequence of 2 probabilities"),
    ],
)
def test_a_field_that_can_never_fit_stops_at_the_first_batch(elements, kwargs, message):
    settings = dict(num_classes=2, id_field="id", id_type=pa.int64())
    settings.update(kwargs)
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        elements_to_batch(elements, **settings)


def test_wrong_inputs_fail_when_the_pipeline_is_built():
    pipeline = beam.Pipeline(runner="FnApiRunner")
    rows = pipeline | "Rows" >> beam.Create([beam.Row(id="a", label=0, pred_probs=[0.5, 0.5])])
    with pytest.raises(TypeError, match="FindLabelIssues takes a PCollection of ExampleBatch.*FindLabelIssuesInExamples"):
        rows | "Direct" >> FindLabelIssues(2)
    with pytest.raises(TypeError, match="no id field 'example_id'; their fields: id, label, pred_probs"):
        rows | "NoSuchField" >> FindLabelIssuesInExamples(2, id_field="example_id")
    with pytest.raises(TypeError, match="id field holds string ids, but id_type is int64"):
        rows | "WrongIdType" >> FindLabelIssuesInExamples(2, id_field="id", id_type=pa.int64())
    named = pipeline | "Named" >> beam.Create([beam.Row(id=1, label="cat", pred_probs=[0.5, 0.5])])
    with pytest.raises(TypeError, match="label field 'label' holds strings; give class_names"):
        named | "NoClassNames" >> FindLabelIssuesInExamples(2, id_field="id")
    batches = pipeline | "Batches" >> beam.Create(
        [ExampleBatch(np.arange(2), np.zeros(2, int), np.full((2, 2), 0.5))])
    with pytest.raises(TypeError, match="holds ExampleBatch .*apply FindLabelIssues to it directly"):
        batches | "Batched" >> FindLabelIssuesInExamples(2, id_field="id")
    numbers = pipeline | "Numbers" >> beam.Create([1, 2, 3])
    with pytest.raises(TypeError, match="got elements of type int"):
        numbers | "Ints" >> ExamplesToBatches(2, id_field="id")
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'id_field'"):
        FindLabelIssuesInExamples(2)  # pylint: disable=missing-kwoa
    with pytest.raises(ValueError, match="got 2 class names for 3 classes"):
        ExamplesToBatches(3, id_field="id", class_names=["a", "b"])


def test_example_batches_with_ids_of_the_other_kind_stop_at_validation():
    """Hand-built ExampleBatch elements with string ids and the default id type fail at the
    first batch with the fix, not at the ranking step."""
    batch = ExampleBatch(np.array(["a", "b"], dtype=object), np.array([0, 1]), np.full((2, 2), 0.5))
    with pytest.raises(Exception, match=r"ids are not integers \('a', \.\.\.\), but id_type is int64: pass "
                                        r"id_type=pa\.string\(\)") as raised:
        with beam.Pipeline(runner="FnApiRunner") as pipeline:
            pipeline | beam.Create([batch]) | FindLabelIssues(2)
    assert "ValidateForThresholds" in str(raised.value)
