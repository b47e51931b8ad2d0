"""Check a CUDA wheel on a machine without a GPU (CI): it installs, `import janus_rs` works, the
CPU path runs, and asking for CUDA raises a DeviceError that says why CUDA is unavailable.

    python scripts/check_cuda_wheel.py          (in a virtualenv where the CUDA wheel is installed)

On a machine with a GPU it instead checks that a model loads on CUDA and answers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import janus_rs
from janus_rs import DeviceError, JanusPro

TINY = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiny-janus-pro"


def main() -> int:
    module = Path(janus_rs.__file__).parent
    cuda_so = sorted(module.glob("_native_cuda*.so"))
    assert cuda_so, f"no _native_cuda module in {module}: not the CUDA wheel"
    print(f"janus_rs {janus_rs.__version__} from {module}; CUDA module {cuda_so[0].name}")
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


if __name__ == "__main__":
    sys.exit(main())
