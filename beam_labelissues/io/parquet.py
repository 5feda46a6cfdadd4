"""Reads Parquet files (a file, a folder or a glob) as ``ExampleBatch`` elements, row groups in parallel.

Everything goes through Beam's FileSystems, so local paths, gs:// and s3:// work
alike. ``ParquetDataset.open`` lists the files (a folder with pyarrow's dataset
rules, see ``io/layouts.py``), sorts the file names and reads
every footer (a few KiB each) where the pipeline is launched: it checks the
columns and their types, learns the number of classes K and the row count of
every row group. Without an id column the id of a row is its index over all
files in sorted-name order, known from those counts before any worker starts,
so it does not depend on how the files are split or read. Workers then read one
row group per task.

Columns:

- labels: any integer type, or class names (string, large_string or dictionary,
  as pandas writes a categorical) mapped to indices through the class names;
- pred_probs: one column of ``list``, ``large_list`` or ``fixed_size_list`` of
  float16/32/64, or one float column per class (``pred_probs_columns``): a glob
  such as ``p_*``, ordered by the number each name ends with (``p_2`` before
  ``p_10``; the numbers must be consecutive), an ordered list ``p_cat,p_dog``, or
  a template ``prob_{class}`` filled with each class name in class order;
- ids (optional): any integer type (read as int64) or string.

Rows that cannot be shaped into a batch (a null label, null or wrong-length
probabilities, a null id) travel in ``ExampleBatch.malformed`` so the one
validation step reports them with every other invalid record.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fnmatch
import logging
import queue
import re
import threading
from typing import Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_labelissues.batches import ExampleBatch, MalformedRow
from beam_labelissues.io.layouts import (
    input_files,
    label_indices,
    label_type_problem,
    listed_class_columns,
)
from beam_labelissues.io import paths
from beam_labelissues.io.npy import rows_per_batch
from beam_labelissues.options import MAX_NUM_CLASSES
from beam_labelissues.sources import ExampleSource
from beam_labelissues.validation import InputFileError

# A read task covers about this many batches' rows of consecutive row groups of one file.
_BATCHES_PER_TASK = 8
# Footers are read this many at a time: a glob of hundreds of gs:// files would
# otherwise pay one round trip after another.
_FOOTER_THREADS = 16
_INT64_MAX = np.iinfo(np.int64).max
_TRAILING_NUMBER = re.compile(r"(\d+)$")
# Rows whose list lengths tell K when nothing else does (the first rows of the first row group).
_K_SAMPLE_ROWS = 10_000
_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RowGroupTask:
    """One unit of parallel reading: a row group and the global index of its first row."""

    path: str
    row_group: int
    first_row: int
    num_rows: int


@dataclasses.dataclass(frozen=True)
class ParquetColumns:
    """Which columns hold what. Exactly one of ``pred_probs`` and ``pred_probs_columns``.

    ``label_names`` are the class names in class order, for labels given as names.
    """

    label: str = "label"
    pred_probs: Optional[str] = "pred_probs"
    pred_probs_columns: Optional[Tuple[str, ...]] = None
    id: Optional[str] = None
    label_names: Optional[Tuple[str, ...]] = None

    @property
    def names(self) -> List[str]:
        names = [self.label]
        names += list(self.pred_probs_columns) if self.pred_probs_columns else [self.pred_probs]
        if self.id is not None:
            names.append(self.id)
        return names


def _open(path: str):
    return FileSystems.open(
        path, mime_type="application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED
    )


def _is_float(data_type: pa.DataType) -> bool:
    return pa.types.is_float16(data_type) or pa.types.is_float32(data_type) or pa.types.is_float64(data_type)


def _is_string(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def _is_list(data_type: pa.DataType) -> bool:
    return (
        pa.types.is_list(data_type) or pa.types.is_large_list(data_type) or pa.types.is_fixed_size_list(data_type)
    )


def class_columns(pattern: str, column_names: Sequence[str]) -> Tuple[str, ...]:
    """The columns matching ``pattern`` in class order: by the number each name ends with.

    ``p_0 .. p_9, p_10`` sort as numbers, not as text. Every matching name must end
    with a number and the numbers must be consecutive, so class k is unambiguous.
    """
    matched = [name for name in column_names if fnmatch.fnmatchcase(name, pattern)]
    if not matched:
        raise InputFileError(
            f"no column matches --pred_probs_columns {pattern!r}; columns: {', '.join(column_names)}"
        )
    numbered = []
    for name in matched:
        found = _TRAILING_NUMBER.search(name)
        if found is None:
            raise InputFileError(
                f"column {name!r} matches --pred_probs_columns {pattern!r} but does not end with a "
                "class number (class order comes from the number at the end: p_0, p_1, ...)"
            )
        numbered.append((int(found.group(1)), name))
    numbered.sort()
    numbers = [number for number, _ in numbered]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise InputFileError(
            f"the columns matching --pred_probs_columns {pattern!r} must end with consecutive class "
            f"numbers; got {', '.join(name for _, name in numbered)}"
        )
    if len(numbered) < 2:
        raise InputFileError(f"--pred_probs_columns {pattern!r} matches only {matched[0]!r}: need >= 2 classes")
    return tuple(name for _, name in numbered)


@dataclasses.dataclass(frozen=True)
class _Footer:
    path: str
    schema: pa.Schema
    row_group_rows: Tuple[int, ...]


def _read_footer(path: str) -> _Footer:
    kind = paths.non_regular_kind(path)
    if kind:
        raise InputFileError(f"{path}: is a {kind}, not a regular file")
    try:
        with _open(path) as handle:
            metadata = pq.ParquetFile(handle).metadata
            schema = metadata.schema.to_arrow_schema()
            rows = tuple(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
    except InputFileError:
        raise
    except Exception as error:  # OSError, ArrowInvalid (not a Parquet file), ...
        raise InputFileError(f"{path}: cannot read the Parquet footer: {error}") from error
    return _Footer(path, schema, rows)


def _field(footer: _Footer, name: str, role: str) -> pa.DataType:
    index = footer.schema.get_field_index(name)
    if index < 0:
        raise InputFileError(
            f"{footer.path}: no {role} column {name!r}; columns: {', '.join(footer.schema.names)}"
        )
    return footer.schema.field(index).type


def _check_columns(footer: _Footer, columns: ParquetColumns) -> Tuple[Optional[int], str]:
    """Checks one file's column types; returns (fixed list size or None, id kind)."""
    label_type = _field(footer, columns.label, "label")
    label_problem = label_type_problem(label_type, columns.label_names is not None)
    if label_problem is not None:
        raise InputFileError(f"{footer.path}: label column {columns.label!r} has type {label_type}; {label_problem}")
    fixed_size = None
    if columns.pred_probs_columns:
        for name in columns.pred_probs_columns:
            data_type = _field(footer, name, "pred_probs")
            if not _is_float(data_type):
                raise InputFileError(
                    f"{footer.path}: pred_probs column {name!r} has type {data_type}; "
                    "expected float16, float32 or float64"
                )
    else:
        data_type = _field(footer, columns.pred_probs, "pred_probs")
        if not (_is_list(data_type) and _is_float(data_type.value_type)):
            raise InputFileError(
                f"{footer.path}: pred_probs column {columns.pred_probs!r} has type {data_type}; expected "
                "a list, large_list or fixed_size_list of float16, float32 or float64 "
                "(or one column per class with --pred_probs_columns)"
            )
        if pa.types.is_fixed_size_list(data_type):
            fixed_size = data_type.list_size
    id_kind = "int"
    if columns.id is not None:
        id_type = _field(footer, columns.id, "id")
        if _is_string(id_type):
            id_kind = "string"
        elif not pa.types.is_integer(id_type):
            raise InputFileError(
                f"{footer.path}: id column {columns.id!r} has type {id_type}; ids must be integers or strings"
            )
    return fixed_size, id_kind


