#!/usr/bin/env python
"""Side-by-side benchmark: our CLI vs cleanlab's find_label_issues_batched vs a plain numpy loop.

For every dataset (synthetic, fixed seeds, float32: datasets.py) each contender
(contenders.py: cleanlab's function and the numpy loop in a child process, our
CLI ``python -m beam_labelissues`` on the .npy files and on Parquet) runs as its
own subprocess, taking turns within each repeat, and is measured from outside
(measure.py): wall time, CPU time of the whole process tree, peak RSS of the
whole process tree. Answers are compared with cleanlab's (compare.py). Before
the datasets, the fixed start-up cost is measured on a tiny dataset
(startup.py). Medians are printed as a table per dataset and input, and every
run is written to JSON. See benchmarks/README.md.
"""

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# Import the benchmarks package and beam_labelissues from this checkout, and keep
# benchmarks/ itself off the path (its modules are not top-level modules).
sys.path[:] = [REPO] + [p for p in sys.path if os.path.abspath(p or os.curdir) not in (HERE, REPO)]

import numpy as np  # noqa: E402

from benchmarks import compare, contenders, datasets, measure, startup  # noqa: E402

MEDIAN_KEYS = ("wall_s", "cpu_s", "peak_mib", "peak_anon_mib", "inner_s")
PHASE_KEYS = ("start_s", "build_and_run_s", "run_s", "after_s")
MARKDOWN_HEADER = ("data (N x K)", "input", "ours wall", "cleanlab wall", "ratio", "numpy loop",
                   "ours / numpy", "ours peak", "cleanlab peak", "ratio", "same issues")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="default",
                    help="comma-separated NxK names; 'default' stands for "
                    f"{','.join(datasets.DEFAULT_DATASETS)}, 'optional' for "
                    f"{','.join(datasets.OPTIONAL_DATASETS)} (needs ~9 GiB of disk); "
                    "'none' runs only the start-up measurement (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per contender; median reported")
    ap.add_argument("--contenders", default=None,
                    help=f"which contenders, of {', '.join(contenders.REGISTRY)} (default: cleanlab, numpy and "
                    "ours; with --filter_by, cleanlab_filter and ours)")
    ap.add_argument("--filter_by", choices=contenders.FILTER_BY, default=None,
                    help="benchmark the full method: ours with --filter_by against cleanlab's "
                    "filter.find_label_issues(filter_by=..., n_jobs=1) (contender cleanlab_filter)")
    ap.add_argument("--inputs", default="npy,parquet", help="inputs for our CLI: npy,parquet")
    ap.add_argument("--workers", default=contenders.AUTO,
                    help="our local worker counts, e.g. 1,4,16: ours runs once per value "
                    "(N > 1: --direct_num_workers=N --direct_running_mode=multi_processing; "
                    "1: in process; auto: the CLI's own choice, one process below 1 GiB of "
                    "predictions) (default: %(default)s)")
    ap.add_argument("--no_report", action="store_true",
                    help="run our CLI with --no_report (default: with report.html, as the README's command)")
    ap.add_argument("--startup_dataset", default="1kx10",
                    help="the tiny dataset of the start-up measurement (default: %(default)s)")
    ap.add_argument("--startup_repeats", type=int, default=3,
                    help="runs of each start-up measurement; median reported (default: %(default)s)")
    ap.add_argument("--skip_startup", action="store_true", help="skip the start-up measurement")
    ap.add_argument("--markdown", action="store_true",
                    help="print the README's table rows at the end")
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"), help="results file")
    ap.add_argument("--data_dir", default=os.path.join(HERE, "data"))
    ap.add_argument("--extra_args", default="", help="extra arguments for our CLI (runner settings)")
    ap.add_argument("--skip_cleanlab", action="store_true",
                    help="do not run cleanlab; the numpy loop's answer is the reference")
    ap.add_argument("--skip_numpy", action="store_true")
    ap.add_argument("--skip_ours", action="store_true")
    ap.add_argument("--row_group_rows", type=int, default=65536, help="Parquet row-group rows")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    ap.add_argument("--keep_outputs", action="store_true", help="keep run outputs and logs")
    args = ap.parse_args(argv)

    args.inputs = tuple(s.strip() for s in args.inputs.split(",") if s.strip())
    for s in args.inputs:
        if s not in contenders.INPUTS:
            raise SystemExit(f"--inputs: unknown input {s!r}")
    args.names = datasets.expand_names(args.datasets)
    datasets.parse_dataset(args.startup_dataset)
    args.workers = contenders.parse_workers(args.workers)
    args.extra = tuple(shlex.split(args.extra_args))
    if args.workers != (contenders.AUTO,) and any(
            a.split("=", 1)[0] in ("--direct_num_workers", "--direct_running_mode") for a in args.extra):
        raise SystemExit("--workers and worker options in --extra_args: choose one")
    if args.contenders is None:
        args.contenders = "cleanlab_filter,ours" if args.filter_by else "cleanlab,numpy,ours"
    selected = [s.strip() for s in args.contenders.split(",") if s.strip()]
    for s in selected:
        if s not in contenders.REGISTRY:
            raise SystemExit(f"--contenders: unknown contender {s!r} (known: {', '.join(contenders.REGISTRY)})")
    skipped = {"cleanlab": args.skip_cleanlab, "cleanlab_filter": args.skip_cleanlab, "numpy": args.skip_numpy,
               "ours": args.skip_ours}
    args.selected = [s for s in selected if not skipped.get(s)]
    return args


