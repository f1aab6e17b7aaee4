"""results.json → results.md (tables) and results.png (charts).

Also usable alone, to redraw from a saved run: ``/usr/bin/python3 bench/report.py results.json``."""
import json
import os
import sys

from analysis import METRICS, metric

NAMES = {"ppmpi": "ppmpi", "mpi4py": "mpi4py.futures", "mp_pool": "multiprocessing.Pool",
         "process_pool": "ProcessPoolExecutor"}
TITLES = {
    "noop": "1. No-op throughput: submit N tiny jobs, then take every result",
    "roundtrip": "2. Round-trip latency: submit one, wait for it, repeat",
    "payload": "3. Payload: a float64 numpy array as argument and as result (echo)",
    "cpu": "4. CPU-bound scaling: W×4 pure-Python jobs of ~0.2 s on W workers",
    "function_bytes": "5. The same function N times: function bytes sent",
    "growth": "6. Growth: one stream of no-op jobs, results taken as they come",
}
PASS = {True: "✅ pass", False: "❌ fail", None: "—"}


def _cell(text, keep=300):
    """Text safe inside a Markdown table cell: one line, no column bars, the end kept (the
    end of a traceback says what went wrong)."""
    return " ".join(text[-keep:].split()).replace("|", "\\|")


def _fmt(value, digits=3):
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _meta_lines(out):
    m = out["meta"]
    dirty = " (uncommitted changes)" if m["ppmpi_tree_dirty"] else ""
    sizes = "--quick (smoke run)" if out["quick"] else "the issue's"
    return [
        f"Run {m['date']} on `{m['host']}`: nproc = {m['nproc']} ({m['cpu']}), "
        f"Linux {m['kernel']}, {m['open_mpi']}, Python {m['python']} "
        f"(`{m['python_executable']}`), numpy {m['numpy']}, mpi4py {m['mpi4py']}, "
        f"ppmpi {m['ppmpi_commit']}{dirty}.",
        f"Load average at start {' '.join(m['loadavg_start'])}, at end "
        f"{' '.join(m.get('loadavg_end', ['?']))}. Sizes: {sizes} "
        f"(`bench/run.sh {' '.join(out['argv'])}`); total {out['timings_s']['total']:.0f} s.",
        f"Cache-line round trip between the first two CPUs (`bench/core_to_core.c`; a no-op "
        f"job's cost follows it): {_c2c(m.get('core_to_core_start'))} at start, "
        f"{_c2c(m.get('core_to_core_end'))} at end.",
    ]


def _c2c(probe):
    if not probe or "round_trip_ns" not in probe:
        return "not measured" if not probe else f"not measured ({probe.get('error')})"
    return f"{probe['round_trip_ns']:.0f} ns"


def _targets_table(out):
    lines = ["| target | value | goal | result |", "|---|---|---|---|"]
    for t in out["targets"]:
        lines.append(f"| {t['what']} | {t['shown']} | {t['goal']} | {PASS[t['ok']]} |")
    return lines


def _floor_table(out):
    lines = ["| ping-pong | 8 B one-way latency (µs) | 8 B round trip (µs) | 1 MiB (GiB/s) "
             "| 64 MiB (GiB/s) |", "|---|---|---|---|---|"]
    labels = {"world": "`mpirun -np 2` (headline floor)",
              "tcp": "`mpirun -np 2 --mca btl tcp,self`",
              "spawn": "singleton + `MPI_Comm_spawn` (ppmpi mode 1's path)"}
    for name, sizes in out["floor"].items():
        if "error" in sizes:
            lines.append(f"| {labels[name]} | error: {_cell(sizes['error'])} | | | |")
            continue
        small, mid, big = sizes["8"], sizes[str(1 << 20)], sizes[str(64 << 20)]
        lines.append(f"| {labels[name]} | {small['latency_us']:.2f} | {small['rtt_us']:.2f} | "
                     f"{mid['bandwidth_gib_s']:.2f} | {big['bandwidth_gib_s']:.2f} |")
    return lines


