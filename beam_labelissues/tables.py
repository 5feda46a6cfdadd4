"""Arrow schemas and tables of the outputs: the contract other tools read."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pyarrow as pa

from beam_labelissues.batches import IssueCandidates


def numpy_id_dtype(id_type: pa.DataType) -> Any:
    """The numpy dtype that holds ids of the Arrow type ``id_type``: int64, or object for strings."""
    return np.int64 if pa.types.is_integer(id_type) else object


def label_issues_schema(id_type: pa.DataType, with_names: bool = False) -> pa.Schema:
    """``label_issues-*.parquet``: one row per issue, ``rank`` 0 the most severe, with the
    probabilities the model gave the given and the predicted class."""
    fields = [
        pa.field("rank", pa.int64(), nullable=False),
        pa.field("id", id_type, nullable=False),
        pa.field("given_label", pa.int64(), nullable=False),
        pa.field("predicted_label", pa.int64(), nullable=False),
        pa.field("label_quality", pa.float64(), nullable=False),
        pa.field("given_label_prob", pa.float64(), nullable=False),
        pa.field("predicted_label_prob", pa.float64(), nullable=False),
    ]
    if with_names:
        fields += [pa.field("given_label_name", pa.string()), pa.field("predicted_label_name", pa.string())]
    return pa.schema(fields)


def label_quality_scores_schema(id_type: pa.DataType, with_names: bool = False) -> pa.Schema:
    """``label_quality_scores-*.parquet``: every example's score and issue flag."""
    fields = [
        pa.field("id", id_type, nullable=False),
        pa.field("given_label", pa.int64(), nullable=False),
        pa.field("predicted_label", pa.int64(), nullable=False),
        pa.field("label_quality", pa.float64(), nullable=False),
        pa.field("is_label_issue", pa.bool_(), nullable=False),
    ]
    if with_names:
        fields += [pa.field("given_label_name", pa.string()), pa.field("predicted_label_name", pa.string())]
    return pa.schema(fields)


def _names(labels: np.ndarray, class_names: Sequence[str]) -> pa.Array:
    return pa.array(np.asarray(class_names, dtype=object)[labels], type=pa.string())


def label_issues_table(
    ranked: IssueCandidates,
    id_type: pa.DataType,
    class_names: Optional[Sequence[str]] = None,
    first_rank: int = 0,
) -> pa.Table:
    """The issues, already in rank order, as a table with a ``rank`` column from ``first_rank``."""
    columns = [
        pa.array(np.arange(first_rank, first_rank + len(ranked), dtype=np.int64)),
        pa.array(ranked.ids, type=id_type),
        pa.array(ranked.given.astype(np.int64)),
        pa.array(ranked.predicted.astype(np.int64)),
        pa.array(ranked.scores.astype(np.float64)),
        pa.array(ranked.given_prob.astype(np.float64)),
        pa.array(ranked.predicted_prob.astype(np.float64)),
    ]
    if class_names is not None:
        columns += [_names(ranked.given, class_names), _names(ranked.predicted, class_names)]
    return pa.Table.from_arrays(columns, schema=label_issues_schema(id_type, class_names is not None))


def empty_label_issues_table(id_type: pa.DataType, class_names: Optional[Sequence[str]] = None) -> pa.Table:
    """A label_issues table with no rows: the file a run with no valid example still writes."""
    return label_issues_table(IssueCandidates.empty(numpy_id_dtype(id_type)), id_type, class_names)


def label_quality_scores_table(
    ids: np.ndarray,
    given: np.ndarray,
    predicted: np.ndarray,
    scores: np.ndarray,
    is_issue: np.ndarray,
    id_type: pa.DataType,
    class_names: Optional[Sequence[str]] = None,
) -> pa.Table:
    columns = [
        pa.array(ids, type=id_type),
        pa.array(given.astype(np.int64)),
        pa.array(predicted.astype(np.int64)),
        pa.array(scores.astype(np.float64)),
        pa.array(is_issue.astype(bool)),
    ]
    if class_names is not None:
        columns += [_names(given, class_names), _names(predicted, class_names)]
    return pa.Table.from_arrays(
        columns, schema=label_quality_scores_schema(id_type, class_names is not None)
    )


# --- where each example lives (``example_uri_template``) ---------------------------------

URI_COLUMN = "uri"


def with_uri_field(schema: pa.Schema) -> pa.Schema:
    """A table schema with the ``uri`` column (string) appended."""
    return schema.append(pa.field(URI_COLUMN, pa.string()))


def add_uri_column(table: pa.Table, template: Optional[str]) -> pa.Table:
    """``table`` with a ``uri`` column built from its ``id`` column, or unchanged without a template."""
    if template is None:
        return table
    from beam_labelissues.example_uris import uri_array

    return table.append_column(pa.field(URI_COLUMN, pa.string()), uri_array(table.column("id"), template))


