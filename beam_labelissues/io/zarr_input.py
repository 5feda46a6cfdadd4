"""Reads a labels / pred_probs pair of Zarr arrays (format 2 or 3), local or remote.

``zarr_source(labels_path, pred_probs_path)`` is all a caller needs: it opens
both arrays, checks them with the rule every array input follows (1-D integer
labels, 2-D float pred_probs, the same N) and returns a ``ReadArrayExamples``
whose reads start on pred_probs' chunk (or shard) boundaries, so each pass
decodes every chunk once, in parallel over read tasks like the .npy ranges.

Where a path lives decides how it is read: a local path with zarr's own
``LocalStore``; a URL whose scheme Apache Beam knows (gs://, s3://, hdfs://, ...)
through Beam's FileSystems, like every other input file; any other URL through
zarr's fsspec store (``pip install fsspec`` plus the protocol's package).

A read holds one block of rows: a batch rounded up to whole chunks (or shards)
of pred_probs, so chunk pred_probs along rows in pieces of a few MiB.

``zarr`` (3 or later) is an optional extra (``pip install 'beam-labelissues[zarr]'``) and is
imported only when a Zarr input is read.
"""

from __future__ import annotations

import asyncio
import io
import os
from typing import Any, AsyncIterator, Iterable, List, Optional, Tuple

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_labelissues.io.arrays import ArrayColumn, ColumnReader, ReadArrayExamples
from beam_labelissues.io.npy import InputFileError

ZARR_EXTRA = "pip install 'beam-labelissues[zarr]'"


def require_zarr():
    """Imports zarr, or explains which extra installs it."""
    try:
        import zarr
    except ImportError as error:
        raise ImportError(f"reading Zarr arrays needs the zarr package: {ZARR_EXTRA}") from error
    if int(zarr.__version__.split(".")[0]) < 3:
        raise ImportError(f"reading Zarr arrays needs zarr 3 or later, found {zarr.__version__}: {ZARR_EXTRA}")
    return zarr


def is_zarr_path(path: str) -> bool:
    """True for a path that names a Zarr store: it ends in .zarr or holds Zarr metadata."""
    trimmed = path.rstrip("/")
    if trimmed.endswith(".zarr"):
        return True
    try:
        return any(FileSystems.exists(FileSystems.join(trimmed, name)) for name in ("zarr.json", ".zarray"))
    except Exception:  # a scheme Beam does not know, say: not decidable here
        return False


def _beam_knows(location: str) -> bool:
    try:
        FileSystems.get_filesystem(location)
    except ValueError:
        return False
    return True


def _is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def _store(location: str):
    zarr = require_zarr()
    if _is_local(location):
        path = location[len("file://"):] if location.startswith("file://") else location
        if not os.path.isdir(path):
            raise InputFileError(f"{location}: no such Zarr store (expected a directory)")
        return zarr.storage.LocalStore(path, read_only=True)
    if _beam_knows(location):
        return beam_filesystem_store(location)
    try:
        return zarr.storage.FsspecStore.from_url(location, read_only=True)
    except Exception as error:  # ImportError without fsspec, ValueError for an unknown protocol
        raise InputFileError(
            f"{location}: neither Apache Beam nor fsspec can read this location: {error}"
        ) from error


def open_zarr_array(location: str):
    """Opens the Zarr array stored at ``location`` read-only; every failure is an ``InputFileError``."""
    zarr = require_zarr()
    store = _store(location)
    try:
        return zarr.open_array(store=store, mode="r")
    except InputFileError:
        raise
    except Exception as error:  # zarr's errors: no array there, a group, bad metadata
        raise InputFileError(f"{location}: not a readable Zarr array: {error}") from error


def _chunk_rows(array) -> int:
    shards = getattr(array, "shards", None)
    return int((shards or array.chunks)[0]) if array.ndim else 1


class ZarrColumn(ArrayColumn):
    """A Zarr array every worker opens again from its location."""

    is_file = True

    def __init__(self, location: str, array: Any = None):
        self.location = location
        array = open_zarr_array(location) if array is None else array
        self.name = location
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype) if isinstance(array.dtype, np.dtype) else array.dtype
        self.chunk_rows = _chunk_rows(array)
        self.zarr_format = int(array.metadata.zarr_format)
        self._array = array

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_array"] = None
        return state

    def open(self) -> ColumnReader:
        if self._array is None:
            self._array = open_zarr_array(self.location)
        return _ZarrReader(self._array, self.chunk_rows)

    def describe(self) -> str:
        return f"{self.location} (Zarr v{self.zarr_format}, {self.dtype}, chunks of {self.chunk_rows:,} rows)"


