"""GPU benchmark: janus-rs (CUDA wheel) vs the transformers port, same weights, same GPU, one table.

On a machine with an NVIDIA GPU, torch + transformers, and the janus-rs CUDA wheel installed
(scripts/build_cuda_wheel.sh; no Rust toolchain needed there):

    python bench/gpu.py --data /tmp/janus-bench --models Janus-Pro-1B Janus-Pro-7B
    python bench/gpu.py --model-dir /tmp/janus-bench/Janus-Pro-1B --sides ours --sizes 1 16 \\
        --repeats 3 --json-out bench.json --deadline 120      # what scripts/gpu_check.sh runs

Random checkpoints in the official layout are written to --data first if missing
(scripts/make_random_checkpoint.py: 4.2 GB for 1B, 15 GB for 7B). For every model, janus-rs and
the reference each run in their own process, in bfloat16, and report: seconds per image end to end
(prompt -> uint8 pixels, CFG weight 5, sampling at temperature 1) at each --sizes value (a warm-up
call at each size, then --repeats timed calls, median), ms per decode step (time / 576), understanding
decode tokens/s (greedy, batch 1, one 384 px image, --new-tokens new tokens) and peak GPU memory (NVML
at 2 Hz, whole device, CUDA context included). The reference warms up with an 8-step generation and
the VQ decode at each size instead of a full image.

Every measurement is appended to --json-out as one JSON line as soon as it is taken ({"label",
"side", "model", "event", ...}; events start, load, generate, warmup, understand, memory, step0_dump,
step0_compare, skipped, error, exit, summary), so a timeout keeps what finished; bench/gpu_summary.py
aggregates them. --deadline bounds the whole invocation (children get subprocess timeouts and stop
starting calls that would not fit); --env KEY=VALUE sets variables for the children (e.g.
JANUS_RS_CUDA_STREAM=per-thread, JANUS_RS_PROFILE=1). --dump-step0 FILE (ours) and --compare-step0
FILE (reference) compare the step-0 image-token logits of both sides on the same prompt ids.
``--device cpu --models tiny`` smoke-tests the script on the bundled tiny checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from gpu_summary import bench_summaries, model_table  # noqa: E402

PROMPT = "a photo of a tangerine on a wooden table, soft morning light"
QUESTION = "Describe this image in detail."
CFG = 5.0
TINY = ROOT / "tests" / "fixtures" / "tiny-janus-pro"


class Memory:
    """Peak device memory used (GiB) while the block runs: NVML (else nvidia-smi) polled at 2 Hz,
    minus the value at entry; on CPU the process's peak RSS."""

    def __init__(self, device: str, interval: float = 0.5):
        self.device, self.interval = device, interval
        self.peak = self.baseline = 0.0
        self._stop = threading.Event()
        self._read = self._rss
        if device != "cpu":
            index = int(device.split(":")[1]) if ":" in device else 0
            try:
                import pynvml

                pynvml.nvmlInit()
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                self._read = lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**30
            except Exception:  # noqa: BLE001 - no NVML bindings: fall back to nvidia-smi
                def smi() -> float:
                    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                          "-i", str(index)], capture_output=True, text=True, timeout=10)
                    return float(out.stdout.strip() or 0) / 1024
                self._read = smi

    @staticmethod
    def _rss() -> float:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    def sample(self) -> None:
        try:
            self.peak = max(self.peak, self._read())
        except Exception:  # noqa: BLE001 - a failed poll must not stop the benchmark
            pass

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "Memory":
        if self.device != "cpu":
            self.sample()
            self.baseline = self.peak
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def used(self) -> float:
        return self.peak - self.baseline


class Events:
    """Appends one JSON line per event to the results file (and echoes it to stderr)."""

    def __init__(self, path: Path, **base):
        self.path, self.base, self.t0 = path, base, time.perf_counter()

    def __call__(self, event: str, **data) -> None:
        rec = {**self.base, "event": event, "t": round(time.perf_counter() - self.t0, 3), **data}
        line = json.dumps(rec, default=str)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        print("[bench]", line, file=sys.stderr, flush=True)


