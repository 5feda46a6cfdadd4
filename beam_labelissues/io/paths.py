"""Exact-path file operations over Beam's FileSystems: a user's path is never a pattern.

Beam's ``FileSystems.match`` reads every path as a glob, and ``FileSystems.delete``
matches before it deletes, so ``exp[1]/summary.json`` would name ``exp1/summary.json``.
Everything here takes a path to mean that one path:

- local paths (no scheme) use ``os`` directly: exact, and listing one directory
  does not walk its parent;
- other filesystems (gs://, s3://, ...) go through ``FileSystems`` with the
  glob characters of the path escaped, and results are checked to be the path
  itself or below it.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import warnings
from typing import Dict, Iterator, List, Optional, Tuple

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

_GLOB_CHARS = "[]*?"
# How long the first question to a remote filesystem may take before it counts as
# unreachable (credentials and DNS are retried for minutes otherwise).
REMOTE_TIMEOUT_ENV = "BEAM_LABELISSUES_REMOTE_TIMEOUT_S"
DEFAULT_REMOTE_TIMEOUT_S = 30.0


class UnreachableError(OSError):
    """A remote filesystem did not answer in time."""


def remote_timeout_s() -> float:
    try:
        return max(0.1, float(os.environ.get(REMOTE_TIMEOUT_ENV, DEFAULT_REMOTE_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_REMOTE_TIMEOUT_S


def is_local(path: str) -> bool:
    """True for a path of the local filesystem (no ``scheme://``)."""
    return FileSystems.get_scheme(path) is None


def escape_glob(path: str) -> str:
    """``path`` as a Beam pattern that matches exactly ``path`` (``[`` -> ``[[]`` and so on)."""
    return "".join(f"[{c}]" if c in "[*?" else c for c in path)


def has_glob_chars(path: str) -> bool:
    return any(c in _GLOB_CHARS for c in path)


def join(directory: str, *names: str) -> str:
    return FileSystems.join(directory, *names)


def check_filesystem(path: str) -> None:
    """Raises ValueError when no Beam filesystem serves ``path`` (an unknown scheme,
    gs:// without ``apache-beam[gcp]``, s3:// without boto3)."""
    try:
        FileSystems.get_filesystem(path)
    except ValueError:
        raise
    except Exception as error:  # Beam's S3 filesystem asserts that boto3 is there
        raise ValueError(f"{type(error).__name__}: {error}") from error


def exists(path: str) -> bool:
    """True when ``path`` itself exists (a file, or a local directory)."""
    if is_local(path):
        return os.path.lexists(path)
    return FileSystems.exists(path)


def exists_or_unreachable(path: str) -> bool:
    """``exists``, but a remote filesystem that does not answer within ``remote_timeout_s()``
    raises ``UnreachableError`` instead of retrying for minutes. Errors of the
    filesystem itself (no credentials, no such bucket) are raised as they are."""
    if is_local(path):
        return exists(path)
    answer: Dict[str, object] = {}

    def ask():
        try:
            answer["exists"] = FileSystems.exists(path)
        except BaseException as error:  # noqa: BLE001  handed to the caller
            answer["error"] = error

    timeout = remote_timeout_s()
    asker = threading.Thread(target=ask, name="beam-labelissues-probe", daemon=True)
    asker.start()
    asker.join(timeout)
    if asker.is_alive():
        raise UnreachableError(f"{path}: the filesystem did not answer within {timeout:g} s (network or credentials?)")
    if "error" in answer:
        raise answer["error"]
    return bool(answer["exists"])


def _below(directory: str) -> str:
    return directory if directory.endswith("/") else directory + "/"


def list_tree(directory: str) -> Iterator[Tuple[str, int]]:
    """Every file below ``directory`` (recursively) as (path relative to it, size in bytes)."""
    if is_local(directory):
        for root, dirs, files in os.walk(directory):
            for name in files:
                full = os.path.join(root, name)
                try:
                    size = os.lstat(full).st_size
                except OSError:
                    continue  # gone meanwhile
                yield os.path.relpath(full, directory), size
        return
    prefix = _below(directory)
    try:
        results = _match_exactly(escape_glob(prefix) + "**")
    except BeamIOError as error:
        if _only_not_found(error):
            return
        raise
    for metadata in results[0].metadata_list:
        if metadata.path.startswith(prefix) and len(metadata.path) > len(prefix):
            yield metadata.path[len(prefix):], metadata.size_in_bytes


def _match_exactly(pattern: str):
    # An escaped "[" reads "[[]", which Python's re flags as a possible nested set.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return FileSystems.match([pattern])


def _only_not_found(error: BeamIOError) -> bool:
    details = getattr(error, "exception_details", None) or {}
    return bool(details) and all(isinstance(e, FileNotFoundError) for e in details.values())


def list_names(directory: str) -> List[str]:
    """The names directly inside ``directory``: files and (local or implied) subdirectories."""
    if is_local(directory):
        try:
            return sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
    return sorted({relative.split("/", 1)[0] for relative, _ in list_tree(directory)})


def file_sizes(directory: str) -> Dict[str, int]:
    """Size of every file below ``directory``, by relative path."""
    return dict(list_tree(directory))


def delete_file(path: str) -> None:
    """Deletes the file ``path`` and nothing else; no error if it is already gone."""
    if is_local(path):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        return
    if not FileSystems.exists(path):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        FileSystems.delete([escape_glob(path)])


def delete_tree(directory: str) -> None:
    """Deletes ``directory`` and everything below it (never follows a symbolic link out)."""
    if is_local(directory):
        if os.path.islink(directory):
            os.remove(directory)
        elif os.path.isdir(directory):
            shutil.rmtree(directory)
        return
    for relative, _ in list(list_tree(directory)):
        delete_file(_below(directory) + relative)
    # Object stores have no directories. A filesystem that has them keeps the emptied
    # tree, which only a pattern can name; with glob characters in the path no pattern
    # names it alone, and the empty directory stays.
    if not has_glob_chars(directory) and FileSystems.exists(directory):
        FileSystems.delete([directory])


def remove_empty_directory(directory: str) -> None:
    """Removes a local directory if it is empty (object stores have no empty directories)."""
    if is_local(directory):
        try:
            os.rmdir(directory)
        except OSError:
            pass


def rename(source: str, destination: str) -> None:
    """Moves one file, replacing ``destination`` if it exists (exact paths both)."""
    if is_local(source) and is_local(destination):
        os.replace(source, destination)
        return
    FileSystems.rename([source], [destination])


def make_directories(path: str) -> None:
    """Creates a directory and its parents (a no-op on object stores, which have none)."""
    if is_local(path):
        os.makedirs(path, exist_ok=True)
    elif not FileSystems.exists(path):
        FileSystems.mkdirs(path)


def local_kind(path: str) -> Optional[str]:
    """What a local path is, for error messages: None when it is a directory (or remote).

    One of ``"missing"``, ``"dangling symbolic link"``, ``"file"``, ``"FIFO"``, ...
    """
    if not is_local(path):
        return None
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "dangling symbolic link" if os.path.islink(path) else "missing"
    except NotADirectoryError:
        return "path through a file"
    if stat.S_ISDIR(mode):
        return None
    return _kind_of_mode(mode)


def _kind_of_mode(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


def non_regular_kind(path: str) -> Optional[str]:
    """For a local path that exists but is not a regular file (a FIFO, a device, a
    directory...), what it is; else None. Reading a FIFO would block forever."""
    if not is_local(path):
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing: the caller's existence check says so
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "directory"
    return _kind_of_mode(mode)