def _majority_row_length(footers: Sequence[_Footer], column: str) -> int:
    """K from the lengths of the pred_probs lists in the first rows of the first row group.

    The length most of those rows share (more than half of them) is K; rows that
    disagree are named in a warning and become invalid records. One malformed first
    row therefore cannot turn every good row into an invalid one.
    """
    for footer in footers:
        if sum(footer.row_group_rows) == 0:
            continue
        first_group = next(i for i, rows in enumerate(footer.row_group_rows) if rows)
        try:
            with _open(footer.path) as handle:
                batch = next(pq.ParquetFile(handle).iter_batches(
                    batch_size=_K_SAMPLE_ROWS, row_groups=[first_group], columns=[column]))
        except Exception as error:  # OSError, ArrowInvalid: a damaged page
            raise InputFileError(f"{footer.path}: cannot read row group {first_group}: {error}") from error
        values = batch.column(0)
        valid = np.flatnonzero(~np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool))
        if len(valid) == 0:
            raise InputFileError(
                f"{footer.path}: the first {len(values):,} rows' {column!r} are null, so the number of "
                "classes cannot be taken from them; pass --num_classes"
            )
        lengths = np.asarray(pc.list_value_length(values).to_numpy(zero_copy_only=False))[valid]
        sizes, counts = np.unique(lengths, return_counts=True)
        best = int(np.argmax(counts))
        if counts[best] * 2 <= len(lengths):
            shown = ", ".join(f"{int(c):,} rows of {int(k)}" for k, c in zip(sizes, counts))
            raise InputFileError(
                f"{footer.path}: cannot tell the number of classes from the lengths of {column!r} in the "
                f"first {len(lengths):,} rows ({shown}); pass --num_classes"
            )
        k = int(sizes[best])
        disagree = valid[lengths != k]
        if len(disagree):
            rows = ", ".join(str(int(i)) for i in disagree[:5]) + (" ..." if len(disagree) > 5 else "")
            _LOG.warning(
                "%s: the number of classes is %d (the length of %r in %d of the first %d rows); row(s) %s "
                "of this file have another length and will be invalid records",
                footer.path, k, column, int(counts[best]), len(lengths), rows,
            )
        return k
    raise AssertionError("called without rows")


