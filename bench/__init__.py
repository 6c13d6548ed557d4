"""Benchmarks of the core replay: a synthetic traffic mix, a dpkt reference, the runner."""
