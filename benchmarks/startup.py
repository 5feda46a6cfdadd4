"""The fixed start-up cost of our command, and what part of it is ours.

Three measurements, besides the contenders' own runs on a tiny dataset:

- timed imports: ``python -c 'import X'`` for the interpreter alone, numpy,
  pyarrow, apache_beam, our package, our CLI module and what report.html
  imports, each a measured child (wall, CPU, peak of the process) that also
  reports the import's own time (``inside_s``) and leaves with ``os._exit``, as
  our CLI does, so that no interpreter teardown is counted;
- ``python -X importtime -c 'import beam_labelissues.cli'``: the import's self
  time summed per top-level package (apache_beam, google, pyarrow, numpy,
  beam_labelissues, ...), to say what part of it is ours; ``-X importtime``
  slows imports down, so read it for shares, the timed imports for seconds;
- our runs' log phases (``contenders.log_phases``), taken by the driver.
"""

import os
import subprocess

from benchmarks import measure

# (label, statement); the label is also the key in the JSON.
IMPORTS = (
    ("python -c pass", "pass"),
    ("import numpy", "import numpy"),
    ("import pyarrow", "import pyarrow"),
    ("import apache_beam", "import apache_beam"),
    ("import beam_labelissues", "import beam_labelissues"),
    ("import beam_labelissues.cli", "import beam_labelissues.cli"),
    ("import beam_labelissues.report", "import beam_labelissues.report"),
)
CLI_MODULE = "beam_labelissues.cli"
_TIMED = ("import os, sys, time\n"
          "t0 = time.perf_counter()\n"
          "{statement}\n"
          "sys.stdout.write(repr(time.perf_counter() - t0))\n"
          "sys.stdout.flush()\n"
          "os._exit(0)\n")
_MARK = "@@benchmark: imports start"
_BREAKDOWN = ("import os, sys\n"
              f"sys.stderr.write({_MARK!r} + '\\n')\n"
              "sys.stderr.flush()\n"
              f"import {CLI_MODULE}\n"
              "import beam_labelissues\n"
              "sys.stdout.write(beam_labelissues.__file__)\n"
              "sys.stdout.flush()\n"
              "os._exit(0)\n")


def measure_imports(python, cwd, env, work_dir, repeats, timeout, log=print):
    """Runs each of IMPORTS `repeats` times, measured; returns {label: {statement, runs, median}}."""
    out = {}
    for label, statement in IMPORTS:
        runs = []
        for rep in range(repeats):
            prefix = os.path.join(work_dir, f"import-{len(out)}-{rep}")
            r = measure.run_measured([python, "-c", _TIMED.format(statement=statement)],
                                     cwd, env, prefix, timeout)
            r["repeat"] = rep
            r["ok"] = r["rc"] == 0
            if r["ok"]:
                try:
                    with open(prefix + ".stdout") as f:
                        r["inside_s"] = float(f.read().strip())
                except (OSError, ValueError):
                    r["ok"] = False
            if not r["ok"]:
                r["stderr_tail"] = measure.tail(prefix + ".stderr")
            runs.append(r)
        med = None
        if any(r["ok"] for r in runs):
            med = {key: measure.median(runs, key) for key in ("wall_s", "cpu_s", "peak_mib", "inside_s")}
        else:
            log(f"  {label}: failed: {runs[-1].get('stderr_tail', '')[-300:]}")
        out[label] = {"statement": statement, "median": med, "runs": runs}
    return out


