"""Fails (exit 1) unless the CUDA runtime and cuDNN installed in this image satisfy
TensorFlow's build info (`tf.sysconfig.get_build_info()`). Needs no GPU and no driver.

Run at image build time by containers/Dockerfile.gpu:  python containers/check_cuda.py
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in str(text).split(".") if part.isdigit())


def satisfies(found: tuple[int, ...], built: tuple[int, ...]) -> bool:
    """Same major version, and at least the version TensorFlow was built with."""
    return bool(found) and bool(built) and found[0] == built[0] and found >= built[: len(found)]


def nvidia_library(pattern: str) -> str:
    """Path of the library that the nvidia-* wheels installed (site-packages/nvidia/*/lib)."""
    import nvidia

    for root in nvidia.__path__:
        matches = sorted(glob.glob(os.path.join(root, "*", "lib", pattern)))
        if matches:
            return matches[0]
    raise FileNotFoundError(f"no {pattern} under {list(nvidia.__path__)}")


def cuda_runtime_version(path: str) -> tuple[int, int]:
    value = ctypes.c_int()
    status = ctypes.CDLL(path).cudaRuntimeGetVersion(ctypes.byref(value))
    if status != 0:
        raise RuntimeError(f"cudaRuntimeGetVersion failed with status {status}")
    return value.value // 1000, (value.value % 1000) // 10


def cudnn_version(path: str) -> tuple[int, int, int]:
    lib = ctypes.CDLL(path)
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    value = lib.cudnnGetVersion()  # cuDNN 9: major*10000 + minor*100 + patch
    return value // 10000, (value % 10000) // 100, value % 100


def main() -> int:
    import tensorflow as tf

    info = tf.sysconfig.get_build_info()
    if not info.get("is_cuda_build"):
        print(f"error: TensorFlow {tf.__version__} is not a CUDA build", file=sys.stderr)
        return 1
    built_cuda = version_tuple(info["cuda_version"])
    built_cudnn = version_tuple(info["cudnn_version"])
    cudart = nvidia_library("libcudart.so.*")
    cudnn = nvidia_library(f"libcudnn.so.{built_cudnn[0]}")
    found_cuda = cuda_runtime_version(cudart)
    found_cudnn = cudnn_version(cudnn)
    print(
        f"TensorFlow {tf.__version__} built with CUDA {info['cuda_version']}, "
        f"cuDNN {info['cudnn_version']}; installed: CUDA runtime "
        f"{'.'.join(map(str, found_cuda))} ({cudart}), cuDNN "
        f"{'.'.join(map(str, found_cudnn))} ({cudnn})"
    )
    problems = [
        f"{name} {'.'.join(map(str, found))} does not satisfy TensorFlow's build {build}"
        for name, found, built, build in (
            ("CUDA runtime", found_cuda, built_cuda, info["cuda_version"]),
            ("cuDNN", found_cudnn, built_cudnn, info["cudnn_version"]),
        )
        if not satisfies(found, built)
    ]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
