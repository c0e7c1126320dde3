"""Benchmarks that print ratios against plain Django and peer libraries."""
