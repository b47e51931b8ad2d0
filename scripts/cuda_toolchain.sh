#!/usr/bin/env bash
# Source this file to get a CUDA 13.0 build environment on a machine without a GPU or a system
# CUDA install:  . scripts/cuda_toolchain.sh [PREFIX]      (default PREFIX: ~/.cache/janus-rs/cuda13)
#
# * nvcc, the headers and the link libraries come from NVIDIA's PyPI wheels (about 675 MB
#   downloaded once, 1.2 GB installed; idempotent afterwards, about 20 s).
# * nvcc is pinned to 13.0.x: driver 580 (CUDA 13.0) cannot JIT PTX written by nvcc >= 13.1.
# * libcuda.so is the driver and no registry ships it, so a link stub is generated from cuda.h
#   (SONAME libcuda.so.1). It is only used at link time and never shipped; at run time the real
#   driver's libcuda.so.1 is loaded.
# * Recipe and measurements: ../shared/reference/candle-build.md (§3, §7).
PREFIX=${1:-${JANUS_CUDA_PREFIX:-$HOME/.cache/janus-rs/cuda13}}
mkdir -p "$PREFIX" && PREFIX=$(cd "$PREFIX" && pwd)   # absolute: build scripts run elsewhere
PYTHON=${PYTHON:-python3}
if [ ! -x "$PREFIX/nvidia/cu13/bin/nvcc" ]; then
  echo "cuda_toolchain: installing the CUDA 13.0 toolchain wheels into $PREFIX" >&2
  "$PYTHON" -m pip install --quiet --no-deps --target "$PREFIX" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 \
    nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 || return 1
fi
_S=$PREFIX/nvidia/cu13
_R=$PREFIX/cuda-root                      # toolkit-shaped view: bin include nvvm lib64 lib64/stubs
mkdir -p "$_R/lib64/stubs"
ln -sfn "$_S/bin" "$_R/bin"; ln -sfn "$_S/include" "$_R/include"; ln -sfn "$_S/nvvm" "$_R/nvvm"
for _f in "$_S"/lib/*.so.*; do ln -sfn "$_f" "$_R/lib64/"; done
for _l in cublas cublasLt cudart nvrtc; do ln -sfn "$_S/lib/lib$_l.so.13" "$_R/lib64/lib$_l.so"; done
ln -sfn "$_S/lib/libcurand.so.10" "$_R/lib64/libcurand.so"
chmod +x "$_S"/bin/* "$_S"/nvvm/bin/* 2>/dev/null || true
if [ ! -f "$_R/lib64/stubs/libcuda.so" ]; then
  "$PYTHON" - "$_S/include/cuda.h" "$_R/lib64/stubs/cuda_stub.c" <<'PY'
import re, sys
names = sorted(set(re.findall(r'\b(cu[A-Z][A-Za-z0-9_]*)\b', open(sys.argv[1]).read())))
open(sys.argv[2], 'w').write(''.join(f'int {n}(void){{return 34;}}\n' for n in names))
PY
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$_R/lib64/stubs/libcuda.so" "$_R/lib64/stubs/cuda_stub.c" || return 1
fi
export CUDA_HOME=$_R CUDA_ROOT=$_R CUDA_PATH=$_R      # cudarc's link search (+ cudaforge's fallback)
export NVCC=$_R/bin/nvcc PATH=$_R/bin:$PATH           # cudaforge (candle-kernels) finds nvcc
export CUDARC_CUDA_VERSION=13000                      # cudarc bindings for CUDA 13.0 (driver >= 580)
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}       # no nvidia-smi here: see docs/cuda.md "Compute capability"
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}      # parallel nvcc jobs for candle-kernels' libmoe.a
export LIBRARY_PATH=$_R/lib64:$_R/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
unset _S _R _f _l
