"""Input files for the reader tests: Parquet tables and a gs://-style test filesystem."""

from __future__ import annotations

import os
import shutil
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import BeamIOError, CompressionTypes, FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem


class PrefixedLocalFileSystem(LocalFileSystem):
    """Local files seen through another scheme: ``testgs:///tmp/x`` is ``/tmp/x``.

    Beam finds a filesystem by its ``scheme()`` among every subclass of
    ``FileSystem`` defined in the process, so importing this module registers it;
    the FnApiRunner runs its workers in this same process. Paths keep the prefix on
    the way out (listings, joins, splits), so code that only uses Beam's
    FileSystems sees remote-style paths throughout, as it would with gs://.
    """

    PREFIX = "testgs://"

    @classmethod
    def scheme(cls):
        return "testgs"

    @classmethod
    def local(cls, path: str) -> str:
        if not path.startswith(cls.PREFIX):
            raise ValueError(f"{path!r} is not a {cls.PREFIX} path")
        return path[len(cls.PREFIX):]

    @classmethod
    def remote(cls, path: str) -> str:
        return cls.PREFIX + path

    def _remote_metadata(self, metadata: FileMetadata) -> FileMetadata:
        return FileMetadata(self.remote(metadata.path), metadata.size_in_bytes, metadata.last_updated_in_seconds)

    def join(self, basepath, *paths):
        return self.remote(os.path.join(self.local(basepath), *paths))

    def split(self, path):
        head, tail = super().split(self.local(path))
        return self.remote(head), tail

    def mkdirs(self, path):
        super().mkdirs(self.local(path))

    def _url_dirname(self, url_or_path):
        return self.remote(os.path.dirname(self.local(url_or_path)))

    def _list(self, dir_or_prefix):
        # LocalFileSystem._list calls self.exists and self.join on local paths: list here.
        root = self.local(dir_or_prefix)
        if not os.path.exists(root):
            return
        for dirpath, _, files in os.walk(root):
            for filename in files:
                path = os.path.join(dirpath, filename)
                yield FileMetadata(self.remote(path), os.path.getsize(path), os.path.getmtime(path))

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return super().create(self.local(path), mime_type, compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return super().open(self.local(path), mime_type, compression_type)

    def copy(self, source_file_names, destination_file_names):
        super().copy([self.local(p) for p in source_file_names], [self.local(p) for p in destination_file_names])

    def rename(self, source_file_names, destination_file_names):
        super().rename([self.local(p) for p in source_file_names], [self.local(p) for p in destination_file_names])

    def exists(self, path):
        return super().exists(self.local(path))

    def size(self, path):
        return super().size(self.local(path))

    # LocalFileSystem's last_updated, checksum and metadata call self.exists on the
    # local path, which this class would refuse: answer from os directly.
    def _local_existing(self, path):
        local = self.local(path)
        if not os.path.exists(local):
            raise BeamIOError(f"Path does not exist: {path}")
        return local

    def last_updated(self, path):
        return os.path.getmtime(self._local_existing(path))

    def checksum(self, path):
        return str(os.path.getsize(self._local_existing(path)))

    def metadata(self, path):
        local = self._local_existing(path)
        return FileMetadata(path, os.path.getsize(local), os.path.getmtime(local))

    def delete(self, paths):
        errors = {}
        for result in self.match(paths):
            if not result.metadata_list:
                errors[result.pattern] = IOError(f"No files found to delete under: {result.pattern}")
            for metadata in result.metadata_list:
                local = self.local(metadata.path)
                try:
                    shutil.rmtree(local) if os.path.isdir(local) else os.remove(local)
                except OSError as error:
                    errors[metadata.path] = error
        if errors:
            raise BeamIOError("Delete operation failed", errors)


def probs_column(probs: np.ndarray, kind: str) -> pa.Array:
    """``probs`` as a list, large_list or fixed_size_list column."""
    n, k = probs.shape
    values = pa.array(probs.ravel())
    if kind == "fixed":
        return pa.FixedSizeListArray.from_arrays(values, k)
    offsets = np.arange(n + 1, dtype=np.int64) * k
    if kind == "large":
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32), pa.int32()), values)


def examples_table(labels, probs, kind: str = "list", ids: Optional[Sequence] = None,
                   id_type: Optional[pa.DataType] = None) -> pa.Table:
    columns = {"label": pa.array(labels), "pred_probs": probs_column(probs, kind)}
    if ids is not None:
        columns["example_id"] = pa.array(ids, type=id_type)
    return pa.table(columns)
