"""Benchmarks, run as scripts (`.venv/bin/python bench/jobs.py`); see bench/README.md."""
