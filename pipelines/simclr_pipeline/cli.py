"""`simclr-kfp`: compile, run locally (kfp.local), run in Docker, submit.

    simclr-kfp compile --platform=kubeflow|vertex --output=build/simclr_pipeline.yaml --image_repo=REPO
    simclr-kfp run-local --preset=demo --root=runs/demo [--source=PATH_OR_URI] [--param k=v ...]
    simclr-kfp run-docker --preset=demo --root=runs/demo-docker --image_repo=REPO --image_tag=TAG
    simclr-kfp submit --package=build/simclr_pipeline.yaml [--preset=gpu] [--param k=v ...]
    simclr-kfp params [--preset=NAME]          # the pipeline parameters and their values

Errors a user can fix (including options a platform would reject, checked at compile
time by `simclr_pipeline.platforms`) are printed as one line (`error: ...`), exit status 2.
"""

import argparse
import dataclasses
import json
import re
import sys
import time
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kfp import compiler, local
from simclr import errors, knobs
from simclr.errors import UserError

from simclr_pipeline import local_run, platforms, presets, submit
from simclr_pipeline import params as params_lib
from simclr_pipeline.components import DEFAULT_IMAGE_REPO, DEFAULT_IMAGE_TAG, Images
from simclr_pipeline.options import STRUCTURED_OPTIONS, PipelineOptions, Toleration
from simclr_pipeline.pipeline import build_pipeline, pipeline_parameters


class CliError(UserError):
    """Reported as `error: <message>` and exit status 2."""


# ---------------------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------------------


