"""Offline stand-ins for the Hub: a tiny random Florence-2 and synthetic images (demo, tests, benchmarks)."""
