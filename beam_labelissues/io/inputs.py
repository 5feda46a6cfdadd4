"""From what a user names (a .npy or Zarr pair, or Parquet files, column names) to a checked source.

``open_inputs`` takes plain arguments, opens and checks every file where the
pipeline is launched (headers and footers only), and returns the source that
``FindLabelIssues`` reads once per pass, with what the launcher needs to know.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional, Sequence, Tuple

import pyarrow as pa

from beam_labelissues.io.class_names import load_class_names
from beam_labelissues.io.layouts import CLASS_PLACEHOLDER, row_group_warning
from beam_labelissues.io.npy import NpyPair, ReadNpyExamples
from beam_labelissues.io.parquet import ParquetDataset, ReadParquetExamples
from beam_labelissues.io.zarr_input import is_zarr_path, zarr_source
from beam_labelissues.options import MAX_NUM_CLASSES
from beam_labelissues.sources import ExampleSource
from beam_labelissues.validation import InputFileError, UsageError

DEFAULT_LABEL_COLUMN = "label"
DEFAULT_PRED_PROBS_COLUMN = "pred_probs"
# The number of classes reported for an empty Parquet input whose K nothing tells.
_UNKNOWN_NUM_CLASSES = 2
_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Checked inputs: the source to read and what is known of it before the run.

    ``class_names``: the names from the class names file, one per class, or None.
    """

    source: ExampleSource
    num_classes: int
    id_type: pa.DataType
    description: str
    num_rows: int
    pred_probs_bytes: int
    class_names: Optional[Tuple[str, ...]] = None