class Clock:
    """The child's deadline: stop starting calls that would not finish before it."""

    def __init__(self, stop_at: float | None, emit: Events):
        self.stop_at, self.emit = stop_at, emit

    def left(self) -> float:
        return float("inf") if self.stop_at is None else self.stop_at - time.time()

    def allows(self, what: str, estimate: float) -> bool:
        left = self.left()
        if left < 1.1 * estimate + 2:
            self.emit("skipped", what=what, reason=f"deadline: {left:.0f} s left, needs ~{estimate:.0f} s")
            return False
        return True


def test_image():
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, (384, 384, 3), dtype=np.uint8)


def rel_err(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# ------------------------------------------------------------------------------------ janus-rs
def dump_step0_ours(m, path: Path) -> dict:
    """Step-0 image-token logits of the conditional and unconditional rows (and CFG) to an .npz."""
    import numpy as np

    ids = np.asarray(m.generation_prompt_ids(PROMPT), dtype=np.int64)
    pad = m.token_id("<｜▁pad▁｜>")
    uncond = ids.copy()
    uncond[1:-1] = pad                       # official: all but BOS and <begin_of_image>
    rows = np.stack([ids, uncond])
    emb = np.stack([m.inputs_embeds(r) for r in rows])
    hidden, _ = m.forward(emb)
    last = np.ascontiguousarray(hidden[:, -1])
    logits = np.asarray(m.image_token_logits(last), dtype=np.float32)
    cfg = logits[1] + CFG * (logits[0] - logits[1])
    np.savez(path, ids=rows, hidden_last=last, logits=logits, cfg=cfg)
    return {"path": str(path), "tokens": int(rows.shape[1]), "argmax_cfg": int(cfg.argmax())}


def run_ours(args, emit: Events, clock: Clock) -> None:
    import janus_rs

    with Memory(args.device) as mem:
        emit("start", name=f"janus-rs {janus_rs.__version__}", env=dict(args.env))
        t = time.perf_counter()
        m = janus_rs.JanusPro.from_pretrained(args.model_dir, device=args.device, progress=False)
        emit("load", seconds=time.perf_counter() - t, dtype=m.dtype, device_name=m.device)
        steps = m.image_token_grid ** 2
        if args.dump_step0:
            try:
                t = time.perf_counter()
                info = dump_step0_ours(m, args.dump_step0)
                emit("step0_dump", seconds=time.perf_counter() - t, **info)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                emit("error", what="step0_dump", error=f"{type(e).__name__}: {e}")

        def generate(n: int, seed: int) -> float:
            t = time.perf_counter()
            out = m.generate(PROMPT, num_images=n, cfg_weight=CFG, seed=seed, progress=False)
            elapsed = time.perf_counter() - t
            assert out.array.shape[0] == n, out.array.shape
            return elapsed

        last, one_image = 0.0, 0.0
        for n in args.sizes:
            if not clock.allows(f"{n} image(s) warm-up", last):
                break
            last = generate(n, 0)                          # first call at this size (PTX JIT, cuBLAS plans)
            emit("generate", n=n, warmup=True, seconds=last, steps=steps)
            for r in range(args.repeats):
                if not clock.allows(f"{n} image(s) run {r + 1}", last):
                    break
                last = generate(n, 1 + r)
                emit("generate", n=n, warmup=False, seconds=last, steps=steps, run=r + 1)
            one_image = one_image or last / n
            mem.sample()
            emit("memory", peak_gib=mem.used, after=f"{n} image(s)")
        # about one image's time (SigLIP, a ~600-token prefill, a few hundred decode steps)
        if args.new_tokens > 0 and clock.allows("understanding", max(0.5, one_image)):
            m.understand(test_image(), QUESTION, max_new_tokens=8)  # warm-up
            stamps: list[float] = []
            t = time.perf_counter()
            m.understand(test_image(), QUESTION, max_new_tokens=args.new_tokens,
                         on_token=lambda _tok: stamps.append(time.perf_counter()))
            total = time.perf_counter() - t
            tok_s = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None
            emit("understand", tokens=len(stamps), tok_s=tok_s, seconds=total,
                 first_token_s=(stamps[0] - t) if stamps else None)
    emit("memory", peak_gib=mem.used, after="all")


# ------------------------------------------------------------------------------------ reference

def allow_old_static_cache_call(model) -> None:
    """transformers 5.17's Janus `generate(generation_mode="image")` calls
    `_prepare_static_cache` without `prefill_chunk_size`, which that release's GenerationMixin
    requires (TypeError on every image generation; 5.24 passes it). Default it to None."""
    import inspect
    import types

    orig = type(model)._prepare_static_cache
    if "prefill_chunk_size" not in inspect.signature(orig).parameters:
        return

    def patched(self, *args, **kwargs):
        if len(args) < 4:
            kwargs.setdefault("prefill_chunk_size", None)
        return orig(self, *args, **kwargs)

    model._prepare_static_cache = types.MethodType(patched, model)

def run_reference(args, emit: Events, clock: Clock) -> None:
    import numpy as np
    import torch
    import transformers
    from tokenizers import Tokenizer

    from hf_reference import build_reference_model, token_id

    device = args.device

    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    dtype = torch.bfloat16 if device != "cpu" else torch.float32
    model_dir = args.model_dir
    with Memory(device) as mem:
        emit("start", name=f"transformers {transformers.__version__} / torch {torch.__version__} ({dtype})",
             env=dict(args.env))
        t = time.perf_counter()
        model = build_reference_model(model_dir, dtype, device)
        sync()
        emit("load", seconds=time.perf_counter() - t)

        if args.compare_step0 and Path(args.compare_step0).is_file():
            try:
                emit("step0_compare", **compare_step0(model, Path(args.compare_step0), device))
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                emit("error", what="step0_compare", error=f"{type(e).__name__}: {e}")

        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        ids = {name: token_id(model_dir, name) for name in ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                                                             "<｜▁pad▁｜>", "<begin_of_image>", "<end_of_image>",
                                                             "<image_placeholder>")}
        bos, eos, pad = ids["<｜begin▁of▁sentence｜>"], ids["<｜end▁of▁sentence｜>"], ids["<｜▁pad▁｜>"]
        boi, eoi, img = ids["<begin_of_image>"], ids["<end_of_image>"], ids["<image_placeholder>"]

        def encode(text: str) -> list[int]:
            return [bos] + tok.encode(text, add_special_tokens=False).ids

        gen_ids = torch.tensor([encode(f"<|User|>: {PROMPT}\n\n<|Assistant|>:") + [boi]], device=device)
        gc = model.generation_config
        gc.pad_token_id, gc.bos_token_id, gc.eos_token_id = pad, bos, eos
        gc.generation_kwargs = {"boi_token_id": boi}
        vcfg = model.model.vision_model.config
        n_tokens = vcfg.num_image_tokens
        allow_old_static_cache_call(model)

        @torch.no_grad()
        def generate(n: int, seed: int, steps: int | None = None):
            torch.manual_seed(seed)
            old = vcfg.num_image_tokens
            vcfg.num_image_tokens = steps or old       # generate() loops over this many tokens
            try:
                tokens = model.generate(input_ids=gen_ids, attention_mask=torch.ones_like(gen_ids),
                                        generation_mode="image", do_sample=True, guidance_scale=CFG,
                                        num_return_sequences=n)
            finally:
                vcfg.num_image_tokens = old
            if steps is not None:
                tokens = torch.randint(0, model.config.vq_config.num_embeddings, (n, old), device=device)
            pixels = model.decode_image_tokens(tokens)  # (n, H, W, 3) in about [-1, 1]
            u8 = ((pixels.float().clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).cpu().numpy()
            sync()
            return u8

        last, one_image = 0.0, 0.0
        for n in args.sizes:
            if not clock.allows(f"{n} image(s) warm-up", 1):
                break
            t = time.perf_counter()
            generate(n, 0, steps=8)                 # short warm-up at this size: 8 steps + the VQ decode
            emit("warmup", n=n, seconds=time.perf_counter() - t, steps=8)
            for r in range(max(1, args.repeats)):
                if not clock.allows(f"{n} image(s) run {r + 1}", last):
                    break
                t = time.perf_counter()
                u8 = generate(n, 1 + r)
                last = time.perf_counter() - t
                assert u8.shape[0] == n
                emit("generate", n=n, warmup=False, seconds=last, steps=n_tokens, run=r + 1)
                one_image = one_image or last / n
            mem.sample()
            emit("memory", peak_gib=mem.used, after=f"{n} image(s)")

        if args.new_tokens > 0 and clock.allows("understanding", max(1.0, 0.5 * one_image)):
            image_size = model.config.vision_config.image_size
            system = ("You are a helpful language and vision assistant. You are able to understand the visual "
                      "content that the user provides, and assist the user with a variety of tasks using natural "
                      "language.")
            before, after = f"{system}\n\n<|User|>: ", f"\n{QUESTION}\n\n<|Assistant|>:"
            und_ids = (encode(before) + [boi] + [img] * n_tokens + [eoi]
                       + tok.encode(after, add_special_tokens=False).ids)
            und = torch.tensor([und_ids], device=device)
            px = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, image_size, image_size)))
            px = px.to(device=device, dtype=dtype)

            @torch.no_grad()
            def answer(k: int) -> float:
                t = time.perf_counter()
                model.generate(input_ids=und, attention_mask=torch.ones_like(und), pixel_values=px,
                               max_new_tokens=k, min_new_tokens=k, do_sample=False, generation_mode="text")
                sync()
                return time.perf_counter() - t

            answer(8)  # warm-up
            t1, tk = answer(1), answer(args.new_tokens)
            emit("understand", tokens=args.new_tokens, tok_s=(args.new_tokens - 1) / (tk - t1), seconds=tk)
    emit("memory", peak_gib=mem.used, after="all")


