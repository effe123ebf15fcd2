"""Benchmarks for timeline: each figure is printed beside DuckDB doing the bare job."""
