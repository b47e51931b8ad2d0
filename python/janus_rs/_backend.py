"""Which native module runs a model: the CPU core, or the CUDA core loaded on demand.

The CPU module (``janus_rs._native``) is in every wheel and imports everywhere. The CUDA wheel
(``scripts/build_cuda_wheel.sh``) adds ``janus_rs._native_cuda``, built with candle's CUDA backend.
candle links the CUDA libraries at build time, so that module can only be imported where the
NVIDIA driver (``libcuda.so.1``) and the CUDA 13 libraries cuBLAS (with cuBLASLt) and cuRAND
exist; it is therefore imported lazily, the first time a ``cuda`` device is requested.
The runtime libraries are found through the module's RUNPATH (``site-packages/nvidia/cu13/lib``,
where PyTorch's ``nvidia-*`` wheels put them) or, failing that, preloaded here from every
``site-packages/nvidia/cu13/lib`` and from ``$JANUS_RS_CUDA_LIB_DIR``.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import site
import sys
from pathlib import Path
from types import ModuleType

from . import _native
from .errors import DeviceError

_CUDA_LIBS = ("libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10")
_cuda_module: ModuleType | None = None
_cuda_import_error: str | None = None


def _cuda_lib_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("JANUS_RS_CUDA_LIB_DIR")
    if env:
        dirs.extend(Path(d) for d in env.split(os.pathsep) if d)
    roots = list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path
    for root in roots:
        candidate = Path(root) / "nvidia" / "cu13" / "lib"
        if candidate.is_dir() and candidate not in dirs:
            dirs.append(candidate)
    return dirs


def _preload_cuda_libraries() -> None:
    for name in _CUDA_LIBS:
        for directory in _cuda_lib_dirs():
            path = directory / name
            if path.exists():
                try:
                    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    continue
                break


def cuda_module() -> ModuleType:
    """The CUDA native module, imported on first use; :class:`DeviceError` if it can't be."""
    global _cuda_module, _cuda_import_error
    if _cuda_module is not None:
        return _cuda_module
    if _cuda_import_error is None:
        try:
            _preload_cuda_libraries()
            _cuda_module = importlib.import_module("janus_rs._native_cuda")
            return _cuda_module
        except ModuleNotFoundError as e:
            if e.name != "janus_rs._native_cuda":
                _cuda_import_error = str(e)
            else:
                _cuda_import_error = (
                    "this installation of janus-rs is the CPU-only build; install the CUDA wheel "
                    "(built by scripts/build_cuda_wheel.sh) to use a GPU"
                )
        except ImportError as e:
            _cuda_import_error = (
                f"the CUDA build of janus-rs is installed but could not be loaded: {e}. It needs the "
                "NVIDIA driver (libcuda.so.1, driver >= 580 / CUDA 13.0) and the CUDA 13 libraries "
                "cuBLAS and cuRAND (e.g. `pip install nvidia-cublas nvidia-curand`, or a CUDA 13 "
                "PyTorch); set JANUS_RS_CUDA_LIB_DIR "
                "to the folder holding them if they live elsewhere"
            )
    raise DeviceError(f"CUDA was requested but is not available: {_cuda_import_error}")


def is_cuda_device(device: str) -> bool:
    return str(device).strip().lower().startswith("cuda")


def module_for(device: str) -> ModuleType:
    """The native module that runs models on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``)."""
    return cuda_module() if is_cuda_device(device) else _native


def cuda_available() -> bool:
    """True when the CUDA build is installed, loads, and the driver reports at least one GPU."""
    try:
        return cuda_module().cuda_device_count() > 0
    except DeviceError:
        return False


def cuda_unavailable_reason() -> str | None:
    """Why :func:`cuda_available` is False (``None`` when it is True)."""
    try:
        count = cuda_module().cuda_device_count()
    except DeviceError as e:
        return str(e)
    return None if count > 0 else "the CUDA build loaded but the driver reports no GPU"
