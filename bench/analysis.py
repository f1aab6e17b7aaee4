"""From raw measurements to the numbers the issue asks for: each workload's headline metric,
ppmpi's ratio to every peer and to the MPI floor, and the targets with pass/fail."""

# workload: (key in the result, unit, which way is better)
METRICS = {
    "noop": ("tasks_per_s", "tasks/s", "higher"),
    "roundtrip": ("median_us", "µs (median)", "lower"),
    "payload": ("gib_s_each_way", "GiB/s each way", "higher"),
    "cpu": ("speedup", "× serial", "higher"),
    "function_bytes": ("function_bytes_sent", "function bytes sent", "lower"),
    "growth": ("per_job_us", "µs per job at the last checkpoint", "lower"),
}
RSS_SLACK_MIB = 4.0  # allocator noise; a leak of one job object per job taken is ~100+ MiB at 10^6


def metric(workload, result):
    """The headline number of one measurement, or None if it failed."""
    if result is None or "error" in result:
        return None
    if workload == "growth":
        rows = result.get("rows") or []
        return rows[-1]["per_job_us"] if rows else None
    return result.get(METRICS[workload][0])


def summary(workload, result):
    """One line for the progress output."""
    if "error" in result:
        return "ERROR " + result["error"][-400:]  # the end of stderr says what went wrong
    value = metric(workload, result)
    text = f"{value:,.3f} {METRICS[workload][1]}" if value is not None else "no value"
    if workload == "growth":
        text += f", RSS {result['rss_start_mib']:.1f}->{result['rows'][-1]['rss_mib']:.1f} MiB" \
            if result["rows"] else ""
    return text


def floor_summary(floor):
    parts = []
    for name, sizes in floor.items():
        if "error" in sizes:
            parts.append(f"{name}: ERROR {sizes['error'][:120]}")
            continue
        parts.append(f"{name}: {sizes['8']['latency_us']:.2f} µs, "
                     f"{sizes[str(64 << 20)]['bandwidth_gib_s']:.2f} GiB/s at 64 MiB")
    return "; ".join(parts)


def _get(out, workload, peer, workers):
    return out["results"].get(workload, {}).get(peer, {}).get(str(workers))


def ratios(out):
    """ratios[workload][W][peer] = ppmpi's metric / the peer's (None where either failed)."""
    table = {}
    for workload, per_peer in out["results"].items():
        for workers in out["plan"][workload][0]:
            mine = metric(workload, _get(out, workload, "ppmpi", workers))
            row = table.setdefault(workload, {}).setdefault(str(workers), {})
            for peer in per_peer:
                theirs = metric(workload, _get(out, workload, peer, workers))
                if peer != "ppmpi":
                    row[peer] = mine / theirs if mine is not None and theirs else None
    return table


def _floor(out, name, size, key):
    sizes = out["floor"].get(name, {})
    return sizes[str(size)][key] if str(size) in sizes else None


def _div(a, b):
    return a / b if a is not None and b else None


def _target(what, value, op, goal, fmt="{:.2f}"):
    """One row of the targets table; ok is None when the value could not be measured."""
    tests = {">=": lambda v: v >= goal, "<=": lambda v: v <= goal, "==": lambda v: v == goal,
             "within": lambda v: goal[0] <= v <= goal[1], "report": lambda v: None}
    ok = None if value is None else tests[op](value)
    if op == "within":
        shown_goal = f"{goal[0]} to {goal[1]}"
    else:
        shown_goal = "(reported)" if op == "report" else f"{op} {goal}"
    return {"what": what, "value": value, "shown": "n/a" if value is None else fmt.format(value),
            "goal": shown_goal, "ok": ok}


def _growth_targets(out):
    """Per-job time flat within ±20 % and master RSS flat, first to last checkpoint."""
    workers = out["plan"]["growth"][0][0] if "growth" in out["plan"] else 1
    rows = (_get(out, "growth", "ppmpi", workers) or {}).get("rows") or []
    first, last = (rows[0], rows[-1]) if len(rows) >= 2 else (None, None)
    span = f"{first['jobs']:,}→{last['jobs']:,} jobs" if first else "(no two checkpoints)"
    time_ratio = last["per_job_us"] / first["per_job_us"] if first else None
    rss_growth = last["rss_mib"] - first["rss_mib"] if first else None
    return [
        _target(f"growth {span}: ppmpi per-job time, last / first", time_ratio,
                "within", (0.8, 1.2)),
        _target(f"growth {span}: ppmpi master RSS, last − first (MiB)", rss_growth,
                "<=", RSS_SLACK_MIB, "{:+.2f}"),
    ]


def _busy_speedup(out, workers):
    """W × the fraction of the workers' time spent in jobs, in the best parallel round."""
    r = _get(out, "cpu", "ppmpi", workers) or {}
    return workers * r["busy_best_wall"] if "busy_best_wall" in r else None


def _count(n):
    return f"{n:,}" if isinstance(n, int) else "?"


def targets(out):
    """The issue's targets, each computed from this run only (ratios in the same run)."""
    def vs(workload, peer, workers=1):
        return out["ratios"].get(workload, {}).get(str(workers), {}).get(peer)

    def ppmpi(workload, workers=1):
        return metric(workload, _get(out, workload, "ppmpi", workers))

    rtt = {f: _floor(out, f, 8, "rtt_us") for f in ("world", "spawn")}
    bw = {f: _floor(out, f, 64 << 20, "bandwidth_gib_s") for f in ("world", "spawn")}
    fb_w = out["plan"].get("function_bytes", ([2],))[0][0]
    fb = _get(out, "function_bytes", "ppmpi", fb_w) or {}
    rows = [
        _target("no-op tasks/s, 1 worker: ppmpi / mpi4py.futures", vs("noop", "mpi4py"), ">=", 10),
        _target("no-op tasks/s, 1 worker: ppmpi / multiprocessing.Pool", vs("noop", "mp_pool"),
                ">=", 2),
        _target("round trip: ppmpi / multiprocessing.Pool", vs("roundtrip", "mp_pool"), "<=", 0.2,
                "{:.3f}"),
        _target("round trip: ppmpi / mpi4py.futures", vs("roundtrip", "mpi4py"), "<=", 0.1,
                "{:.3f}"),
        _target("round trip: ppmpi / MPI ping-pong round trip (mpirun -np 2)",
                _div(ppmpi("roundtrip"), rtt["world"]), "report", None, "{:.0f}×"),
        _target("round trip: ppmpi / MPI ping-pong round trip (spawned, TCP)",
                _div(ppmpi("roundtrip"), rtt["spawn"]), "report", None, "{:.0f}×"),
        _target("payload: ppmpi / ping-pong bandwidth at 64 MiB (mpirun -np 2)",
                _div(ppmpi("payload"), bw["world"]), ">=", 0.5, "{:.3f}"),
        _target("payload: ppmpi / ping-pong bandwidth at 64 MiB (spawned, TCP)",
                _div(ppmpi("payload"), bw["spawn"]), "report", None, "{:.3f}"),
        _target("CPU-bound speedup over serial, ppmpi, 2 workers", ppmpi("cpu", 2), ">=", 1.9),
        _target("CPU-bound, ppmpi, 2 workers: 2 × workers' busy fraction (the speedup if a job "
                "ran as fast in parallel as alone)", _busy_speedup(out, 2), "report", None),
        _target(f"same function {_count(fb.get('n'))} times: function sends by ppmpi "
                f"({fb_w} workers)", fb.get("function_defs_sent"), "==", fb_w, "{}"),
    ]
    return rows + _growth_targets(out)
