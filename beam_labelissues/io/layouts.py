"""The Parquet layouts data teams already have, read as they are.

- A folder as input: its files listed recursively with pyarrow's dataset rules
  (hive ``key=value`` folders are walked like any other; a file or folder whose
  name starts with ``_`` or ``.`` below the given folder is ignored, such as
  Spark's ``_SUCCESS``, ``_temporary/`` and ``.crc`` files). A path that names a
  folder or a file is never read as a glob, even when it holds ``[``, ``*`` or ``?``.
- One probability column per class: named in class order (``p_cat,p_dog``), or
  by a template resolved through the class names (``prob_{class}``).
- Labels given as class names: string, large_string or dictionary columns (a
  pandas categorical) are mapped to class indices through the class names, by
  name (a categorical's own category order does not matter); a name that is not
  a class is an invalid record with its reason.
- A warning when a few large row groups cap how many workers can read at once.

Every path goes through Beam's FileSystems (local, gs://, s3://).
"""

from __future__ import annotations

import logging
import posixpath
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from beam_labelissues.validation import InputFileError

# pyarrow.dataset's selector_ignore_prefixes default: names starting with these are not data.
IGNORED_PREFIXES = ("_", ".")
CLASS_PLACEHOLDER = "{class}"
# A row group holding at least this much pred_probs is read by one worker alone.
LARGE_ROW_GROUP_BYTES = 128 << 20
_GLOB_CHARACTERS = "[*?"
_LOG = logging.getLogger(__name__)


# --- a folder, a file or a glob ----------------------------------------------------------


def _literal_pattern(path: str) -> str:
    """``path`` as a Beam match pattern that matches only itself: each glob character in a class."""
    return "".join(f"[{c}]" if c in _GLOB_CHARACTERS else c for c in path)


def _match(pattern: str) -> List[str]:
    try:
        with warnings.catch_warnings():
            # "[[]" (a literal "[") makes Python's re warn of a possible nested set.
            warnings.simplefilter("ignore", FutureWarning)
            result = FileSystems.match([pattern])[0]
    except Exception as error:  # BeamIOError, or ValueError for an unknown scheme
        raise InputFileError(f"{pattern}: cannot list files: {error}") from error
    return [metadata.path for metadata in result.metadata_list]


def _relative_parts(path: str, folder: str) -> List[str]:
    relative = path[len(folder):].replace("\\", "/")
    return [part for part in relative.split("/") if part]


def is_ignored(relative_parts: Sequence[str]) -> bool:
    """pyarrow's rule: a name below the folder that starts with ``_`` or ``.`` is not data."""
    return any(part.startswith(IGNORED_PREFIXES) for part in relative_parts)


def list_folder(folder: str) -> Tuple[List[str], List[str]]:
    """Every file below ``folder`` (recursively), in sorted-name order: (data files, ignored files)."""
    folder = folder.rstrip("/\\") if folder.rstrip("/\\") else folder
    # The separator the filesystem joins with, then a match of everything below it.
    prefix = FileSystems.join(folder, "x")[:-1]
    files, ignored = [], []
    for path in sorted(_match(_literal_pattern(prefix) + "**")):
        if path.endswith("/"):  # an object store's folder placeholder
            continue
        (ignored if is_ignored(_relative_parts(path, prefix)) else files).append(path)
    return files, ignored


def input_files(path: str) -> List[str]:
    """The Parquet files ``--input`` names, in sorted-name order; InputFileError if none.

    A folder (anything with files below it) is listed with ``list_folder``; else a
    file that exists is that file; else ``path`` is a glob (``*`` within a folder,
    ``**`` across folders).
    """
    files, ignored = list_folder(path)
    if ignored:
        names = ", ".join(posixpath.basename(p.replace("\\", "/")) for p in ignored[:5])
        names += ", ..." if len(ignored) > 5 else ""
        if not files:
            raise InputFileError(
                f"{path}: the folder holds no data files, only files ignored as pyarrow ignores them "
                f"(names starting with _ or .: {names})"
            )
        _LOG.info("%s: ignoring %d file(s) whose names start with _ or . (as pyarrow does): %s",
                  path, len(ignored), names)
    if files:
        return files
    try:
        if FileSystems.exists(path):
            return [path]
    except Exception as error:  # an unknown scheme, a filesystem that cannot be reached
        raise InputFileError(f"{path}: cannot check the path: {error}") from error
    if not any(c in path for c in _GLOB_CHARACTERS):
        raise InputFileError(f"{path}: no files match (no such file or folder)")
    files = sorted(_match(path))
    if not files:
        raise InputFileError(f"{path}: no files match")
    return files


# --- one column per class -------------------------------------------------------------------


