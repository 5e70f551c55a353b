"""Benchmarks of the running system (`istream bench e2e|recovery|swap`): real broker, real worker
processes, figures printed and written as JSON + markdown + PNG. Never pass/fail tests."""
