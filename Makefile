# The front door of simclr-kfp. Every target installs what it needs into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
IMAGE_REPO ?= simclr-kfp
# <version>-g<commit>[-dirty-<hash>]: images and KFP cache keys change with the code.
IMAGE_TAG ?= $(shell $(PYTHON) pipelines/simclr_pipeline/source_tag.py)
CIFAR10_SOURCE ?=
DEMO_ROOT ?= runs/demo
# make demo-images: the folder, gs:// / s3:// prefix or CSV/JSONL list, and its settings
IMAGES ?=
IMAGE_SIZE ?= 64
DEMO_IMAGES_ARGS ?= --param batch_size=64
LOGDIR ?= $(DEMO_ROOT)
PIPELINE_YAML ?= build/simclr_pipeline.yaml
PLATFORM ?= kubeflow
COMPILE_ARGS ?=
SUBMIT_ARGS ?=
PYTEST_ARGS ?=
# Image builds: BuildKit (pip cache mounts) and host networking (pip reaches the registry).
DOCKER ?= $(shell containers/engine.sh cli 2>/dev/null || echo docker)
BASE_IMAGE ?= python:3.11-slim
DOCKER_BUILD = DOCKER_BUILDKIT=1 $(DOCKER) build --network=host --build-arg BASE_IMAGE=$(BASE_IMAGE)

.PHONY: help venv test lint demo demo-images compile images image-cpu image-gpu run-docker submit tensorboard bench clean

help:
	@grep -E '^## ' Makefile | sed 's/^## //'

## venv         create/update .venv with the project and all extras (pinned by constraints.txt)
venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## test         run the whole test suite (starts its own GCS emulator, S3 server and TensorBoard;
##              with a Docker engine, also builds both images and runs the pipeline in them)
test: $(STAMP)
	$(VENV)/bin/ruff check components pipelines tests
	$(VENV)/bin/ruff format --check components pipelines tests
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

## lint         ruff
lint: $(STAMP)
	$(VENV)/bin/ruff check components pipelines tests
	$(VENV)/bin/ruff format --check components pipelines tests

## demo         run the whole pipeline locally with kfp.local (CIFAR10_SOURCE=path-or-URI)
demo: $(STAMP)
	$(PY) -m simclr_pipeline.cli run-local --preset=demo --root=$(DEMO_ROOT) \
	  $(if $(CIFAR10_SOURCE),--source=$(CIFAR10_SOURCE),)

## demo-images  the demo on your own images: IMAGES=DIR (a folder, gs:// or s3:// prefix, or a
##              CSV/JSONL list), IMAGE_SIZE=64, DEMO_IMAGES_ARGS='--param batch_size=64 ...'
##              EVAL_IMAGES=DIR: a separate labelled source to evaluate on (--eval_source)
demo-images: $(STAMP)
	@test -n "$(IMAGES)" || { echo "error: IMAGES=DIR is required (a folder, gs:// or s3:// prefix, or a CSV/JSONL list)" >&2; exit 2; }
	$(PY) -m simclr_pipeline.cli run-local --preset=demo --root=$(DEMO_ROOT)-images \
	  --source=$(IMAGES) --param image_size=$(IMAGE_SIZE) $(DEMO_IMAGES_ARGS) \
	  $(if $(EVAL_IMAGES),--param eval_source=$(EVAL_IMAGES),)

## compile      write the compiled pipeline to build/simclr_pipeline.yaml (PLATFORM=kubeflow|vertex, IMAGE_REPO=, COMPILE_ARGS=)
compile: $(STAMP)
	$(PY) -m simclr_pipeline.cli compile --platform=$(PLATFORM) --output=$(PIPELINE_YAML) \
	  --image_repo=$(IMAGE_REPO) --image_tag=$(IMAGE_TAG) $(COMPILE_ARGS)

## images       build the CPU and GPU container images (needs a Docker engine; BASE_IMAGE=...)
images: image-cpu image-gpu

## image-cpu    build only the CPU image (prepare_data, augment; evaluate when the pipeline requests no GPU)
image-cpu:
	$(DOCKER_BUILD) -f containers/Dockerfile.cpu -t $(IMAGE_REPO)/cpu:$(IMAGE_TAG) .

## image-gpu    build only the GPU image (pretrain, and evaluate when the pipeline requests GPUs;
##              tensorflow[and-cuda]; the build checks CUDA/cuDNN)
image-gpu:
	$(DOCKER_BUILD) -f containers/Dockerfile.gpu -t $(IMAGE_REPO)/gpu:$(IMAGE_TAG) .

## run-docker   run the demo pipeline with kfp.local's DockerRunner on the built images
##              (CIFAR10_SOURCE=host path or URL; or IMAGES=host folder/list [EVAL_IMAGES=...]
##              at IMAGE_SIZE; host paths are mounted read-only into the containers)
run-docker: $(STAMP)
	$(PY) -m simclr_pipeline.cli run-docker --preset=demo --root=$(DEMO_ROOT)-docker \
	  --image_repo=$(IMAGE_REPO) --image_tag=$(IMAGE_TAG) \
	  $(if $(CIFAR10_SOURCE),--source=$(CIFAR10_SOURCE),) \
	  $(if $(IMAGES),--source=$(IMAGES) --param image_size=$(IMAGE_SIZE) $(DEMO_IMAGES_ARGS),) \
	  $(if $(EVAL_IMAGES),--param eval_source=$(EVAL_IMAGES),)

## submit       submit what `make compile` wrote (never recompiles): KFP_HOST=... (Kubeflow) or VERTEX_PROJECT/VERTEX_REGION/PIPELINE_ROOT (Vertex AI)
submit: $(STAMP)
	$(PY) -m simclr_pipeline.cli submit --package=$(PIPELINE_YAML) $(SUBMIT_ARGS)

## tensorboard  start TensorBoard on a run's log directory (LOGDIR=local path, gs://... or s3://...); follows a run while it trains
tensorboard: $(STAMP)
	$(PY) -m simclr.tensorboard_follow --logdir=$(LOGDIR) --host=127.0.0.1 --port=$${PORT:-6006}

## bench        print the performance table (one JSON object per line)
bench: $(STAMP)
	$(PY) -m simclr.bench $(BENCH_ARGS)

clean:
	rm -rf build runs .pytest_cache
