"""Runs a component body the way a cluster does: KFP's executor with an executor input.

`python tests/component_runner.py EXECUTOR_INPUT.json FUNCTION` runs
`simclr_pipeline.components.FUNCTION` through `kfp.dsl.executor.Executor`, which is what
`python -m kfp.dsl.executor_main` does in the pod (and on every Vertex AI replica):
artifact paths from their URIs, the function, then `executor_output.json` (written only
when the function returns).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def artifact(uri: str, schema: str, metadata: dict | None = None) -> dict:
    return {
        "artifacts": [
            {
                "name": Path(uri).name,
                "uri": uri,
                "type": {"schemaTitle": schema},
                "metadata": metadata or {},
            }
        ]
    }


def pretrain_executor_input(
    *, data_dir: str, policy_dir: str, out_dir: Path, parameters: dict
) -> dict:
    """The executor input of the pretrain task, its outputs under out_dir."""
    return {
        "inputs": {
            "artifacts": {
                "dataset": artifact(data_dir, "system.Dataset"),
                "policy": artifact(policy_dir, "system.Artifact", {"file": "policy.json"}),
            },
            "parameterValues": parameters,
        },
        "outputs": {
            "artifacts": {
                "model": artifact(str(out_dir / "model"), "system.Model"),
                "pretrain_metrics": artifact(str(out_dir / "pretrain_metrics"), "system.Metrics"),
                "tensorboard": artifact(str(out_dir / "tensorboard"), "system.Markdown"),
            },
            "outputFile": str(out_dir / "executor_output.json"),
        },
    }


def main(argv: list[str]) -> None:
    from kfp.dsl import executor
    from simclr_pipeline import components

    executor_input = json.loads(Path(argv[1]).read_text())
    function = getattr(components, argv[2])
    executor.Executor(executor_input, function).execute()


if __name__ == "__main__":
    main(sys.argv)
