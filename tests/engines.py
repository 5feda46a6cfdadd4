"""Helpers that let the test suite run a pipeline on several Beam engines.

No tests live here. ``ENGINES`` maps an engine name to a function returning the
extra pipeline arguments for it; ``flink_job_server_jar()`` returns a local Flink
job server jar (``beam_labelissues.flink``: fetched with Maven into a cache on
first use, the jar ``beam-labelissues flink-job-server`` prints);
``flink_restart_args()`` makes a Flink job retry failed tasks.
What was verified, and why these choices: tests/ENGINES_NOTES.md.
"""

from __future__ import annotations

import os

from beam_labelissues import flink

FLINK_VERSION = flink.FLINK_VERSION


def flink_job_server_jar() -> str:
    """Local path of a Flink job server jar, for --flink_job_server_jar (built once, cached)."""
    return flink.job_server_jar()


def flink_restart_args(conf_dir: str, attempts: int = 3, delay: str = "1 s") -> list[str]:
    """Write a Flink config with a fixed-delay restart strategy into ``conf_dir`` and
    return the pipeline args that make the Flink job use it (Flink's default for a
    batch job is no restart; Beam's --number_of_execution_retries is streaming-only)."""
    os.makedirs(conf_dir, exist_ok=True)
    with open(os.path.join(conf_dir, "flink-conf.yaml"), "w") as f:
        f.write("restart-strategy.type: fixed-delay\n"
                "restart-strategy.fixed-delay.attempts: %d\n"
                "restart-strategy.fixed-delay.delay: %s\n" % (attempts, delay))
    return ["--flink_conf_dir", conf_dir]


def _fnapi() -> list[str]:
    return ["--runner", "FnApiRunner"]


def _multiprocess() -> list[str]:
    return _fnapi() + ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]


def _portable() -> list[str]:
    return ["--runner", "PortableRunner", "--job_endpoint", "embed",
            "--environment_type", "LOOPBACK"]


def _flink() -> list[str]:
    return ["--runner", "FlinkRunner", "--flink_master", "[local]",
            "--flink_version", FLINK_VERSION, "--flink_job_server_jar", flink_job_server_jar(),
            "--parallelism", "2", "--environment_type", "LOOPBACK"]


def _flink_defaults() -> list[str]:
    """FlinkRunner as a user starts it: the CLI adds the jar, --flink_version and LOOPBACK."""
    return ["--runner", "FlinkRunner", "--flink_master", "[local]", "--parallelism", "2"]


ENGINES = {
    "fnapi": _fnapi,
    "multiprocess": _multiprocess,
    "portable": _portable,
    "flink": _flink,
    "flink-defaults": _flink_defaults,
}