def compare_step0(model, path: Path, device: str) -> dict:
    """The reference's step-0 logits on the ids janus-rs dumped, and the differences."""
    import numpy as np
    import torch

    d = np.load(path)
    ids = torch.tensor(d["ids"], device=device)
    t = time.perf_counter()
    with torch.no_grad():
        emb = model.get_input_embeddings()(ids)
        out = model.model.language_model(inputs_embeds=emb, attention_mask=torch.ones_like(ids), use_cache=False)
        last = out.last_hidden_state[:, -1]
        logits = model.model.generation_head(last).float().cpu().numpy()
        last = last.float().cpu().numpy()
    cfg = logits[1] + CFG * (logits[0] - logits[1])
    top5 = lambda x: set(np.argsort(-x)[:5].tolist())  # noqa: E731
    return {
        "seconds": time.perf_counter() - t,
        "hidden_rel_err": rel_err(d["hidden_last"], last),
        "logits_rel_err": rel_err(d["logits"], logits),
        "cfg_rel_err": rel_err(d["cfg"], cfg),
        "cfg_max_abs_err": float(np.abs(d["cfg"].astype(np.float64) - cfg).max()),
        "cfg_argmax_equal": bool(int(d["cfg"].argmax()) == int(cfg.argmax())),
        "cfg_top5_overlap": len(top5(d["cfg"]) & top5(cfg)),
    }


