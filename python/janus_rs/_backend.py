"""Which native module runs a model: the CPU core, or the CUDA core loaded on demand.

The CPU module (``janus_rs._native``) is in every wheel and imports everywhere. The CUDA
distribution ``janus-rs-cu13`` (built by ``scripts/build_cuda_wheel.sh``) adds
``janus_rs._native_cuda``, built with candle's CUDA backend.
candle links the CUDA libraries at build time, so that module can only be imported where the
NVIDIA driver (``libcuda.so.1``) and the CUDA 13 libraries cuBLAS (with cuBLASLt, which need
the runtime ``libcudart``) and cuRAND exist; it is therefore imported lazily, the first time a
``cuda`` device is requested. The runtime libraries are found through the module's RUNPATH
(``site-packages/nvidia/cu13/lib``, where the ``nvidia-*`` wheels janus-rs-cu13 depends on put
them) or, failing that, preloaded here from every ``site-packages/nvidia/cu13/lib`` and from
``$JANUS_RS_CUDA_LIB_DIR``.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import logging
import os
import site
import sys
from pathlib import Path
from types import ModuleType

from . import _native
from .errors import DeviceError, InputError, InputTypeError

_CUDA_LIBS = ("libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10")
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
    module = _load_cuda_module()
    if module is None:
        raise DeviceError(f"CUDA was requested but is not available: {_cuda_import_error}")
    return module


def _load_cuda_module() -> ModuleType | None:
    """The CUDA native module, or ``None`` with the reason in ``_cuda_import_error``."""
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
                    "this installation of janus-rs is the CPU-only build; to use an NVIDIA GPU, "
                    "`pip uninstall -y janus-rs && pip install janus-rs-cu13` (CUDA 13, driver >= 580)"
                )
        except ImportError as e:
            _cuda_import_error = (
                f"the CUDA build of janus-rs is installed but could not be loaded: {e}. It needs the "
                "NVIDIA driver (libcuda.so.1, driver >= 580 / CUDA 13.0) and the CUDA 13 libraries "
                "cuBLAS, cuRAND and the runtime (janus-rs-cu13 depends on them: `pip install "
                "nvidia-cublas nvidia-curand nvidia-cuda-runtime` if they went missing); set "
                "JANUS_RS_CUDA_LIB_DIR to the folder holding them if they live elsewhere"
            )
    return None


def is_cuda_device(device: str) -> bool:
    return str(device).strip().lower().startswith("cuda")


_DTYPES = ("float32", "f32", "fp32", "bfloat16", "bf16", "float16", "f16", "fp16", "half", "auto")


def check_device(device: object) -> str:
    """``device`` if it is ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (any case, spaces around), else
    :class:`InputError` (:class:`InputTypeError` for a non-string). Checked before CUDA's
    availability, so a malformed device is reported as such on every machine."""
    if not isinstance(device, str):
        raise InputTypeError(f'device must be a string ("cpu", "cuda" or "cuda:N"), got {device!r}')
    s = device.strip().lower()
    ordinal = s[len("cuda:"):] if s.startswith("cuda:") else None
    if not (s in ("cpu", "cuda") or (ordinal is not None and ordinal.isascii() and ordinal.isdigit())):
        raise InputError(f'invalid device {json.dumps(device)}: use "cpu", "cuda" or "cuda:N"')
    return device


def check_dtype(name: str, dtype: object) -> None:
    """:class:`InputError` unless ``dtype`` is ``None`` or one of the dtype names the core takes."""
    if dtype is None:
        return
    if not isinstance(dtype, str):
        raise InputTypeError(
            f'{name} must be a string ("float32", "bfloat16", "float16" or "auto") or None, got {dtype!r}'
        )
    if dtype.strip().lower() not in _DTYPES:
        raise InputError(f'unsupported {name} {json.dumps(dtype)}: use "float32", "bfloat16", "float16" or "auto"')


def module_for(device: str) -> ModuleType:
    """The native module that runs models on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``);
    :class:`InputError` for a malformed device, :class:`DeviceError` if CUDA is unavailable."""
    check_device(device)
    return cuda_module() if is_cuda_device(device) else _native


def cuda_available() -> bool:
    """True when the CUDA build is installed, loads, and the driver reports at least one GPU."""
    module = _load_cuda_module()
    return module is not None and module.cuda_device_count() > 0


def cuda_unavailable_reason() -> str | None:
    """Why :func:`cuda_available` is False (``None`` when it is True), e.g. "this installation
    of janus-rs is the CPU-only build; ...". Nothing is requested by asking."""
    module = _load_cuda_module()
    if module is None:
        return _cuda_import_error
    return None if module.cuda_device_count() > 0 else "the CUDA build loaded but the driver reports no GPU"


