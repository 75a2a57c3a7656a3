"""Whether TensorFlow sees a GPU, and a one-line report when a run that needs one does not.

A CUDA build of TensorFlow that finds no usable GPU (no driver, a cuDNN it cannot load,
a CPU-only wheel) silently trains on the CPU. `require_gpu()` turns that into a
UserError naming what was found, before any work starts.
"""

from __future__ import annotations

import ctypes
import glob
from pathlib import Path

import tensorflow as tf

from simclr.errors import UserError

DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")
DRIVER_LIBRARY = "libcuda.so.1"  # what the NVIDIA container toolkit mounts from the host


def nvidia_driver() -> str:
    """What of the NVIDIA driver this process can see, in a few words."""
    seen = []
    if DRIVER_VERSION_FILE.exists():
        first_line = DRIVER_VERSION_FILE.read_text(errors="replace").splitlines()[:1]
        seen.append(f"kernel module ({' '.join(first_line[0].split()[:8]) if first_line else '?'})")
    devices = sorted(glob.glob("/dev/nvidia[0-9]*"))
    if devices:
        seen.append(f"devices {','.join(devices)}")
    try:
        ctypes.CDLL(DRIVER_LIBRARY)
        seen.append(f"{DRIVER_LIBRARY} loads")
    except OSError:
        pass
    return (
        "visible: " + "; ".join(seen)
        if seen
        else f"not visible (no {DRIVER_LIBRARY}, no /dev/nvidia*)"
    )


def tensorflow_build() -> str:
    """TensorFlow's version and the CUDA/cuDNN versions it was built with."""
    info = tf.sysconfig.get_build_info()
    if not info.get("is_cuda_build"):
        return f"TensorFlow {tf.__version__} is a CPU-only build"
    return (
        f"TensorFlow {tf.__version__} built with CUDA {info.get('cuda_version', '?')}, "
        f"cuDNN {info.get('cudnn_version', '?')}"
    )


def require_gpu() -> list[str]:
    """Names of the GPUs TensorFlow sees; UserError when there are none."""
    gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    if not gpus:
        raise UserError(
            f"--require_gpu: TensorFlow sees no GPU ({tensorflow_build()}; "
            f"NVIDIA driver {nvidia_driver()})"
        )
    return gpus
