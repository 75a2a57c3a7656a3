"""Prints the requirements of the given extras of pyproject.toml, one per line.

Used by the Dockerfiles so the images install exactly what pyproject declares, pinned
by constraints.txt (`pip install -c constraints.txt -r <this output>`). The GPU image
excludes tensorflow-cpu: it installs the CUDA build instead (the `gpu` extra,
tensorflow[and-cuda], pinned by containers/constraints-gpu.txt) on the same
python:3.11-slim base.

    python requirements.py --extras train,pipeline [--exclude tensorflow-cpu] [--add keras]
"""

import argparse
import re
import sys
from pathlib import Path

import tomllib


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.match(r"\s*([A-Za-z0-9_.\-]+)", requirement).group(1))


def requirements(
    pyproject: Path, extras: list[str], exclude: set[str], add: list[str]
) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        sys.exit(f"error: unknown extra(s) {', '.join(unknown)}; known: {', '.join(optional)}")
    found = list(project.get("dependencies", []))
    for extra in extras:
        found += optional[extra]
    found += add
    excluded = {normalize(n) for n in exclude}
    result, seen = [], set()
    for req in found:
        name = requirement_name(req)
        if name in excluded or req in seen:
            continue
        seen.add(req)
        result.append(req)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pyproject", default="pyproject.toml", type=Path)
    parser.add_argument("--extras", default="train,pipeline")
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("--add", action="append", default=[])
    args = parser.parse_args()
    extras = [e for e in args.extras.split(",") if e]
    print("\n".join(requirements(args.pyproject, extras, set(args.exclude), args.add)))


if __name__ == "__main__":
    main()
