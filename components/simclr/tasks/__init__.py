"""Container entry points: `python -m simclr.tasks.NAME --flag=value`.

Each module defines its flags inside `define_flags()` (so several task modules can be
imported in one process), a config dataclass whose field names equal the flag names,
and `run(config) -> dict`, which the KFP components call directly.
"""
