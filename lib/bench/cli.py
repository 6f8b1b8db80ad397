"""Benchmark verbs of the CLI (filled in by the benchmark modules)."""

from __future__ import annotations


def add_bench_verbs(sub) -> None:
    """Register bench-* verbs on the CLI's subparsers."""