# ------------------------------------------------------------------------------------ driver
def prepare(model: str, data: Path) -> Path:
    if model == "tiny":  # smoke test: the bundled tiny checkpoint, with safetensors weights if possible
        out = Path(tempfile.mkdtemp(prefix="janus-tiny-"))
        for f in TINY.iterdir():
            if f.suffix == ".json":
                shutil.copy(f, out / f.name)
        derived = ROOT / "tests/fixtures/weight-variants/model.safetensors"
        if not derived.is_file() and (ROOT / "tests/fixture_variants.py").is_file():
            subprocess.run([sys.executable, str(ROOT / "tests/fixture_variants.py")], check=False)  # numpy only
        for cand in (TINY / "model.safetensors", derived):
            if cand.is_file():
                shutil.copy(cand, out / "model.safetensors")
                return out
        try:  # the reference reads model.safetensors: convert the .bin (needs torch)
            import torch
            from safetensors.torch import save_file

            sd = torch.load(TINY / "pytorch_model.bin", map_location="cpu", weights_only=True)
            save_file({k: v.contiguous() for k, v in sd.items()}, str(out / "model.safetensors"))
        except ImportError:
            shutil.copy(TINY / "pytorch_model.bin", out / "pytorch_model.bin")
        return out
    out = data / model
    if not (out / "model.safetensors").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts/make_random_checkpoint.py"), "--model", model,
                        "--out", str(out)], check=True)
    return out


