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