def main(argv=None):
    args = parse_args(argv)
    settings = contenders.Settings(inputs=args.inputs, workers=args.workers, report=not args.no_report,
                                   extra_args=args.extra, python=sys.executable, filter_by=args.filter_by)
    os.makedirs(args.data_dir, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONHASHSEED", "0")

    results = {"machine": measure.machine_info(),
               "config": {"datasets": args.names, "repeats": args.repeats, "inputs": list(args.inputs),
                          "contenders": args.selected, "workers": list(args.workers),
                          "report": settings.report, "extra_args": args.extra_args,
                          "skip_cleanlab": "cleanlab" not in args.selected,
                          "cleanlab_call": contenders.CLEANLAB_CALL, "ours_command": contenders.OURS_COMMAND,
                          "filter_by": args.filter_by, "cleanlab_filter_call": contenders.CLEANLAB_FILTER_CALL,
                          "startup_dataset": None if args.skip_startup else args.startup_dataset,
                          "startup_repeats": args.startup_repeats,
                          "poll_interval_s": measure.POLL_INTERVAL_S,
                          "generator_version": datasets.GENERATOR_VERSION},
               "datasets": {}}
    m = results["machine"]
    print(f"machine: {m['nproc']} CPUs, {m['memory_gib']} GiB, python {m['python']}, "
          f"numpy {m['numpy']}, beam {m['beam']}, cleanlab {m['cleanlab']}")
    if "ours" in args.selected:
        print("ours: python -m beam_labelissues from " + REPO
              + (" with --no_report" if args.no_report else ", writing report.html as the README's command does"))

    if not args.skip_startup:
        results["startup"] = run_startup(args, settings, env)
        write_json(args.json, results)

    for name in args.names:
        meta, files = datasets.ensure_dataset(args.data_dir, name, args.row_group_rows)
        cs = contenders.build(args.selected, settings)
        answers = run_contenders(name, files, cs, args.repeats, args, env)
        ds = dataset_result(meta, cs, answers, files)
        results["datasets"][name] = ds
        print_dataset(name, ds, cs, args)
        print("")
        write_json(args.json, results)

    results["memory_growth"] = memory_growth(results["datasets"])
    print_memory_growth(results["memory_growth"])
    results["markdown"] = markdown_rows(results["datasets"])
    if args.markdown and results["markdown"]:
        print("")
        print("| " + " | ".join(MARKDOWN_HEADER) + " |")
        print("|" + "---|" * len(MARKDOWN_HEADER))
        for row in results["markdown"]:
            print(row)
    write_json(args.json, results)
    print(f"\nresults written to {args.json}")
    return 0


# --- running the contenders ------------------------------------------------------------


def run_contenders(name, files, cs, repeats, args, env):
    """Runs every contender `repeats` times, taking turns; returns {key: first answer}."""
    answers = {}   # key -> answer of the first successful run
    work = tempfile.mkdtemp(prefix=f"bench-{name}-")
    try:
        for rep in range(repeats):
            shift = rep % len(cs) if cs else 0
            order = cs[shift:] + cs[:shift]
            for c in order:
                if c.skipped:
                    continue
                run = contenders.Run(files, os.path.join(work, f"{c.key}-{rep}"))
                cmd = c.command(run)
                c.describe.setdefault("argv", cmd)
                print(f"[{name}] repeat {rep + 1}/{repeats}: {c.label} ...", end=" ", flush=True)
                r = measure.run_measured(cmd, REPO, env, run.prefix, args.timeout)
                r["repeat"] = rep
                c.runs.append(r)
                if r["rc"] != 0:
                    stderr = measure.tail(run.prefix + ".stderr", 4000)
                    r["ok"] = False
                    r["stderr_tail"] = stderr[-1500:]
                    what = "timed out" if r["timed_out"] else f"failed (rc {r['rc']})"
                    print(f"{what}:\n{stderr[-1500:]}")
                    continue
                try:
                    answer = c.read_answer(run, r)
                except Exception as e:  # noqa: BLE001 - a broken output is a result
                    r["ok"] = False
                    r["error"] = f"{type(e).__name__}: {e}"
                    print(f"bad output: {r['error']}")
                    continue
                r.update(answer.details)
                r["ok"] = True
                r["num_issues"] = int(len(answer.ids))
                if c.key in answers:
                    prev = answers[c.key]
                    r["same_as_first_run"] = bool(np.array_equal(np.sort(prev), np.sort(answer.ids)))
                else:
                    answers[c.key] = answer.ids
                print(f"{r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU, "
                      f"{r['peak_mib']:.0f} MiB peak, {len(answer.ids):,} issues")
                if not args.keep_outputs:
                    for suffix in (".npy", ".json"):
                        if os.path.exists(run.prefix + suffix):
                            os.remove(run.prefix + suffix)
                    shutil.rmtree(run.out_dir, ignore_errors=True)
    finally:
        if not args.keep_outputs:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"[{name}] outputs and logs kept in {work}")
    return answers