def open_inputs(
    *,
    labels_file: Optional[str] = None,
    pred_probs_file: Optional[str] = None,
    parquet: Optional[str] = None,
    label_column: Optional[str] = None,
    pred_probs_column: Optional[str] = None,
    pred_probs_columns: Optional[str] = None,
    id_column: Optional[str] = None,
    num_classes: Optional[int] = None,
    batch_size: Optional[int] = None,
    class_names_file: Optional[str] = None,
) -> Inputs:
    """Opens either a ``.npy`` pair or Parquet files (a file, folder or glob) and checks them.

    ``class_names_file`` (one name per line or a JSON list) names the classes: Parquet
    labels given as names are mapped through it, and a ``{class}`` template in
    ``pred_probs_columns`` is filled with it. Raises ``UsageError`` for options that
    do not fit together and ``InputFileError`` for files that cannot be used.
    """
    if num_classes is not None and num_classes < 2:
        raise UsageError(f"--num_classes must be at least 2, got {num_classes}")
    if num_classes is not None and num_classes > MAX_NUM_CLASSES:
        raise UsageError(f"--num_classes must be at most {MAX_NUM_CLASSES:,}, got {num_classes:,}")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"--batch_size must be at least 1, got {batch_size}")
    npy_given = labels_file is not None or pred_probs_file is not None
    if parquet is not None and npy_given:
        raise UsageError("give either --input (Parquet) or --labels_file and --pred_probs_file (.npy), not both")
    class_names = None
    if class_names_file is not None:
        try:
            class_names = tuple(load_class_names(class_names_file))
        except ValueError as error:
            raise UsageError(str(error)) from error
    if parquet is not None:
        if pred_probs_columns and CLASS_PLACEHOLDER in pred_probs_columns and class_names is None:
            raise UsageError(
                f"--pred_probs_columns {pred_probs_columns!r} names one column per class by its name: "
                "give --class_names"
            )
        inputs = _open_parquet(
            parquet, label_column, pred_probs_column, pred_probs_columns, id_column, num_classes, batch_size,
            class_names,
        )
    else:
        parquet_only = {
            "--label_column": label_column,
            "--pred_probs_column": pred_probs_column,
            "--pred_probs_columns": pred_probs_columns,
            "--id_column": id_column,
        }
        given = [name for name, value in parquet_only.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to Parquet input (--input)")
        if labels_file is None or pred_probs_file is None:
            raise UsageError("give both --labels_file and --pred_probs_file")
        zarr_given = [is_zarr_path(path) for path in (labels_file, pred_probs_file)]
        if any(zarr_given):
            if not all(zarr_given):
                raise UsageError(
                    "give --labels_file and --pred_probs_file in the same format: both .npy files or both "
                    "Zarr stores"
                )
            inputs = _open_zarr(labels_file, pred_probs_file, num_classes, batch_size)
        else:
            inputs = _open_npy(labels_file, pred_probs_file, num_classes, batch_size)
    if class_names is not None:
        if len(class_names) != inputs.num_classes:
            raise UsageError(
                f"{class_names_file} names {len(class_names)} classes, but the data has {inputs.num_classes}"
            )
        inputs = dataclasses.replace(inputs, class_names=class_names)
    if inputs.num_rows == 0:
        _LOG.warning(
            "the input has zero rows (%s); the run will write a summary with num_examples 0 and an "
            "empty label_issues file",
            inputs.description,
        )
    return inputs


def _open_npy(labels_file: str, pred_probs_file: str, num_classes: Optional[int], batch_size: Optional[int]) -> Inputs:
    pair = NpyPair.open(labels_file, pred_probs_file)
    if num_classes is not None and num_classes != pair.num_classes:
        raise InputFileError(
            f"--num_classes is {num_classes}, but {pred_probs_file} has {pair.num_classes} columns"
        )
    source = ReadNpyExamples(pair, batch_size=batch_size)
    return Inputs(
        source=source,
        num_classes=pair.num_classes,
        id_type=source.id_type,
        description=source.description,
        num_rows=pair.num_examples,
        pred_probs_bytes=pair.num_examples * pair.num_classes * pair.pred_probs.dtype.itemsize,
    )


def _open_zarr(labels_path: str, pred_probs_path: str, num_classes: Optional[int], batch_size: Optional[int]) -> Inputs:
    try:
        source = zarr_source(labels_path, pred_probs_path, batch_size=batch_size)
    except ImportError as error:  # the zarr extra is missing: say which one
        raise UsageError(str(error)) from error
    if num_classes is not None and num_classes != source.num_classes:
        raise InputFileError(f"--num_classes is {num_classes}, but {pred_probs_path} has {source.num_classes} columns")
    if source.num_classes > MAX_NUM_CLASSES:
        raise InputFileError(
            f"{pred_probs_path}: {source.num_classes:,} classes; at most {MAX_NUM_CLASSES:,} are supported"
        )
    return Inputs(
        source=source,
        num_classes=source.num_classes,
        id_type=source.id_type,
        description=source.description,
        num_rows=source.num_examples,
        pred_probs_bytes=source.pred_probs_bytes,
    )


def _open_parquet(
    pattern: str,
    label_column: Optional[str],
    pred_probs_column: Optional[str],
    pred_probs_columns: Optional[str],
    id_column: Optional[str],
    num_classes: Optional[int],
    batch_size: Optional[int],
    class_names: Optional[Sequence[str]] = None,
) -> Inputs:
    if pred_probs_columns is not None and pred_probs_column is not None:
        raise UsageError("give either --pred_probs_column or --pred_probs_columns, not both")
    dataset = ParquetDataset.open(
        pattern,
        label_column=label_column or DEFAULT_LABEL_COLUMN,
        pred_probs_column=pred_probs_column or DEFAULT_PRED_PROBS_COLUMN,
        pred_probs_columns=pred_probs_columns,
        id_column=id_column,
        num_classes=num_classes,
        class_names=class_names,
    )
    k = dataset.num_classes
    if k is None:
        k = _UNKNOWN_NUM_CLASSES
        _LOG.warning(
            "%s has zero rows and nothing tells the number of classes; the summary reports %d "
            "(pass --num_classes to set it)",
            pattern,
            k,
        )
    if dataset.columns.pred_probs_columns:
        _LOG.info("class order of --pred_probs_columns: %s", ", ".join(dataset.columns.pred_probs_columns))
    warning = row_group_warning(
        [task.num_rows for task in dataset.tasks], len(dataset.files), k, dataset.prob_itemsize
    )
    if warning:
        _LOG.warning("%s: %s", pattern, warning)
    source = ReadParquetExamples(dataset, num_classes=k, batch_size=batch_size)
    return Inputs(
        source=source,
        num_classes=k,
        id_type=source.id_type,
        description=source.description,
        num_rows=dataset.num_rows,
        pred_probs_bytes=dataset.num_rows * k * dataset.prob_itemsize,
    )
