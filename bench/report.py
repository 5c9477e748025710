"""What every benchmark writes, and helpers they share.

A result is a JSON file ``bench/results/<name>.json``::

    {"name": "request_path", "title": "...", "order": 1,
     "rows": [{"metric": "save() p50", "ours": 3.1, "baseline": 204.0, "baseline_name": "send inside save()",
               "unit": "ms", "ratio": 0.015, "target": "<= 0.05", "ok": true}],
     "notes": "markdown: what was measured, how, with which parameters",
     "plot": {"kind": "bar" | "line", "title": "...", "xlabel": "...", "ylabel": "...", "log": false,
              "categories": ["p50", "p99"],               # bar: one group per category
              "series": {"ours": [1.0, 2.0], "baseline": [3.0, 4.0]}}   # bar: a value per category
                                                           # line: {"label": [[x, y], ...]}
    }

``ratio`` is ours / baseline (lower is better unless the target says ``>=``); ``ok`` is whether the target
holds, or null for rows without one.  Hand-written findings (profiles, before/after of optimisations) live
in ``bench/notes/<name>.md`` and are copied into bench/REPORT.md under the benchmark's own section.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NOTES = ROOT / "bench" / "notes"


@dataclass
class Row:
    metric: str
    ours: float
    baseline: float | None = None
    baseline_name: str = ""
    unit: str = ""
    target: str = ""  # e.g. "<= 0.05", ">= 0.5": a bound on ratio
    ratio: float | None = None
    ok: bool | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline:
            self.ratio = self.ours / self.baseline
        if self.ok is None and self.target and self.ratio is not None:
            op, bound = self.target.split()
            self.ok = self.ratio <= float(bound) if op == "<=" else self.ratio >= float(bound)


@dataclass
class Result:
    name: str
    title: str
    order: int
    rows: list[Row] = field(default_factory=list)
    notes: str = ""
    plot: dict[str, Any] | None = None

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n")
        return path


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100), nearest-rank: p99 of 100 samples is the 99th smallest."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50": statistics.median(ms), "p99": percentile(ms, 99), "mean": statistics.fmean(ms), "n": len(ms)}


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, wait up to ``timeout`` seconds for a clean exit, then SIGKILL: a benchmark's helper process."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def fresh_database(name: str) -> None:
    """Drop and create a PostgreSQL database on 127.0.0.1 (trust auth, user postgres)."""
    for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql], check=True,
                       capture_output=True)