def summarize(c):
    """Medians over a contender's successful runs, or None when none succeeded."""
    if not c.runs or not any(r.get("ok") for r in c.runs):
        return None
    med = {k: measure.median(c.runs, k) for k in MEDIAN_KEYS if any(k in r for r in c.runs)}
    phases = [r["phases"] for r in c.runs if r.get("ok") and r.get("phases")]
    if phases:
        med["phases"] = {k: float(np.median([p[k] for p in phases])) for k in PHASE_KEYS}
    return med


def agreements_of(cs, answers, files):
    """Each answer compared with the first of its compare_with that answered."""
    scores_of = None
    out = {}
    for c in cs:
        if c.key not in answers:
            continue
        ref_key = next((k for k in c.compare_with if k != c.key and k in answers), None)
        if ref_key is None:
            continue
        if scores_of is None:
            scores_of = compare.score_lookup(files)
        out[c.key] = compare.compare(answers[c.key], answers[ref_key], scores_of)
        out[c.key]["reference"] = ref_key
    return out


def dataset_result(meta, cs, answers, files):
    ref_key = next((k for k in ("cleanlab_filter", "cleanlab", "numpy") if k in answers), None)
    ds = {"n": meta["n"], "k": meta["k"], "meta": meta, "reference": ref_key,
          "contenders": {}, "agreement": agreements_of(cs, answers, files)}
    for c in cs:
        ds["contenders"][c.key] = {"label": c.label, "input": c.input_kind, "role": c.role,
                                   "compare_with": list(c.compare_with), "describe": c.describe,
                                   "skipped": c.skipped, "median": summarize(c), "runs": c.runs}
    return ds


