"""Helpers for the tests of failures and of the output directory: the command line in a
subprocess on a local or a ``testgs://`` path, snapshots of folders, input files.

No tests live here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, Optional

import numpy as np

from datasets import DatasetSpec, make_dataset, write_npy
from harness import CLI_COMMAND
from input_files import PrefixedLocalFileSystem

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
TESTGS_DRIVER = [sys.executable, os.path.join(TESTS_DIR, "testgs_cli.py")]
HELD_RUN_DRIVER = [sys.executable, os.path.join(TESTS_DIR, "held_run.py")]
FILESYSTEMS = ("local", "testgs")
STAGING_PREFIX = ".beam-labelissues-staging-"
LOCK_FILE = ".beam-labelissues.lock"


def path_on(fs: str, path) -> str:
    """``path`` as the command line of that filesystem names it."""
    return str(path) if fs == "local" else PrefixedLocalFileSystem.remote(str(path))


def cli_command(fs: str = "local"):
    return list(CLI_COMMAND) if fs == "local" else list(TESTGS_DRIVER)


def run_cli(*args, fs: str = "local", timeout: float = 300, env: Optional[Dict[str, str]] = None, cwd=None):
    """The command line (or the testgs driver) in a subprocess; the CompletedProcess."""
    environ = dict(os.environ, **(env or {}))
    return subprocess.run(cli_command(fs) + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=environ, cwd=cwd)


def start_held(gate, *args) -> subprocess.Popen:
    """The command line (tests/held_run.py) with every read held until the file ``gate``
    exists, in a session of its own; ``gate`` + ``.reached`` appears once a read waits."""
    return subprocess.Popen(HELD_RUN_DRIVER + [str(gate)] + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def reached(gate) -> bool:
    return os.path.exists(f"{gate}.reached")


def finish(proc: subprocess.Popen, timeout: float = 120):
    """Waits for a started run; kills its whole session if it hangs (and says so)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"the run hung for {timeout} s; stderr:\n{err[-4000:]}")
    return proc.returncode, out, err


def wait_for(condition: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what or condition}")
        time.sleep(0.05)


def snapshot(directory) -> Dict[str, bytes]:
    """Every file below ``directory`` (hidden ones too) by relative path, with its bytes."""
    files = {}
    for root, _, names in os.walk(str(directory)):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                files[os.path.relpath(full, str(directory))] = handle.read()
    return files


def staging_dirs(directory):
    return sorted(n for n in os.listdir(str(directory)) if n.startswith(STAGING_PREFIX))


def one_error_line(stderr: str) -> str:
    """The ``error:`` line of a failed run; asserts there is exactly one and no traceback."""
    assert "Traceback" not in stderr, stderr[-4000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-4000:]
    return errors[0]


def small_npy(directory, num_examples: int = 2000, num_classes: int = 4, seed: int = 21, labels=None):
    """A real .npy pair with label issues in it; returns (labels path, pred_probs path)."""
    spec = DatasetSpec(num_examples, num_classes, "float32", "int64", noise=0.2, seed=seed)
    generated_labels, probs = make_dataset(spec)
    return write_npy(str(directory), generated_labels if labels is None else labels, probs)


def group_members(group: int) -> Dict[int, str]:
    """Live processes (not zombies) of process group ``group``: pid -> command line."""
    members = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z" or int(fields[2]) != group:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                members[int(entry)] = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    return members


def ignores_sigint(pid: int) -> bool:
    """True when process ``pid`` ignores SIGINT (its SigIgn mask in /proc)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except OSError:
        pass
    return False


def kill_group(group: int) -> None:
    for pid in group_members(group):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def namespace_prefix() -> Optional[list]:
    """A command prefix that runs its command in a mount namespace of its own (as root
    there), where a test may mount a small or read-only filesystem; None if the
    system allows none."""
    candidates = [["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]]
    if os.geteuid() == 0:
        candidates.insert(0, ["unshare", "--mount", "--propagation", "private"])
    for prefix in candidates:
        try:
            if subprocess.run(prefix + ["true"], capture_output=True, timeout=30).returncode == 0:
                return prefix
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def with_invalid_label(labels_path: str, row: int, value: int) -> np.ndarray:
    labels = np.load(labels_path)
    labels[row] = value
    return labels
