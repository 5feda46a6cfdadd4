"""Runner-specific setup of one run: what the command line adds or changes per runner.

- ``flink_args``: ``--runner FlinkRunner`` without a job server jar gets the one
  ``beam_labelissues.flink`` caches, its ``--flink_version`` and, without an
  ``--environment_type``, LOOPBACK (the SDK workers run in the launching process).
- ``local_worker_log_levels``: the local runner's worker processes log warnings only.
- ``submits_only``: with ``--template_location`` (as the Dataflow Flex Template launcher
  passes) or ``--dry_run``, the run only writes or translates the job; nothing runs
  in this process and the output directory is the job's to write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from typing import List, Optional, Sequence

from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)

from beam_labelissues import flink
from beam_labelissues.validation import UsageError

_LOG = logging.getLogger(__name__)
_LOCAL_RUNNERS = ("fnapirunner", "directrunner", "switchingdirectrunner")


def _runner_name(options: PipelineOptions) -> str:
    """The runner's class name in lower case, as Beam resolves ``--runner`` (``flink`` too)."""
    runner = options.view_as(StandardOptions).runner
    return "" if runner is None else _class_name(runner)


def _class_name(runner) -> str:
    """A runner object's or name's class name in lower case, ending in ``runner``."""
    name = (runner if isinstance(runner, str) else type(runner).__name__).rsplit(".", 1)[-1].lower()
    return name if name.endswith("runner") else name + "runner"


def is_local(runner) -> bool:
    """Whether ``runner`` (a runner object or name) runs the pipeline in this machine's memory."""
    return any(local in _class_name(runner) for local in ("direct", "fnapi", "prism", "interactive"))


def _given(beam_args: Sequence[str], *names: str) -> bool:
    """Whether the command line gives any of these Beam options."""
    flags = {"--" + name for name in names}
    return any(arg.split("=", 1)[0] in flags for arg in beam_args)


def flink_args(beam_args: List[str]) -> List[str]:
    """Beam options that let ``--runner FlinkRunner`` run with nothing more; [] for other runners.

    Without ``--flink_job_server_jar`` (or ``--job_endpoint``, a job server of one's own, or
    ``--flink_submit_uber_jar``): the job server jar of ``beam_labelissues.flink``, fetched
    with Maven the first time, and its ``--flink_version``. Without ``--environment_type``:
    LOOPBACK, so the SDK workers run in this process (Beam's default for a Flink cluster is
    DOCKER).
    """
    options = PipelineOptions(beam_args)
    if _runner_name(options) != "flinkrunner":
        return []
    added: List[str] = []
    if not _given(beam_args, "flink_job_server_jar", "job_endpoint", "flink_submit_uber_jar"):
        version = options.view_as(FlinkRunnerOptions).flink_version
        if _given(beam_args, "flink_version") and version != flink.FLINK_VERSION:
            _LOG.info(
                "--flink_version %s: Beam fetches its own job server for it (beam-labelissues "
                "flink-job-server builds Flink %s's; give --flink_job_server_jar to choose)",
                version,
                flink.FLINK_VERSION,
            )
        else:
            if "java" in flink.missing_tools():
                raise UsageError(
                    "--runner FlinkRunner: java is not on PATH, and Flink's job server runs on Java 11 "
                    "or 17 (e.g. apt-get install openjdk-17-jre-headless)"
                )
            added += ["--flink_job_server_jar", flink.job_server_jar(progress=_LOG.info)]
            if not _given(beam_args, "flink_version"):
                added += ["--flink_version", flink.FLINK_VERSION]
    if not _given(beam_args, "environment_type"):
        added += ["--environment_type", "LOOPBACK"]
    if added:
        _LOG.info("--runner FlinkRunner: added %s", " ".join(added))
    return added


@contextlib.contextmanager
def local_worker_log_levels(options: PipelineOptions):
    """While it is open, local worker processes log warnings only (or the level asked for).

    Each worker process of ``--direct_running_mode multi_processing`` logs its start-up
    and shutdown at INFO, and without apache-beam[gcp] an import-time warning gives it a
    handler on this process's stderr: a dozen lines per worker. The in-process runner
    hands its workers no pipeline options, so ``--default_sdk_harness_log_level`` would
    not reach them; Beam's worker main reads its options from the file named by
    ``PIPELINE_OPTIONS_FILE`` when that is set, and the workers inherit this process's
    environment. The file holds only the two log settings (the workers' options are
    otherwise empty, as before). ``__main__`` (Beam's worker main) is held to errors: it
    warns in every local worker of a missing semi_persistent_directory, which only
    Dataflow's workers have.
    """
    local = _runner_name(options) in _LOCAL_RUNNERS
    multi_process = options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    if not (local and multi_process) or "PIPELINE_OPTIONS_FILE" in os.environ:
        yield
        return
    worker = options.view_as(WorkerOptions)
    settings = {
        "default_sdk_harness_log_level": worker.default_sdk_harness_log_level or "WARNING",
        "sdk_harness_log_level_overrides": worker.sdk_harness_log_level_overrides or {"__main__": "ERROR"},
    }
    with tempfile.NamedTemporaryFile("w", prefix="beam-labelissues-workers-", suffix=".json", delete=False) as handle:
        json.dump({"options": settings}, handle)
    os.environ["PIPELINE_OPTIONS_FILE"] = handle.name
    try:
        yield
    finally:
        del os.environ["PIPELINE_OPTIONS_FILE"]
        os.unlink(handle.name)


def submits_only(options: PipelineOptions, output: str) -> Optional[str]:
    """What the run does instead of running the job here, or None when it runs it.

    With ``--template_location`` (the Dataflow Flex Template launcher passes it) Beam's
    DataflowRunner writes the job there and returns before anything runs; the launcher
    then submits it. With ``--dry_run=True`` it only translates the pipeline.
    """
    if options.view_as(TestOptions).dry_run:
        return "Dry run: the pipeline was built and translated; nothing was run."
    template = options.view_as(GoogleCloudOptions).template_location
    if template:
        return (
            f"Job written to {template} (--template_location): nothing ran here. Dataflow runs it "
            f"once it is submitted (a Flex Template launch does that); it writes {output} and "
            "summary.json there last."
        )
    return None
