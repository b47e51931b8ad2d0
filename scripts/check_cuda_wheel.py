"""Check an installed janus-rs-cu13 wheel on a machine without a GPU (CI): it installs, `import
janus_rs` works, the CUDA module finds the cuBLAS/cuRAND of its nvidia-* dependencies (only the
driver, libcuda.so.1, is missing), the CPU path runs, and asking for CUDA raises a DeviceError
that says why CUDA is unavailable. On a machine with a GPU it instead checks that a model loads
on CUDA and answers.

    python scripts/check_cuda_wheel.py               (in a virtualenv where the wheel is installed)
    python scripts/check_cuda_wheel.py --stubtest    (mypy's stubtest on janus_rs._native_cuda)

``--stubtest`` needs a libcuda.so.1 to import the module where there is no driver: it uses the
link stub that scripts/cuda_toolchain.sh generates (``--libcuda-stub``; every driver function
returns an error, none is called by the import).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import janus_rs
from janus_rs import DeviceError, JanusPro

TINY = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiny-janus-pro"
DEFAULT_STUB = Path(os.environ.get("JANUS_CUDA_PREFIX", Path.home() / ".cache" / "janus-rs" / "cuda13")) / "cuda-root" / "lib64" / "stubs" / "libcuda.so"


def cuda_module_path() -> Path:
    module = Path(janus_rs.__file__).parent
    cuda_so = sorted(module.glob("_native_cuda*.so"))
    assert cuda_so, f"no _native_cuda module in {module}: not the CUDA wheel"
    return cuda_so[0]


def check_libraries(cuda_so: Path) -> None:
    """Every library the CUDA module links resolves, except the driver where there is none."""
    if shutil.which("ldd") is None:
        print("ldd not found: library resolution not checked")
        return
    out = subprocess.run(["ldd", str(cuda_so)], capture_output=True, text=True, check=True).stdout
    missing = [line.split()[0] for line in out.splitlines() if "not found" in line]
    for lib in ("libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libcudart.so.13"):
        line = next((x for x in out.splitlines() if x.strip().startswith(lib)), None)
        print(f"  {line.strip() if line else lib + ' (not linked)'}")
    unexpected = [lib for lib in missing if lib != "libcuda.so.1"]
    assert not unexpected, f"{cuda_so.name} cannot find {unexpected} (are nvidia-cublas, nvidia-curand and nvidia-cuda-runtime installed?)\n{out}"


def check(cuda_so: Path) -> int:
    print(f"janus_rs {janus_rs.__version__} from {cuda_so.parent}; CUDA module {cuda_so.name}")
    check_libraries(cuda_so)
    cpu = JanusPro.from_pretrained(TINY)
    print("CPU path:", repr(cpu.understand(None, "hi", max_new_tokens=4)))
    if janus_rs.cuda_available():
        gpu = JanusPro.from_pretrained(TINY, device="cuda")
        print("CUDA path:", gpu, repr(gpu.understand(None, "hi", max_new_tokens=4)))
        return 0
    reason = janus_rs.cuda_unavailable_reason()
    print("CUDA unavailable here:", reason)
    try:
        JanusPro.from_pretrained(TINY, device="cuda")
    except DeviceError as e:
        assert "CUDA was requested but is not available" in str(e), e
        assert "CPU-only build" not in str(e), "the CUDA module was not found in the CUDA wheel"
        print("device='cuda' raises DeviceError:", e)
        return 0
    print("expected a DeviceError for device='cuda'", file=sys.stderr)
    return 1


def stubtest(stub: Path) -> int:
    if not stub.is_file():
        print(f"no libcuda link stub at {stub} (made by scripts/cuda_toolchain.sh)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(stub.resolve(), Path(tmp) / "libcuda.so.1")
        env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(filter(None, [tmp, os.environ.get("LD_LIBRARY_PATH")])))
        return subprocess.run([sys.executable, "-m", "mypy.stubtest", "janus_rs._native_cuda"], env=env).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stubtest", action="store_true", help="run mypy's stubtest on janus_rs._native_cuda")
    parser.add_argument("--libcuda-stub", type=Path, default=DEFAULT_STUB, help=f"default {DEFAULT_STUB}")
    args = parser.parse_args()
    cuda_so = cuda_module_path()
    return stubtest(args.libcuda_stub) if args.stubtest else check(cuda_so)


if __name__ == "__main__":
    sys.exit(main())