# --- the dataset's health (every run): the calibrated confident joint and what follows from it ---


def _with_name_columns(fields, names_of):
    return fields + [pa.field(name, pa.string()) for name in names_of]


def confident_joint_schema(with_names: bool = False) -> pa.Schema:
    """``confident_joint-*.parquet``: the non-zero cells of the calibrated confident joint
    (cleanlab's ``count.compute_confident_joint(calibrate=True)``), by (given, likely true)."""
    fields = [
        pa.field("given_label", pa.int64(), nullable=False),
        pa.field("likely_true_label", pa.int64(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
    return pa.schema(_with_name_columns(fields, ["given_label_name", "likely_true_label_name"] if with_names else []))


def class_health_schema(with_names: bool = False) -> pa.Schema:
    """``class_health-*.parquet``: cleanlab's ``dataset.rank_classes_by_label_quality``, one row
    per class, by ``label_quality_score`` ascending (ties by class index)."""
    fields = [
        pa.field("class_index", pa.int64(), nullable=False),
        pa.field("label_issues", pa.int64(), nullable=False),
        pa.field("inverse_label_issues", pa.int64(), nullable=False),
        pa.field("label_noise", pa.float64(), nullable=False),
        pa.field("inverse_label_noise", pa.float64(), nullable=False),
        pa.field("label_quality_score", pa.float64(), nullable=False),
    ]
    return pa.schema(_with_name_columns(fields, ["class_name"] if with_names else []))


def overlapping_classes_schema(with_names: bool = False) -> pa.Schema:
    """``overlapping_classes-*.parquet``: cleanlab's ``dataset.find_overlapping_classes``, the
    pairs a < b with a non-zero joint probability, by it descending (ties by a, then b)."""
    fields = [
        pa.field("class_index_a", pa.int64(), nullable=False),
        pa.field("class_index_b", pa.int64(), nullable=False),
        pa.field("num_overlapping_examples", pa.int64(), nullable=False),
        pa.field("joint_probability", pa.float64(), nullable=False),
    ]
    return pa.schema(_with_name_columns(fields, ["class_name_a", "class_name_b"] if with_names else []))


def noise_matrices_schema(with_names: bool = False) -> pa.Schema:
    """``noise_matrices-*.parquet`` (K > 100; summary.json holds them below): the cells where
    either noise matrix of ``count.estimate_py_and_noise_matrices_from_probabilities`` is
    non-zero, by (given, true). ``noise_rate`` = P(given | true) = ``noise_matrix[given, true]``;
    ``inverse_noise_rate`` = P(true | given) = ``inverse_noise_matrix[true, given]``."""
    fields = [
        pa.field("given_label", pa.int64(), nullable=False),
        pa.field("true_label", pa.int64(), nullable=False),
        pa.field("noise_rate", pa.float64(), nullable=False),
        pa.field("inverse_noise_rate", pa.float64(), nullable=False),
    ]
    return pa.schema(_with_name_columns(fields, ["given_label_name", "true_label_name"] if with_names else []))


def _table(schema: pa.Schema, columns, name_columns, class_names) -> pa.Table:
    arrays = [pa.array(np.asarray(column), type=field.type) for column, field in zip(columns, schema)]
    if class_names is not None:
        arrays += [_names(np.asarray(labels, dtype=np.int64), class_names) for labels in name_columns]
    return pa.Table.from_arrays(arrays, schema=schema)


def confident_joint_table(given, likely_true, counts, class_names: Optional[Sequence[str]] = None) -> pa.Table:
    return _table(confident_joint_schema(class_names is not None), [given, likely_true, counts],
                  [given, likely_true], class_names)


def class_health_table(classes, class_names: Optional[Sequence[str]] = None) -> pa.Table:
    """From a ``confident_joint.ClassLabelQuality``."""
    columns = [classes.class_index, classes.label_issues, classes.inverse_label_issues, classes.label_noise,
               classes.inverse_label_noise, classes.label_quality_score]
    return _table(class_health_schema(class_names is not None), columns, [classes.class_index], class_names)


def overlapping_classes_table(overlaps, class_names: Optional[Sequence[str]] = None) -> pa.Table:
    """From a ``confident_joint.OverlappingClasses``."""
    columns = [overlaps.class_index_a, overlaps.class_index_b, overlaps.num_overlapping_examples,
               overlaps.joint_probability]
    return _table(overlapping_classes_schema(class_names is not None), columns,
                  [overlaps.class_index_a, overlaps.class_index_b], class_names)


def noise_matrices_table(given, true, noise_rate, inverse_noise_rate,
                         class_names: Optional[Sequence[str]] = None) -> pa.Table:
    return _table(noise_matrices_schema(class_names is not None), [given, true, noise_rate, inverse_noise_rate],
                  [given, true], class_names)
