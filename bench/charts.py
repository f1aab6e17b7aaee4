"""results.png: one panel per workload, every peer side by side (Debian's python3-matplotlib,
Agg backend: no display needed)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from analysis import METRICS, metric  # noqa: E402

COLORS = {"ppmpi": "tab:red", "mpi4py": "tab:blue", "mp_pool": "tab:green",
          "process_pool": "tab:orange"}
SHORT = {"ppmpi": "ppmpi", "mpi4py": "mpi4py\nfutures", "mp_pool": "mp.Pool",
         "process_pool": "ProcessPool\nExecutor"}


def _bars(ax, out, workload, title, log=False):
    """Bars per peer (grouped by worker count when there are several)."""
    counts = out["plan"][workload][0]
    peers = list(out["results"][workload])
    width = 0.8 / len(counts)
    for i, workers in enumerate(counts):
        values = [metric(workload, out["results"][workload][p].get(str(workers))) or 0
                  for p in peers]
        xs = [k + (i - (len(counts) - 1) / 2) * width for k in range(len(peers))]
        bars = ax.bar(xs, values, width, color=[COLORS[p] for p in peers],
                      alpha=1.0 if i == len(counts) - 1 else 0.55)
        ax.bar_label(bars, labels=[f"{v:.3g}" + (f"\nW={workers}" if len(counts) > 1 else "")
                                   for v in values], fontsize=7)
    ax.set_xticks(range(len(peers)), [SHORT[p] for p in peers], fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(METRICS[workload][1], fontsize=8)
    ax.margins(y=0.15)  # room for the value labels above the bars
    if log:
        ax.set_yscale("log")


def _floor_line(ax, out, size, key, label, scale=1.0):
    sizes = out["floor"].get("world", {})
    if str(size) in sizes:
        ax.axhline(sizes[str(size)][key] * scale, color="gray", linestyle="--", linewidth=1)
        ax.annotate(label, (0.02, 0.9), xycoords="axes fraction", fontsize=7, color="gray")


def _growth(ax, out):
    for peer, per_w in out["results"]["growth"].items():
        for r in per_w.values():
            rows = r.get("rows") or []
            if rows:
                ax.plot([row["jobs"] for row in rows], [row["per_job_us"] for row in rows],
                        "o-", color=COLORS[peer], label=SHORT[peer].replace("\n", " "))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("jobs taken", fontsize=8)
    ax.set_ylabel("µs per job", fontsize=8)
    ax.set_title("6. growth: per-job time", fontsize=9)
    ax.legend(fontsize=7)


def _panels(out):
    """workload → a function drawing its panel on an Axes."""
    def roundtrip(ax):
        _bars(ax, out, "roundtrip", "2. round trip (ping-pong RTT dashed)", log=True)
        _floor_line(ax, out, 8, "rtt_us", "MPI ping-pong 8 B round trip")

    def payload(ax):
        _bars(ax, out, "payload", "3. payload echo (ping-pong bandwidth dashed)")
        _floor_line(ax, out, 64 << 20, "bandwidth_gib_s", "ping-pong at 64 MiB")

    def cpu(ax):
        _bars(ax, out, "cpu", "4. CPU-bound speedup (W=1, W=2; target 1.9 dashed)")
        ax.axhline(1.9, color="gray", linestyle="--", linewidth=1)

    return {
        "noop": lambda ax: _bars(ax, out, "noop", "1. no-op throughput, 1 worker", log=True),
        "roundtrip": roundtrip,
        "payload": payload,
        "cpu": cpu,
        "function_bytes": lambda ax: _bars(ax, out, "function_bytes", "5. same function N times",
                                           log=True),
        "growth": lambda ax: _growth(ax, out),
    }


def draw(out, path):
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    for ax, (workload, panel) in zip(axes.flat, _panels(out).items()):
        if workload in out["results"]:
            panel(ax)
        else:
            ax.set_axis_off()
    m = out["meta"]
    mode = "smoke run (--quick)" if out["quick"] else "issue sizes"
    fig.suptitle(f"ppmpi vs peers, {mode}: nproc={m['nproc']}, {m['open_mpi']}, "
                 f"Python {m['python']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
