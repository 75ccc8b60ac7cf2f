"""Benchmarks (`python -m analysis bench`): the sections, measured side by side, and their report."""
