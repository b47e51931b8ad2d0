#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run through `phase NAME ... FUNCTION`
# shellcheck disable=SC2012  # ls of our own file names
#
# The GPU check: everything one lent GPU window should measure, in phases, under one deadline
# (design note ../shared/reference/design-gpu-path.md §5.3).
#
#   bash scripts/gpu_check.sh [--device cuda|cpu] [OUTDIR]        (OUTDIR: $OUT, else ./gpu-out)
#
# On the GPU machine, with dist-gpu/ (the CUDA wheel, scripts/gpu_payload.sh) carried along:
#   set -o pipefail; PYTHONUNBUFFERED=1 DEADLINE=330 bash scripts/gpu_check.sh "$OUT" 2>&1 | tee "$OUT/log.txt"
#
# Phases (each under `timeout`, skipped when too little of DEADLINE is left; one JSON line each in
# OUTDIR/results.jsonl, {"phase", "ok", "status", "seconds", ...data}, appended as it finishes):
#   env           nvidia-smi, versions, nvidia/cu13/lib, memory-pool support, CPUs, disk -> env.txt
#   install       pip-install dist-gpu/*.whl into /tmp/janus-site, ldd, scripts/check_cuda_wheel.py,
#                 tiny model load + generate in a cold (fresh CUDA_CACHE_PATH: PTX JIT) and a warm process
#   anchors       bench/gpu_anchor.py -> anchors.json (copy TB/s, GEMM, GEMV, torch step eager/graph)
#   pytest        the CUDA cases of the bf16 and parity tests -> pytest.txt
#   ours_1b       random full-size Janus-Pro-1B (bf16) -> bench/gpu.py: 1 and 16 images, tok/s; the same
#                 1-image timing with JANUS_RS_CUDA_STREAM=per-thread; one JANUS_RS_PROFILE=1 run -> profile.txt
#   decode_modes  bench/gpu_decode_modes.py on the same checkpoint: JANUS_RS_DECODE=eager|static|graph at 1
#                 and 16 images, s/call, ms/step, CUDA driver + cuBLAS calls per step (bench/cuda_call_counter.c
#                 preloaded), token agreement between modes
#   quantize      bench/gpu_quantize.py on the same checkpoint: quantize=none|q8_0|q4_k, load time, GPU memory,
#                 CFG and text step, greedy-token agreement with the unquantized model
#   anchors       (after the janus-rs phases: they matter more when time runs short)
#   reference_1b  the transformers port on the same checkpoint (only with > 120 s left)
#   ours_7b       random Janus-Pro-7B, 1 image (only with > 200 s left)
#   summary       bench/gpu_summary.py -> summary.md (and stdout); written by the EXIT trap, always
# Returned files (<= 8 with the caller's log.txt): results.jsonl summary.md env.txt pytest.txt
# anchors.json profile.txt bench.json. Scratch files live in a temporary folder.
#
# --device cpu (or GPU_CHECK_DEVICE=cpu) runs the same phases on the CPU with the tiny checkpoint and
# tiny sizes, using the janus_rs that $PYTHON already imports (nothing is installed); phases that
# need torch are recorded as skipped where torch is missing. tests/test_gpu_check_script.py runs it.
# Environment: DEADLINE (seconds, default 330), PYTHON (default python3), B_<PHASE> budgets (below),
# PHASES (default all: e.g. PHASES="env install reference_1b" for a second, shorter window; the others
# are recorded as skipped).
set -uo pipefail

T0_MS=$(( $(date +%s%N) / 1000000 ))
MODE=${GPU_CHECK_DEVICE:-cuda}
OUTDIR=""
while (( $# )); do
  case $1 in
    --device) MODE=${2:-}; shift 2 || shift ;;
    --device=*) MODE=${1#*=}; shift ;;
    -h|--help) awk 'NR > 4 && !/^#/ { exit } NR > 4 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) OUTDIR=$1; shift ;;
  esac
done
case $MODE in
  cpu|cuda) ;;
  *) echo "gpu_check: --device must be cpu or cuda, got '$MODE'" >&2; exit 2 ;;
esac
OUTDIR=${OUTDIR:-${OUT:-./gpu-out}}
if ! mkdir -p "$OUTDIR" || ! OUTDIR=$(cd "$OUTDIR" && pwd); then
  echo "gpu_check: cannot use $OUTDIR" >&2
  exit 2
fi
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
PY=${PYTHON:-python3}
DEADLINE=${DEADLINE:-330}
RESULTS=$OUTDIR/results.jsonl
BENCH=$OUTDIR/bench.json
ENVTXT=$OUTDIR/env.txt
TINY=$ROOT/tests/fixtures/tiny-janus-pro
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
# Results of an earlier run into the same folder would be mixed in (log.txt is the caller's tee).
rm -f "$RESULTS" "$BENCH" "$ENVTXT" "$OUTDIR/summary.md" "$OUTDIR/pytest.txt" "$OUTDIR/anchors.json" \
  "$OUTDIR/profile.txt"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONDONTWRITEBYTECODE=1

