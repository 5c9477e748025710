"""``python -m bench [name ...] [--render-only]``: run the benchmarks, each in its own process, then write
docs/_generated/benchmark-results.md (the table of every figure, which the manual's benchmarks page includes),
docs/benchmarks.png (the plot it shows) and bench/REPORT.md (the full report: each benchmark's method and the
measurement notes of bench/notes/, kept with the code and not published)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

from bench.report import NOTES, RESULTS, ROOT

#: In the order of the issue's targets.
BENCHMARKS = ["request_path", "throughput", "table_size", "expiry", "cost"]
TABLE = ROOT / "docs" / "_generated" / "benchmark-results.md"
REPORT = ROOT / "bench" / "REPORT.md"
PLOT = ROOT / "docs" / "benchmarks.png"


def run(name: str) -> bool:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "PYTHONUNBUFFERED": "1"}
    print(f"== bench.{name}", flush=True)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=ROOT, env=env)
    print(f"== bench.{name}: exit {done.returncode} after {time.monotonic() - started:.0f} s", flush=True)
    return done.returncode == 0


def load() -> list[dict]:
    results = []
    for name in BENCHMARKS:
        path = RESULTS / f"{name}.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
    return results


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".strip()


def table(results: list[dict]) -> str:
    lines = ["| benchmark | metric | ours | baseline | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    for result in results:
        for row in result["rows"]:
            met = {True: "yes", False: "**no**", None: ""}[row["ok"]]
            baseline = _fmt(row["baseline"], row["unit"])
            if row.get("baseline_name") and baseline:
                baseline += f" ({row['baseline_name']})"
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.3g}"
            lines.append(f"| {result['name']} | {row['metric']} | {_fmt(row['ours'], row['unit'])} | {baseline} | "
                         f"{ratio} | {row['target']} | {met} |")
    return "\n".join(lines)


def plot(results: list[dict]) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [r for r in results if r.get("plot")]
    if not panels:
        return False
    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    for ax, result in zip(axes.flat, panels, strict=False):
        spec = result["plot"]
        if spec["kind"] == "bar":
            categories = spec["categories"]
            width = 0.8 / max(1, len(spec["series"]))
            for i, (label, values) in enumerate(spec["series"].items()):
                ax.bar([c + i * width for c in range(len(categories))], values, width, label=label)
            ax.set_xticks([c + width * (len(spec["series"]) - 1) / 2 for c in range(len(categories))], categories)
        else:
            for label, points in spec["series"].items():
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
            if spec.get("xlog"):
                ax.set_xscale("log")
        if spec.get("log"):
            ax.set_yscale("log")
        ax.set_title(spec.get("title") or result["title"], fontsize=10)
        ax.set_xlabel(spec.get("xlabel", ""))
        ax.set_ylabel(spec.get("ylabel", ""))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    return True


def _previous_run_line() -> str | None:
    """The "Last run:" line of the table written before, so re-rendering keeps when the figures were taken."""
    if TABLE.exists():
        for line in TABLE.read_text().splitlines():
            if line.startswith("Last run:"):
                return line
    return None


def render(results: list[dict], ran: bool = True) -> None:
    """Write the table, the report and the plot; ``ran``: the benchmarks ran now (else the results are older)."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    run = f"Last run: {stamp}, {platform.node()}, Python {platform.python_version()}, {os.cpu_count()} cores."
    if not ran:
        run = _previous_run_line() or "Rendered from bench/results/ on " + stamp + "."
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text("\n".join([
        "<!-- Written by `make bench` (python -m bench); do not edit by hand. -->",
        "",
        run,
        "",
        table(results),
        "",
    ]))
    parts = [
        "# Benchmark report",
        "",
        "Written by `make bench` (`python -m bench`); do not edit by hand: edit `bench/notes/<name>.md` or the "
        "benchmark. The manual's summary for users is docs/benchmarks.md. Every ratio is of two figures measured "
        "side by side in the same run, on the machine's PostgreSQL and Redis.",
        "",
        run,
        "",
        "## Results",
        "",
        table(results),
        "",
    ]
    if plot(results):
        parts += ["![benchmarks](../docs/benchmarks.png)", ""]
    for result in results:
        parts += [f"## {result['order']}. {result['title']}", "", result["notes"].strip(), ""]
        notes = NOTES / f"{result['name']}.md"
        if notes.exists():
            parts += [notes.read_text().strip(), ""]
    REPORT.write_text("\n".join(parts))
    written = [TABLE, REPORT] + ([PLOT] if PLOT.exists() else [])
    print("wrote " + ", ".join(str(path.relative_to(ROOT)) for path in written))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"only these of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the table, the plot and the report from bench/results/")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    failed = []
    if not args.render_only:
        for name in args.names or BENCHMARKS:
            if not run(name):
                failed.append(name)
    render(load(), ran=not args.render_only)
    if failed:
        print("failed:", ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