@dataclasses.dataclass(frozen=True)
class ParquetDataset:
    """A checked glob of Parquet files: columns, K, id type and the row groups to read."""

    pattern: str
    files: Tuple[str, ...]
    columns: ParquetColumns
    num_classes: Optional[int]
    id_type: pa.DataType
    tasks: Tuple[RowGroupTask, ...]
    prob_itemsize: int

    @property
    def num_rows(self) -> int:
        return sum(task.num_rows for task in self.tasks)

    @staticmethod
    def open(
        pattern: str,
        label_column: str = "label",
        pred_probs_column: Optional[str] = "pred_probs",
        pred_probs_columns: Optional[str] = None,
        id_column: Optional[str] = None,
        num_classes: Optional[int] = None,
        class_names: Optional[Sequence[str]] = None,
    ) -> "ParquetDataset":
        """Lists the files ``pattern`` names, reads and checks every footer; raises ``InputFileError``.

        ``pattern`` is a file, a folder (see ``io/layouts.py``) or a glob.
        ``pred_probs_columns`` (a glob over column names, an ordered list ``a,b``
        or a ``{class}`` template) wins over ``pred_probs_column``. ``class_names``
        map labels given as names to indices and fill a ``{class}`` template.
        K is ``num_classes`` when given, else the fixed_size_list size, else the number of
        class columns, else the list length most of the first rows share. With zero rows and none
        of these, K is None: the caller decides.
        """
        files = input_files(pattern)
        with concurrent.futures.ThreadPoolExecutor(min(_FOOTER_THREADS, len(files))) as pool:
            footers = list(pool.map(_read_footer, files))
        label_names = tuple(class_names) if class_names is not None else None
        if pred_probs_columns:
            column_names = footers[0].schema.names
            names = listed_class_columns(pred_probs_columns, column_names, class_names) or class_columns(
                pred_probs_columns, column_names)
            columns = ParquetColumns(label_column, None, names, id_column, label_names)
        else:
            columns = ParquetColumns(label_column, pred_probs_column or "pred_probs", None, id_column, label_names)
        fixed_sizes, id_kinds = set(), set()
        for footer in footers:
            fixed_size, id_kind = _check_columns(footer, columns)
            if fixed_size is not None:
                fixed_sizes.add((fixed_size, footer.path))
            id_kinds.add(id_kind)
        if len(id_kinds) > 1:
            raise InputFileError(
                f"{pattern}: the id column {id_column!r} is an integer in some files and a string in others"
            )
        if len({size for size, _ in fixed_sizes}) > 1:
            listed = ", ".join(f"{path} ({size})" for size, path in sorted(fixed_sizes, key=lambda s: s[1]))
            raise InputFileError(f"pred_probs fixed_size_list sizes differ between files: {listed}")

        tasks, first_row = [], 0
        for footer in footers:
            for group, rows in enumerate(footer.row_group_rows):
                if rows:
                    tasks.append(RowGroupTask(footer.path, group, first_row, rows))
                first_row += rows

        if columns.pred_probs_columns:
            inferred = len(columns.pred_probs_columns)
        elif fixed_sizes:
            inferred = next(iter(fixed_sizes))[0]
        elif first_row:
            inferred = _majority_row_length(footers, columns.pred_probs)
        else:
            inferred = None
        if num_classes is not None:
            if (columns.pred_probs_columns or fixed_sizes) and inferred != num_classes:
                source = "columns match --pred_probs_columns" if columns.pred_probs_columns else (
                    "is the fixed_size_list size of pred_probs")
                raise InputFileError(f"--num_classes is {num_classes}, but {inferred} {source}")
            inferred = num_classes
        if inferred is not None and inferred < 2:
            raise InputFileError(f"{pattern}: needs at least 2 classes, got {inferred}")
        if inferred is not None and inferred > MAX_NUM_CLASSES:
            raise InputFileError(f"{pattern}: {inferred:,} classes; at most {MAX_NUM_CLASSES:,} are supported")

        itemsize = 8
        if footers:
            probs = columns.pred_probs_columns[0] if columns.pred_probs_columns else columns.pred_probs
            data_type = footers[0].schema.field(probs).type
            itemsize = (data_type if columns.pred_probs_columns else data_type.value_type).bit_width // 8
        id_type = pa.string() if id_kinds == {"string"} else pa.int64()
        return ParquetDataset(pattern, tuple(files), columns, inferred, id_type, tuple(tasks), itemsize)

    @property
    def description(self) -> str:
        probs = (
            f"columns {self.columns.pred_probs_columns[0]}..{self.columns.pred_probs_columns[-1]}"
            if self.columns.pred_probs_columns
            else f"column {self.columns.pred_probs!r}"
        )
        ids = f", ids from {self.columns.id!r}" if self.columns.id else ", id = row index"
        return (
            f"{self.pattern} ({len(self.files)} Parquet file(s), {len(self.tasks)} row group(s), "
            f"{self.num_rows:,} rows; labels from {self.columns.label!r}, pred_probs from {probs}{ids})"
        )


