"""Results of the GPU check (scripts/gpu_check.sh): phase records, benchmark aggregates, summary.

Standard library only (it also runs where torch and janus-rs are missing).

    python bench/gpu_summary.py render OUTDIR          # OUTDIR/summary.md from results.jsonl (+ stdout)
    python bench/gpu_summary.py record RESULTS --phase NAME --status ok --seconds 12.3 [--kv FILE]
                                      [--bench FILE --labels L ...] [--reason TEXT]
    python bench/gpu_summary.py bench FILE             # aggregate bench/gpu.py's JSON lines, print them

Files in OUTDIR (all optional; whatever finished is shown):
  results.jsonl  one line per phase: {"phase", "ok", "status", "seconds", ...data}
  bench.json     bench/gpu.py's event lines (load, generate, understand, ...) per run label
  anchors.json   bench/gpu_anchor.py's calibrations (copy TB/s, GEMM TFLOP/s, GEMV GB/s, torch step)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

PHASES = ["env", "install", "pytest", "ours_1b", "decode_modes", "quantize", "anchors", "reference_1b", "ours_7b",
          "summary"]

# Bytes one decode step must read (design note §1.7): the weights it touches once per step
# (LLM + gen head + gen embed/aligner, bf16) plus the KV cache read at the average length.
WEIGHT_BYTES = {"Janus-Pro-1B": 2.55e9, "Janus-Pro-7B": 12.34e9}
LAYERS_HIDDEN = {"Janus-Pro-1B": (24, 2048), "Janus-Pro-7B": (30, 4096)}
STEPS = 576
PROMPT_TOKENS = 30          # the benchmark prompt is about this long in the real tokenizer
ASSUMED_COPY_TBPS = 4.3     # H200, measured before (design note §3), if no anchor ran


def step_bytes(model: str, n_images: int) -> float | None:
    """Estimated bytes read per decode step for `n_images` images (2 CFG rows each)."""
    if model not in WEIGHT_BYTES:
        return None
    layers, hidden = LAYERS_HIDDEN[model]
    avg_len = PROMPT_TOKENS + STEPS / 2
    kv = 2 * n_images * layers * 2 * hidden * 2 * avg_len   # rows x layers x (K,V) x hidden x bf16 x len
    return WEIGHT_BYTES[model] + kv


def floor_seconds(model: str, n_images: int, copy_tbps: float) -> float | None:
    b = step_bytes(model, n_images)
    return None if b is None else STEPS * b / (copy_tbps * 1e12)


# ------------------------------------------------------------------------------ bench aggregates
def read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rows
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue                      # a line cut by a kill: ignore it
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


def summarize(events: list[dict]) -> dict:
    """Aggregate the events of one run label: medians per num_images, tokens/s, load, memory."""
    out: dict = {"sizes": {}, "errors": [], "skipped": []}
    gens: dict[int, dict] = {}
    for e in events:
        kind = e.get("event")
        for key in ("label", "side", "model", "device"):
            if key in e and key not in out:
                out[key] = e[key]
        if kind == "start":
            out["name"] = e.get("name")
            out["env"] = e.get("env", {})
        elif kind == "load":
            out["load_s"] = e.get("seconds")
        elif kind == "generate":
            g = gens.setdefault(int(e["n"]), {"runs": [], "warmup_s": None, "steps": e.get("steps")})
            if e.get("warmup"):
                g["warmup_s"] = e.get("seconds")
            else:
                g["runs"].append(e.get("seconds"))
        elif kind == "understand" and not e.get("warmup"):
            out["tok_s"] = e.get("tok_s")
            out["und_tokens"] = e.get("tokens")
        elif kind == "memory":
            out["peak_gib"] = e.get("peak_gib")
        elif kind in ("step0_dump", "step0_compare"):
            out[kind] = {k: v for k, v in e.items() if k not in ("event", "label", "side", "model", "device", "t")}
        elif kind == "error":
            out["errors"].append(f"{e.get('what')}: {e.get('error')}")
        elif kind == "skipped":
            out["skipped"].append(f"{e.get('what')}: {e.get('reason')}")
        elif kind == "exit":
            out["returncode"] = e.get("returncode")
            out["timed_out"] = e.get("timed_out", False)
    for n, g in sorted(gens.items()):
        runs = [r for r in g["runs"] if isinstance(r, (int, float))]
        row = {"runs": runs, "warmup_s": g["warmup_s"], "steps": g["steps"]}
        if runs:
            med = statistics.median(runs)
            row.update(median_s=med, s_per_image=med / n, spread=(max(runs) - min(runs)) / med if med else None)
            if g["steps"]:
                row["ms_per_step"] = med / g["steps"] * 1e3
        out["sizes"][str(n)] = row
    return out


def bench_summaries(path: Path, labels: list[str] | None = None) -> dict[str, dict]:
    """label -> summarize(events of that label), from a bench.json file."""
    by_label: dict[str, list[dict]] = {}
    for e in read_jsonl(path):
        if e.get("event") == "summary":
            continue
        by_label.setdefault(str(e.get("label", "?")), []).append(e)
    return {k: summarize(v) for k, v in by_label.items() if labels is None or k in labels}


# ------------------------------------------------------------------------------ phase records
def _typed(kind: str, value: str):
    if kind == "n":
        try:
            f = float(value)
            return int(f) if f.is_integer() and "." not in value else f
        except ValueError:
            return value
    if kind == "b":
        return value.lower() in ("1", "true", "yes")
    if kind == "j":
        try:
            return json.loads(Path(value).read_text(encoding="utf-8", errors="replace"))
        except (OSError, json.JSONDecodeError) as e:
            return f"unreadable JSON ({e})"
    if kind == "m":
        return _typed("j", value)
    if kind == "J":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def read_kv(path: Path) -> dict:
    """Lines `kind<TAB>key<TAB>value` (kind s string, n number, b bool, j JSON file, J JSON text,
    m JSON object file merged into the top level); a dotted key nests (`jit.cold` -> {"jit": {"cold": ...}})."""
    data: dict = {}
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return data
    for line in lines:
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        kind, key, value = parts
        if kind == "m":                   # merge a JSON object file into the top level
            obj = _typed("m", value)
            data.update(obj if isinstance(obj, dict) else {key: obj})
            continue
        node = data
        *path_keys, last = key.split(".")
        for k in path_keys:
            node = node.setdefault(k, {}) if isinstance(node.get(k, {}), dict) else node
        node[last] = _typed(kind, value)
    return data


def record(args: argparse.Namespace) -> None:
    line = {"phase": args.phase, "ok": args.status == "ok", "status": args.status,
            "seconds": round(args.seconds, 2)}
    if args.status == "skipped":
        line["skipped"] = True
    if args.reason:
        line["reason"] = args.reason
    if args.kv:
        line.update(read_kv(Path(args.kv)))
    if args.bench:
        line["bench"] = bench_summaries(Path(args.bench), args.labels or None)
    line["at"] = time.strftime("%H:%M:%S")
    with open(args.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, default=str) + "\n")
        f.flush()


# ------------------------------------------------------------------------------ summary.md
def fmt(v, digits: int = 3, suffix: str = "") -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v}{suffix}"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}{suffix}"
        if abs(v) >= 10:
            return f"{v:.1f}{suffix}"
        return f"{v:.{digits}f}{suffix}"
    return str(v)


def ratio(a, b) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and b > 0:
        return f"{a / b:.1f}×"
    return ""


def is_profile(run: dict) -> bool:
    return bool((run.get("env") or {}).get("JANUS_RS_PROFILE"))


def model_table(model: str, runs: dict[str, dict], copy_tbps: float) -> list[str]:
    """One table: a column per run label of this model (ours, ours variants, reference); runs with
    the stage profiler on (it synchronises every stage) are only listed below it."""
    profiled = {k: v for k, v in runs.items() if is_profile(v)}
    runs = {k: v for k, v in runs.items() if k not in profiled}
    labels = sorted(runs, key=lambda k: (runs[k].get("side") == "reference", "-" in k, k))
    ours = next((runs[k] for k in labels if runs[k].get("side") == "ours"), None)
    ref = next((runs[k] for k in labels if runs[k].get("side") == "reference"), None)
    sizes = sorted({int(n) for r in runs.values() for n in r.get("sizes", {})})
    header = ["metric"] + [f"{k}" for k in labels] + (["reference ÷ janus-rs"] if ours and ref else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]

    def row(name: str, get, speed=None) -> None:
        vals = [get(runs[k]) for k in labels]
        if all(v is None for v in vals):
            return
        cells = [fmt(v) for v in vals]
        if ours and ref:
            cells.append(speed(get(ref), get(ours)) if speed else "")
        lines.append("| " + " | ".join([name] + cells) + " |")

    def size(r, n, key):
        return r.get("sizes", {}).get(str(n), {}).get(key)

    for n in sizes:
        k = f"{n} image{'s' if n > 1 else ''}"
        row(f"{k}: s total (median)", lambda r, n=n: size(r, n, "median_s"), ratio)
        row(f"{k}: s/image", lambda r, n=n: size(r, n, "s_per_image"), ratio)
        row(f"{k}: ms/step", lambda r, n=n: size(r, n, "ms_per_step"), ratio)
        fl = floor_seconds(model, n, copy_tbps)
        if fl:
            row(f"{k}: % of bandwidth floor ({fl:.2f} s)",
                lambda r, n=n, fl=fl: (100 * fl / size(r, n, "median_s")) if size(r, n, "median_s") else None)
        row(f"{k}: timed runs", lambda r, n=n: len(size(r, n, "runs") or []) or None)
        row(f"{k}: spread (max−min)/median", lambda r, n=n: size(r, n, "spread"))
        row(f"{k}: first call (warm-up) s", lambda r, n=n: size(r, n, "warmup_s"))
    row("understanding decode tok/s", lambda r: r.get("tok_s"), lambda a, b: ratio(b, a))
    row("understanding tokens decoded", lambda r: r.get("und_tokens"))
    row("load s", lambda r: r.get("load_s"))
    row("peak memory GiB", lambda r: r.get("peak_gib"))
    out = lines + [""]
    for k in labels:
        r = runs[k]
        extra = []
        if r.get("env"):
            extra.append("env " + " ".join(f"{a}={b}" for a, b in r["env"].items()))
        if r.get("timed_out"):
            extra.append("TIMED OUT")
        if r.get("returncode") not in (None, 0):
            extra.append(f"exit {r.get('returncode')}")
        extra += [f"error {e}" for e in r.get("errors", [])[:3]]
        extra += [f"skipped {s}" for s in r.get("skipped", [])[:3]]
        out.append(f"- `{k}`: {r.get('name') or r.get('side')}" + (f" ({'; '.join(extra)})" if extra else ""))
    for k, r in profiled.items():
        t = r.get("sizes", {}).get("1", {}).get("median_s")
        out.append(f"- `{k}`: JANUS_RS_PROFILE=1 run (stage tables in profile.txt; synchronises at every stage), "
                   f"1 image {fmt(t)} s" + (f"; error {r['errors'][0]}" if r.get("errors") else ""))
    cmp = next((r["step0_compare"] for r in runs.values() if r.get("step0_compare")), None)
    if cmp:
        out.append("- step-0 image-token logits, janus-rs vs reference (same prompt ids, each in its model dtype): "
                   + ", ".join(f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in cmp.items() if k not in ("path", "seconds")))
    return out + [""]


def render(outdir: Path) -> str:
    phases = {}
    for line in read_jsonl(outdir / "results.jsonl"):
        phases[line.get("phase")] = line          # the last record of a phase wins
    env = phases.get("env", {})
    anchors = {}
    if (outdir / "anchors.json").is_file():
        try:
            anchors = json.loads((outdir / "anchors.json").read_text())
        except json.JSONDecodeError:
            anchors = phases.get("anchors", {}).get("anchors", {}) or {}
    copy = anchors.get("copy_TBps")
    copy_tbps = copy if isinstance(copy, (int, float)) and copy > 0.5 else ASSUMED_COPY_TBPS
    bench = bench_summaries(outdir / "bench.json")

    md = [f"# GPU check — {time.strftime('%Y-%m-%d %H:%M')}", ""]
    gpu = env.get("gpu") or {}
    md.append(f"- machine: {gpu.get('name', 'no GPU')}, driver {gpu.get('driver', '–')}, "
              f"{env.get('nproc', '?')} CPUs; mode `{env.get('mode', '?')}`; deadline {env.get('deadline', '?')} s")
    sw = env.get("versions") or {}
    if sw:
        md.append("- software: " + ", ".join(f"{k} {v}" for k, v in sw.items()))
    man = env.get("manifest") or {}
    if man:
        md.append("- build: " + ", ".join(f"{k} {man[k]}" for k in ("commit", "dirty", "CUDA_COMPUTE_CAP", "wheel",
                                                                   "nvcc") if k in man))
    if env.get("mempools_supported") is not None:
        md.append(f"- memory pools supported: {env.get('mempools_supported')} (no → every free synchronises)")
    md += ["", "## Phases", "", "| phase | status | seconds | note |", "|---|---|---:|---|"]
    for name in PHASES:
        p = phases.get(name)
        if p is None:
            md.append(f"| {name} | {'(this step)' if name == 'summary' else 'not reached'} | – | |")
            continue
        note = p.get("reason", "")
        if name == "pytest":
            note = ", ".join(f"{k} {p[k]}" for k in ("passed", "failed", "errors", "skipped", "deselected")
                             if p.get(k) is not None) or note
        md.append(f"| {name} | {p.get('status')} | {fmt(p.get('seconds'), 1)} | {note} |")
    md.append("")

    models: dict[str, dict[str, dict]] = {}
    for label, s in bench.items():
        models.setdefault(str(s.get("model", "?")), {})[label] = s
    for model, runs in models.items():
        md += [f"## {model}", ""]
        if model in WEIGHT_BYTES:
            src = "measured here" if copy_tbps == copy else "assumed: no anchor ran"
            md += [f"Floor: {STEPS} steps × bytes/step (weights {WEIGHT_BYTES[model] / 1e9:.2f} GB + average KV) ÷ "
                   f"copy bandwidth {copy_tbps:.2f} TB/s ({src}).", ""]
        md += model_table(model, runs, copy_tbps)

    modes = phases.get("decode_modes", {}).get("decode_modes") or []
    if isinstance(modes, list) and modes:
        md += ["## Decode modes (JANUS_RS_DECODE), generate_tokens, one process", "",
               "| images | mode | median s | s/image | ms/step | launches/step | cuBLAS/step | allocs/step | H2D/step | events/step |",
               "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in modes:
            if r.get("event") == "timing":
                c = r.get("calls_per_step") or {}
                g = lambda *ks: sum(c.get(k, 0) for k in ks) if c else None  # noqa: E731
                md.append(f"| {r['images']} | {r['mode']} | {fmt(r.get('median_s'))} | {fmt(r.get('s_per_image'))} | "
                          f"{fmt(r.get('ms_per_step'))} | {fmt(g('cuLaunchKernel', 'cuLaunchKernelEx', 'cuGraphLaunch'))} | "
                          f"{fmt(g('cublasGemmStridedBatchedEx', 'cublasGemmEx', 'cublasLtMatmul'))} | "
                          f"{fmt(g('cuMemAllocAsync', 'cuMemAlloc'))} | {fmt(g('cuMemcpyHtoDAsync', 'cuMemcpyHtoD'))} | "
                          f"{fmt(g('cuEventCreate', 'cuEventRecord', 'cuStreamWaitEvent'))} |")
            elif r.get("event") in ("agreement", "error"):
                md.append(f"| {r.get('images')} | {r.get('mode')} | " + (
                    f"tokens vs {r['vs']}: identical {r['identical']}, equal {r['fraction_equal']}, first difference "
                    f"at step {r['first_difference_step']}" if r["event"] == "agreement" else f"error: {r['error'][:200]}")
                    + " | | | | | | | |")
        md.append("")

    quant = phases.get("quantize", {}).get("quantize") or []
    if isinstance(quant, list) and quant:
        md += ["## quantize= (bench/gpu_quantize.py), one process per format", "",
               "| format | load s | CFG step ms | text step ms | GPU memory GiB (model) | LLM matrices | greedy tokens = unquantized (first 64) | first divergence |",
               "|---|---:|---:|---:|---:|---|---:|---:|"]
        for r in quant:
            if "error" in r or "skipped" in r:
                md.append(f"| {r.get('format')} | {str(r.get('error') or r.get('skipped'))[:200]} | | | | | | |")
                continue
            md.append(f"| {r['format']} | {fmt(r.get('load_s'))} | {fmt(r.get('cfg_step_ms'))} | "
                      f"{fmt(r.get('text_step_ms'))} | {fmt(r.get('gpu_memory_model_gib'))} | {r.get('weight_formats')} | "
                      f"{fmt(r.get('greedy_agree_first64'))} | {fmt(r.get('greedy_first_divergence'))} |")
        md.append("")

    inst = phases.get("install", {})
    jit = inst.get("jit") or {}
    if jit:
        md += ["## First use (PTX JIT) vs warm, tiny model, fresh processes", "",
               "| process | import s | load s | 1st generate s | 2nd generate s | understand s | total s |",
               "|---|---:|---:|---:|---:|---:|---:|"]
        for k in ("cold", "warm"):
            j = jit.get(k) or {}
            if isinstance(j, dict):
                md.append(f"| {k} | " + " | ".join(fmt(j.get(x)) for x in ("import_s", "load_s", "generate_s",
                                                                          "generate2_s", "understand_s",
                                                                          "total_s")) + " |")
        md.append("")

    if anchors:
        md += ["## Same-GPU anchors (torch)", ""]
        for key in ("copy_TBps", "gemm_TFLOPs"):
            if key in anchors:
                md.append(f"- {key}: {fmt(anchors[key])}")
        gemv = {k: v for k, v in anchors.items() if k.startswith("gemv_")}
        if gemv:
            md += ["", "| GEMV (M×K×N) | GB/s | % of copy |", "|---|---:|---:|"]
            for k, v in gemv.items():
                pct = 100 * v / (copy_tbps * 1e3) if isinstance(v, (int, float)) else None
                md.append(f"| {k[5:-5]} | {fmt(v)} | {fmt(pct)} |")
        steps = {k: v for k, v in anchors.items() if k.startswith("torch_")}
        if steps:
            md += ["", "| torch 1B decode-step replica | ms/step | × 575 steps, s |", "|---|---:|---:|"]
            for k, v in steps.items():
                md.append(f"| {k} | {fmt(v)} | {fmt(v * 575 / 1e3 if isinstance(v, (int, float)) else None)} |")
        errs = anchors.get("errors")
        if errs:
            md.append(f"- anchor errors: {errs}")
        md.append("")
    md += ["Files: results.jsonl (phases), bench.json (every timed run), anchors.json, pytest.txt, profile.txt "
           "(JANUS_RS_PROFILE=1 tables; syncs every stage, not throughput), env.txt, log.txt.", ""]
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("outdir", type=Path)
    r.add_argument("--no-write", action="store_true", help="don't write OUTDIR/summary.md")
    r.add_argument("--quiet", action="store_true", help="don't print it")
    rec = sub.add_parser("record")
    rec.add_argument("results", type=Path)
    rec.add_argument("--phase", required=True)
    rec.add_argument("--status", required=True, choices=["ok", "failed", "skipped", "timeout"])
    rec.add_argument("--seconds", type=float, default=0.0)
    rec.add_argument("--reason")
    rec.add_argument("--kv")
    rec.add_argument("--bench")
    rec.add_argument("--labels", nargs="*")
    b = sub.add_parser("bench")
    b.add_argument("file", type=Path)
    args = ap.parse_args()
    if args.cmd == "record":
        record(args)
    elif args.cmd == "bench":
        print(json.dumps(bench_summaries(args.file), indent=1))
    else:
        text = render(args.outdir)
        if not args.no_write:
            (args.outdir / "summary.md").write_text(text, encoding="utf-8")
        if not args.quiet:
            sys.stdout.write(text)


if __name__ == "__main__":
    main()