def run_startup(args, settings, env):
    """Contenders on the tiny dataset (ours with and without report.html), timed
    imports and the import breakdown; prints the start-up table."""
    name = args.startup_dataset
    meta, files = datasets.ensure_dataset(args.data_dir, name, args.row_group_rows)
    others = contenders.build([s for s in args.selected if s != "ours"], settings)
    ours = []
    if "ours" in args.selected:
        for report in (True, False):
            ours.append(contenders.ours_contender(settings, "npy", contenders.AUTO, report))
    cs = others + ours
    repeats = args.startup_repeats
    answers = run_contenders(f"startup-{name}", files, cs, repeats, args, env)
    ds = dataset_result(meta, cs, answers, files)
    work = tempfile.mkdtemp(prefix="bench-imports-")
    try:
        print(f"[startup] timed imports, {repeats} of each ...", flush=True)
        imports = startup.measure_imports(sys.executable, REPO, env, work, repeats, args.timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("[startup] python -X importtime ...", flush=True)
    breakdown = startup.import_breakdown(sys.executable, REPO, env, repeats, args.timeout)
    ours_medians = {}
    for c in ours:
        ours_medians["with_report" if c.describe["report"] else "no_report"] = summarize(c)
    derived = startup.summarize(imports, breakdown, ours_medians, REPO)
    rows = []
    for c in cs:
        med = summarize(c)
        rows.append((c.label, med, "" if med else f"failed: {_failure(c)}"))
    phases = [(c.label, (summarize(c) or {}).get("phases")) for c in ours]
    startup.print_startup(name, meta["n"], meta["k"], repeats, rows, imports, breakdown,
                          phases, derived)
    for key, agr in ds["agreement"].items():
        if not agr["same_set"]:
            print(f"  {ds['contenders'][key]['label']} vs {agr['reference']}: NOT the same set")
    print("")
    return {"dataset": name, **ds, "imports": imports, "import_breakdown": breakdown, "derived": derived}


def _failure(c):
    """The last line of what went wrong in a contender's last run."""
    if not c.runs:
        return "no run"
    last = c.runs[-1]
    lines = (last.get("error") or last.get("stderr_tail") or "").strip().splitlines()
    return lines[-1] if lines else f"rc {last.get('rc')}"


# --- the tables ------------------------------------------------------------------------


def fmt(v, spec="{:.2f}"):
    return "-" if v is None else spec.format(v)


def print_dataset(name, ds, cs, args, out=print):
    """One table per input of ours (or one, without ours), then the scaling tables."""
    ours_inputs = [c.input_kind for c in cs if c.role == "ours"]
    inputs = list(dict.fromkeys(ours_inputs)) or ["npy"]
    loads = [r["loadavg_start"] for c in cs for r in c.runs]
    # our own runs put up to ~1 process per CPU on the machine
    busy = max(loads) if loads and max(loads) > 1.5 * os.cpu_count() else None
    for i, inp in enumerate(inputs):
        ours = [c for c in cs if c.role == "ours" and c.input_kind == inp]
        others = [c for c in cs if c.role != "ours"]
        rows = []
        for c in ours + others:
            med = ds["contenders"][c.key]["median"]
            note = ""
            if c.skipped:
                note = f"skipped: {c.skipped}"
            elif med is None:
                note = "failed (see JSON for stderr)"
            elif c.input_kind != inp:
                note = f"  (.{c.input_kind} files)"
            issues = c.runs[-1].get("num_issues") if c.runs else None
            rows.append((c, med, issues, note))
        agreements = [c for c in ours if c.key in ds["agreement"]]
        if i == 0:
            agreements += [c for c in others if c.key in ds["agreement"]]
        print_table(name, ds["n"], ds["k"], inp, rows, ds, agreements, args.repeats, busy, out)
    if len(args.workers) > 1:
        for inp in inputs:
            print_scaling(name, inp, [c for c in cs if c.role == "ours" and c.input_kind == inp], ds, out)


def print_table(name, n, k, input_kind, rows, ds, agreements, repeats, busy=None, out=print):
    meds = {c.key: med for c, med, _, _ in rows}
    labels = {c.key: c.label for c, _, _, _ in rows}
    ratio_rows = []
    for c, med, _, _ in rows:
        if c.role not in ("ours", "ours_api") or med is None:
            continue
        for ref in c.compare_with:
            if meds.get(ref):
                ratio_rows.append((f"{c.label} / {labels[ref]}", med, meds[ref]))
    width = max([16] + [len(c.label) + 2 for c, _, _, _ in rows] + [len(r[0]) + 2 for r in ratio_rows])
    out("")
    out(f"== {name} ({n:,} x {k}), input {input_kind}, median of {repeats} ==")
    out(f"{'':{width}}{'wall s':>9}{'CPU s':>9}{'peak MiB':>10}{'anon MiB':>10}{'issues':>10}")
    for c, med, issues, note in rows:
        if med is None:
            out(f"{c.label:{width}}{note}")
            continue
        out(f"{c.label:{width}}{fmt(med.get('wall_s')):>9}{fmt(med.get('cpu_s')):>9}"
            f"{fmt(med.get('peak_mib'), '{:.0f}'):>10}{fmt(med.get('peak_anon_mib'), '{:.0f}'):>10}"
            f"{fmt(issues, '{:,}'):>10}{note}")
    for label, med, ref in ratio_rows:
        out(f"{label:{width}}{med['wall_s'] / ref['wall_s']:>8.2f}x{'':9}"
            f"{med['peak_mib'] / ref['peak_mib']:>9.2f}x")
    if busy:
        out(f"  warning: the machine was busy (1-min load average up to {busy:.1f} on "
            f"{os.cpu_count()} CPUs): wall times are inflated; CPU s and memory are not")
    for c in agreements:
        agr = ds["agreement"][c.key]
        ref = labels.get(agr["reference"], agr["reference"])
        extra = ""
        if not agr["same_set"]:
            extra = (f" (only {c.label}: {agr['only_ours']}, only {ref}: {agr['only_cleanlab']}"
                     + (", all tied at the cut-off score" if agr.get("differs_only_at_cutoff_tie")
                        else "") + ")")
        out(f"  {c.label} vs {ref}: same set: {'yes' if agr['same_set'] else 'NO'}{extra}; "
            f"same order up to ties: {'yes' if agr['same_order_up_to_ties'] else 'NO'}"
            f" ({agr['tied_pairs']} tied neighbours, ties by id: "
            f"{'yes' if agr['ties_by_id'] else 'no'})")
    for c, med, _, _ in rows:
        if c.role == "ours" and med and med.get("phases"):
            out(f"  {c.label} by its log: {startup.phase_text(med['phases'])}")


def print_scaling(name, input_kind, ours, ds, out=print):
    """Our wall time, CPU and peak per worker count, with the speed-up over the first."""
    meds = [(c, ds["contenders"][c.key]["median"]) for c in ours]
    first = next((med for _, med in meds if med), None)
    out("")
    out(f"== {name}, input {input_kind}: ours by local workers ==")
    out(f"{'workers':>9}{'wall s':>9}{'CPU s':>9}{'peak MiB':>10}{'speed-up':>10}{'processes':>11}")
    for c, med in meds:
        workers = c.describe["workers"]
        if med is None:
            out(f"{workers!s:>9}  failed")
            continue
        procs = max(r["max_procs"] for r in c.runs if r.get("ok"))
        out(f"{workers!s:>9}{med['wall_s']:>9.2f}{med['cpu_s']:>9.2f}{med['peak_mib']:>10.0f}"
            f"{first['wall_s'] / med['wall_s']:>9.2f}x{procs:>11}")


def memory_growth(ds_results):
    """Peak memory from each dataset to every larger one with the same K, per contender."""
    by_k = {}
    for name, ds in ds_results.items():
        by_k.setdefault(ds["k"], []).append((ds["n"], name))
    out = []
    for k in sorted(by_k):
        items = sorted(by_k[k])
        for i, (n0, a) in enumerate(items):
            for n1, b in items[i + 1:]:
                if n1 == n0:
                    continue
                growth = {}
                for key, c0 in ds_results[a]["contenders"].items():
                    c1 = ds_results[b]["contenders"].get(key)
                    m0, m1 = c0.get("median"), (c1 or {}).get("median")
                    if m0 and m1 and m0.get("peak_mib") and m1.get("peak_mib"):
                        growth[key] = {"label": c0["label"], "from_mib": m0["peak_mib"],
                                       "to_mib": m1["peak_mib"],
                                       "growth": m1["peak_mib"] / m0["peak_mib"] - 1}
                if growth:
                    out.append({"from": a, "to": b, "rows_ratio": n1 / n0, "contenders": growth})
    return out


def print_memory_growth(growth, out=print):
    if not growth:
        return
    out("")
    out("== memory growth (peak MiB of the process tree) ==")
    for g in growth:
        parts = [f"{c['label']} {c['from_mib']:.0f} -> {c['to_mib']:.0f} ({c['growth']:+.0%})"
                 for c in g["contenders"].values()]
        out(f"{g['from']} -> {g['to']} ({g['rows_ratio']:g}x the rows): " + ", ".join(parts))


def markdown_rows(ds_results):
    """The README's table: one row per dataset and each of ours (inputs first, then
    worker counts), compared with its reference (cleanlab) and the numpy loop."""
    keys = []
    for ds in ds_results.values():
        for key, c in ds["contenders"].items():
            if c["role"] == "ours" and key not in keys:
                keys.append(key)
    rows = []
    for i, key in enumerate(keys):
        for name, ds in ds_results.items():
            c = ds["contenders"].get(key)
            if c is None or c["median"] is None:
                continue
            med = c["median"]
            ref_key = c["compare_with"][0] if c["compare_with"] else None
            ref = ((ds["contenders"].get(ref_key) or {}).get("median")) if ref_key else None
            base_key = next((k for k in c["compare_with"]
                             if (ds["contenders"].get(k) or {}).get("role") == "baseline"), None)
            base = (ds["contenders"].get(base_key) or {}).get("median") if base_key else None
            agr = ds["agreement"].get(key)
            if agr is None:
                same = ""
            else:
                same = ("yes" if agr["same_set"] else
                        "tied at the cut-off" if agr.get("differs_only_at_cutoff_tie") else "NO")
                if agr["reference"] != ref_key:
                    same += f" (vs {agr['reference']})"
            inp = {"npy": ".npy", "parquet": "Parquet"}.get(c["input"], c["input"])
            variant = []
            workers = c["describe"].get("workers", contenders.AUTO)
            if workers != contenders.AUTO:
                variant.append(f"{workers} worker" + ("s" if workers != 1 else ""))
            if c["describe"].get("report") is False:
                variant.append("no report")
            cells = [
                datasets.display_name(name),
                ", ".join([inp] + variant),
                _md(med["wall_s"], "{:.2f} s"),
                _md(ref and ref["wall_s"], "{:.2f} s"),
                _md(ref and med["wall_s"] / ref["wall_s"], "{:.2f}x"),
                _md(base["wall_s"], "{:.2f} s") if base and i == 0 else "",
                _md(base and med["wall_s"] / base["wall_s"], "{:.1f}x"),
                _md(med["peak_mib"], "{:.0f} MiB"),
                _md(ref and ref["peak_mib"], "{:.0f} MiB"),
                _md(ref and med["peak_mib"] / ref["peak_mib"], "{:.2f}x"),
                same,
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def _md(value, spec):
    return "" if value is None else spec.format(value)


def write_json(path, results):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
