"""The contenders: what each one runs, and how its answer is read back.

A ``Contender`` is a command, run in its own process on one dataset's files and
measured from outside (``measure.run_measured``), and a reader that turns what
the process left behind into the issue ids in rank order (an ``Answer``).

``REGISTRY`` maps a name, as ``--contenders`` takes it, to a factory: a function
of the ``Settings`` that returns that name's contenders (``ours`` gives one per
input and worker count). A new contender is a new factory decorated with
``@register("name")``; a Python function on the .npy files also gets an entry
in ``child.FUNCTIONS``. See benchmarks/README.md, "Adding a contender".

Importing this module costs numpy only; our package is imported by the harness
when it reads our outputs, never by a contender on its behalf.
"""

import dataclasses
import datetime
import json
import os
import re
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

CLEANLAB_CALL = ("find_label_issues_batched(labels_file=..., pred_probs_file=..., "
                 "batch_size=10000, n_jobs=1, verbose=False)")
CLEANLAB_FILTER_CALL = "filter.find_label_issues(np.load(L), np.load(P), filter_by=..., n_jobs=1)"
# cleanlab.filter.find_label_issues's filter_by values, as our --filter_by takes them.
FILTER_BY = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
             "low_normalized_margin", "low_self_confidence")
OURS_COMMAND = ("python -m beam_labelissues --labels_file L --pred_probs_file P | --input 'DIR/*.parquet'; "
                "--output DIR [worker options] [--no_report] [--extra_args]")
INPUTS = ("npy", "parquet")
AUTO = "auto"   # our CLI picks its local workers as it does for users


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the driver's options say about the contenders."""

    inputs: Tuple[str, ...] = INPUTS
    workers: Tuple = (AUTO,)          # AUTO or a number of local workers, one of ours each
    report: bool = True               # ours writes report.html, as the README's command does
    extra_args: Tuple[str, ...] = ()  # appended to our command line
    python: str = sys.executable
    filter_by: Optional[str] = None   # the full method: ours with --filter_by, cleanlab's filter.find_label_issues


@dataclasses.dataclass(frozen=True)
class Run:
    """The paths of one run of one contender."""

    files: Dict[str, str]  # the dataset's files: labels.npy, pred_probs.npy, data.parquet
    prefix: str            # PREFIX.stdout, PREFIX.stderr, and whatever the contender leaves

    @property
    def out_dir(self) -> str:
        """The output directory, for a contender that writes one."""
        return self.prefix + "-out"


@dataclasses.dataclass
class Answer:
    ids: np.ndarray  # the issue ids in rank order, int64
    details: dict    # numbers to keep with the run in the JSON


@dataclasses.dataclass
class Contender:
    key: str          # unique within a run; the key in the JSON
    label: str        # the name in the tables
    input_kind: str   # the files it reads: "npy" or "parquet"
    role: str         # "reference" (what must be matched), "baseline", "ours" or "ours_api"
    command: Callable[[Run], List[str]]
    # (run, its measurement from run_measured) -> Answer; raises when the output is bad
    read_answer: Callable[[Run, dict], Answer]
    # Keys of the contenders it is compared with: its answer with the first of them
    # that answered, its wall time and peak memory with each.
    compare_with: Tuple[str, ...] = ()
    describe: dict = dataclasses.field(default_factory=dict)  # what it runs, for the JSON
    runs: List[dict] = dataclasses.field(default_factory=list)
    skipped: Optional[str] = None  # why it cannot run, when it cannot


REGISTRY: Dict[str, Callable[[Settings], List[Contender]]] = {}


def register(name: str):
    """Decorator: adds a factory of contenders to REGISTRY under name."""
    def add(factory):
        if name in REGISTRY:
            raise ValueError(f"contender {name!r} registered twice")
        REGISTRY[name] = factory
        return factory
    return add


