"""Running the pipeline on this machine (`simclr-kfp run-local` / `run-docker`): the
kfp.local runner, the host folders a Docker run mounts read-only, and the summary
printed when the run finishes."""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kfp import local
from simclr import storage
from simclr.errors import UserError


class LocalRunError(UserError):
    """A local run that cannot start or whose results are unreadable (one line, exit 2)."""


# Pipeline parameters that may name a path on this machine (run-docker mounts them).
HOST_INPUTS = ("source", "eval_source")


def host_path_source(source: str | None, name: str = "source") -> str | None:
    """The absolute path of a --source (or eval_source) on this machine's disk (None for
    URLs and URIs).

    run-docker bind-mounts it read-only into the containers at that same path."""
    if not source or "://" in source:
        return None
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise LocalRunError(f"--{name} {source}: no such file or folder")
    return str(path)


def docker_runner_kwargs(read_only_paths: Sequence[str] = ()) -> dict[str, Any]:
    """`containers.run` arguments of DockerRunner beyond what kfp.local sets (the pipeline
    root mount): the calling user's UID in group 0, which our images support, so files
    under --root stay ours; host networking, so nothing but the host's own network is
    used; host inputs mounted read-only at their own path (never copied into an image)."""
    from docker.types import Mount  # optional: only run-docker needs it

    kwargs: dict[str, Any] = {
        "network_mode": "host",
        "mounts": [Mount(target=p, source=p, type="bind", read_only=True) for p in read_only_paths],
    }
    if hasattr(os, "getuid"):
        kwargs["user"] = f"{os.getuid()}:0"
    return kwargs


def make_runner(kind: str, read_only_paths: Sequence[str] = ()):
    if kind == "subprocess":
        # use_venv=False: run the components in this environment, where simclr is installed.
        return local.SubprocessRunner(use_venv=False)
    try:
        import docker

        runner = local.DockerRunner(**docker_runner_kwargs(read_only_paths))
        docker.from_env().ping()
    except ImportError as err:
        raise LocalRunError(
            "run-docker needs the 'docker' Python package and a Docker engine (pip install docker)"
        ) from err
    except Exception as err:  # docker.errors.DockerException: no socket, daemon down, ...
        reason = " ".join(str(err).split())[:200]
        raise LocalRunError(
            f"run-docker needs a running Docker engine; none reachable ({reason})"
        ) from err
    return runner


def _read_json(path: str) -> dict:
    """A metrics file the finished run wrote; a missing or broken one is an error, not {}."""
    try:
        data = storage.read_json(path)
    except UserError as err:
        raise LocalRunError(f"the run finished but its metrics are unreadable: {err}") from err
    if not isinstance(data, dict):
        raise LocalRunError(f"the run finished but {path} holds no JSON object")
    return data


def summarize(outputs: dict, root: Path, seconds: float, preset: str | None) -> dict[str, Any]:
    """What the run produced: metrics (pretrained vs baseline) and where things are."""
    model, evaluation = outputs["model"], outputs["evaluation"]
    eval_metrics = _read_json(os.path.join(evaluation.path, "metrics.json"))
    logdir = model.metadata.get("tensorboard_logdir") or os.path.join(model.path, "tensorboard")
    return {
        "preset": preset,
        "seconds": round(seconds, 1),
        "pretrain": _read_json(os.path.join(model.path, "metrics.json")),
        "evaluation": eval_metrics,
        "paths": {
            "root": str(root),
            "model": model.path,
            "encoder": os.path.join(model.path, "encoder"),
            "evaluation": evaluation.path,
            "report": os.path.join(evaluation.path, "report.md"),
            "tensorboard": logdir,
        },
    }


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def format_summary(summary: dict[str, Any]) -> str:
    ev, pre, paths = summary["evaluation"], summary["pretrain"], summary["paths"]
    baseline = ev.get("baseline") or {}
    names = sorted(k for k, v in ev.items() if k.endswith("_top1") and isinstance(v, (int, float)))
    lines = [
        f"\nSimCLR pipeline finished in {summary['seconds']:.0f}s (preset: {summary['preset']})",
        "",
        f"  {'metric':<22}{'pretrained':>12}{'baseline':>12}",
    ]
    lines += [f"  {n:<22}{_fmt(ev.get(n)):>12}{_fmt(baseline.get(n)):>12}" for n in names]
    lines += [
        "",
        "  pretraining: "
        + ", ".join(
            f"{k} {_fmt(pre.get(k))}" for k in ("final_loss", "steps", "images_per_second")
        ),
        "",
        f"  encoder:      {paths['encoder']}",
        f"  evaluation:   {paths['evaluation']}  (report.md, metrics.json, confusion matrix, plots)",
        f"  all artifacts under {paths['root']}",
        f"  TensorBoard logs: {paths['tensorboard']}",
        f"    make tensorboard LOGDIR={paths['tensorboard']}",
    ]
    return "\n".join(lines)
