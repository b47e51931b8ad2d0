#!/usr/bin/env bash
# Build the CUDA wheel of janus-rs on a machine with no GPU and no system CUDA:
#
#   scripts/build_cuda_wheel.sh [OUT_DIR]          (default OUT_DIR: dist-cuda)
#
# -> OUT_DIR/janus_rs-<version>+cu130-cp310-abi3-linux_x86_64.whl, which holds
#    * janus_rs._native       the CPU core (imports everywhere, like the plain wheel), and
#    * janus_rs._native_cuda  the CUDA core (candle + cuBLAS), imported only when a model is loaded
#                             with device="cuda"/"cuda:N"; it needs the NVIDIA driver (>= 580,
#                             CUDA 13.0) and the CUDA 13 libraries (PyTorch cu13x installs them).
#
# Environment: PYTHON (default python3), CUDA_COMPUTE_CAP (default 80: PTX the driver JITs for
# sm_80 and every newer GPU, A100 through H100/H200; 90 builds sm_90a, H100/H200 only),
# JANUS_CUDA_PREFIX (toolchain folder, default ~/.cache/janus-rs/cuda13),
# CUDA_TARGET_DIR (cargo target folder for the CUDA build, default target-cuda; keep it to make
# rebuilds take seconds instead of about 10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist-cuda}
PYTHON=${PYTHON:-python3}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}
start=$(date +%s)

# (an explicit argument: a sourced script would otherwise see this script's arguments)
# shellcheck disable=SC1091
. scripts/cuda_toolchain.sh "${JANUS_CUDA_PREFIX:-$HOME/.cache/janus-rs/cuda13}"
"$PYTHON" -m maturin --version >/dev/null 2>&1 || "$PYTHON" -m pip install --quiet "maturin>=1.16,<2"

echo "== CUDA core (candle CUDA kernels for compute capability $CUDA_COMPUTE_CAP)" >&2
CARGO_TARGET_DIR=${CUDA_TARGET_DIR:-target-cuda} cargo build --release --lib --features python,cuda
cuda_so=${CUDA_TARGET_DIR:-target-cuda}/release/libjanus_rs.so

echo "== CPU core and the Python package" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m maturin build --release -i "$PYTHON" -o "$tmp"

echo "== CUDA wheel" >&2
mkdir -p "$OUT"
"$PYTHON" scripts/add_cuda_module.py "$tmp"/janus_rs-*.whl "$cuda_so" "$OUT"
echo "built in $(( $(date +%s) - start ))s" >&2