def _add_build_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per PipelineOptions field, from its knob (default, help, choices), plus
    the flags of the structured ones (images, node selectors, tolerations)."""
    group = parser.add_argument_group("images and platform (compile-time)")
    group.add_argument(
        "--image_repo", default=DEFAULT_IMAGE_REPO, help="images are REPO/cpu:TAG and REPO/gpu:TAG"
    )
    group.add_argument("--image_tag", default=DEFAULT_IMAGE_TAG)
    group.add_argument("--cpu_image", help="full CPU image name (overrides repo/tag)")
    group.add_argument("--gpu_image", help="full GPU image name (overrides repo/tag)")
    hints = typing.get_type_hints(PipelineOptions)
    for option in dataclasses.fields(PipelineOptions):
        if option.name in STRUCTURED_OPTIONS:
            continue
        group.add_argument(
            f"--{option.name}",
            default=option.default,
            type=int if hints[option.name] is int else None,
            choices=knobs.choices_of(option),
            help=knobs.help_of(option),
        )
    group.add_argument(
        "--node_selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Kubernetes node selector of the GPU steps (repeatable; Kubeflow), e.g. "
        f"{platforms.GKE_ACCELERATOR_LABEL}=nvidia-tesla-a100",
    )
    group.add_argument(
        "--toleration",
        action="append",
        default=[],
        metavar="KEY=VALUE:EFFECT",
        help="Kubernetes toleration (repeatable; KEY:EFFECT means Exists; Kubeflow)",
    )


def _add_param_flags(parser: argparse.ArgumentParser, default_preset: str | None) -> None:
    group = parser.add_argument_group("pipeline parameters")
    group.add_argument("--preset", default=default_preset, choices=sorted(presets.PRESETS))
    group.add_argument("--params_file", help="JSON object of parameter values")
    group.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipeline parameter (repeatable; wins over preset and file)",
    )
    group.add_argument(
        "--source", help="the CIFAR-10 archive: URL, gs:// or s3:// URI, or local path"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simclr-kfp", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="write the compiled pipeline YAML")
    p.add_argument("--output", default="build/simclr_pipeline.yaml")
    _add_build_flags(p)

    for name, help_text in (
        ("run-local", "run the pipeline here with kfp.local (no Docker)"),
        ("run-docker", "run the pipeline with kfp.local's DockerRunner on the built images"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--root", default=f"runs/{'demo' if name == 'run-local' else 'demo-docker'}")
        _add_param_flags(p, default_preset="demo")
        _add_build_flags(p)

    p = sub.add_parser("submit", help="submit a compiled pipeline to Kubeflow or Vertex AI")
    p.add_argument("--package", default="build/simclr_pipeline.yaml")
    p.add_argument("--target", default="auto", choices=["auto", "kubeflow", "vertex"])
    p.add_argument("--host", help="Kubeflow Pipelines endpoint (default: $KFP_HOST)")
    p.add_argument("--namespace", help="Kubeflow namespace (default: $KFP_NAMESPACE)")
    p.add_argument("--project", help="Vertex AI project (default: $VERTEX_PROJECT)")
    p.add_argument("--region", help="Vertex AI region (default: $VERTEX_REGION)")
    p.add_argument("--pipeline_root", help="gs:// root for artifacts (default: $PIPELINE_ROOT)")
    p.add_argument(
        "--service_account",
        help="Vertex AI: the run's service account, also multi-worker pretraining's "
        "($VERTEX_SERVICE_ACCOUNT)",
    )
    p.add_argument(
        "--network",
        help="Vertex AI: VPC network projects/NUMBER/global/networks/NAME ($VERTEX_NETWORK)",
    )
    p.add_argument("--experiment_name", default="simclr")
    p.add_argument("--run_name")
    caching = p.add_mutually_exclusive_group()
    caching.add_argument(
        "--enable_caching",
        dest="enable_caching",
        action="store_true",
        default=None,
        help="force caching on for every task",
    )
    caching.add_argument(
        "--disable_caching",
        dest="enable_caching",
        action="store_false",
        help="force caching off (default: per-task settings in the package)",
    )
    _add_param_flags(p, default_preset=None)

    p = sub.add_parser("params", help="print the pipeline parameters (with a preset applied)")
    _add_param_flags(p, default_preset=None)
    return parser


# ---------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------


def pipeline_options(args: argparse.Namespace):
    base = Images.from_repo(args.image_repo, args.image_tag)
    images = Images(cpu=args.cpu_image or base.cpu, gpu=args.gpu_image or base.gpu)
    accelerator = args.accelerator_type
    if accelerator is not None and accelerator.lower() in ("", "none"):
        accelerator = ""
    try:
        selectors = tuple(
            tuple(params_lib.parse_assignments([s]).items())[0] for s in args.node_selector
        )
        tolerations = tuple(Toleration.parse(t) for t in args.toleration)
    except (UserError, ValueError) as err:  # ParamError, or Toleration's ValueError
        raise CliError(str(err).replace("--param", "--node_selector")) from err
    scalars = {
        option.name: getattr(args, option.name)
        for option in dataclasses.fields(PipelineOptions)
        if option.name not in STRUCTURED_OPTIONS
    }
    options = PipelineOptions(
        **{
            **scalars,
            "accelerator_type": accelerator,
            # kfp.local has no Kubernetes Secrets: no KFP store defaults for local runs.
            "s3_secret": _local_default(args, args.s3_secret),
            "s3_endpoint_url": _local_default(args, args.s3_endpoint_url),
        },
        images=images,
        node_selector=selectors,
        tolerations=tolerations,
    )
    return options.resolved()


def _local_default(args: argparse.Namespace, value: str | None) -> str | None:
    if value is None and args.command in ("run-local", "run-docker"):
        return platforms.NONE
    return value


def compile_pipeline(options, output: str) -> str:
    """Writes the YAML; the same options always give the same bytes."""
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(options), package_path=output)
    return output


def cmd_compile(args: argparse.Namespace) -> int:
    output = compile_pipeline(pipeline_options(args), args.output)
    print(f"wrote {output}")
    return 0


def run_arguments(
    args: argparse.Namespace, types: dict[str, str], defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """defaults < --preset < --params_file < --param < --source."""
    preset = {**(defaults or {}), **(presets.preset(args.preset) if args.preset else {})}
    merged = params_lib.merge_parameters(
        preset, args.params_file, args.param, {"source": args.source}
    )
    return params_lib.coerce_parameters(merged, types)


def cmd_run(args: argparse.Namespace, runner_kind: str) -> int:
    root = Path(args.root).resolve()
    pipeline = build_pipeline(pipeline_options(args))
    types = pipeline_parameters(pipeline)
    # Local runs write TensorBoard logs beside the artifacts unless told otherwise.
    arguments = run_arguments(args, types, defaults={"tensorboard_root": str(root / "tensorboard")})
    mounts = []
    for name in local_run.HOST_INPUTS if runner_kind == "docker" else ():
        if path := local_run.host_path_source(arguments.get(name), name):
            arguments[name] = path
            mounts.append(path)
    runner = local_run.make_runner(runner_kind, mounts)
    # Expected locally: our images' environment is this one, and Kubernetes resources
    # (CPU, memory, GPUs) mean nothing to kfp.local. Keep the output readable.
    warnings.filterwarnings("ignore", message=".*non-Python base image.*")
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=runner, pipeline_root=str(root / "pipeline_root"))
    started = time.monotonic()
    try:
        task = pipeline(**arguments)
    except RuntimeError as err:  # kfp.local: "Pipeline ... FAILURE. Inner task failed: ..."
        reason = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(err)).split())[:300]
        raise CliError(f"pipeline failed: {reason} (the task's log is above)") from err
    summary = local_run.summarize(task.outputs, root, time.monotonic() - started, args.preset)
    (root / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(local_run.format_summary(summary))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    settings = submit.Settings.from_env(
        host=args.host,
        namespace=args.namespace,
        project=args.project,
        region=args.region,
        pipeline_root=args.pipeline_root,
        service_account=args.service_account,
        network=args.network,
    )
    target = submit.choose_target(settings, args.target)
    submit.check_package(args.package, target)
    types = params_lib.package_parameter_types(args.package)
    arguments = run_arguments(args, types)
    enable_caching, note = submit.run_caching(arguments, args.enable_caching)
    if note:
        print(note)
    if target == submit.KUBEFLOW:
        request = submit.kubeflow_request(
            args.package,
            arguments,
            experiment_name=args.experiment_name,
            run_name=args.run_name,
            enable_caching=enable_caching,
            namespace=settings.namespace,
            pipeline_root=args.pipeline_root,
        )
        run_id = submit.submit_kubeflow(submit.kubeflow_client_kwargs(settings), request)
        print(f"submitted to Kubeflow Pipelines at {settings.host}: run {run_id}")
    else:
        job = submit.make_vertex_job(
            submit.vertex_job_kwargs(
                args.package,
                arguments,
                settings,
                display_name=args.run_name,
                enable_caching=enable_caching,
            )
        )
        name = submit.submit_vertex(job, settings.service_account, settings.network)
        print(f"submitted to Vertex AI Pipelines: {name}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    pipeline = build_pipeline()  # the parameters are the same for every platform
    types = pipeline_parameters(pipeline)
    defaults = {name: p.default for name, p in pipeline.component_spec.inputs.items()}
    values = {**defaults, **run_arguments(args, types)}
    for name in sorted(types):
        print(f"{name:<26} {types[name]:<15} {json.dumps(values.get(name))}")
    return 0


# ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "compile": cmd_compile,
        "run-local": lambda a: cmd_run(a, "subprocess"),
        "run-docker": lambda a: cmd_run(a, "docker"),
        "submit": cmd_submit,
        "params": cmd_params,
    }
    try:
        return handlers[args.command](args)
    except UserError as err:  # CliError, ParamError, PlatformError, SubmitError, ...
        return errors.report(err)


if __name__ == "__main__":
    sys.exit(main())