# Per-mode sizes and budgets (seconds; each phase also stops at the global deadline). Expected on an
# H200 (estimates; nothing has run there yet): env ~5 s, install ~25-45 s (one PTX JIT pass), anchors
# ~15-25 s, pytest ~20-45 s, ours_1b ~90-130 s, reference_1b ~60-90 s (needs 120 s left): ~250-300 s.
if [[ $MODE == cuda ]]; then
  DEV=cuda TAG=1b RESERVE=${RESERVE:-8} SIZES_BIG=16 NEW_TOKENS=256 REF_TOKENS=128 PROFILE_TOKENS=32
  B_ENV=${B_ENV:-30} B_INSTALL=${B_INSTALL:-90} B_ANCHORS=${B_ANCHORS:-45} B_PYTEST=${B_PYTEST:-100}
  B_OURS=${B_OURS:-160} B_MODES=${B_MODES:-110} B_REF=${B_REF:-150} B_7B=${B_7B:-240}
  B_QUANT=${B_QUANT:-150} NEED_QUANT=${NEED_QUANT:-60}
  NEED_REF=${NEED_REF:-120} NEED_7B=${NEED_7B:-200} NEED_OURS=50 NEED_MODES=40
  # within ours_1b: seconds kept back from the main run for the per-thread and the profile runs
  KEEP_PT=30 KEEP_PROF=30 CAP_MAIN=80 CAP_PT=35
else
  DEV=cpu TAG=tiny RESERVE=${RESERVE:-3} SIZES_BIG=2 NEW_TOKENS=16 REF_TOKENS=8 PROFILE_TOKENS=8
  B_ENV=${B_ENV:-20} B_INSTALL=${B_INSTALL:-30} B_ANCHORS=${B_ANCHORS:-25} B_PYTEST=${B_PYTEST:-45}
  B_OURS=${B_OURS:-45} B_MODES=${B_MODES:-20} B_REF=${B_REF:-40} B_7B=0
  B_QUANT=${B_QUANT:-40} NEED_QUANT=${NEED_QUANT:-8}
  NEED_REF=${NEED_REF:-12} NEED_7B=0 NEED_OURS=11 NEED_MODES=6
  KEEP_PT=12 KEEP_PROF=6 CAP_MAIN=30 CAP_PT=10
fi

# ------------------------------------------------------------------------------ time and records
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
elapsed() { echo $(( ($(now_ms) - T0_MS) / 1000 )); }
left() { echo $(( DEADLINE - ($(now_ms) - T0_MS) / 1000 )); }
PHASE_END_MS=0
pleft() {  # seconds left in the current phase
  local s=$(( (PHASE_END_MS - $(now_ms)) / 1000 ))
  (( s < 0 )) && s=0
  echo "$s"
}
tmo() {  # a timeout: min(CAP, phase time left), at least 1 (CAP 0: no cap)
  local cap=${1:-0} l
  l=$(pleft)
  (( cap > 0 && cap < l )) && l=$cap
  (( l < 1 )) && l=1
  echo "$l"
}
PHASE_TIMED_OUT=0
run_to() {  # run_to CAP CMD...: CMD under timeout; notes a timeout for the phase
  local t rc
  t=$(tmo "$1"); shift
  timeout -k 5 "$t" "$@"
  rc=$?
  if (( rc == 124 || rc == 137 )); then
    PHASE_TIMED_OUT=1
    echo "gpu_check: timed out after ${t}s: $*" >&2
  fi
  return "$rc"
}

KV=$WORK/kv.none
put() { printf 's\t%s\t%s\n' "$1" "$(printf '%s' "$2" | tr '\t\n' '  ')" >> "$KV"; }
putn() { printf 'n\t%s\t%s\n' "$1" "$2" >> "$KV"; }
putj() { [[ -s $2 ]] && printf 'j\t%s\t%s\n' "$1" "$2" >> "$KV"; return 0; }
putm() { [[ -s $1 ]] && printf 'm\t-\t%s\n' "$1" >> "$KV"; return 0; }
PHASE_FAIL=""
fail() { PHASE_FAIL=${PHASE_FAIL:+$PHASE_FAIL; }$1; echo "gpu_check: $1" >&2; }
PHASE_LABELS=()

