"""`make bench`: Paperboy side by side with bare arq; writes docs/BENCHMARKS.md."""
