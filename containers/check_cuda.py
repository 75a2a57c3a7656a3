"""Fails (exit 1) unless the CUDA runtime and cuDNN installed in this image satisfy
TensorFlow's build info (`tf.sysconfig.get_build_info()`). Needs no GPU and no driver.

The libraries are looked up as TensorFlow's loader finds them: by soname, in the RUNPATH
of libtensorflow_framework.so (the site-packages/nvidia/*/lib directories of the
nvidia-* wheels), then loaded and asked for their versions.

Run at image build time by containers/Dockerfile.gpu:  python containers/check_cuda.py
"""

from __future__ import annotations

import ctypes
import glob
import os
import struct
import sys

DT_RPATH, DT_RUNPATH, SHT_DYNAMIC = 15, 29, 6


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in str(text).split(".") if part.isdigit())


def satisfies(found: tuple[int, ...], built: tuple[int, ...]) -> bool:
    """Same major version, and at least the version TensorFlow was built with."""
    return bool(found) and bool(built) and found[0] == built[0] and found >= built[: len(found)]


def elf_runpath(path: str) -> list[str]:
    """The RUNPATH (or RPATH) directories of a 64-bit little-endian ELF file, $ORIGIN expanded."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    # Section header: name, type, flags, addr, offset, size, link, info, addralign, entsize.
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    for section in sections:
        if section[1] != SHT_DYNAMIC:
            continue
        strtab_offset = sections[section[6]][4]
        for at in range(section[4], section[4] + section[5], 16):
            tag, value = struct.unpack_from("<qQ", data, at)
            if tag in (DT_RPATH, DT_RUNPATH):
                start = strtab_offset + value
                text = data[start : data.index(b"\0", start)].decode()
                origin = os.path.dirname(os.path.abspath(path))
                return [d.replace("$ORIGIN", origin) for d in text.split(":") if d]
    return []


def find_library(soname: str, directories: list[str]) -> str:
    """The first `directories` entry holding `soname`, as the dynamic loader searches RUNPATH."""
    for directory in directories:
        candidate = os.path.normpath(os.path.join(directory, soname))
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(f"{soname} is in none of TensorFlow's RUNPATH directories")


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
    (framework,) = glob.glob(
        os.path.join(os.path.dirname(tf.__file__), "libtensorflow_framework.so.*")
    )
    search = elf_runpath(framework)
    try:
        cudart = find_library(f"libcudart.so.{built_cuda[0]}", search)
        cudnn = find_library(f"libcudnn.so.{built_cudnn[0]}", search)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
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
