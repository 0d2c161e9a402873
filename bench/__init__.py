"""Benchmarks: `python -m bench <name>` prints ratios against a floor measured in the same run."""
