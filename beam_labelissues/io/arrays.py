"""Reads labels and pred_probs from any pair of sliceable arrays, in row ranges.

One source for every array-shaped input: numpy arrays and memmaps in this
process, .npy files on any Beam filesystem, Zarr arrays (``io/zarr_input.py``),
or anything with ``shape``, ``dtype`` and row slicing. Each side is an
``ArrayColumn``: a small picklable description a worker reopens, so a read task
never carries the data itself.

Arrays that only this process can read (plain numpy arrays, h5py datasets,
in-memory Zarr arrays...) are registered here under a token and looked up by
workers in the same process: they are never pickled, so an in-memory array is
never copied to a worker. Sources holding such a column say so with
``in_process_only``; run them on in-process workers (threads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import threading
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

import apache_beam as beam
import numpy as np

from beam_labelissues.batches import ExampleBatch
from beam_labelissues.io.npy import InputFileError, NpyHeader, _open, _read_rows, read_tasks, rows_per_batch
from beam_labelissues.sources import ExampleSource

# Each read task covers this many read blocks (a block is one batch, rounded up to whole chunks).
_BLOCKS_PER_TASK = 4


def _native(array: np.ndarray) -> np.ndarray:
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


class ArrayColumn:
    """One input array (labels or pred_probs) as a worker can reopen it.

    ``name`` is what errors call it (a path, or the argument name); ``chunk_rows``
    the rows of one stored chunk, so that reads can start and end on chunk
    boundaries (1 when any row range reads as cheaply).
    """

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    chunk_rows: int = 1
    is_file = False
    in_process_only = False

    def open(self) -> "ColumnReader":
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} ({self.dtype}, shape {self.shape})"


class ColumnReader:
    """Reads row ranges of one column; ``close`` releases what ``open`` acquired."""

    def read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _SliceReader(ColumnReader):
    def __init__(self, array: Any):
        self._array = array

    def read(self, start: int, stop: int) -> np.ndarray:
        return _native(np.asarray(self._array[start:stop]))


# ---------------------------------------------------------------- in-process arrays

_IN_PROCESS: Dict[str, Any] = {}
_IN_PROCESS_LOCK = threading.Lock()


class InMemoryColumn(ArrayColumn):
    """An array only this process can read; workers find it by token in a registry
    while ``registered`` holds it there. Pickling it carries the token, never the data.
    """

    in_process_only = True

    def __init__(self, array: Any, name: str):
        self.name = name
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.token = uuid.uuid4().hex
        self.array = array

    def __getstate__(self):
        state = dict(self.__dict__)
        state["array"] = None
        return state

    def open(self) -> ColumnReader:
        with _IN_PROCESS_LOCK:
            array = _IN_PROCESS.get(self.token)
        if array is None:
            raise RuntimeError(
                f"{self.name}: this in-memory array can only be read by workers in the process that "
                "registered it (run with in-process workers, e.g. --direct_running_mode=multi_threading)"
            )
        return _SliceReader(array)


@contextlib.contextmanager
def registered(*columns: ArrayColumn) -> Iterator[None]:
    """Makes the arrays of the ``InMemoryColumn`` among ``columns`` readable by this
    process's workers for the duration of a run."""
    in_memory = [c for c in columns if isinstance(c, InMemoryColumn) and c.array is not None]
    with _IN_PROCESS_LOCK:
        for column in in_memory:
            _IN_PROCESS[column.token] = column.array
    try:
        yield
    finally:
        with _IN_PROCESS_LOCK:
            for column in in_memory:
                _IN_PROCESS.pop(column.token, None)


# ---------------------------------------------------------------- memmaps and .npy files