def _row_mask(array: pa.Array) -> Optional[np.ndarray]:
    """True where ``array`` is null, or None when nothing is."""
    if array.null_count == 0:
        return None
    return np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _probs_from_list(array: pa.Array, num_classes: int):
    """(n x K probabilities of the well-shaped rows, per-row problem or None)."""
    n = len(array)
    if pa.types.is_fixed_size_list(array.type):
        size = array.type.list_size
        offsets = (np.arange(n + 1, dtype=np.int64) + array.offset) * size
    else:
        offsets = np.asarray(array.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    start, stop = int(offsets[0]), int(offsets[-1])
    flat_array = array.values.slice(start, stop - start)
    lengths = np.diff(offsets)
    row_null = _row_mask(array)
    value_null_rows = flat_null = None
    if flat_array.null_count:
        flat_null = np.asarray(flat_array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        value_null_rows = np.searchsorted(offsets, np.flatnonzero(flat_null) + start, side="right") - 1
        flat_array = flat_array.fill_null(np.nan)
    flat = flat_array.to_numpy(zero_copy_only=False)
    good = lengths == num_classes
    if row_null is not None:
        good &= ~row_null
    if value_null_rows is not None:
        good[value_null_rows] = False
    if good.all():
        return flat.reshape(n, num_classes), good, None
    rows = np.flatnonzero(good)
    probs = flat[(offsets[rows] - start)[:, None] + np.arange(num_classes)]

    def problem(i: int) -> str:
        if row_null is not None and row_null[i]:
            return "pred_probs is null"
        if lengths[i] != num_classes:
            return f"pred_probs has {lengths[i]} values, expected {num_classes}"
        column = int(np.flatnonzero(flat_null[offsets[i] - start:offsets[i + 1] - start])[0])
        return f"pred_probs[{column}] is null"

    return probs, good, problem


def _probs_from_columns(batch: pa.RecordBatch, names: Sequence[str]):
    arrays = [batch.column(name) for name in names]
    dtype = np.result_type(*[a.type.to_pandas_dtype() for a in arrays])
    probs = np.empty((batch.num_rows, len(names)), dtype=dtype)
    good = np.ones(batch.num_rows, dtype=bool)
    for column, array in enumerate(arrays):
        null = _row_mask(array)
        if null is not None:
            good &= ~null
            array = array.fill_null(np.nan)
        probs[:, column] = array.to_numpy(zero_copy_only=False)
    if good.all():
        return probs, good, None

    def problem(i: int) -> str:
        column = next(c for c, a in enumerate(arrays) if not a[i].is_valid)
        return f"pred_probs[{column}] ({names[column]}) is null"

    return probs[good], good, problem


def record_batch_to_examples(
    batch: pa.RecordBatch, columns: ParquetColumns, num_classes: int, first_row: int
) -> ExampleBatch:
    """Shapes one Arrow record batch into an ``ExampleBatch`` with numpy only.

    ``first_row`` is the global index of the batch's first row: the id when there is
    no id column. Rows that cannot be shaped go to ``malformed``, in row order.
    """
    n = batch.num_rows
    raw_labels = batch.column(columns.label)
    label_array, unknown_label = label_indices(raw_labels, columns.label_names)
    label_null = _row_mask(label_array)
    labels = (label_array.fill_null(0) if label_null is not None else label_array).to_numpy(zero_copy_only=False)

    if columns.pred_probs_columns:
        probs, good, probs_problem = _probs_from_columns(batch, columns.pred_probs_columns)
    else:
        probs, good, probs_problem = _probs_from_list(batch.column(columns.pred_probs), num_classes)

    id_problem = None
    if columns.id is None:
        ids = np.arange(first_row, first_row + n, dtype=np.int64)
    else:
        id_array = batch.column(columns.id)
        id_null = _row_mask(id_array)
        if _is_string(id_array.type):
            ids = id_array.to_numpy(zero_copy_only=False).astype(object)
        else:
            raw = (id_array.fill_null(0) if id_null is not None else id_array).to_numpy(zero_copy_only=False)
            too_big = raw > _INT64_MAX if raw.dtype == np.uint64 else None
            ids = raw.astype(np.int64)
            if too_big is not None and too_big.any():
                id_null = too_big if id_null is None else (id_null | too_big)
                ids = np.where(too_big, 0, ids)
        if id_null is not None:
            id_problem = id_null

    bad_extra = np.zeros(n, dtype=bool)
    if label_null is not None:
        bad_extra |= label_null
    if id_problem is not None:
        bad_extra |= id_problem
    if probs_problem is None and not bad_extra.any():
        return ExampleBatch(ids, labels, probs)

    # Rare path: per-row Python only for the rows that cannot be shaped.
    keep = good & ~bad_extra
    malformed = []
    probs_column = None if columns.pred_probs_columns else batch.column(columns.pred_probs)
    for i in np.flatnonzero(~keep).tolist():
        if unknown_label is not None and unknown_label[i]:
            reason = f"label {raw_labels[i].as_py()!r} is not one of the class names"
        elif label_null is not None and label_null[i]:
            reason = "label is null"
        elif not good[i]:
            reason = probs_problem(i)
        elif columns.id is not None and id_array[i].is_valid:
            reason = f"id {id_array[i].as_py()} does not fit in int64"
        else:
            reason = "id is null"
        if probs_column is not None:
            raw_probs = probs_column[i].as_py()
        else:
            raw_probs = [batch.column(name)[i].as_py() for name in columns.pred_probs_columns]
        raw_id = ids[i] if columns.id is None else batch.column(columns.id)[i].as_py()
        malformed.append(MalformedRow(raw_id, reason, raw_labels[i].as_py(), raw_probs))
    # ``probs`` holds the rows in ``good``; keep those also in ``keep``.
    probs_keep = keep[good]
    return ExampleBatch(ids[keep], labels[keep], probs[probs_keep], tuple(malformed))


def group_tasks(tasks: Sequence[RowGroupTask], max_rows: int) -> List[Tuple[RowGroupTask, ...]]:
    """Consecutive row groups of one file, up to about ``max_rows`` rows: one read task.

    A task reads its row groups one after the other, the next decoded in a thread
    while the current is processed; tasks stay small enough to spread over workers.
    """
    grouped: List[List[RowGroupTask]] = []
    rows = 0
    for task in tasks:
        if not grouped or grouped[-1][-1].path != task.path or rows + task.num_rows > max_rows:
            grouped.append([])
            rows = 0
        grouped[-1].append(task)
        rows += task.num_rows
    return [tuple(group) for group in grouped]


class _Done:
    """The end of a prefetch queue; carries the reader thread's error and the position
    (in the task's row groups) where it happened, if any."""

    def __init__(self, error: Optional[BaseException] = None, position: int = 0):
        self.error = error
        self.position = position


class _RowGroupError(Exception):
    """A row group that could not be decoded: its position in the task, and why."""

    def __init__(self, position: int, error: BaseException):
        super().__init__(str(error))
        self.position = position
        self.error = error


# Read buffer for the column chunks: pages stream through it instead of whole chunks
# being read ahead. A 65,536-row group of 1,000-value lists decoded at once (and its
# repetition levels) peaks near 1.1 GB; streamed in batches, about 180 MB, and faster.
_READ_BUFFER_BYTES = 8 << 20
_PREFETCH_BATCHES = 2


def _decoded_batches(
    path: str, groups: Sequence[int], columns: Sequence[str], batch_rows: int
) -> Iterator[Tuple[int, pa.RecordBatch]]:
    """(position of the row group in ``groups``, record batch of at most ``batch_rows``
    rows), in file order, decoded in a thread while the caller works on the batch before
    (pyarrow releases the GIL while it decodes). Raises ``_RowGroupError``."""
    decoded: "queue.Queue" = queue.Queue(maxsize=_PREFETCH_BATCHES)
    stop = threading.Event()

    def decode():
        error, position = None, 0
        try:
            with _open(path) as handle:
                parquet = pq.ParquetFile(handle, buffer_size=_READ_BUFFER_BYTES, pre_buffer=False)
                for position, group in enumerate(groups):
                    for batch in parquet.iter_batches(
                        batch_size=batch_rows, row_groups=[group], columns=list(columns), use_threads=False
                    ):
                        if stop.is_set():
                            return
                        decoded.put((position, batch))
        except BaseException as caught:  # handed to the caller, which raises it
            error = caught
        decoded.put(_Done(error, position))

    thread = threading.Thread(target=decode, name=f"decode {path}", daemon=True)
    thread.start()
    try:
        while True:
            item = decoded.get()
            if isinstance(item, _Done):
                if item.error is not None:
                    raise _RowGroupError(item.position, item.error)
                return
            yield item
            del item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a pending put, then let the thread end
            try:
                decoded.get(timeout=0.1)
            except queue.Empty:
                pass


@beam.typehints.with_output_types(ExampleBatch)
class _ReadRowGroups(beam.DoFn):
    """Reads a run of row groups of one file as consecutive ``ExampleBatch`` elements."""

    def __init__(self, columns: ParquetColumns, num_classes: int, batch_rows: int):
        self._columns = columns
        self._num_classes = num_classes
        self._batch_rows = batch_rows

    def process(self, tasks: Tuple[RowGroupTask, ...]) -> Iterator[ExampleBatch]:
        path = tasks[0].path
        rows_read = [0] * len(tasks)
        batches = _decoded_batches(path, [task.row_group for task in tasks], self._columns.names, self._batch_rows)
        try:
            for position, batch in batches:
                task = tasks[position]
                first_row = task.first_row + rows_read[position]
                rows_read[position] += batch.num_rows
                if rows_read[position] > task.num_rows:
                    break
                yield record_batch_to_examples(batch, self._columns, self._num_classes, first_row)
        except _RowGroupError as failure:  # OSError, ArrowInvalid: a damaged page
            task = tasks[failure.position]
            raise InputFileError(
                f"{path}: cannot read row group {task.row_group} (rows from {task.first_row:,}): {failure.error}"
            ) from failure.error
        finally:
            batches.close()
        for task, rows in zip(tasks, rows_read):
            if rows != task.num_rows:
                raise InputFileError(
                    f"{path}: row group {task.row_group} has {rows if rows <= task.num_rows else 'more'} rows, "
                    f"its footer said {task.num_rows} (did the file change during the run?)"
                )


class ReadParquetExamples(ExampleSource):
    """Reads a ``ParquetDataset`` as ``ExampleBatch`` elements, row groups in parallel."""

    decoding_costs_more = True
    decode_threads = 1  # _decoded_batches

    def __init__(
        self,
        dataset: ParquetDataset,
        num_classes: Optional[int] = None,
        batch_size: Optional[int] = None,
        reshuffle: bool = True,
    ):
        super().__init__(reshuffle)
        self._dataset = dataset
        self._num_classes = num_classes if num_classes is not None else dataset.num_classes
        if self._num_classes is None:
            raise ValueError("the number of classes is unknown (zero rows): give num_classes")
        self._batch_rows = rows_per_batch(self._num_classes, dataset.prob_itemsize, batch_size)
        self.id_type = dataset.id_type
        self.description = dataset.description
        self.num_rows = dataset.num_rows
        self.unique_ids = dataset.columns.id is None  # row numbers

    def read_tasks(self) -> List[Tuple[RowGroupTask, ...]]:
        return group_tasks(self._dataset.tasks, max(self._batch_rows * _BATCHES_PER_TASK, 1))

    def read_dofn(self) -> beam.DoFn:
        return _ReadRowGroups(self._dataset.columns, self._num_classes, self._batch_rows)
