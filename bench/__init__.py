"""Benchmarks (``make bench``): this project measured side by side with its alternatives and ceilings.

Each benchmark is a module ``bench/<name>.py`` runnable on its own (``python -m bench.<name>``) that writes
``bench/results/<name>.json`` (see :mod:`bench.report`); ``python -m bench`` runs them all, each in its own
process, and writes the results table the manual includes (``docs/_generated/benchmark-results.md``), the plot
(``docs/benchmarks.png``) and the full report (``bench/REPORT.md``).  Absolute times on a shared 2-core
machine drift from run to run, so every figure that matters is a ratio of two things measured in the same run.
"""
