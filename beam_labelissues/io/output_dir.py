"""The output directory rule: a lock, a staging directory per run, publishing by manifest.

The rule (README.md, "The output directory"):

1. A run writes only into its own staging directory,
   ``OUTPUT/.beam-labelissues-staging-<run id>/``, Beam's temporary files included.
   Nothing else in ``OUTPUT`` changes while the pipeline runs.
2. Only a run that finished publishes: it moves the files its new summary.json
   lists (and report.html) into ``OUTPUT``, deletes the files the previous
   summary.json listed that it did not write again, and renames summary.json into
   place last. summary.json present means that run finished and every file it
   lists is there; a failed or interrupted run leaves the earlier results as they were.
3. The only files ever deleted or replaced in ``OUTPUT`` are the files a
   summary.json of this tool lists (exact names, never patterns), this tool's
   own staging directories and its lock file. Every other file stays, whatever
   its name; a new output never silently replaces a file no manifest of ours lists.
4. A non-empty ``OUTPUT`` that holds no earlier run of this tool is refused
   unless ``overwrite`` is given; then files with the names of the new outputs are
   replaced and nothing else is touched.
5. One run at a time: a run holds ``OUTPUT/.beam-labelissues.lock`` from start to
   end (an advisory ``flock`` on local disks, released by the kernel however the
   run ends; on object stores a lock object naming its host and process, which a
   later run on the same host takes over once that process is gone).
6. Staging directories of runs that did not finish (killed, failed, out of
   space) are deleted by the next run into the same ``OUTPUT``, which logs what it removed.

Publishing is not atomic on any filesystem (several renames), so it keeps a
journal: before it changes anything it writes, into the staging directory, the
names of every file of ours in ``OUTPUT``. A run cut off while publishing leaves
that journal, and the next run treats those names as its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from typing import Iterator, List, Optional, Set

from apache_beam.io.filesystems import FileSystems

from beam_labelissues.io import locations, outputs, paths
from beam_labelissues.processes import process_alive
from beam_labelissues.validation import OutputDirError, UsageError

STAGING_PREFIX = ".beam-labelissues-staging-"
LOCK_FILE = ".beam-labelissues.lock"
JOURNAL_FILE = "journal.json"
_RUN_ID = re.compile(r"^\d{8}T\d{6}-\d+-[0-9a-f]{6}$")
_LOG = logging.getLogger(__name__)


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{secrets.token_hex(3)}"


def is_staging_name(name: str) -> bool:
    """True for the name of a staging directory of this tool (and nothing a user would pick)."""
    return name.startswith(STAGING_PREFIX) and bool(_RUN_ID.match(name[len(STAGING_PREFIX):]))


def is_plain_name(name: str) -> bool:
    """A file name a manifest may list: one path component, ours to touch."""
    return (
        bool(name)
        and "/" not in name
        and "\\" not in name
        and name not in (".", "..", LOCK_FILE)
        and not is_staging_name(name)
    )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    text = f"{type(error).__name__}: {text}" if not isinstance(error, OSError) or not text else text
    return text if len(text) <= 300 else text[:297] + "..."


def _human_bytes(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _read_text(path: str) -> str:
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8")


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path, mime_type="application/json") as handle:
        handle.write(text.encode("utf-8"))


def read_our_summary(output_dir: str) -> Optional[outputs.Summary]:
    """The summary.json of an earlier run of ours in ``output_dir``, or None (absent, or not ours)."""
    path = outputs.output_path(output_dir, outputs.SUMMARY_FILE)
    if not paths.exists(path) or paths.non_regular_kind(path):
        return None
    try:
        return outputs.Summary.from_json(_read_text(path), source=path)
    except (ValueError, TypeError, UnicodeDecodeError, OSError):
        return None


def files_listed_by(summary: outputs.Summary) -> Set[str]:
    """The names a summary says its run wrote, plus summary.json; only plain names count."""
    names = set(summary.files_of_the_run) | {outputs.SUMMARY_FILE}
    return {name for name in names if isinstance(name, str) and is_plain_name(name)}


# --- the lock -----------------------------------------------------------------------


class _Lock:
    """One run at a time in an output directory (rule 5)."""

    def __init__(self, directory: str, run_id: str):
        self.path = outputs.output_path(directory, LOCK_FILE)
        self._directory = directory
        self._run_id = run_id
        self._fd: Optional[int] = None
        self._info = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}

    def _busy(self, holder: str) -> OutputDirError:
        return OutputDirError(
            f"{self._directory}: another run is writing into this output directory ({holder}); "
            "wait for it to finish or choose another --output"
        )

    @staticmethod
    def _describe(info) -> str:
        if not isinstance(info, dict):
            return "holder unknown"
        started = info.get("started")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
        return f"process {info.get('pid')} on {info.get('host')}, since {when}"

    def acquire(self) -> None:
        if paths.is_local(self.path):
            self._acquire_local()
        else:
            self._acquire_object()

    def _acquire_local(self) -> None:
        import fcntl

        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as error:
                raise OutputDirError(f"{self._directory}: cannot write into the output directory: {error.strerror}") \
                    from error
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    holder = self._describe(json.loads(os.read(fd, 4096) or b"null"))
                except ValueError:
                    holder = "holder unknown"
                os.close(fd)
                raise self._busy(holder) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file as we opened it: lock the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(self._info).encode("utf-8"))
            self._fd = fd
            return
        raise self._busy("the lock file keeps changing")

    def _acquire_object(self) -> None:
        if paths.exists(self.path):
            try:
                info = json.loads(_read_text(self.path))
            except (ValueError, OSError):
                info = None
            stale = (
                isinstance(info, dict)
                and info.get("host") == socket.gethostname()
                and isinstance(info.get("pid"), int)
                and not process_alive(info["pid"])
            )
            if not stale:
                raise OutputDirError(
                    f"{self._directory}: another run is writing into this output directory "
                    f"({self._describe(info)}); if no run is, delete {self.path} and run again"
                )
            _LOG.warning("taking over the lock of a run that ended without releasing it: %s", self._describe(info))
        try:
            _write_text(self.path, json.dumps(self._info))
            # Object stores have no exclusive create: read back, so of two runs that
            # wrote at once, the one whose write lost sees it.
            mine = json.loads(_read_text(self.path)).get("run_id") == self._run_id
        except Exception as error:  # BeamIOError, OSError, a cloud client's errors
            raise OutputDirError(f"{self._directory}: cannot write into the output directory: {error}") from error
        if not mine:
            raise self._busy("it took the lock as this run did")

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.remove(self.path)
            os.close(self._fd)
            self._fd = None
            return
        with contextlib.suppress(Exception):
            if paths.exists(self.path) and json.loads(_read_text(self.path)).get("run_id") == self._run_id:
                paths.delete_file(self.path)


# --- the output directory ----------------------------------------------------------------


def check_output_path(path: str) -> None:
    """Refuses an output path that cannot be a directory of outputs, before anything is written."""
    if not path or not path.strip():
        raise OutputDirError("--output is empty: give a directory")
    try:
        locations.check_output_location(path)  # a filesystem serves it (the extra that adds it, if not)
    except UsageError as error:
        raise OutputDirError(str(error)) from error
    kind = paths.local_kind(path)
    if kind in ("missing", None):
        return
    if kind == "dangling symbolic link":
        raise OutputDirError(f"--output {path}: is a symbolic link to {os.readlink(path)!r}, which does not exist")
    raise OutputDirError(f"--output {path}: is a {kind}, not a directory")


@dataclasses.dataclass
class _Earlier:
    """What earlier runs of ours left in the output directory."""

    summary: Optional[outputs.Summary]
    owned: Set[str]  # names of files in OUTPUT that are ours (summary.json's list, journals)
    stale_staging: List[str]


class OutputDirectory:
    """One run's hold on an output directory: lock, staging directory, publishing.

    Create it (no I/O), build the pipeline to write into ``staging``, then
    ``open()`` once the inputs are checked; ``publish()`` when the run finished,
    else ``abandon()``. ``close()`` (always; ``held()`` does it) releases the lock.
    """

    def __init__(self, path: str, overwrite: bool = False):
        self.path = path
        self.overwrite = overwrite
        self.run_id = new_run_id()
        self.staging = outputs.output_path(path, STAGING_PREFIX + self.run_id) if path else ""
        self._lock: Optional[_Lock] = None
        self._created = False
        self._owned: Set[str] = set()
        self._publish_started = False
        self._published = False
        self._closed = False
        # Held while publishing: an interrupt waits for it (cli.RunState.on_interrupt).
        self.publishing = threading.Lock()
        # close() may be called by the main thread and by an interrupt's thread at once.
        self._closing = threading.Lock()

    def open(self) -> "OutputDirectory":
        """Checks the path, creates the directory if needed, takes the lock and cleans
        what earlier runs of ours left; refuses a non-empty directory that holds no run
        of ours (unless ``overwrite``)."""
        path = self.path
        check_output_path(path)
        try:
            self._created = not paths.exists_or_unreachable(path)
        except Exception as error:  # UnreachableError, no credentials, ...
            raise OutputDirError(
                f"--output {path}: cannot reach the filesystem: {_one_line(error)}{locations.install_hint(path)}"
            ) from error
        try:
            paths.make_directories(path)
        except Exception as error:  # OSError, BeamIOError, a cloud client's errors
            reason = getattr(error, "strerror", None) or str(error)
            raise OutputDirError(f"--output {path}: cannot create the directory: {reason}") from error
        self._lock = _Lock(path, self.run_id)
        try:
            self._lock.acquire()
        except BaseException:
            self._lock = None
            if self._created:
                paths.remove_empty_directory(path)
            raise
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise
        return self

    def check_writable_in_place(self) -> None:
        """For a job that is only submitted (a Flex Template launch): nobody waits for it to
        publish, so it writes straight into the directory, summary.json last. Refuses a
        non-empty directory that holds no earlier run of ours (unless ``overwrite``);
        touches nothing. Files an earlier run listed stay until the job's own summary.json
        replaces that run's: give each launch its own directory to keep runs apart."""
        check_output_path(self.path)
        try:
            if not paths.exists_or_unreachable(self.path):
                return
        except Exception as error:  # UnreachableError, no credentials, ...
            raise OutputDirError(
                f"--output {self.path}: cannot reach the filesystem: {_one_line(error)}"
                f"{locations.install_hint(self.path)}"
            ) from error
        earlier = self._look()
        others = [name for name in paths.list_names(self.path) if name != LOCK_FILE and not is_staging_name(name)]
        if others and not earlier.owned and not self.overwrite:
            raise OutputDirError(
                f"--output {self.path}: the directory is not empty and holds no earlier run of this tool; "
                "a submitted job writes straight into it: choose a new or empty directory, or pass --overwrite"
            )

    def _look(self) -> _Earlier:
        try:
            names = paths.list_names(self.path)
        except Exception as error:
            raise OutputDirError(f"--output {self.path}: cannot list the directory: {error}") from error
        summary = read_our_summary(self.path)
        owned = files_listed_by(summary) if summary is not None else set()
        stale = [name for name in names if is_staging_name(name) and name != STAGING_PREFIX + self.run_id]
        for name in stale:
            journal = outputs.output_path(outputs.output_path(self.path, name), JOURNAL_FILE)
            try:
                listed = json.loads(_read_text(journal)).get("owned", []) if paths.exists(journal) else []
            except (ValueError, OSError, AttributeError):
                listed = []
            owned |= {n for n in listed if isinstance(n, str) and is_plain_name(n)}
        return _Earlier(summary, owned, stale)

    def _prepare(self) -> None:
        earlier = self._look()
        self._owned = earlier.owned
        others = [
            name for name in paths.list_names(self.path)
            if name != LOCK_FILE and not is_staging_name(name)
        ]
        if others and not earlier.owned and not self.overwrite:
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise OutputDirError(
                f"--output {self.path}: the directory is not empty ({shown}) and holds no earlier run of "
                f"this tool (no {outputs.SUMMARY_FILE} of ours); choose a new or empty directory, or pass "
                "--overwrite to write into it (files named as this run's outputs are then replaced, "
                "nothing else is touched)"
            )
        paths.make_directories(self.staging)
        listed = files_listed_by(earlier.summary) if earlier.summary is not None else set()
        if earlier.owned - listed:
            # Files of an interrupted publish: note them in this run's journal before the
            # stale staging directory that knew of them goes.
            self._write_journal(self._owned)
        for name in earlier.stale_staging:
            self._remove_stale(name)

    def _remove_stale(self, name: str) -> None:
        directory = outputs.output_path(self.path, name)
        try:
            size = sum(paths.file_sizes(directory).values())
            paths.delete_tree(directory)
        except Exception as error:  # keep going: the run does not need that space to be correct
            _LOG.warning("could not remove %s, left by an earlier run: %s", directory, error)
            return
        _LOG.warning(
            "removed %s (%s) left by an earlier run into %s that did not finish",
            name, _human_bytes(size), self.path,
        )

    def _write_journal(self, owned: Set[str], new: Optional[List[str]] = None) -> None:
        journal = {"run_id": self.run_id, "owned": sorted(owned | set(new or []))}
        _write_text(outputs.output_path(self.staging, JOURNAL_FILE), json.dumps(journal))

    # --- publishing ------------------------------------------------------------------

    def _target(self, name: str) -> str:
        return outputs.output_path(self.path, name)

    def publish(self) -> outputs.Summary:
        """Moves the finished run from staging into the output directory (rule 2).

        Returns the published summary. Raises ``OutputDirError`` before changing
        anything when a new output would replace a file that is not ours.
        """
        staged_summary = outputs.output_path(self.staging, outputs.SUMMARY_FILE)
        summary = outputs.Summary.from_json(_read_text(staged_summary), source=staged_summary)
        new = list(summary.files_of_the_run)
        strange = [name for name in new if not is_plain_name(name)]
        if strange:
            raise OutputDirError(f"the run's manifest names files this tool does not write: {strange}")
        missing = [name for name in new if not paths.exists(outputs.output_path(self.staging, name))]
        if missing:
            raise FileNotFoundError(f"{self.staging}: files of the finished run are missing: {missing}")
        replaced = [name for name in new + [outputs.SUMMARY_FILE] if paths.exists(self._target(name))]
        foreign = [name for name in replaced if name not in self._owned]
        if foreign and not self.overwrite:
            raise OutputDirError(
                f"--output {self.path}: this run would replace {', '.join(foreign)}, which no earlier run "
                "of this tool wrote; nothing was changed. Move those files away, choose another "
                "directory, or pass --overwrite"
            )
        with self.publishing:
            self._write_journal(self._owned, new)
            self._publish_started = True
            if outputs.SUMMARY_FILE in replaced:  # first: the directory no longer looks finished
                paths.delete_file(self._target(outputs.SUMMARY_FILE))
            for name in new:
                paths.rename(outputs.output_path(self.staging, name), self._target(name))
            for name in sorted(self._owned - set(new) - {outputs.SUMMARY_FILE}):
                paths.delete_file(self._target(name))
            paths.rename(staged_summary, self._target(outputs.SUMMARY_FILE))
            self._published = True
            paths.delete_tree(self.staging)
        return summary

    @property
    def published(self) -> bool:
        return self._published

    def abandon(self) -> None:
        """Deletes this run's staging directory: the output directory is as it was.

        Once publishing started, the staging directory holds the journal the next
        run needs to finish the job: it stays.
        """
        if self._publish_started:
            return
        with contextlib.suppress(Exception):
            paths.delete_tree(self.staging)

    def close(self) -> None:
        """Releases the lock; a directory this run created and left empty goes too."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            if self._lock is None:
                return
            self.abandon()
            self._lock.release()
            if self._created:
                paths.remove_empty_directory(self.path)

    @contextlib.contextmanager
    def held(self) -> Iterator["OutputDirectory"]:
        try:
            yield self
        finally:
            self.close()
