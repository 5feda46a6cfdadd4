"""Running one command and measuring its whole process tree from outside.

``run_measured`` starts the command, polls the RSS and CPU times of the process
and all its descendants every ~20 ms, and takes the rusage of ``wait4`` at the
end: wall time, CPU time of the tree, peak RSS (and anonymous RSS) of the tree,
and how busy the machine was meanwhile. ``machine_info`` describes the machine.
"""

import datetime
import os
import platform
import subprocess
import threading
import time
from importlib import metadata

import numpy as np
import psutil

POLL_INTERVAL_S = 0.02


def run_measured(cmd, cwd, env, log_prefix, timeout, interval=POLL_INTERVAL_S):
    """Run cmd; return wall, CPU (tree) and peak memory (tree) and exit code.

    The command's stdout and stderr go to LOG_PREFIX.stdout and LOG_PREFIX.stderr.
    """
    load0 = os.getloadavg()[0]
    psi0 = _cpu_pressure_us()
    out = open(log_prefix + ".stdout", "wb")
    err = open(log_prefix + ".stderr", "wb")
    start_epoch = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
    stats = {"peak_rss": 0, "peak_anon": 0, "max_procs": 0, "samples": 0}
    cpu_seen = {}
    stop = threading.Event()

    def poll():
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                procs = [root]
            rss = anon = 0
            for p in procs:
                try:
                    with p.oneshot():
                        mi = p.memory_info()
                        ct = p.cpu_times()
                        key = (p.pid, p.create_time())
                except psutil.Error:
                    continue
                rss += mi.rss
                anon += mi.rss - mi.shared
                cpu_seen[key] = ct.user + ct.system  # own time; children_* would double count
            stats["peak_rss"] = max(stats["peak_rss"], rss)
            stats["peak_anon"] = max(stats["peak_anon"], anon)
            stats["max_procs"] = max(stats["max_procs"], len(procs))
            stats["samples"] += 1
            stop.wait(interval)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    timed_out = False
    deadline = time.monotonic() + timeout
    while True:  # wait4 gives the rusage of the child and its reaped descendants
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            timed_out = True
            _kill_tree(proc.pid)
            pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    th.join()
    out.close()
    err.close()
    psi1 = _cpu_pressure_us()
    cpu_rusage = ru.ru_utime + ru.ru_stime
    cpu_polled = sum(cpu_seen.values())
    return {
        "rc": proc.returncode, "timed_out": timed_out,
        "wall_s": wall,
        # rusage misses descendants nobody reaped; polling misses the last
        # interval of each process: take the larger.
        "cpu_s": max(cpu_rusage, cpu_polled),
        "cpu_rusage_s": cpu_rusage, "cpu_polled_s": cpu_polled,
        "peak_mib": stats["peak_rss"] / 2**20,
        "peak_anon_mib": stats["peak_anon"] / 2**20,
        "max_single_rss_mib": ru.ru_maxrss / 1024,
        "max_procs": stats["max_procs"], "samples": stats["samples"],
        # Other work on the machine inflates wall time (not CPU or memory):
        # 1-minute load average at start and end, and the seconds some task
        # waited for a CPU during the run (Linux PSI), if available.
        "loadavg_start": load0, "loadavg_end": os.getloadavg()[0],
        "cpu_wait_s": None if psi0 is None or psi1 is None else (psi1 - psi0) / 1e6,
        # The clock time the process started, to place its log lines in the run.
        "start_epoch": start_epoch,
    }


def _cpu_pressure_us():
    try:
        with open("/proc/pressure/cpu") as f:
            first = f.readline().split()
        return int(dict(x.split("=") for x in first[1:])["total"])
    except (OSError, KeyError, ValueError):
        return None


def _kill_tree(pid):
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


def tail(path, n=1500):
    """The last n bytes of a log file, as text ('' when there is none)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


def median(runs, key):
    """The median of key over the successful runs that have it, or None."""
    vals = [r[key] for r in runs if r.get("ok") and r.get(key) is not None]
    return float(np.median(vals)) if vals else None


def machine_info():
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__}
    for dist, key in (("apache-beam", "beam"), ("cleanlab", "cleanlab"), ("pyarrow", "pyarrow"),
                      ("psutil", "psutil")):
        try:
            info[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[key] = "not installed"
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f
                               if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info