def parse_env(items: list[str]) -> list[tuple[str, str]]:
    env = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env wants KEY=VALUE, got {item!r}")
        env.append((key, value))
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["Janus-Pro-1B", "Janus-Pro-7B"])
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "janus-bench")
    ap.add_argument("--model-dir", type=Path, help="benchmark this checkpoint folder instead of --models")
    ap.add_argument("--model-name", help="its name in the results (default: the folder name)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 16], help="num_images values")
    ap.add_argument("--sides", nargs="+", default=["ours", "reference"], choices=["ours", "reference"])
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per size after the warm-up (median)")
    ap.add_argument("--new-tokens", type=int, default=256, help="understanding tokens (0: skip understanding)")
    ap.add_argument("--json-out", type=Path, help="append one JSON line per measurement here")
    ap.add_argument("--label", default="{side}:{model}", help="run label in the results ({side}, {model})")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set for the child processes")
    ap.add_argument("--deadline", type=float, help="seconds for this whole invocation")
    ap.add_argument("--dump-step0", type=Path, help="ours: write step-0 logits (.npz) here")
    ap.add_argument("--compare-step0", type=Path, help="reference: compare with this ours .npz")
    ap.add_argument("--side", choices=["ours", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--stop-at", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.env = parse_env(args.env)

    if args.side:  # child process: one side, one model
        emit = Events(args.json_out, label=args.label, side=args.side, model=args.model_name,
                      device=args.device)
        clock = Clock(args.stop_at, emit)
        run = run_ours if args.side == "ours" else run_reference
        try:
            run(args, emit, clock)
        except Exception as e:  # noqa: BLE001 - recorded, then a non-zero exit
            traceback.print_exc()
            emit("error", what=args.side, error=f"{type(e).__name__}: {e}"[:500])
            sys.exit(1)
        emit("done")
        return

    start = time.time()
    deadline_at = start + args.deadline if args.deadline else None
    json_out = args.json_out or Path(tempfile.mkdtemp(prefix="janus-bench-")) / "bench.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **dict(args.env)}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    jobs = [(args.model_name or args.model_dir.name, args.model_dir)] if args.model_dir else \
        [(m, None) for m in args.models]
    labels_by_model: dict[str, list[str]] = {}
    worst = 0                                   # exit status: 1 a side failed, 2 a side was cut by the deadline
    for model, model_dir in jobs:
        if model_dir is None:
            model_dir = prepare(model, args.data)
        for side in args.sides:
            label = args.label.format(side=side, model=model)
            labels_by_model.setdefault(model, []).append(label)
            emit = Events(json_out, label=label, side=side, model=model, device=args.device)
            timeout = None if deadline_at is None else deadline_at - time.time()
            if timeout is not None and timeout < 5:
                emit("skipped", what=side, reason=f"deadline: {timeout:.0f} s left")
                worst = worst or 2
                continue
            cmd = [sys.executable, __file__, "--side", side, "--model-dir", str(model_dir), "--model-name", model,
                   "--device", args.device, "--sizes", *map(str, args.sizes), "--repeats", str(args.repeats),
                   "--new-tokens", str(args.new_tokens), "--json-out", str(json_out), "--label", label]
            cmd += [a for k, v in args.env for a in ("--env", f"{k}={v}")]
            if deadline_at is not None:
                cmd += ["--stop-at", str(deadline_at - 3)]
            if side == "ours" and args.dump_step0:
                cmd += ["--dump-step0", str(args.dump_step0)]
            if side == "reference" and args.compare_step0:
                cmd += ["--compare-step0", str(args.compare_step0)]
            print("$", " ".join(cmd), file=sys.stderr, flush=True)
            t = time.perf_counter()
            try:
                rc, timed_out = subprocess.run(cmd, cwd=HERE, env=env, timeout=timeout).returncode, False
            except subprocess.TimeoutExpired:
                rc, timed_out = None, True
            emit("exit", returncode=rc, timed_out=timed_out, seconds=time.perf_counter() - t)
            summary = bench_summaries(json_out, [label]).get(label, {})
            if rc not in (0, None):
                worst = 1
            elif timed_out or summary.get("skipped"):
                worst = worst or 2
            emit("summary", **{k: v for k, v in summary.items() if k not in ("label", "side", "model", "device")})

    gpu = "no GPU"
    if shutil.which("nvidia-smi"):
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip()
    print(f"\n{time.strftime('%Y-%m-%d')}, {gpu}, device {args.device}, results in {json_out}")
    summaries = bench_summaries(json_out)
    for model, labels in labels_by_model.items():
        runs = {k: summaries[k] for k in labels if k in summaries}
        print(f"\n### {model}\n")
        print("\n".join(model_table(model, runs, 4.3)))
    sys.exit(worst)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
