"""Reads a pair of .npy files (labels, pred_probs) in row ranges, in parallel.

The header is read through Beam's FileSystems, so local paths, gs:// and s3://
work alike, and parsed by numpy's own header parser (``numpy.lib.format``), so
every header numpy refuses is refused here too. Rows are read with seek + read:
no worker ever loads a whole file. Object (pickled) arrays are refused from their
header alone, so nothing is ever unpickled; the shape is checked against the file's
size before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from numpy.lib import format as npy_format
from apache_beam.io.filesystems import FileSystems

from beam_labelissues.batches import ExampleBatch
from beam_labelissues.io import paths
from beam_labelissues.options import MAX_NUM_CLASSES
from beam_labelissues.sources import ExampleSource
from beam_labelissues.validation import InputFileError

_MAGIC = b"\x93NUMPY"
# Rows of pred_probs per batch are chosen so that a batch holds about this many bytes:
# small enough to stay in cache and keep memory low, large enough to amortise per-element costs.
DEFAULT_BATCH_BYTES = 4 << 20
# Each read task covers this many batches: fewer file opens, still plenty of parallelism.
_BATCHES_PER_TASK = 4


@dataclasses.dataclass(frozen=True)
class NpyHeader:
    """What a .npy header says: enough to read any row range without numpy.load."""

    path: str
    dtype: np.dtype
    shape: Tuple[int, ...]
    fortran_order: bool
    data_offset: int

    @property
    def num_rows(self) -> int:
        return self.shape[0] if self.shape else 1


def _open(path: str):
    return FileSystems.open(
        path, mime_type="application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED
    )


def _read_exactly(handle, num_bytes: int, path: str) -> bytes:
    chunks, remaining = [], num_bytes
    while remaining > 0:
        chunk = handle.read(remaining)
        if not chunk:
            raise InputFileError(f"{path}: file ends early (truncated .npy file?)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# numpy's own limit on a header's length (``numpy.lib.format``: longer headers "may not
# be safe to load securely"); we read nothing longer.
MAX_HEADER_BYTES = 10000
_HEADER_READERS = {
    (1, 0): (npy_format.read_array_header_1_0, "<H"),
    (2, 0): (npy_format.read_array_header_2_0, "<I"),
}


def read_npy_header(path: str) -> NpyHeader:
    """Parses a .npy header as numpy does (``numpy.lib.format``); never unpickles anything.

    Refuses every header numpy's parser refuses (a ``fortran_order`` that is not a
    bool, a shape that is not a tuple of ints, missing or extra keys, a header longer
    than numpy allows), object dtypes, and a file shorter than the header promises,
    all before any array is allocated.
    """
    kind = paths.non_regular_kind(path)
    if kind:
        raise InputFileError(f"{path}: is a {kind}, not a regular file")
    try:
        if not paths.exists_or_unreachable(path):
            raise InputFileError(f"{path}: no such file")
    except InputFileError:
        raise
    except Exception as error:  # BeamIOError, an unreachable filesystem, no credentials
        raise InputFileError(f"{path}: cannot read: {error}") from error
    try:
        with _open(path) as handle:
            header, data_offset = _parse_header(handle, path)
    except InputFileError:
        raise
    except Exception as error:  # OSError, BeamIOError, a cloud client's errors
        raise InputFileError(f"{path}: cannot read: {error}") from error
    shape, fortran_order, dtype = header
    if dtype.hasobject:
        raise InputFileError(
            f"{path}: holds Python objects (dtype {dtype.descr if dtype.names else dtype.str!r}), which numpy "
            "stores pickled; refusing to unpickle it. Save plain numeric arrays, e.g. "
            "np.save(path, arr.astype(np.float32))."
        )
    if any(d < 0 for d in shape):
        raise InputFileError(f"{path}: malformed .npy header: negative dimension in shape {shape}")
    # Python integers: no overflow, however absurd the shape.
    count = 1
    for d in shape:
        count *= d
    expected = data_offset + count * dtype.itemsize
    try:
        size = FileSystems.get_filesystem(path).size(path)
    except Exception as error:  # BeamIOError; the header was readable, so rarely
        raise InputFileError(f"{path}: cannot read its size: {error}") from error
    if size < expected:
        raise InputFileError(
            f"{path}: file ends early: the header promises {expected:,} bytes for shape {shape} "
            f"({dtype}), the file has {size:,} (truncated .npy file?)"
        )
    return NpyHeader(path, dtype, tuple(shape), bool(fortran_order), data_offset)


def _parse_header(handle, path: str):
    """(numpy's (shape, fortran_order, dtype), offset of the data) from an open .npy file."""
    prefix = handle.read(len(_MAGIC) + 2)
    if len(prefix) < len(_MAGIC) + 2 or prefix[: len(_MAGIC)] != _MAGIC:
        raise InputFileError(f"{path}: not a .npy file (no NUMPY magic string)")
    version = (prefix[len(_MAGIC)], prefix[len(_MAGIC) + 1])
    if version not in _HEADER_READERS:
        raise InputFileError(
            f"{path}: unsupported .npy format version {version[0]}.{version[1]} (this pipeline reads "
            "1.0 and 2.0, which numpy writes for every numeric array)"
        )
    read_header, length_format = _HEADER_READERS[version]
    length_bytes = _read_exactly(handle, struct.calcsize(length_format), path)
    (header_length,) = struct.unpack(length_format, length_bytes)
    if header_length > MAX_HEADER_BYTES:
        raise InputFileError(
            f"{path}: malformed .npy header: {header_length:,} bytes long, numpy reads at most "
            f"{MAX_HEADER_BYTES:,} (refusing it as numpy does)"
        )
    handle.seek(len(_MAGIC) + 2)
    try:
        header = read_header(handle, max_header_size=MAX_HEADER_BYTES)
    except OSError:
        raise
    except Exception as error:  # ValueError, SyntaxError, tokenize's TokenError, RecursionError, ...
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        if text.startswith("EOF: reading"):
            raise InputFileError(f"{path}: file ends early, in the .npy header (truncated .npy file?)") from None
        raise InputFileError(f"{path}: malformed .npy header: {text}") from None
    return header, len(_MAGIC) + 2 + struct.calcsize(length_format) + header_length


@dataclasses.dataclass(frozen=True)
class NpyPair:
    """A checked labels/pred_probs pair: 1-D integer labels, 2-D float pred_probs, same N."""

    labels: NpyHeader
    pred_probs: NpyHeader

    @property
    def num_examples(self) -> int:
        return self.labels.shape[0]

    @property
    def num_classes(self) -> int:
        return self.pred_probs.shape[1]

    @property
    def description(self) -> str:
        return (
            f"{self.labels.path} ({self.labels.dtype}) + {self.pred_probs.path} "
            f"({self.pred_probs.dtype}, {self.num_examples:,} x {self.num_classes})"
        )

    @staticmethod
    def open(labels_path: str, pred_probs_path: str) -> "NpyPair":
        labels = read_npy_header(labels_path)
        pred_probs = read_npy_header(pred_probs_path)
        if len(labels.shape) != 1:
            raise InputFileError(f"{labels_path}: labels must be a 1-D array, got shape {labels.shape}")
        if labels.dtype.kind not in "iu":
            raise InputFileError(
                f"{labels_path}: labels must have an integer dtype, got {labels.dtype} "
                "(class indices 0..K-1)"
            )
        if len(pred_probs.shape) != 2:
            raise InputFileError(
                f"{pred_probs_path}: pred_probs must be a 2-D array (examples x classes), "
                f"got shape {pred_probs.shape}"
            )
        if pred_probs.dtype.kind != "f" or pred_probs.dtype.itemsize not in (2, 4, 8):
            raise InputFileError(
                f"{pred_probs_path}: pred_probs must be float16, float32 or float64, got {pred_probs.dtype}"
            )
        if pred_probs.shape[1] < 2:
            raise InputFileError(f"{pred_probs_path}: needs at least 2 classes, got {pred_probs.shape[1]}")
        if pred_probs.shape[1] > MAX_NUM_CLASSES:
            raise InputFileError(
                f"{pred_probs_path}: has {pred_probs.shape[1]:,} columns (classes); at most "
                f"{MAX_NUM_CLASSES:,} classes are supported"
            )
        if labels.shape[0] != pred_probs.shape[0]:
            raise InputFileError(
                f"labels and pred_probs have different lengths: {labels_path} has "
                f"{labels.shape[0]} rows, {pred_probs_path} has {pred_probs.shape[0]}"
            )
        return NpyPair(labels, pred_probs)


def rows_per_batch(num_classes: int, itemsize: int, batch_size: Optional[int]) -> int:
    """Rows per batch: as asked, else about ``DEFAULT_BATCH_BYTES`` of pred_probs."""
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return int(batch_size)
    return max(1, DEFAULT_BATCH_BYTES // (num_classes * itemsize))


def _read_rows(handle, header: NpyHeader, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of a 1-D or 2-D array, as a native-byte-order array."""
    dtype = header.dtype
    count = stop - start
    if len(header.shape) == 1 or not header.fortran_order:
        width = 1 if len(header.shape) == 1 else header.shape[1]
        handle.seek(header.data_offset + start * width * dtype.itemsize)
        data = _read_exactly(handle, count * width * dtype.itemsize, header.path)
        array = np.frombuffer(data, dtype=dtype)
        array = array if len(header.shape) == 1 else array.reshape(count, width)
    else:
        # Fortran order stores each column contiguously: read the range of every column.
        num_rows, width = header.shape
        array = np.empty((count, width), dtype=dtype)
        for column in range(width):
            handle.seek(header.data_offset + (column * num_rows + start) * dtype.itemsize)
            data = _read_exactly(handle, count * dtype.itemsize, header.path)
            array[:, column] = np.frombuffer(data, dtype=dtype)
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    return array


@beam.typehints.with_output_types(ExampleBatch)
class _ReadNpyRanges(beam.DoFn):
    """Reads one task's row range as consecutive ``ExampleBatch`` elements."""

    def __init__(self, pair: NpyPair, batch_rows: int):
        self._pair = pair
        self._batch_rows = batch_rows

    def process(self, task: Tuple[int, int]) -> Iterator[ExampleBatch]:
        start, stop = task
        with _open(self._pair.labels.path) as labels_file, _open(self._pair.pred_probs.path) as probs_file:
            for begin in range(start, stop, self._batch_rows):
                end = min(begin + self._batch_rows, stop)
                yield ExampleBatch(
                    ids=np.arange(begin, end, dtype=np.int64),
                    labels=_read_rows(labels_file, self._pair.labels, begin, end),
                    pred_probs=_read_rows(probs_file, self._pair.pred_probs, begin, end),
                )


def read_tasks(num_rows: int, rows_per_task: int) -> List[Tuple[int, int]]:
    return [(start, min(start + rows_per_task, num_rows)) for start in range(0, num_rows, rows_per_task)]


class ReadNpyExamples(ExampleSource):
    """Reads labels.npy + pred_probs.npy as ``ExampleBatch`` elements; id = row index."""

    unique_ids = True  # row numbers

    def __init__(self, pair: NpyPair, batch_size: Optional[int] = None, reshuffle: bool = True):
        super().__init__(reshuffle)
        self._pair = pair
        self._batch_rows = rows_per_batch(pair.num_classes, pair.pred_probs.dtype.itemsize, batch_size)

    def read_tasks(self) -> List[Tuple[int, int]]:
        return read_tasks(self._pair.num_examples, self._batch_rows * _BATCHES_PER_TASK)

    def read_dofn(self) -> beam.DoFn:
        return _ReadNpyRanges(self._pair, self._batch_rows)

    @property
    def description(self) -> str:
        return self._pair.description