class _ZarrReader(ColumnReader):
    """Reads whole chunks and keeps the last ones read, so a column chunked
    differently from pred_probs (labels, usually) still decodes each chunk once per task."""

    def __init__(self, array, chunk_rows: int):
        self._array = array
        self._chunk_rows = max(chunk_rows, 1)
        self._num_rows = array.shape[0]
        self._window: Tuple[int, int] = (0, 0)
        self._values: Optional[np.ndarray] = None

    def read(self, start: int, stop: int) -> np.ndarray:
        first, last = self._window
        if self._values is None or start < first or stop > last:
            first = start // self._chunk_rows * self._chunk_rows
            last = min(-(-stop // self._chunk_rows) * self._chunk_rows, self._num_rows)
            values = np.asarray(self._array[first:last])
            self._values = values if values.dtype.isnative else values.astype(values.dtype.newbyteorder("="))
            self._window = (first, last)
        return self._values[start - first:stop - first]

    def close(self) -> None:
        self._values = None


def column_of_zarr_array(array: Any, name: str) -> Optional[ZarrColumn]:
    """A ``ZarrColumn`` for a zarr array whose store other workers can open, else None."""
    zarr = require_zarr()
    store = getattr(array, "store", None)
    path = getattr(array, "path", "") or ""
    if isinstance(store, zarr.storage.LocalStore):
        root = str(store.root)
    elif isinstance(store, _beam_store_class()):
        root = store.root
    else:
        return None
    location = FileSystems.join(root, path) if path else root
    return ZarrColumn(location, array)


def zarr_source(
    labels_path: str, pred_probs_path: str, batch_size: Optional[int] = None, reshuffle: bool = True
) -> ReadArrayExamples:
    """The source for a pair of Zarr array stores: what ``--labels_file L.zarr`` needs.

    Zarr chunks are compressed, so the run reads them one time less where it can.
    """
    source = ReadArrayExamples(
        ZarrColumn(labels_path), ZarrColumn(pred_probs_path), batch_size=batch_size, reshuffle=reshuffle,
        error=InputFileError,
    )
    source.decoding_costs_more = True
    return source


# ---------------------------------------------------------------- a Zarr store on Beam's FileSystems

_BEAM_STORE_CLASS = None


def _beam_store_class():
    """The read-only zarr Store over Beam FileSystems (defined on first use: zarr is optional)."""
    global _BEAM_STORE_CLASS
    if _BEAM_STORE_CLASS is None:
        _BEAM_STORE_CLASS = _define_beam_store(require_zarr())
    return _BEAM_STORE_CLASS


def beam_filesystem_store(root: str):
    return _beam_store_class()(root)


def _open_file(path: str):
    return FileSystems.open(
        path, mime_type="application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED
    )


def _define_beam_store(zarr):
    from zarr.abc.store import OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
    from zarr.core.buffer import default_buffer_prototype

    def read_key(path: str, byte_range) -> Optional[bytes]:
        try:
            handle = _open_file(path)
        except Exception:
            if not FileSystems.exists(path):
                return None  # a missing key: zarr reads a missing chunk as the fill value
            raise
        with handle:
            if byte_range is None:
                return handle.read()
            if isinstance(byte_range, RangeByteRequest):
                handle.seek(byte_range.start)
                return handle.read(byte_range.end - byte_range.start)
            if isinstance(byte_range, OffsetByteRequest):
                handle.seek(byte_range.offset)
                return handle.read()
            if isinstance(byte_range, SuffixByteRequest):
                size = handle.seek(0, io.SEEK_END)
                handle.seek(max(0, size - byte_range.suffix))
                return handle.read()
            raise TypeError(f"unexpected byte range {byte_range!r}")

    class BeamFileSystemStore(Store):
        """Read-only Zarr store over Apache Beam's FileSystems (local, gs://, s3://, ...)."""

        supports_writes = False
        supports_deletes = False
        supports_listing = True

        def __init__(self, root: str):
            super().__init__(read_only=True)
            self.root = root.rstrip("/")

        def __eq__(self, other: object) -> bool:
            return isinstance(other, BeamFileSystemStore) and other.root == self.root

        def __repr__(self) -> str:
            return f"BeamFileSystemStore({self.root!r})"

        def _path(self, key: str) -> str:
            return FileSystems.join(self.root, key)

        async def get(self, key: str, prototype=None, byte_range=None):
            data = await asyncio.to_thread(read_key, self._path(key), byte_range)
            if data is None:
                return None
            return (prototype or default_buffer_prototype()).buffer.from_bytes(data)

        async def get_partial_values(self, prototype, key_ranges: Iterable[Tuple[str, Any]]):
            return list(await asyncio.gather(*(self.get(key, prototype, rng) for key, rng in key_ranges)))

        async def exists(self, key: str) -> bool:
            return await asyncio.to_thread(FileSystems.exists, self._path(key))

        async def set(self, key: str, value) -> None:
            self._check_writable()

        async def delete(self, key: str) -> None:
            self._check_writable()

        def _keys(self, prefix: str) -> List[str]:
            pattern = FileSystems.join(self.root, prefix + "**") if prefix else FileSystems.join(self.root, "**")
            matches = FileSystems.match([pattern])[0].metadata_list
            start = len(self.root) + 1
            return sorted(m.path[start:] for m in matches if m.path.startswith(self.root + "/"))

        async def list(self) -> AsyncIterator[str]:
            for key in await asyncio.to_thread(self._keys, ""):
                yield key

        async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
            for key in await asyncio.to_thread(self._keys, prefix):
                yield key

        async def list_dir(self, prefix: str) -> AsyncIterator[str]:
            base = prefix.rstrip("/") + "/" if prefix.rstrip("/") else ""
            seen = set()
            for key in await asyncio.to_thread(self._keys, base):
                child = key[len(base):].split("/", 1)[0]
                if child and child not in seen:
                    seen.add(child)
                    yield child

    return BeamFileSystemStore