@dataclasses.dataclass
class MemmapColumn(ArrayColumn):
    """A contiguous array mapped from a file: any worker on this machine maps it again."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    filename: str
    offset: int
    fortran_order: bool = False

    def open(self) -> ColumnReader:
        mapped = np.memmap(
            self.filename, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape,
            order="F" if self.fortran_order else "C",
        )
        return _MemmapReader(mapped)


class _MemmapReader(ColumnReader):
    def __init__(self, mapped: np.memmap):
        self._mapped = mapped

    def read(self, start: int, stop: int) -> np.ndarray:
        # A copy: argmax on a read-only memmap slice would copy it anyway, and the batch
        # then owns its memory (native byte order, C order).
        return _native(np.array(self._mapped[start:stop], order="C"))

    def close(self) -> None:
        mapping = getattr(self._mapped, "_mmap", None)
        self._mapped = None
        if mapping is not None:
            with contextlib.suppress(BufferError):  # a batch still views it: let GC close it
                mapping.close()


def memmap_column(array: np.ndarray, name: str) -> Optional[MemmapColumn]:
    """A ``MemmapColumn`` for a contiguous view of a file-backed memmap, else None."""
    mapping = getattr(array, "_mmap", None)
    filename = getattr(array, "filename", None)
    if mapping is None or filename is None or array.ndim not in (1, 2):
        return None
    fortran = array.ndim == 2 and not array.flags.c_contiguous and array.flags.f_contiguous
    if not (array.flags.c_contiguous or fortran):
        return None
    # np.memmap maps from the allocation-granularity boundary below the offset it was given;
    # slices keep that offset and the mapping, so the view's file offset follows from addresses.
    mapping_start = array.offset - array.offset % mmap.ALLOCATIONGRANULARITY
    try:
        mapping_address = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
    except (TypeError, ValueError):
        return None
    view_address = array.__array_interface__["data"][0]
    return MemmapColumn(
        name=name,
        shape=tuple(array.shape),
        dtype=array.dtype,
        filename=str(filename),
        offset=mapping_start + view_address - mapping_address,
        fortran_order=fortran,
    )


@dataclasses.dataclass
class NpyFileColumn(ArrayColumn):
    """A .npy file on any Beam filesystem, read with seek + read (see ``io/npy.py``)."""

    header: NpyHeader
    is_file = True

    @property
    def name(self) -> str:
        return self.header.path

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.header.shape

    @property
    def dtype(self) -> np.dtype:
        return self.header.dtype

    def open(self) -> ColumnReader:
        return _NpyReader(self.header)


class _NpyReader(ColumnReader):
    def __init__(self, header: NpyHeader):
        self._header = header
        self._handle = _open(header.path)

    def read(self, start: int, stop: int) -> np.ndarray:
        return _read_rows(self._handle, self._header, start, stop)

    def close(self) -> None:
        self._handle.close()


def column_of(array: Any, name: str) -> ArrayColumn:
    """The column for an array-like argument: a memmap any local worker can map again,
    a Zarr array on a store every worker can open, or else an in-process array."""
    if isinstance(array, ArrayColumn):
        return array
    if isinstance(array, np.memmap):
        column = memmap_column(array, name)
        if column is not None:
            return column
    if type(array).__module__.startswith("zarr"):
        from beam_labelissues.io import zarr_input

        column = zarr_input.column_of_zarr_array(array, name)
        if column is not None:
            return column
    if not (hasattr(array, "shape") and hasattr(array, "dtype") and hasattr(array, "__getitem__")):
        array = np.asarray(array)  # a list, say: small enough to have been built in memory
    return InMemoryColumn(array, name)


# ---------------------------------------------------------------- the pair and the source


def check_pair(labels: ArrayColumn, pred_probs: ArrayColumn, error: Type[Exception] = ValueError) -> None:
    """The rules every array input follows: 1-D integer labels, 2-D float pred_probs with
    at least 2 classes, the same number of rows. Raises ``error`` naming the array."""
    if len(labels.shape) != 1:
        raise error(f"{labels.name}: labels must be a 1-D array, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise error(
            f"{labels.name}: labels must have an integer dtype, got {labels.dtype} (class indices 0..K-1)"
        )
    if len(pred_probs.shape) != 2:
        raise error(
            f"{pred_probs.name}: pred_probs must be a 2-D array (examples x classes), "
            f"got shape {pred_probs.shape}"
        )
    if pred_probs.dtype.kind != "f" or pred_probs.dtype.itemsize not in (2, 4, 8):
        raise error(f"{pred_probs.name}: pred_probs must be float16, float32 or float64, got {pred_probs.dtype}")
    if pred_probs.shape[1] < 2:
        raise error(f"{pred_probs.name}: needs at least 2 classes, got {pred_probs.shape[1]}")
    if labels.shape[0] != pred_probs.shape[0]:
        raise error(
            f"labels and pred_probs have different lengths: {labels.name} has {labels.shape[0]} rows, "
            f"{pred_probs.name} has {pred_probs.shape[0]}"
        )


def plan_reads(num_rows: int, batch_rows: int, chunk_rows: int) -> Tuple[int, List[Tuple[int, int]]]:
    """Rows per read block (one batch rounded up to whole chunks) and the read tasks,
    each a row range of ``_BLOCKS_PER_TASK`` blocks starting on a chunk boundary."""
    chunk_rows = max(int(chunk_rows), 1)
    block_rows = -(-batch_rows // chunk_rows) * chunk_rows
    return block_rows, read_tasks(num_rows, block_rows * _BLOCKS_PER_TASK)


@beam.typehints.with_output_types(ExampleBatch)
class _ReadArrayRanges(beam.DoFn):
    """Reads one task's rows block by block and yields them as ``ExampleBatch`` elements."""

    def __init__(self, labels: ArrayColumn, pred_probs: ArrayColumn, batch_rows: int, block_rows: int):
        self._labels = labels
        self._pred_probs = pred_probs
        self._batch_rows = batch_rows
        self._block_rows = block_rows

    def process(self, task: Tuple[int, int]) -> Iterator[ExampleBatch]:
        start, stop = task
        labels_reader = self._labels.open()
        try:
            probs_reader = self._pred_probs.open()
            try:
                for block_start in range(start, stop, self._block_rows):
                    block_stop = min(block_start + self._block_rows, stop)
                    probs = probs_reader.read(block_start, block_stop)
                    labels = labels_reader.read(block_start, block_stop)
                    for begin in range(0, block_stop - block_start, self._batch_rows):
                        end = min(begin + self._batch_rows, block_stop - block_start)
                        yield ExampleBatch(
                            ids=np.arange(block_start + begin, block_start + end, dtype=np.int64),
                            labels=labels[begin:end],
                            pred_probs=probs[begin:end],
                        )
            finally:
                probs_reader.close()
        finally:
            labels_reader.close()


