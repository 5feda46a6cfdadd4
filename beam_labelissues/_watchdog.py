"""Ends what a run started once the run's launcher is gone, however it went (kill -9 included).

    python -I beam_labelissues/_watchdog.py LAUNCHER_PID

Started by the command line (``processes.InterruptHandler.install``) as a child of
the launcher, this script runs on the standard library alone (it is run by path,
so the package and Beam are never imported: it starts in milliseconds). While the
launcher lives it notes, every half second, every process below the launcher
with its start time; the moment the launcher ends (a pidfd, on Linux 5.3+) it
SIGKILLs those of them that still run, which a killed launcher cannot do
itself: the local runner's worker processes, a Flink job server's JVM and what
that started. The start time guards against a process id reused meanwhile.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from typing import Dict, Optional, Tuple

_POLL_S = 0.5


def _stat(pid: int) -> Optional[Tuple[int, int, str]]:
    """(parent pid, start time in clock ticks, state) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[1]), int(fields[19]), fields[0].decode()
    except (OSError, IndexError, ValueError):
        return None


def _below(root: int) -> Dict[int, int]:
    """Every process below ``root`` (this watchdog excepted): pid -> start time."""
    parents, starts = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None:
                parents[int(entry)], starts[int(entry)] = info[0], info[1]
    children: Dict[int, list] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, queue = {}, [root]
    while queue:
        for child in children.get(queue.pop(), []):
            if child != os.getpid() and child not in found:
                found[child] = starts[child]
                queue.append(child)
    return found


def _launcher_alive(launcher: int) -> bool:
    info = _stat(launcher)
    return info is not None and info[2] != "Z"


def watch(launcher: int) -> None:
    try:
        pidfd: Optional[int] = os.pidfd_open(launcher)
    except (AttributeError, OSError):
        pidfd = None
    seen: Dict[int, int] = {}
    while _launcher_alive(launcher):
        seen.update(_below(launcher))
        if pidfd is not None:
            if select.select([pidfd], [], [], _POLL_S)[0]:
                break
        else:
            time.sleep(_POLL_S)
    for pid, started in seen.items():
        info = _stat(pid)
        if info is not None and info[1] == started and info[2] != "Z":
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def main(argv) -> int:
    # A terminal's Ctrl-C reaches the whole process group; the launcher handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if len(argv) != 1 or not argv[0].isdigit() or not os.path.isdir("/proc"):
        return 0  # nothing to watch with (not Linux): the workers' own guard remains
    watch(int(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