def listed_class_columns(
    spec: str, column_names: Sequence[str], class_names: Optional[Sequence[str]]
) -> Optional[Tuple[str, ...]]:
    """The class columns of an ordered list (``a,b,c``) or a ``{class}`` template, in class order.

    Returns None when ``spec`` is neither (a glob such as ``p_*``, resolved elsewhere).
    A column the list or template names must exist in ``column_names``.
    """
    if CLASS_PLACEHOLDER in spec:
        if "," in spec:
            raise InputFileError(f"--pred_probs_columns {spec!r}: give either a {CLASS_PLACEHOLDER} template or a list")
        if class_names is None:
            raise InputFileError(
                f"--pred_probs_columns {spec!r} names one column per class by its name: give --class_names"
            )
        names = tuple(spec.replace(CLASS_PLACEHOLDER, name) for name in class_names)
        source = f"template {spec!r} with the class names"
    elif "," in spec:
        names = tuple(name.strip() for name in spec.split(","))
        if any(not name for name in names):
            raise InputFileError(f"--pred_probs_columns {spec!r}: an empty column name in the list")
        source = f"list {spec!r}"
    else:
        return None
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputFileError(f"--pred_probs_columns {source} names {', '.join(repeated)} more than once")
    if len(names) < 2:
        raise InputFileError(f"--pred_probs_columns {source} names one column: need >= 2 classes")
    missing = [name for name in names if name not in column_names]
    if missing:
        raise InputFileError(
            f"--pred_probs_columns {source}: no column {', '.join(repr(m) for m in missing)}; "
            f"columns: {', '.join(column_names)}"
        )
    return names


# --- labels given as class names ----------------------------------------------------------


def _is_text(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def holds_class_names(data_type: pa.DataType) -> bool:
    """True for a label column of names: string, large_string, or a dictionary of them."""
    if pa.types.is_dictionary(data_type):
        return _is_text(data_type.value_type)
    return _is_text(data_type)


def label_type_problem(data_type: pa.DataType, has_class_names: bool) -> Optional[str]:
    """Why a label column of this type cannot be read, or None when it can."""
    if pa.types.is_integer(data_type):
        return None
    if pa.types.is_dictionary(data_type) and pa.types.is_integer(data_type.value_type):
        return None
    if holds_class_names(data_type):
        if has_class_names:
            return None
        return "it holds class names: give --class_names (one name per class, in class order) to map them to indices"
    return (
        "labels must be integers (class indices 0..K-1), or class names (string or dictionary, "
        "as pandas writes a categorical) with --class_names"
    )


def label_indices(
    array: pa.Array, class_names: Optional[Sequence[str]]
) -> Tuple[pa.Array, Optional[np.ndarray]]:
    """Integer labels for a label column, and where a name is not a class (None if nowhere).

    Integer columns pass through; a dictionary of integers is decoded; names are
    looked up in ``class_names`` by name. Unknown names become nulls in the result.
    """
    data_type = array.type
    if pa.types.is_dictionary(data_type) and not holds_class_names(data_type):
        return array.dictionary_decode(), None
    if not holds_class_names(data_type):
        return array, None
    if class_names is None:  # checked against the footers before any worker starts
        raise InputFileError("labels are class names, but no class names were given (--class_names)")
    if pa.types.is_dictionary(data_type):
        names = pa.array(list(class_names), type=data_type.value_type)
        indices = pc.index_in(array.dictionary, value_set=names).take(array.indices)
    else:
        indices = pc.index_in(array, value_set=pa.array(list(class_names), type=data_type))
    unknown_count = indices.null_count - array.null_count
    if unknown_count == 0:
        return indices, None
    unknown = np.asarray(pc.and_(indices.is_null(), array.is_valid()).to_numpy(zero_copy_only=False), dtype=bool)
    return indices, unknown


# --- parallelism ----------------------------------------------------------------------------


def row_group_warning(
    row_group_rows: Sequence[int],
    num_files: int,
    num_classes: int,
    itemsize: int,
    large_bytes: Optional[int] = None,
) -> Optional[str]:
    """A warning when row groups so large that one worker reads each alone cap the parallelism.

    Workers read one row group each; a file written as one row group (pandas and
    pyarrow write up to about a million rows per group) is read by one worker.
    """
    if not row_group_rows:
        return None
    large_bytes = LARGE_ROW_GROUP_BYTES if large_bytes is None else large_bytes
    largest = max(row_group_rows)
    largest_bytes = largest * num_classes * itemsize
    if largest_bytes < large_bytes:
        return None
    groups = len(row_group_rows)
    shape = f"each of the {num_files} file(s) is one row group" if groups == num_files else (
        f"{groups} row groups in {num_files} file(s)")
    return (
        f"{shape}, the largest {largest:,} rows ({largest_bytes / (1 << 20):,.0f} MiB of pred_probs): "
        f"at most {groups} worker(s) read at once, and one reads the largest alone. Write smaller row "
        "groups to read in parallel (pyarrow.parquet.write_table or pandas to_parquet with "
        "row_group_size=..., Spark's parquet.block.size)."
    )