def check_threads(threads: object) -> int | None:
    """``threads=`` as the core takes it, or :class:`InputTypeError` / :class:`InputError`."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise InputTypeError(f"threads must be a positive int or None, got {threads!r}")
    if threads < 1:
        raise InputError(f"threads must be at least 1, got {threads}")
    return threads


def set_num_threads(threads: int | None = None) -> int:
    """Fix the number of CPU threads janus-rs uses in this process and return it.

    One count sizes both thread pools (rayon's, which runs janus-rs's kernels and the float GEMM,
    and candle's, which runs the quantized products). It is set once — by this call, or by the
    first model loaded (its ``threads=``) — and can't change afterwards: a later, different
    request raises :class:`InputError`. ``None``: ``JANUS_RS_NUM_THREADS`` if set, else
    ``RAYON_NUM_THREADS``, else the physical cores the process may use.
    """
    return _native.set_num_threads(check_threads(threads))


def get_num_threads() -> int | None:
    """The thread count in use, or ``None`` before it is set (see :func:`set_num_threads`)."""
    return _native.num_threads()


QUANTIZE_FORMATS = ("q8_0", "q6_k", "q4_k")


def check_quantize(quantize: object) -> str | None:
    """``quantize=`` as the core takes it (lower case), or :class:`InputError`."""
    if quantize is None:
        return None
    if not isinstance(quantize, str):
        raise InputTypeError(f'quantize must be None or one of "q8_0", "q6_k", "q4_k", got {quantize!r}')
    name = quantize.strip().lower()
    if name not in QUANTIZE_FORMATS:
        raise InputError(f'unsupported quantize {json.dumps(quantize)}: use None, "q8_0", "q6_k" or "q4_k"')
    return name


def log_weight_formats(info: dict) -> None:
    """One log line when a quantized model keeps some LLM matrices in float (their input width is
    not a multiple of the format's block)."""
    quantize = info.get("quantize")
    formats = info.get("llm_weight_formats") or {}
    kept = {f: n for f, n in formats.items() if f != quantize}
    if quantize and kept:
        logging.getLogger("janus_rs").info(
            "quantize=%s: %d of %d LLM weight matrices stay %s (input width not a multiple of the "
            "format's block, or lm_head tied to the embeddings)",
            quantize, sum(kept.values()), sum(formats.values()), ", ".join(sorted(kept)),
        )


def check_load_args(
    name_or_path: object,
    *,
    device: object,
    dtypes: dict[str, object],
    roles: object,
    strings: dict[str, object],
) -> tuple[str, tuple[str, str] | None]:
    """Check ``from_pretrained``'s arguments before anything is read or downloaded: returns the
    path as a string and ``roles`` as a tuple. Raises :class:`InputTypeError` / :class:`InputError`
    naming the argument."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InputTypeError(
            f"name_or_path must be a folder path or a hub id such as \"deepseek-ai/Janus-Pro-1B\", got {name_or_path!r}"
        )
    name = os.fspath(name_or_path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    check_device(device)
    for key, value in dtypes.items():
        check_dtype(key, value)
    for key, value in strings.items():
        if value is not None and not isinstance(value, str):
            raise InputTypeError(f"{key} must be a string or None, got {type(value).__name__}")
    if roles is not None:
        if not (isinstance(roles, (tuple, list)) and len(roles) == 2 and all(isinstance(r, str) for r in roles)):
            raise InputTypeError(f"roles must be a pair of strings (user, assistant), got {roles!r}")
        roles = (roles[0], roles[1])
    return name, roles  # type: ignore[return-value]