record() {  # record NAME STATUS MILLISECONDS REASON
  local name=$1 status=$2 ms=$3 reason=${4:-} secs
  secs=$(awk -v ms="$ms" 'BEGIN { printf "%.2f", ms / 1000 }')
  local args=(record "$RESULTS" --phase "$name" --status "$status" --seconds "$secs" --kv "$KV")
  [[ -n $reason ]] && args+=(--reason "$reason")
  (( ${#PHASE_LABELS[@]} )) && args+=(--bench "$BENCH" --labels "${PHASE_LABELS[@]}")
  if ! timeout -k 2 20 "$PY" "$ROOT/bench/gpu_summary.py" "${args[@]}"; then
    # shellcheck disable=SC1003
    reason=$(printf '%s' "$reason" | tr -d '"\\' | tr '\t\n' '  ')
    printf '{"phase": "%s", "ok": %s, "status": "%s", "seconds": %s, "reason": "%s (shell fallback record)"}\n' \
      "$name" "$([[ $status == ok ]] && echo true || echo false)" "$status" "$secs" "$reason" >> "$RESULTS"
  fi
  echo "=== phase $name: $status in ${secs}s${reason:+ ($reason)}; $(left)s of ${DEADLINE}s left" >&2
}

phase() {  # phase NAME BUDGET NEED FUNCTION [SKIP_REASON]
  local name=$1 budget=$2 need=$3 fn=$4 skip=${5:-} l start rc status
  KV=$WORK/kv.$name
  : > "$KV"
  PHASE_FAIL="" PHASE_TIMED_OUT=0 PHASE_LABELS=()
  l=$(left)
  echo "=== phase $name: budget ${budget}s, ${l}s left ($(date +%T))" >&2
  if [[ -n ${PHASES:-} && " $PHASES " != *" $name "* ]]; then skip="not in PHASES ($PHASES)"; fi
  if [[ -n $skip ]]; then record "$name" skipped 0 "$skip"; return 0; fi
  if (( l < need )); then
    record "$name" skipped 0 "deadline: ${l}s left, needs ${need}s"
    return 0
  fi
  (( budget > l - RESERVE )) && budget=$(( l - RESERVE ))
  start=$(now_ms)
  PHASE_END_MS=$(( start + budget * 1000 ))
  "$fn"
  rc=$?
  if (( PHASE_TIMED_OUT )); then status=timeout
  elif (( rc != 0 )) || [[ -n $PHASE_FAIL ]]; then status=failed
  else status=ok
  fi
  (( rc != 0 )) && [[ -z $PHASE_FAIL ]] && PHASE_FAIL="exit $rc"
  record "$name" "$status" $(( $(now_ms) - start )) "$PHASE_FAIL"
}

FINISHED=0
finish() {
  (( FINISHED )) && return
  FINISHED=1
  local start rc
  start=$(now_ms)
  KV=$WORK/kv.summary
  : > "$KV"
  PHASE_LABELS=()
  putn total_s "$(elapsed)"
  timeout -k 2 30 "$PY" "$ROOT/bench/gpu_summary.py" render "$OUTDIR"
  rc=$?
  record summary "$([[ $rc == 0 ]] && echo ok || echo failed)" $(( $(now_ms) - start )) \
    "$([[ $rc == 0 ]] || echo "gpu_summary.py render: exit $rc")"
  timeout -k 2 30 "$PY" "$ROOT/bench/gpu_summary.py" render "$OUTDIR" --quiet   # with its own line
  echo "gpu_check: done in $(elapsed)s; files in $OUTDIR: $(cd "$OUTDIR" && ls | tr '\n' ' ')" >&2
  rm -rf "$WORK"
}
trap finish EXIT
trap 'echo "gpu_check: signal, stopping" >&2; exit 130' INT TERM HUP

# ------------------------------------------------------------------------------ 0 env
HAVE_TORCH=0 TORCH_CUDA=0 HAVE_TF=0 HAVE_PT_TIMEOUT=0 CU13_LIB=""
cat > "$WORK/probe.py" <<'PY'
import ctypes, glob, importlib.metadata as md, importlib.util, json, os, platform, shlex, shutil, site, sys
out = {"versions": {"python": platform.python_version()}, "python_exe": sys.executable}
have = {}
for mod, dists in (("numpy", ["numpy"]), ("torch", ["torch"]), ("transformers", ["transformers"]),
                   ("tokenizers", ["tokenizers"]), ("safetensors", ["safetensors"]),
                   ("cupy", ["cupy-cuda13x", "cupy-cuda12x", "cupy"]), ("pynvml", ["nvidia-ml-py", "pynvml"]),
                   ("PIL", ["pillow"]), ("tqdm", ["tqdm"]), ("pytest", ["pytest"]),
                   ("pytest_timeout", ["pytest-timeout"])):
    have[mod] = importlib.util.find_spec(mod) is not None      # without importing (transformers is slow)
    for d in dists:
        try:
            out["versions"][d] = md.version(d)
            break
        except md.PackageNotFoundError:
            pass
torch_cuda = False
if have["torch"]:
    try:
        import torch
        out["torch_cuda_build"] = torch.version.cuda
        torch_cuda = torch.cuda.is_available()
        if torch_cuda:
            out["torch_device"] = torch.cuda.get_device_name(0)
            out["compute_capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
    except Exception as e:  # noqa: BLE001
        out["torch_error"] = str(e)[:300]
        have["torch"] = "torch_cuda_build" in out
out["torch_cuda_available"] = torch_cuda
roots = list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path
cu13 = []
for r in roots:
    d = os.path.join(r, "nvidia", "cu13", "lib")
    if os.path.isdir(d) and os.path.realpath(d) not in cu13:
        cu13.append(os.path.realpath(d))
out["cu13_lib"] = cu13[0] if cu13 else None
if cu13:
    out["cu13_libs"] = sorted(os.path.basename(p) for p in glob.glob(os.path.join(cu13[0], "lib*.so*")))
mp = None
try:  # the driver API directly: no cupy or torch needed
    cuda = ctypes.CDLL("libcuda.so.1")
    v, dev = ctypes.c_int(), ctypes.c_int()
    rc = cuda.cuInit(0)
    if rc == 0:
        cuda.cuDriverGetVersion(ctypes.byref(v))
        out["driver_cuda_version"] = "%d.%d" % (v.value // 1000, v.value % 1000 // 10)
        if cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0 and \
                cuda.cuDeviceGetAttribute(ctypes.byref(v), 115, dev) == 0:  # CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED
            mp, out["mempools_via"] = v.value, "driver"
    else:
        out["cuInit"] = rc
except OSError as e:
    out["libcuda"] = f"not loadable: {e}"
if mp is None and have["cupy"] and out.get("cuInit") is None and "libcuda" not in out:
    try:
        import cupy
        rt = cupy.cuda.runtime
        mp = rt.deviceGetAttribute(getattr(rt, "cudaDevAttrMemoryPoolsSupported", 115), 0)
        out["mempools_via"] = "cupy"
    except Exception as e:  # noqa: BLE001
        out["mempools_cupy_error"] = str(e)[:200]
out["mempools_supported"] = None if mp is None else bool(mp)
ncu = shutil.which("ncu") or next(iter(sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu"))), None)
out["ncu"] = ncu
json.dump(out, open(sys.argv[1], "w"), indent=1)
with open(sys.argv[2], "w") as f:
    f.write(f"HAVE_TORCH={int(bool(have['torch']))}\nTORCH_CUDA={int(torch_cuda)}\n"
            f"HAVE_TF={int(have['transformers'] and have['tokenizers'])}\n"
            f"HAVE_PT_TIMEOUT={int(have['pytest_timeout'])}\nCU13_LIB={shlex.quote(out['cu13_lib'] or '')}\n")
print(json.dumps(out, indent=1))
PY

ph_env() {
  put mode "$MODE"
  putn deadline "$DEADLINE"
  putn nproc "$(nproc)"
  put disk_free_tmp "$(df -h /tmp 2>/dev/null | awk 'NR == 2 { print $4 }')"
  put mem_total "$(free -g 2>/dev/null | awk '/^Mem:/ { print $2 " GiB" }')"
  {
    echo "# gpu_check env, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), mode $MODE, deadline ${DEADLINE}s"
    echo "python: $PY ($(command -v "$PY"))"
    uname -a; nproc; free -g; df -h /tmp "$ROOT"
    if [[ -f dist-gpu/MANIFEST ]]; then echo "## dist-gpu/MANIFEST"; cat dist-gpu/MANIFEST; fi
    echo "## git"; git -C "$ROOT" log -1 --format='%H %s' 2>&1 || true
  } > "$ENVTXT" 2>&1
  if [[ -f dist-gpu/MANIFEST ]]; then
    while IFS='=' read -r k v; do
      [[ $k =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] && put "manifest.$k" "$v"
    done < dist-gpu/MANIFEST
  fi
  if command -v nvidia-smi >/dev/null; then
    local q
    q=$(run_to 20 nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,memory.used,memory.total,power.limit --format=csv,noheader 2>&1 | head -1)
    { echo "## nvidia-smi"; echo "$q"; run_to 20 nvidia-smi; } >> "$ENVTXT" 2>&1
    IFS=',' read -r g_name g_driver g_sm g_mem g_maxsm g_used g_total g_power <<< "$q"
    put gpu.name "$(echo "$g_name" | xargs)"; put gpu.driver "$(echo "${g_driver:-}" | xargs)"
    put gpu.clock_sm "$(echo "${g_sm:-}" | xargs)"; put gpu.clock_mem "$(echo "${g_mem:-}" | xargs)"
    put gpu.clock_max_sm "$(echo "${g_maxsm:-}" | xargs)"; put gpu.memory_used "$(echo "${g_used:-}" | xargs)"
    put gpu.memory_total "$(echo "${g_total:-}" | xargs)"; put gpu.power_limit "$(echo "${g_power:-}" | xargs)"
  else
    put gpu.name "none (no nvidia-smi)"
    [[ $MODE == cuda ]] && fail "no nvidia-smi on this machine"
  fi
  echo "## probe" >> "$ENVTXT"
  if run_to 0 "$PY" "$WORK/probe.py" "$WORK/probe.json" "$WORK/probe.sh" >> "$ENVTXT" 2>&1; then
    # shellcheck disable=SC1091
    . "$WORK/probe.sh"
    putm "$WORK/probe.json"
  else
    fail "the Python probe failed (see env.txt)"
  fi
  [[ $MODE == cuda && $TORCH_CUDA != 1 ]] && echo "gpu_check: torch sees no CUDA device" >&2
  return 0
}

# ------------------------------------------------------------------------------ 1 install + smoke
cat > "$WORK/smoke.py" <<'PY'
import json, sys, time
t0 = time.perf_counter()
dev, tiny = sys.argv[1], sys.argv[2]
out = {}
def lap(key, t):
    out[key] = round(time.perf_counter() - t, 4)
t = time.perf_counter()
import janus_rs
lap("import_s", t)
try:
    t = time.perf_counter()
    m = janus_rs.JanusPro.from_pretrained(tiny, device=dev, progress=False)
    lap("load_s", t)
    t = time.perf_counter()
    m.generate("a red cat", num_images=1, seed=0, progress=False)
    lap("generate_s", t)
    t = time.perf_counter()
    m.generate("a red cat", num_images=1, seed=1, progress=False)
    lap("generate2_s", t)
    t = time.perf_counter()
    m.understand(None, "hi", max_new_tokens=4)
    lap("understand_s", t)
    out["ok"] = True
except Exception as e:  # noqa: BLE001
    out["ok"], out["error"] = False, f"{type(e).__name__}: {e}"[:400]
lap("total_s", t0)
print(json.dumps(out))
PY

ph_install() {
  if [[ $MODE == cuda ]]; then
    local whl so site=/tmp/janus-site
    whl=$(ls -1 "$ROOT"/dist-gpu/janus_rs_cu13-*.whl 2>/dev/null | head -1)
    if [[ -z $whl ]]; then fail "no dist-gpu/janus_rs_cu13-*.whl (was dist-gpu carried?)"; return 1; fi
    put wheel "$(basename "$whl")"
    putn wheel_mib "$(awk -v b="$(stat -c %s "$whl")" 'BEGIN { printf "%.2f", b / 1048576 }')"
    rm -rf "$site"
    echo "## pip install $whl" >> "$ENVTXT"
    if ! run_to 60 "$PY" -m pip install --no-deps --no-index --no-compile --disable-pip-version-check \
        --target "$site" "$whl" >> "$ENVTXT" 2>&1; then
      echo "pip failed; unzipping the wheel instead" >> "$ENVTXT"
      put install_method unzip
      run_to 60 "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$whl" "$site" \
        >> "$ENVTXT" 2>&1 || { fail "could not install $whl"; return 1; }
    fi
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    [[ -n $CU13_LIB ]] && export JANUS_RS_CUDA_LIB_DIR=$CU13_LIB
    so=$(ls -1 "$site"/janus_rs/_native_cuda*.so 2>/dev/null | head -1)
    if [[ -n $so ]]; then
      {
        echo "## ldd $so"; ldd "$so"
        echo "## ldd with LD_LIBRARY_PATH=$CU13_LIB"; LD_LIBRARY_PATH=$CU13_LIB ldd "$so"
        echo "## readelf -d (NEEDED, RUNPATH)"; readelf -d "$so" 2>/dev/null | grep -E 'NEEDED|RUNPATH|RPATH'
      } >> "$ENVTXT" 2>&1
      putn ldd_not_found "$(ldd "$so" 2>&1 | grep -c 'not found')"
      putn ldd_not_found_with_cu13 "$(LD_LIBRARY_PATH=$CU13_LIB ldd "$so" 2>&1 | grep -c 'not found')"
      putn cuda_module_mib "$(awk -v b="$(stat -c %s "$so")" 'BEGIN { printf "%.2f", b / 1048576 }')"
    else
      fail "the wheel has no janus_rs/_native_cuda*.so"
    fi
  else
    put install_method "none (cpu mode: the janus_rs that $PY imports)"
  fi
  local info
  if ! info=$(run_to 60 "$PY" -c '
import janus_rs, pathlib
p = pathlib.Path(janus_rs.__file__).parent
print(janus_rs.__version__, p, int(bool(list(p.glob("_native_cuda*.so")))), janus_rs.cuda_available(),
      (janus_rs.cuda_unavailable_reason() or "").replace(chr(10), " "), sep="\t")' 2>>"$ENVTXT"); then
    fail "import janus_rs failed (see env.txt)"
    return 1
  fi
  local version path has_cuda avail reason
  IFS=$'\t' read -r version path has_cuda avail reason <<< "$info"
  put janus_rs.version "$version"; put janus_rs.path "$path"; put janus_rs.cuda_available "$avail"
  [[ -n $reason ]] && put janus_rs.cuda_unavailable_reason "$reason"
  echo "## janus_rs $version from $path; CUDA module: $has_cuda; cuda_available: $avail $reason" >> "$ENVTXT"
  [[ $MODE == cuda && $avail != True ]] && fail "janus_rs.cuda_available() is False: $reason"
  # First use (PTX JIT into an empty cache) vs warm (same cache, new process), tiny model. Every
  # later phase uses the filled cache too, so the kernels are JIT-compiled once in this run.
  local cache=/tmp/cudacache-$RANDOM$RANDOM kind t
  rm -rf "$cache"
  for kind in cold warm; do
    t=$(now_ms)
    echo "## smoke ($kind, CUDA_CACHE_PATH=$cache)" >> "$ENVTXT"
    CUDA_CACHE_PATH=$cache run_to 150 "$PY" "$WORK/smoke.py" "$DEV" "$TINY" > "$WORK/smoke-$kind.json" 2>> "$ENVTXT" \
      || fail "$kind smoke run failed (see env.txt)"
    cat "$WORK/smoke-$kind.json" >> "$ENVTXT"
    putj "jit.$kind" "$WORK/smoke-$kind.json"
    putn "jit.${kind}_process_s" "$(awk -v ms=$(( $(now_ms) - t )) 'BEGIN { printf "%.2f", ms / 1000 }')"
    if [[ $kind == cold ]]; then
      export CUDA_CACHE_PATH=$cache
      put cuda_cache_path "$cache"
    fi
  done
  if [[ $has_cuda == 1 ]]; then
    echo "## scripts/check_cuda_wheel.py" >> "$ENVTXT"
    if run_to 120 "$PY" scripts/check_cuda_wheel.py >> "$ENVTXT" 2>&1; then put check_cuda_wheel ok
    else put check_cuda_wheel failed; fail "scripts/check_cuda_wheel.py failed (see env.txt)"; fi
  else
    put check_cuda_wheel "skipped: janus_rs has no CUDA module"
  fi
  return 0
}

# ------------------------------------------------------------------------------ 2 anchors
ph_anchors() {
  local budget=$(( $(pleft) - 8 ))
  (( budget < 5 )) && budget=5
  run_to 0 "$PY" bench/gpu_anchor.py "$OUTDIR/anchors.json" --device "$DEV" --budget "$budget" \
    > "$WORK/anchors.out" 2>&1
  local rc=$?
  tail -n 40 "$WORK/anchors.out" >&2
  putj anchors "$OUTDIR/anchors.json"
  [[ -s $OUTDIR/anchors.json ]] || fail "no anchors.json"
  return "$rc"
}

# ------------------------------------------------------------------------------ 3 pytest
ph_pytest() {
  local files=() f
  for f in tests/test_bf16.py tests/test_generation_parity.py tests/test_understanding_parity.py \
           tests/test_janusflow_parity.py tests/test_decode_modes.py tests/test_seeds.py; do
    [[ -f $f ]] && files+=("$f")
  done
  local args=(-m pytest -q -rs -p no:cacheprovider -k cuda --junitxml "$WORK/pytest.xml")
  (( HAVE_PT_TIMEOUT )) && args+=(--timeout 120)
  echo "\$ $PY ${args[*]} ${files[*]}" > "$OUTDIR/pytest.txt"
  run_to 0 "$PY" "${args[@]}" "${files[@]}" >> "$OUTDIR/pytest.txt" 2>&1
  local rc=$?
  tail -n 15 "$OUTDIR/pytest.txt" >&2
  "$PY" - "$WORK/pytest.xml" "$OUTDIR/pytest.txt" > "$WORK/pytest.json" <<'PY'
import json, re, sys, xml.etree.ElementTree as ET
out = {}
try:
    root = ET.parse(sys.argv[1]).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    n = lambda k: sum(int(s.get(k, 0)) for s in suites)
    out = {"tests": n("tests"), "failed": n("failures"), "errors": n("errors"), "skipped": n("skipped")}
    out["passed"] = out["tests"] - out["failed"] - out["errors"] - out["skipped"]
except Exception as e:  # noqa: BLE001 - killed before the XML was written: read the text
    out["junit"] = f"unreadable: {e}"[:200]
text = open(sys.argv[2], errors="replace").read()
for key in ("passed", "failed", "skipped", "deselected", "errors", "error"):
    m = re.findall(rf"(\d+) {key}\b", text)
    if m and (key not in out or key == "deselected"):
        out["errors" if key == "error" else key] = int(m[-1])
json.dump(out, sys.stdout)
PY
  putm "$WORK/pytest.json"
  case $rc in
    0) ;;
    5) fail "pytest collected no tests" ;;
    124|137) ;;
    *) fail "pytest exit $rc (see pytest.txt)" ;;
  esac
  return 0
}

# ------------------------------------------------------------------------------ 4-6 benchmarks
bench_run() {  # bench_run LABEL CAP gpu.py-args...: one bench/gpu.py invocation under the phase's clock
  local label=$1 cap=$2 t
  shift 2
  t=$(tmo "$cap")
  PHASE_LABELS+=("$label")
  echo "--- bench $label (${t}s)" >&2
  run_to "$t" "$PY" bench/gpu.py --device "$DEV" --json-out "$BENCH" --label "$label" \
    --deadline $(( t > 8 ? t - 4 : t )) "$@"
  local rc=$?
  if (( rc == 2 )); then   # gpu.py: a measurement was left out to keep the deadline (not a failure)
    PHASE_TIMED_OUT=1
    echo "gpu_check: $label was cut short by its deadline" >&2
    return 0
  fi
  return "$rc"
}

make_checkpoint() {  # make_checkpoint MODEL DIR CAP
  local model=$1 dir=$2 cap=$3 t backend=numpy
  [[ -f $dir/model.safetensors ]] && { put "checkpoint.$model" "reused $dir"; return 0; }
  (( TORCH_CUDA )) && backend=torch
  t=$(now_ms)
  run_to "$cap" "$PY" scripts/make_random_checkpoint.py --model "$model" --out "$dir" --backend "$backend" >&2 \
    || { fail "writing the random $model checkpoint failed"; return 1; }
  put "checkpoint.$model" "$backend"
  putn "checkpoint.${model}_s" "$(awk -v ms=$(( $(now_ms) - t )) 'BEGIN { printf "%.1f", ms / 1000 }')"
}

CKPT_1B=/tmp/janus-bench/Janus-Pro-1B
ph_ours_1b() {
  local args_model
  if [[ $MODE == cuda ]]; then
    make_checkpoint Janus-Pro-1B "$CKPT_1B" 120 || return 1
    args_model=(--model-dir "$CKPT_1B" --model-name Janus-Pro-1B)
  else
    args_model=(--model-dir "$TINY" --model-name tiny)
  fi
  local rc=0 main_cap=$(( $(pleft) - KEEP_PT - KEEP_PROF ))
  (( main_cap > CAP_MAIN )) && main_cap=$CAP_MAIN
  (( main_cap < 10 )) && main_cap=10
  bench_run "ours-$TAG" "$main_cap" "${args_model[@]}" --sides ours --sizes 1 "$SIZES_BIG" --repeats 2 \
    --new-tokens "$NEW_TOKENS" --dump-step0 "$WORK/step0.npz" || { rc=$?; fail "ours-$TAG: exit $rc"; }
  # Before/after of the explicit stream: candle's per-thread default stream with event tracking.
  local pt_cap=$(( $(pleft) - KEEP_PROF ))
  (( pt_cap > CAP_PT )) && pt_cap=$CAP_PT
  if (( pt_cap >= 8 )); then
    bench_run "ours-$TAG-per-thread" "$pt_cap" "${args_model[@]}" --sides ours --sizes 1 --repeats 2 \
      --new-tokens 0 --env JANUS_RS_CUDA_STREAM=per-thread || fail "ours-$TAG-per-thread: exit $?"
  else
    put per_thread "skipped: ${pt_cap}s left"
  fi
  # Stage timers (they synchronise at every stage: not throughput numbers).
  if (( $(pleft) >= 8 )); then
    bench_run "ours-$TAG-profile" 0 "${args_model[@]}" --sides ours --sizes 1 --repeats 1 \
      --new-tokens "$PROFILE_TOKENS" --env JANUS_RS_PROFILE=1 2> "$OUTDIR/profile.txt" \
      || fail "ours-$TAG-profile: exit $?"
    cat "$OUTDIR/profile.txt" >&2
    put profile "profile.txt ($(grep -c 'janus-rs profile' "$OUTDIR/profile.txt" 2>/dev/null || echo 0) tables)"
  else
    put profile "skipped: $(pleft)s left"
  fi
  return "$rc"
}

# Decode modes (JANUS_RS_DECODE=eager|static|graph) side by side in one process, with the CUDA
# driver and cuBLAS calls per step counted by bench/cuda_call_counter.c (LD_PRELOAD).
ph_decode_modes() {
  local model_dir sizes=(1 "$SIZES_BIG") preload=""
  if [[ $MODE == cuda ]]; then
    make_checkpoint Janus-Pro-1B "$CKPT_1B" 120 || return 1
    model_dir=$CKPT_1B
    if command -v gcc >/dev/null && gcc -O2 -shared -fPIC -o "$WORK/counter.so" bench/cuda_call_counter.c -ldl \
        2>> "$ENVTXT"; then
      preload=$WORK/counter.so
    elif [[ -f dist-gpu/cuda_call_counter.so ]]; then
      preload=$ROOT/dist-gpu/cuda_call_counter.so
    fi
  else
    model_dir=$TINY
  fi
  put counter "${preload:-none}"
  LD_PRELOAD=$preload run_to 0 "$PY" bench/gpu_decode_modes.py "$model_dir" "$WORK/modes.jsonl" --device "$DEV" \
    --sizes "${sizes[@]}" --repeats 2 --deadline $(( $(pleft) > 10 ? $(pleft) - 6 : 4 )) >&2
  local rc=$?
  "$PY" -c 'import json, sys; json.dump([json.loads(l) for l in open(sys.argv[1]) if l.strip()], open(sys.argv[2], "w"))' \
    "$WORK/modes.jsonl" "$WORK/modes.json" 2>/dev/null && putj decode_modes "$WORK/modes.json"
  grep -q '"event": "error"' "$WORK/modes.jsonl" 2>/dev/null && fail "a decode mode failed (see decode_modes in results.jsonl)"
  return "$rc"
}

ph_quantize() {
  local model_dir formats=(none q8_0 q4_k)
  if [[ $MODE == cuda ]]; then
    make_checkpoint Janus-Pro-1B "$CKPT_1B" 120 || return 1
    model_dir=$CKPT_1B
  else
    model_dir=$TINY formats=(none q8_0)
  fi
  rm -f "$WORK/quant.jsonl"
  run_to 0 "$PY" bench/gpu_quantize.py "$model_dir" "$WORK/quant.jsonl" --device "$DEV" \
    --formats "${formats[@]}" --deadline $(( $(pleft) > 10 ? $(pleft) - 6 : 4 )) >&2
  local rc=$?
  "$PY" -c 'import json, sys; json.dump([json.loads(l) for l in open(sys.argv[1]) if l.strip()], open(sys.argv[2], "w"))' \
    "$WORK/quant.jsonl" "$WORK/quant.json" 2>/dev/null && putj quantize "$WORK/quant.json"
  grep -q '"error"' "$WORK/quant.jsonl" 2>/dev/null && fail "a quantized format failed (see quantize in results.jsonl)"
  return "$rc"
}

ph_reference_1b() {
  local args_model
  if [[ $MODE == cuda ]]; then
    make_checkpoint Janus-Pro-1B "$CKPT_1B" 120 || return 1      # normally reused from ours_1b
    args_model=(--model-dir "$CKPT_1B" --model-name Janus-Pro-1B)
  else
    args_model=(--models tiny)      # the reference reads model.safetensors: gpu.py prepares a copy
  fi
  bench_run "reference-$TAG" 0 "${args_model[@]}" --sides reference --sizes 1 "$SIZES_BIG" --repeats 1 \
    --new-tokens "$REF_TOKENS" --compare-step0 "$WORK/step0.npz"
}

ph_ours_7b() {
  local dir=/tmp/janus-bench/Janus-Pro-7B
  make_checkpoint Janus-Pro-7B "$dir" 150 || return 1
  bench_run ours-7b 0 --model-dir "$dir" --model-name Janus-Pro-7B --sides ours --sizes 1 --repeats 2 --new-tokens 0
}

# ------------------------------------------------------------------------------ run
echo "gpu_check: mode $MODE, deadline ${DEADLINE}s, output $OUTDIR, python $PY" >&2
phase env "$B_ENV" $(( RESERVE + 3 )) ph_env
phase install "$B_INSTALL" $(( RESERVE + 10 )) ph_install

skip_torch=""
(( HAVE_TORCH )) || skip_torch="torch is not installed"
[[ $MODE == cuda && -z $skip_torch && $TORCH_CUDA != 1 ]] && skip_torch="torch sees no CUDA device"
phase pytest "$B_PYTEST" $(( RESERVE + 20 )) ph_pytest
phase ours_1b "$B_OURS" "$NEED_OURS" ph_ours_1b
phase decode_modes "$B_MODES" "$NEED_MODES" ph_decode_modes
phase quantize "$B_QUANT" "$NEED_QUANT" ph_quantize
phase anchors "$B_ANCHORS" $(( RESERVE + 15 )) ph_anchors "$skip_torch"

skip_ref=$skip_torch
(( HAVE_TF )) || skip_ref=${skip_ref:-"transformers is not installed"}
phase reference_1b "$B_REF" "$NEED_REF" ph_reference_1b "$skip_ref"

skip_7b=""
[[ $MODE == cpu ]] && skip_7b="cpu mode"
phase ours_7b "$B_7B" "$NEED_7B" ph_ours_7b "$skip_7b"
exit 0