class ReadArrayExamples(ExampleSource):
    """Reads a labels / pred_probs pair of ``ArrayColumn`` as ``ExampleBatch``; id = row index.

    Reads start on chunk boundaries of pred_probs, so a chunked store (Zarr)
    decodes each chunk once per pass; results never depend on the batch size.
    """

    def __init__(
        self,
        labels: ArrayColumn,
        pred_probs: ArrayColumn,
        batch_size: Optional[int] = None,
        reshuffle: bool = True,
        error: Optional[Type[Exception]] = None,
    ):
        super().__init__(reshuffle)
        if error is None:
            error = InputFileError if (labels.is_file or pred_probs.is_file) else ValueError
        check_pair(labels, pred_probs, error)
        self.labels = labels
        self.pred_probs = pred_probs
        self.description = f"{labels.describe()} + {pred_probs.describe()}"
        self.unique_ids = True  # row numbers
        self.num_rows = labels.shape[0]
        self._batch_rows = rows_per_batch(pred_probs.shape[1], pred_probs.dtype.itemsize, batch_size)
        self._block_rows, self._tasks = plan_reads(labels.shape[0], self._batch_rows, pred_probs.chunk_rows)

    @property
    def num_examples(self) -> int:
        return self.labels.shape[0]

    @property
    def num_classes(self) -> int:
        return self.pred_probs.shape[1]

    @property
    def pred_probs_bytes(self) -> int:
        return self.num_examples * self.num_classes * self.pred_probs.dtype.itemsize

    @property
    def in_process_only(self) -> bool:
        return self.labels.in_process_only or self.pred_probs.in_process_only

    def read_tasks(self) -> List[Tuple[int, int]]:
        return list(self._tasks)

    def read_dofn(self) -> beam.DoFn:
        return _ReadArrayRanges(self.labels, self.pred_probs, self._batch_rows, self._block_rows)

    def describe(self) -> str:
        return (
            f"{self.labels.describe()} + {self.pred_probs.describe()}: "
            f"{self.num_examples:,} x {self.num_classes}"
        )
