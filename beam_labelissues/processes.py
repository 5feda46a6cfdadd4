"""Ending a run promptly: interrupts of the command line, and processes that outlive it.

- ``InterruptHandler`` (the launching process): SIGINT, SIGTERM and SIGHUP are
  caught at the C level (``signal.set_wakeup_fd``) and handled in a thread of
  their own, so a main thread blocked inside the runner cannot delay them (a
  KeyboardInterrupt raised in the main thread of a multi-process run used to
  leave the runner's threads waiting forever). The handler kills every process
  the run started (the local runner's worker processes, a job server and what it
  started), lets the caller clean up, prints one line and exits with 128 + the
  signal number.
- A watchdog process (``_watchdog.py``, started with the handler) kills every
  process the run started once the launcher is gone, even after ``kill -9`` of
  the launcher, which no handler can see.
- Worker processes find the launcher's process id in the environment
  (``LAUNCHER_PID_ENV``, inherited by every process the run starts) when they
  import this package (before they run any step of the run): they then ignore
  SIGINT (a terminal's Ctrl-C reaches the whole process group; the launcher ends
  them), exit as soon as the launcher is gone without printing the errors of
  their broken connections, and leave the tracebacks of failures to the
  launcher's one line (``TRACEBACKS_ENV=1`` keeps them). A Ctrl-C in the second
  or two while a worker process is still importing Beam, before that, may still
  print that worker's KeyboardInterrupt.

Linux reads the process tree from /proc; elsewhere from ``ps``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

LAUNCHER_PID_ENV = "BEAM_LABELISSUES_LAUNCHER_PID"
TRACEBACKS_ENV = "BEAM_LABELISSUES_TRACEBACKS"
WATCHDOG_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_watchdog.py")
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PARENT_POLL_S = 0.5
_EXITING_GRACE_S = 0.5
_worker_guard_started = False


# --- the process tree ------------------------------------------------------------------


def _parents_from_proc() -> Optional[Dict[int, int]]:
    if not os.path.isdir("/proc"):
        return None
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
    return parents


def _parents_from_ps() -> Dict[int, int]:
    try:
        text = subprocess.run(["ps", "-Ao", "pid=,ppid="], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    parents = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            parents[int(fields[0])] = int(fields[1])
    return parents


def descendants(pid: Optional[int] = None) -> List[int]:
    """Every process below ``pid`` (default: this process) in the process tree."""
    root = os.getpid() if pid is None else pid
    parents = _parents_from_proc()
    if parents is None:
        parents = _parents_from_ps()
    children: Dict[int, List[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            if child != root and child not in found:
                found.append(child)
                queue.append(child)
    return found


def kill_descendants() -> int:
    """SIGKILLs every process this one started, directly or not; returns how many.

    The tree is read before killing anything (a killed parent's children would be
    handed to init and lost from view), and read again for any started meanwhile.
    """
    killed = 0
    for _ in range(3):
        pids = descendants()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True  # not Linux: kill(pid, 0) said it exists
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False  # ended between the two looks


# --- the launcher -----------------------------------------------------------------------


class InterruptHandler:
    """Ends the run at SIGINT, SIGTERM or SIGHUP: kill the run's processes, clean up, one line, exit.

    ``cleanup(signum)`` runs in the handler's thread and returns the sentence the
    one-line message ends with (what became of the outputs). Install it from the
    main thread; it marks this process as the launcher for the workers it starts.
    """

    def __init__(self, cleanup: Callable[[int], str], out=None):
        self._cleanup = cleanup
        self._out = out
        self._previous: Dict[int, object] = {}
        self._previous_fd: Optional[int] = None
        self._pipe = None
        self._installed = False
        # Set the moment an interrupt arrives: from then on the handler's thread ends the
        # process, and the main thread (whose run now fails as its workers are killed)
        # must not report that failure or exit first (see ``wait_if_interrupted``).
        self.interrupted = threading.Event()

    def install(self) -> "InterruptHandler":
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("install the interrupt handler from the main thread")
        os.environ[LAUNCHER_PID_ENV] = str(os.getpid())
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._pipe = (read_fd, write_fd)
        for signum in INTERRUPT_SIGNALS:
            # The Python-level handler does nothing: raising KeyboardInterrupt in the main
            # thread is what left runs hanging. The C-level handler writes the signal
            # number to the wakeup fd, which the watching thread reads at once.
            self._previous[signum] = signal.signal(signum, _ignore_in_main_thread)
        self._previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="beam-labelissues-interrupts", daemon=True).start()
        start_watchdog()
        self._installed = True
        return self

    def _watch(self) -> None:
        read_fd = self._pipe[0]
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in [int(s) for s in INTERRUPT_SIGNALS]:
                    self._end(signum)

    def _end(self, signum: int) -> None:
        self.interrupted.set()
        # Threads that watched the killed processes raise as they notice: the run is
        # ending, and its one line is below.
        threading.excepthook = _quiet_thread_exception
        kill_descendants()
        try:
            outcome = self._cleanup(signum)
        except BaseException as error:  # noqa: BLE001  the exit below must happen
            outcome = f"cleaning up failed: {error}"
        kill_descendants()
        name = signal.Signals(signum).name
        out = self._out or sys.stderr
        try:
            out.write(f"error: interrupted by {name}: {outcome}\n")
            out.flush()
        finally:
            os._exit(128 + signum)


def wait_if_interrupted(interrupted: Optional[threading.Event]) -> None:
    """In the main thread: when an interrupt is being handled, wait for its thread to end the process."""
    if interrupted is not None and interrupted.is_set():
        while True:
            time.sleep(60)


def start_watchdog() -> Optional[subprocess.Popen]:
    """Starts ``_watchdog.py`` for this process (see the module docstring); None where it cannot run."""
    try:
        return subprocess.Popen(
            [sys.executable, "-I", WATCHDOG_SCRIPT, str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
        )
    except OSError:
        return None


def _ignore_in_main_thread(signum, frame) -> None:
    """See ``InterruptHandler.install``."""


def _quiet_thread_exception(args) -> None:
    """``threading.excepthook`` while an interrupted run ends."""


# --- in worker processes ------------------------------------------------------------------


def guard_worker_process() -> None:
    """In a process the command line started (not the launcher itself): exit once the launcher is gone.

    Called when this package is imported, which a worker does before it runs any
    of the run's steps. A no-op anywhere else (no launcher in the environment).
    """
    global _worker_guard_started
    launcher = os.environ.get(LAUNCHER_PID_ENV, "")
    if _worker_guard_started or not launcher.isdigit() or int(launcher) == os.getpid():
        return
    _worker_guard_started = True
    launcher_pid = int(launcher)
    previous_hook = threading.excepthook

    def hook(args) -> None:
        # The runner's threads fail as their connections to the launcher close: when the
        # launcher is gone, that is the end of this worker, not an error to print. The
        # connections close while the launcher is still exiting: give it a moment.
        deadline = time.monotonic() + _EXITING_GRACE_S
        while time.monotonic() < deadline:
            if not process_alive(launcher_pid):
                os._exit(1)
            time.sleep(0.02)
        previous_hook(args)

    threading.excepthook = hook
    _ignore_sigint()
    if os.environ.get(TRACEBACKS_ENV) != "1":
        # Beam's worker prints the traceback of a failed bundle to stderr, which it shares
        # with the launcher; the launcher reports the failure in one line.
        sys.stderr = _WithoutTracebacks(sys.stderr)
    threading.Thread(
        target=_exit_when_gone, args=(launcher_pid,), name="beam-labelissues-launcher-watch", daemon=True
    ).start()


def _ignore_sigint() -> None:
    """Ignores SIGINT in this whole process, from any thread.

    A terminal sends Ctrl-C to the whole process group, workers included; the
    launcher ends them itself, and a worker's KeyboardInterrupt would only print a
    traceback. ``signal.signal`` works from the main thread only, and this runs
    in the thread that loads the run's steps: set the disposition through libc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.signal.restype = ctypes.c_void_p
        libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
        libc.signal(int(signal.SIGINT), ctypes.c_void_p(1))  # SIG_IGN
    except (OSError, AttributeError):
        pass  # not POSIX libc: a Ctrl-C may then print a worker's traceback


class _WithoutTracebacks:
    """A text stream that drops the writes holding a traceback."""

    def __init__(self, stream):
        self._stream = stream
        self._dropped = False

    def write(self, text):
        # print() writes its text, then the line end: drop both.
        if "(most recent call last)" in text or (self._dropped and text == "\n"):
            self._dropped = not self._dropped
            return len(text)
        self._dropped = False
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _exit_when_gone(launcher: int) -> None:
    """Exits this process as soon as ``launcher`` ends: at once through a pidfd
    (Linux 5.3+), else within ``_PARENT_POLL_S``."""
    try:
        import select

        pidfd = os.pidfd_open(launcher)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        select.select([pidfd], [], [])  # readable once the process has ended
    else:
        while process_alive(launcher):
            time.sleep(_PARENT_POLL_S)
    os._exit(1)
