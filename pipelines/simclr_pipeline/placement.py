"""Where and how each step runs: CPU, memory and GPU requests, Kubernetes node
selectors and tolerations, /dev/shm for NCCL, image pull policy and S3 credentials."""

from kfp import kubernetes

from simclr_pipeline import platforms
from simclr_pipeline.options import PipelineOptions
from simclr_pipeline.platforms import KUBEFLOW, S3_SECRET_KEYS


def cpu_step(task, options: PipelineOptions) -> None:
    task.set_cpu_request(options.step_cpu).set_cpu_limit(options.step_cpu)
    task.set_memory_request(options.step_memory).set_memory_limit(options.step_memory)


def gpu_step(task, options: PipelineOptions, num_gpus) -> None:
    task.set_cpu_request(options.pretrain_cpu).set_cpu_limit(options.pretrain_cpu)
    task.set_memory_request(options.pretrain_memory).set_memory_limit(options.pretrain_memory)
    if options.accelerator_type:
        task.set_accelerator_type(options.accelerator_type).set_accelerator_limit(num_gpus)
    kubernetes_placement(task, options)


# NCCL (MirroredStrategy with more than one GPU) exchanges data through /dev/shm, which a
# container gets at 64 MiB by default (kubeflow/pipelines#9147): a memory-backed emptyDir
# instead. `num_gpus` is a run-time parameter, so it is mounted on every GPU pretrain pod;
# an unused tmpfs costs nothing (its pages count against the memory limit only when written).
SHM_SIZE = "8Gi"


def shared_memory(task, options: PipelineOptions) -> None:
    if options.platform == KUBEFLOW and options.accelerator_type:
        kubernetes.empty_dir_mount(
            task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=SHM_SIZE
        )


def kubernetes_placement(task, options: PipelineOptions) -> None:
    for key, value in options.node_selector:
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for tol in options.tolerations:
        kubernetes.add_toleration(
            task, key=tol.key, operator=tol.operator, value=tol.value, effect=tol.effect
        )


def pull_policy(task, options: PipelineOptions) -> None:
    """Kubernetes pulls a non-`latest` tag only when the node lacks it (IfNotPresent): a tag
    that may have been re-pushed is pulled every time, so nodes do not run old code."""
    images = (options.images.cpu, options.images.gpu)
    if options.platform == KUBEFLOW and not all(map(platforms.is_pinned_image, images)):
        kubernetes.set_image_pull_policy(task, "Always")


def s3_credentials(task, options: PipelineOptions) -> None:
    """AWS_* variables for boto3 from a Kubernetes Secret (Kubeflow only)."""
    if options.s3_secret:
        kubernetes.use_secret_as_env(
            task, secret_name=options.s3_secret, secret_key_to_env=dict(S3_SECRET_KEYS)
        )
    if options.s3_endpoint_url:
        task.set_env_variable("AWS_ENDPOINT_URL", options.s3_endpoint_url)