def _detail(workload, r):
    """The supporting numbers of one measurement, for the last column."""
    if workload == "noop":
        return f"N = {r['n']:,}; submitting took {r['submit_s']:.2f} s of {r['total_s']:.2f} s"
    if workload == "roundtrip":
        return (f"N = {r['n']:,}; mean {r['mean_us']:.0f}, p10 {r['p10_us']:.0f}, "
                f"p90 {r['p90_us']:.0f} µs")
    if workload == "payload":
        return (f"{r['bytes'] >> 20} MiB, median of {r['reps']}: {r['median_rtt_s'] * 1e3:.0f} ms "
                f"per round trip; best {r['best_gib_s_each_way']:.2f} GiB/s")
    if workload == "cpu":
        text = (f"{r['jobs']} jobs: wall {r['wall_s']:.2f} s, serial in the master "
                f"{r['serial_s']:.2f} s (best of {len(r['walls_s'])} each)")
        if "busy_best_wall" in r:  # = W × busy × job speed ratio
            text += (f"; workers busy {r['busy_best_wall']:.1%}, a job in parallel ran at "
                     f"{r['job_speed_ratio']:.2f}× its serial speed")
        return text
    if workload == "function_bytes":
        how = "estimated: pickled reference × tasks" if r["estimated"] else "ppmpi's counters"
        return f"N = {r['n']:,}; {r['function_defs_sent']:,} function sends ({how})"
    return ""


def _workload_table(out, workload):
    unit, better = METRICS[workload][1], METRICS[workload][2]
    lines = [f"| peer | W | {unit} | ppmpi ÷ peer ({better} is better) | start-up (s) | details |",
             "|---|---|---|---|---|---|"]
    for peer, per_w in out["results"][workload].items():
        for workers, r in per_w.items():
            if "error" in r:
                lines.append(f"| {NAMES[peer]} | {workers} | error | | | {_cell(r['error'])} |")
                continue
            ratio = out["ratios"][workload][workers].get(peer) if peer != "ppmpi" else None
            lines.append(f"| {NAMES[peer]} | {workers} | {_fmt(metric(workload, r))} | "
                         f"{_fmt(ratio) if peer != 'ppmpi' else '—'} | {r['startup_s']:.2f} | "
                         f"{_detail(workload, r)} |")
    return lines


def _growth_table(out):
    checkpoints = out["plan"]["growth"][1]["checkpoints"]
    head = " | ".join(f"{n:,} jobs: µs/job, RSS MiB" for n in checkpoints)
    lines = [f"| peer | W | RSS before (MiB) | {head} | note |",
             "|---" * (len(checkpoints) + 4) + "|"]
    for peer, per_w in out["results"]["growth"].items():
        for workers, r in per_w.items():
            if "error" in r:
                cells, start, note = [""] * len(checkpoints), "error", _cell(r["error"])
            else:
                cells = [f"{row['per_job_us']:.1f}, {row['rss_mib']:.1f}" for row in r["rows"]]
                cells += ["not reached"] * (len(checkpoints) - len(cells))
                start = f"{r['rss_start_mib']:.1f}"
                note = (f"stopped at its time budget ({r['elapsed_s']:.0f} s)"
                        if r["stopped_early"] else "")
                if "median_of" in r:
                    note = (note + " " if note else "") + _growth_runs_note(r)
            lines.append(f"| {NAMES[peer]} | {workers} | {start} | {' | '.join(cells)} | {note} |")
    return lines


def _growth_runs_note(r):
    """The runs a median growth row comes from: µs/job per checkpoint, and the core-to-core
    round trip measured before each run."""
    runs = [" / ".join(f"{row['per_job_us']:.1f}" for row in run.get("rows", []))
            + f" (c2c {run.get('core_to_core_ns_before') or '?'} ns)" for run in r["runs"]]
    counts = r["median_of"] if isinstance(r["median_of"], list) else [r["median_of"]]
    of = " / ".join(str(c) for c in counts)
    return f"rows: median of {of} runs: " + "; ".join(runs)


def markdown(out):
    lines = ["# ppmpi benchmark (issue 6)", ""] + _meta_lines(out)
    lines += ["", "## Targets", ""] + _targets_table(out)
    lines += ["", "## The floor: C MPI ping-pong", "",
              "Median round trip; latency = half of it; bandwidth = bytes / (half round trip), "
              "the definition the payload workload uses too.", ""]
    lines += _floor_table(out)
    for workload in out["results"]:
        lines += ["", f"## {TITLES[workload]}", ""]
        lines += _growth_table(out) if workload == "growth" else _workload_table(out, workload)
    lines += ["", "## Time per section (s)", "", "| section | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in out["timings_s"].items()]
    return "\n".join(lines) + "\n"


def write(out, out_dir):
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(out))
    import charts  # matplotlib is imported only here: the tables need none of it

    charts.draw(out, os.path.join(out_dir, "results.png"))


if __name__ == "__main__":
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "results.json")
    path = sys.argv[1] if len(sys.argv) > 1 else default
    write(json.load(open(path)), os.path.dirname(os.path.abspath(path)))
