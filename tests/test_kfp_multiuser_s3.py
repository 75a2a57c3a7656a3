"""Multi-user Kubeflow Pipelines (>= 2.16): what a profile namespace's key may write.

The policy is the one the profile controller attaches to each namespace's SeaweedFS user,
statement for statement as kubeflow/pipelines 2.17.0 builds it in
manifests/kustomize/base/installs/multi-user/pipelines-profile-controller/sync.py
(`iam.put_user_policy(... "KubeflowProject{namespace}" ...)`), enforced here by a moto
server with authorisation on (INITIAL_NO_AUTH_ACTION_COUNT covers only the set-up calls).
Our defaults and every s3://mlpipeline/ URI in the docs must be writable with that key; the
roots older docs suggested must really fail with AccessDenied.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from simclr import storage
from simclr.errors import UserError
from simclr_pipeline import locations, platforms

from tests.fixtures_s3 import start_moto_server

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "team-a"
S3_BUCKET_NAME = "mlpipeline"  # sync.py


def sync_py_user_policy(namespace: str) -> dict:
    """sync.py at 2.17.0, verbatim but for formatting."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:Put*", "s3:Get*", "s3:List*", "s3:DeleteObject"],
                "Resource": [
                    f"arn:aws:s3:::{S3_BUCKET_NAME}/artifacts/*",
                    f"arn:aws:s3:::{S3_BUCKET_NAME}/private-artifacts/{namespace}/*",
                    f"arn:aws:s3:::{S3_BUCKET_NAME}/private/{namespace}/*",
                    f"arn:aws:s3:::{S3_BUCKET_NAME}/shared/*",
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def namespace_key() -> Iterator[dict[str, str]]:
    import boto3

    # Unchecked set-up calls: create_user, create_access_key, put_user_policy, create_bucket.
    proc, endpoint = start_moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    try:
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        setup |= {"aws_access_key_id": "AKIASETUP", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName=NAMESPACE)
        key = iam.create_access_key(UserName=NAMESPACE)["AccessKey"]
        iam.put_user_policy(
            UserName=NAMESPACE,
            PolicyName=f"KubeflowProject{NAMESPACE}",
            PolicyDocument=json.dumps(sync_py_user_policy(NAMESPACE)),
        )
        boto3.client("s3", **setup).create_bucket(Bucket=S3_BUCKET_NAME)
        yield {"endpoint": endpoint, "id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def as_namespace(namespace_key, monkeypatch) -> None:
    """The environment our compiled Kubeflow steps get: the namespace's Secret as AWS_* keys."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", namespace_key["endpoint"])
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", namespace_key["id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", namespace_key["secret"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _write_and_read(uri: str) -> None:
    storage.write_text(storage.join(uri, "probe.txt"), "ok")
    assert storage.read_text(storage.join(uri, "probe.txt")) == "ok"


class _Artifact:
    def __init__(self, uri: str) -> None:
        self.uri, self.path, self.metadata = uri, "/minio/model", {}


def test_default_checkpoint_and_log_dirs_are_writable(as_namespace):
    # sync.py: defaultPipelineRoot = minio://mlpipeline/private-artifacts/<ns>/v2/artifacts
    root = f"minio://{S3_BUCKET_NAME}/private-artifacts/{NAMESPACE}/v2/artifacts"
    model = _Artifact(f"{root}/simclr-cifar10/run-1/pretrain/3/model")
    _write_and_read(locations.checkpoint_dir_for(model, "", "run-1"))
    _write_and_read(locations.tensorboard_dir_for(model, "", "run-1", env={}))


@pytest.mark.parametrize(
    "uri",
    [
        "s3://mlpipeline/tensorboard/run-1",  # what docs/pipelines.md used to suggest
        "s3://mlpipeline/simclr/checkpoints/run-1",
        "s3://mlpipeline/datasets",
        "s3://mlpipeline/v2/artifacts/x",  # the single-user default root
        "s3://mlpipeline/private/team-b/simclr",  # another namespace
    ],
)
def test_outside_the_allowed_prefixes_is_access_denied(as_namespace, uri):
    with pytest.raises(UserError, match="permission denied") as denied:
        storage.write_text(storage.join(uri, "probe.txt"), "no")
    assert "AccessDenied" in repr(denied.value.__cause__ or denied.value.__context__)


def test_our_prefix_list_matches_the_enforced_policy(as_namespace):
    for prefix in platforms.kfp_writable_prefixes(NAMESPACE):
        _write_and_read(f"s3://{platforms.KFP_BUCKET}/{prefix}simclr")


def test_every_mlpipeline_uri_in_the_docs_is_writable(as_namespace):
    uris = set()
    for doc in ("docs/pipelines.md", "README.md"):
        text = (REPO / doc).read_text()
        for uri in re.findall(r"s3://mlpipeline/[^\s`'\")]+", text):
            uri = re.sub(r"<[^>]+>|\$NS|\$\{NS\}", NAMESPACE, uri).rstrip(",;:")
            if not uri.startswith("s3://mlpipeline/..."):  # "s3://mlpipeline/...": any URI
                uris.add(uri.replace("...", "x").rstrip("."))
    assert uris, "the docs show no s3://mlpipeline/ URI"
    for uri in sorted(uris):
        _write_and_read(uri.rsplit("/", 1)[0] if uri.endswith(".tar.gz") else uri)