def import_breakdown(python, cwd, env, repeats, timeout):
    """``-X importtime`` of importing our CLI module, median over `repeats` runs.

    Returns None on failure, else {"module", "total_s", "package_file",
    "by_package": self seconds per top-level package of each module,
    "by_dependency": seconds per package our own modules import directly, each
    with everything imported on its behalf ("beam_labelissues": our modules only)}.
    """
    runs, package_file = [], None
    for _ in range(repeats):
        try:
            p = subprocess.run([python, "-X", "importtime", "-c", _BREAKDOWN], cwd=cwd, env=env,
                               capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if p.returncode != 0:
            return None
        package_file = p.stdout.strip()
        runs.append(parse_importtime(p.stderr))
    return {"module": CLI_MODULE,
            "total_s": _median([sum(run["by_package"].values()) for run in runs]),
            "by_package": _median_per_key([run["by_package"] for run in runs]),
            "by_dependency": _median_per_key([run["by_dependency"] for run in runs]),
            "package_file": package_file}


def parse_importtime(stderr_text, ours="beam_labelissues"):
    """Self time (s) of the imports after the start mark, grouped two ways.

    by_package: per top-level package of the module itself. by_dependency: per
    top-level package of the first module outside `ours` on the chain from the
    outermost import down to the module, i.e. what our own modules import
    directly, charged with everything it imports in turn.
    """
    rows = []  # (self seconds, depth, module), in the order Python prints them
    started = False
    for line in stderr_text.splitlines():
        if line.startswith(_MARK):
            started = True
            continue
        if not started or not line.startswith("import time:"):
            continue
        fields = line[len("import time:"):].split("|")
        if len(fields) != 3:
            continue
        try:
            self_us = int(fields[0])
        except ValueError:  # the header line
            continue
        name = fields[2].rstrip()
        rows.append((self_us / 1e6, len(name) - len(name.lstrip()), name.strip()))
    by_package, by_dependency = {}, {}
    # Python prints an import after the imports it caused, so reversed the lines run
    # from each module to those it imported: a stack of the enclosing imports.
    stack = []
    for seconds, depth, module in reversed(rows):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        chain = [name for _, name in stack] + [module]
        top = module.split(".")[0]
        outside = next((name for name in chain if name.split(".")[0] != ours), module)
        charged = outside.split(".")[0]
        by_package[top] = by_package.get(top, 0.0) + seconds
        by_dependency[charged] = by_dependency.get(charged, 0.0) + seconds
        stack.append((depth, module))
    return {"by_package": by_package, "by_dependency": by_dependency}


def _median_per_key(dicts):
    """Median per key over dicts (0 where a dict lacks the key), largest first."""
    names = {name for d in dicts for name in d}
    out = {name: _median([d.get(name, 0.0) for d in dicts]) for name in names}
    return dict(sorted(out.items(), key=lambda item: -item[1]))


def _median(values):
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def summarize(imports, breakdown, ours_medians, repo):
    """The derived figures: the fixed cost, what report.html adds, what part is ours.

    ours_medians: {"with_report": medians, "no_report": medians} of our runs on the tiny dataset.
    """
    def inside(label):
        med = (imports.get(label) or {}).get("median") or {}
        return med.get("inside_s")

    out = {}
    beam = inside("import apache_beam")
    cli = inside("import beam_labelissues.cli")
    package = inside("import beam_labelissues")
    if beam is not None and cli is not None:
        out["cli_import_beyond_apache_beam_s"] = cli - beam
    if beam is not None and package is not None:
        out["package_import_beyond_apache_beam_s"] = package - beam
    with_report, without = ours_medians.get("with_report"), ours_medians.get("no_report")
    if with_report:
        out["fixed_cost_s"] = with_report["wall_s"]
    if with_report and without:
        out["report_s"] = with_report["wall_s"] - without["wall_s"]
    if breakdown:
        total = breakdown["total_s"] or 0.0
        ours = breakdown["by_package"].get("beam_labelissues", 0.0)
        out["own_modules_share_of_cli_import"] = ours / total if total else None
        out["package_from_checkout"] = bool(breakdown["package_file"]) and os.path.abspath(
            breakdown["package_file"]).startswith(os.path.abspath(repo) + os.sep)
    return out


def print_startup(name, n, k, repeats, rows, imports, breakdown, phases, derived, out=print):
    """rows: (label, medians or None, note) of the contenders on the tiny dataset;
    phases: (label, median log phases or None) of ours."""
    out("")
    out(f"== fixed start-up cost: {name} ({n:,} x {k}), median of {repeats} ==")
    width = max([len(label) for label, _, _ in rows] + [len(label) for label, _ in IMPORTS]) + 2
    out(f"{'':{width}}{'wall s':>9}{'CPU s':>9}{'peak MiB':>10}{'inside s':>10}")
    for label, _ in IMPORTS:
        med = (imports.get(label) or {}).get("median")
        if med is None:
            out(f"{label:{width}}failed (see JSON)")
            continue
        out(f"{label:{width}}{_f(med['wall_s']):>9}{_f(med['cpu_s']):>9}"
            f"{_f(med['peak_mib'], '{:.0f}'):>10}{_f(med['inside_s']):>10}")
    for label, med, note in rows:
        if med is None:
            out(f"{label:{width}}{note}")
            continue
        out(f"{label:{width}}{_f(med.get('wall_s')):>9}{_f(med.get('cpu_s')):>9}"
            f"{_f(med.get('peak_mib'), '{:.0f}'):>10}{_f(med.get('inner_s')):>10}{note}")
    out("  (inside s: the import itself, or the call for cleanlab and numpy)")
    if "fixed_cost_s" in derived:
        out(f"  our whole command on {name}: {derived['fixed_cost_s']:.2f} s"
            + (f", of which report.html {derived['report_s']:.2f} s" if "report_s" in derived else ""))
    if "cli_import_beyond_apache_beam_s" in derived:
        out(f"  importing our CLI takes {derived['cli_import_beyond_apache_beam_s']:.2f} s more than "
            f"apache_beam alone (our package: "
            f"{derived.get('package_import_beyond_apache_beam_s', float('nan')):.2f} s more)")
    for label, p in phases:
        out(f"  {label} by its log: {phase_text(p)}")
    if breakdown:
        total = breakdown["total_s"]
        out(f"  import {breakdown['module']} (-X importtime, {total:.2f} s in all, "
            "which -X importtime inflates; read the shares):")
        out("    by what our modules import directly, with what that imports: "
            + _shares(breakdown["by_dependency"], total, 5, "beam_labelissues", "our own modules"))
        out("    by the package of each module: "
            + _shares(breakdown["by_package"], total, 6, "beam_labelissues", "beam_labelissues"))
        if not derived.get("package_from_checkout", True):
            out(f"  WARNING: the children imported beam_labelissues from {breakdown['package_file']}, "
                "not from this checkout")


def _shares(seconds_by_name, total, count, ours, ours_label):
    """'a 0.50 s (40%), b ...': the largest `count`, ours always, then the rest."""
    items = list(seconds_by_name.items())[:count]
    if ours not in dict(items):
        items.append((ours, seconds_by_name.get(ours, 0.0)))
    shown = sum(seconds for _, seconds in items)
    parts = [f"{ours_label if name == ours else name} {seconds:.2f} s ({seconds / total:.0%})"
             for name, seconds in items]
    return ", ".join(parts + [f"the rest {max(total - shown, 0.0):.2f} s"])


def phase_text(p):
    """One line of where our command's time went (medians of contenders.log_phases)."""
    if not p:
        return "no phases in the log"
    construct = p["build_and_run_s"] - p["run_s"] if p.get("run_s") is not None else None
    return (f"{p['start_s']:.2f} s until 'reading' (interpreter, imports, options, inputs), "
            f"{_f(construct)} s building the pipeline, {_f(p.get('run_s'))} s running it, "
            f"{p['after_s']:.2f} s after it (report, summary, exit)")


def _f(v, spec="{:.2f}"):
    return "-" if v is None else spec.format(v)
