#!/usr/bin/env bash
# Prepare what travels to the lent GPU machine, and check that it fits (design note gpu-path §5.3).
#
#   scripts/gpu_payload.sh [--skip-build]
#
# 1. Builds the CUDA wheel into dist-gpu/ with scripts/build_cuda_wheel.sh (--skip-build: reuse the
#    wheel already there). The CUDA cargo target folder is kept between builds (CUDA_TARGET_DIR,
#    default ~/.cache/janus-rs/target-cuda), so a Rust-only change rebuilds in about a minute;
#    CUDA_COMPUTE_CAP defaults to 80 (PTX for sm_80 and newer, JIT-compiled on first use).
# 2. Writes dist-gpu/MANIFEST: commit, dirty flag, compute capability, nvcc version, wheel name,
#    sha256, size, date (scripts/gpu_check.sh copies it into env.txt and results.jsonl).
# 3. Size gate: tracked files + untracked files git doesn't ignore + dist-gpu/ must stay within
#    GPU_PAYLOAD_LIMIT_MIB (default 60 MiB; the machine takes 64 MiB in all), else exit 1.
# 4. Prints the exact `run` call for the GPU machine (carry dist-gpu; dist* is git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
SKIP_BUILD=0
for arg in "$@"; do
  case $arg in
    --skip-build) SKIP_BUILD=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_payload: unknown argument $arg" >&2; exit 2 ;;
  esac
done
OUT_DIR=dist-gpu
LIMIT_MIB=${GPU_PAYLOAD_LIMIT_MIB:-60}
export CUDA_TARGET_DIR=${CUDA_TARGET_DIR:-$HOME/.cache/janus-rs/target-cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}

if (( ! SKIP_BUILD )); then
  rm -f "$OUT_DIR"/janus_rs*.whl "$OUT_DIR/MANIFEST"
  scripts/build_cuda_wheel.sh "$OUT_DIR"
fi

shopt -s nullglob
wheels=("$OUT_DIR"/janus_rs_cu13-*.whl)
shopt -u nullglob
if (( ${#wheels[@]} != 1 )); then
  echo "gpu_payload: expected exactly one CUDA wheel in $OUT_DIR/, found ${#wheels[@]}: ${wheels[*]:-none}" >&2
  echo "  (build it: scripts/gpu_payload.sh, or remove the stale ones)" >&2
  exit 1
fi
wheel=${wheels[0]}
# The call counter preloaded by gpu_check.sh's decode_modes phase (it compiles its own when the
# GPU machine has gcc; this copy is the fallback).
gcc -O2 -shared -fPIC -o "$OUT_DIR/cuda_call_counter.so" bench/cuda_call_counter.c -ldl \
  || echo "gpu_payload: could not build bench/cuda_call_counter.c (gcc); decode_modes will count nothing" >&2

# ------------------------------------------------------------------ manifest
nvcc=""
for cand in "${JANUS_CUDA_PREFIX:-$HOME/.cache/janus-rs/cuda13}/nvidia/cu13/bin/nvcc" "$(command -v nvcc || true)"; do
  if [[ -n $cand && -x $cand ]]; then
    nvcc=$("$cand" --version 2>/dev/null | grep -i 'release' | head -1 || true)
    [[ -n $nvcc ]] && break
  fi
done
dirty=false
[[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]] && dirty=true
untracked=$(git ls-files --others --exclude-standard | wc -l)
cuda_module=$(python3 - "$wheel" <<'PY'
import hashlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if "/_native_cuda" in n]
    if names:
        data = z.read(names[0])
        print(f"{names[0]} {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()}")
    else:
        print("MISSING")
PY
)
if [[ $cuda_module == MISSING ]]; then
  echo "gpu_payload: $wheel has no janus_rs/_native_cuda module: not the CUDA wheel" >&2
  exit 1
fi
{
  echo "commit=$(git rev-parse HEAD)"
  echo "dirty=$dirty"
  echo "untracked_files=$untracked"
  echo "branch=$(git rev-parse --abbrev-ref HEAD)"
  echo "subject=$(git log -1 --format=%s)"
  echo "CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
  echo "nvcc=${nvcc:-unknown}"
  echo "wheel=$(basename "$wheel")"
  echo "wheel_sha256=$(sha256sum "$wheel" | cut -d' ' -f1)"
  echo "wheel_bytes=$(stat -c %s "$wheel")"
  echo "cuda_module=$cuda_module"
  echo "built=$(date -u -r "$wheel" '+%Y-%m-%dT%H:%M:%SZ')"
  echo "manifest_written=$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
} > "$OUT_DIR/MANIFEST"
echo "== $OUT_DIR/MANIFEST" >&2
cat "$OUT_DIR/MANIFEST" >&2

# ------------------------------------------------------------------ size gate
sum_sizes() {  # NUL-separated paths on stdin -> total bytes of those that exist
  xargs -0 -r stat -c %s -- 2>/dev/null | awk '{ s += $1 } END { printf "%d\n", s }'
}
tracked=$(git ls-files -z | sum_sizes)
others=$(git ls-files -z --others --exclude-standard | sum_sizes)
payload=$(find "$OUT_DIR" -type f -print0 | sum_sizes)
total=$(( tracked + others + payload ))
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
echo "== size: tracked $(mib "$tracked") MiB + untracked $(mib "$others") MiB + $OUT_DIR $(mib "$payload") MiB" \
  "= $(mib "$total") MiB (limit $LIMIT_MIB MiB)" >&2
limit=$(( LIMIT_MIB * 1048576 ))
if (( total > limit )); then
  echo "gpu_payload: $(mib $(( total - limit ))) MiB over the ${LIMIT_MIB} MiB limit; largest files:" >&2
  { git ls-files -z; git ls-files -z --others --exclude-standard; find "$OUT_DIR" -type f -print0; } \
    | xargs -0 -r stat -c '%s %n' -- 2>/dev/null | sort -rn | head -10 \
    | awk '{ printf "  %8.2f MiB  %s\n", $1 / 1048576, $2 }' >&2
  exit 1
fi
echo "gpu_payload: fits, $(mib $(( limit - total ))) MiB to spare" >&2

cat <<'EOF'

Run on the GPU machine (the run tool; dist-gpu is git-ignored, so it must be carried):
  carry:     ["dist-gpu"]
  timeout_s: 420
  command:   set -o pipefail; PYTHONUNBUFFERED=1 DEADLINE=330 bash scripts/gpu_check.sh "$OUT" 2>&1 | tee "$OUT/log.txt"
Then give the machine back at once unless a rerun follows (e.g. PHASES="env install reference_1b" DEADLINE=200).
EOF
