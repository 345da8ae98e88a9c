"""Benchmarks of the papers: each a function returning table rows."""
