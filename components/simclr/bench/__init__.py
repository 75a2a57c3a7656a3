"""`make bench`: performance figures, one JSON object per line.

Each module here exposes `benchmarks(args) -> Iterator[dict]`, yielding rows with at
least `name`, `value` and `unit`. `python -m simclr.bench` runs them all.
"""