def build(names: Sequence[str], settings: Settings) -> List[Contender]:
    """The contenders of the named factories, in that order."""
    out = []
    for name in names:
        out.extend(REGISTRY[name](settings))
    keys = [c.key for c in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate contender keys: {keys}")
    return out


def parse_workers(text: str) -> Tuple:
    """'auto,1,4,16' -> ('auto', 1, 4, 16)."""
    out = []
    for part in (s.strip() for s in text.split(",")):
        if not part:
            continue
        if part == AUTO:
            value = AUTO
        else:
            try:
                value = int(part)
            except ValueError:
                raise SystemExit(f"--workers: {part!r} is neither 'auto' nor a number") from None
            if value < 1:
                raise SystemExit(f"--workers: {value} workers")
        if value not in out:
            out.append(value)
    if not out:
        raise SystemExit("--workers: no worker count given")
    return tuple(out)


# --- contenders that are Python functions in a child process (child.py) ---------------


def child_contender(settings, name, label, role, compare_with, describe, args=()):
    """A contender run as ``python -m benchmarks.child NAME ... [ARGS]`` on the .npy files.

    NAME must be in child.FUNCTIONS; the child saves the ids and its numbers
    (``inner_s``, ...) under the run's prefix.
    """
    def command(run):
        return [settings.python, "-m", "benchmarks.child", name,
                run.files["labels.npy"], run.files["pred_probs.npy"], run.prefix, *args]

    return Contender(key=name, label=label, input_kind="npy", role=role, command=command,
                     read_answer=read_child_answer, compare_with=tuple(compare_with),
                     describe=dict(describe, process=f"python -m benchmarks.child {name}"))


def read_child_answer(run, measured):
    ids = np.load(run.prefix + ".npy")
    with open(run.prefix + ".json") as f:
        child = json.load(f)
    details = {"inner_s": child.pop("inner_s"),
               "child": {key: v for key, v in child.items() if key != "thresholds"}}
    return Answer(np.asarray(ids, np.int64), details)


@register("cleanlab")
def cleanlab_batched(settings):
    return [child_contender(
        settings, "cleanlab", "cleanlab", "reference", (),
        {"runs": "cleanlab.experimental.label_issues_batched." + CLEANLAB_CALL})]


@register("cleanlab_filter")
def cleanlab_full_method(settings):
    """cleanlab's full method, the reference of ``--filter_by`` (prune_by_noise_rate unless set)."""
    filter_by = settings.filter_by or FILTER_BY[0]
    return [child_contender(
        settings, "cleanlab_filter", f"cleanlab filter ({filter_by})", "reference", (),
        {"runs": "cleanlab." + CLEANLAB_FILTER_CALL.replace("...", repr(filter_by), 1)}, args=(filter_by,))]


@register("ours_api")
def ours_python_function(settings):
    """Our Python function with cleanlab's signature, on the same .npy files as cleanlab's."""
    return [child_contender(
        settings, "ours_api", "ours (Python function)", "ours_api", ("cleanlab",),
        {"runs": "beam_labelissues." + CLEANLAB_CALL})]


@register("numpy")
def numpy_loop(settings):
    return [child_contender(
        settings, "numpy", "numpy", "baseline", ("cleanlab",),
        {"runs": "benchmarks/numpy_loop.py numpy_label_issues (two passes over the mmap'd .npy files)"})]


# --- our command line ----------------------------------------------------------------


def worker_args(workers) -> List[str]:
    """Our CLI's options for a worker count: none for AUTO, one process for 1."""
    if workers == AUTO:
        return []
    if workers == 1:  # in process, as the CLI runs below 1 GiB of predictions
        return ["--direct_num_workers=1"]
    return [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]


def ours_key(input_kind, workers, report) -> str:
    key = f"ours_{input_kind}"
    if workers != AUTO:
        key += f"_w{workers}"
    return key if report else key + "_no_report"


def ours_label(input_kind, workers, report) -> str:
    parts = [input_kind]
    if workers != AUTO:
        parts.append(f"{workers} worker" + ("s" if workers != 1 else ""))
    if not report:
        parts.append("no report")
    return f"ours ({', '.join(parts)})"


def ours_contender(settings, input_kind, workers, report) -> Contender:
    """Our CLI, ``python -m beam_labelissues``, as the README's command runs it."""
    def command(run):
        cmd = [settings.python, "-m", "beam_labelissues"]
        if input_kind == "npy":
            cmd += ["--labels_file", run.files["labels.npy"],
                    "--pred_probs_file", run.files["pred_probs.npy"]]
        else:
            cmd += ["--input", os.path.join(os.path.dirname(run.files["data.parquet"]), "*.parquet")]
        cmd += ["--output", run.out_dir] + worker_args(workers)
        if not report:
            cmd.append("--no_report")
        if settings.filter_by:
            cmd += ["--filter_by", settings.filter_by]
        return cmd + list(settings.extra_args)

    def read_answer(run, measured):
        return read_ours(run, measured, expect_report=report)

    return Contender(
        key=ours_key(input_kind, workers, report), label=ours_label(input_kind, workers, report),
        input_kind=input_kind, role="ours", command=command, read_answer=read_answer,
        compare_with=("cleanlab_filter",) if settings.filter_by else ("cleanlab", "numpy"),
        describe={"command": OURS_COMMAND, "input": input_kind, "workers": workers,
                  "worker_args": worker_args(workers), "report": report,
                  "extra_args": list(settings.extra_args), "filter_by": settings.filter_by})


@register("ours")
def ours_cli(settings):
    return [ours_contender(settings, input_kind, workers, settings.report)
            for input_kind in settings.inputs for workers in settings.workers]


def read_ours(run, measured, expect_report):
    """Our answer, read through beam_labelissues.io.outputs, with the summary's counts,
    whether report.html was written, and where the time went by our log."""
    from beam_labelissues.io import outputs

    summary = outputs.read_summary(run.out_dir)
    table = outputs.read_label_issues(run.out_dir, summary, columns=["rank", "id"])
    ranks = table.column("rank").to_numpy()
    ids = table.column("id").to_numpy()
    ids = np.asarray(ids[np.argsort(ranks, kind="stable")], np.int64)
    if len(ids) != summary.num_label_issues:
        raise RuntimeError(f"summary.json says {summary.num_label_issues} issues, "
                           f"the label_issues files hold {len(ids)}")
    report_written = os.path.exists(outputs.output_path(run.out_dir, outputs.REPORT_FILE))
    if expect_report and not report_written:
        raise RuntimeError(f"no {outputs.REPORT_FILE} written")
    details = {
        "summary": {"num_examples": summary.num_examples,
                    "num_label_issues": summary.num_label_issues,
                    "num_issues_estimated": summary.num_issues_estimated},
        "report_written": report_written,
        "phases": log_phases(run.prefix + ".stderr", measured),
    }
    return Answer(ids, details)


# Our CLI logs "%(asctime)s %(levelname)s %(name)s: %(message)s" (cli.main).
_LOG_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) [A-Z]+ [\w.]+: (.*)")
_FINISHED = re.compile(r"pipeline finished in ([\d.]+) s")


def log_phases(stderr_path, measured):
    """Where our command's wall time went, from the INFO lines of its log.

    start_s: from the process start to "reading ..." (interpreter, imports, options,
    opening the inputs); build_and_run_s: from there to "pipeline finished in X s"
    (building the pipeline and running it); run_s: that X (rounded to 0.1 s by the
    log); after_s: from there to the process exit (report.html, the printed summary,
    exit). None when the log lacks those lines (with --quiet, say).
    """
    reading = finished = run_s = None
    try:
        with open(stderr_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = _LOG_LINE.match(line)
                if not m:
                    continue
                message = m.group(2)
                if reading is None and message.startswith("reading "):
                    reading = _epoch(m.group(1))
                elif _FINISHED.match(message):
                    finished = _epoch(m.group(1))
                    run_s = float(_FINISHED.match(message).group(1))
    except OSError:
        return None
    if reading is None or finished is None:
        return None
    start = measured["start_epoch"]
    return {"start_s": reading - start, "build_and_run_s": finished - reading, "run_s": run_s,
            "after_s": start + measured["wall_s"] - finished}


def _epoch(stamp):
    """A log timestamp (local time, milliseconds) as seconds since the epoch."""
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
