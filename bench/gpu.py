"""GPU benchmark: janus-rs (CUDA wheel) vs the transformers port, same weights, same GPU, one table.

On a machine with an NVIDIA GPU, torch + transformers, and the janus-rs CUDA wheel installed
(scripts/build_cuda_wheel.sh; no Rust toolchain needed there):

    python bench/gpu.py --data /tmp/janus-bench --models Janus-Pro-1B Janus-Pro-7B

Random checkpoints in the official layout are written to --data first if missing
(scripts/make_random_checkpoint.py: 4.2 GB for 1B, 15 GB for 7B). For every model, janus-rs and
the reference each run in their own process, in bfloat16, and report: seconds per image end to end
(prompt -> uint8 pixels, CFG weight 5, sampling at temperature 1) at num_images 1 and 16, understanding
decode tokens/s (greedy, batch 1, one 384 px image, 256 new tokens) and peak GPU memory (nvidia-smi,
whole process, CUDA context included). ``--device cpu --models tiny`` smoke-tests the script on the
bundled tiny checkpoint.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROMPT = "a photo of a tangerine on a wooden table, soft morning light"
QUESTION = "Describe this image in detail."
NEW_TOKENS = 256
CFG = 5.0


class GpuMemory:
    """Peak device memory used (MiB) while the block runs, polled with nvidia-smi (CPU: RSS)."""

    def __init__(self, device: str):
        self.device = device
        self.peak = 0.0
        self._stop = threading.Event()

    def _read(self) -> float:
        if self.device == "cpu":
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        index = self.device.split(":")[1] if ":" in self.device else "0"
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", index],
                             capture_output=True, text=True)
        return float(out.stdout.strip() or 0)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._read())
            self._stop.wait(0.05)

    def __enter__(self) -> "GpuMemory":
        self.baseline = self._read() if self.device != "cpu" else 0.0
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._read())


def test_image():
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, (384, 384, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------ janus-rs
def run_ours(model_dir: Path, device: str, sizes: list[int]) -> dict:
    import janus_rs

    rows = {}
    with GpuMemory(device) as mem:
        t = time.perf_counter()
        m = janus_rs.JanusPro.from_pretrained(model_dir, device=device)
        rows["load (s)"] = time.perf_counter() - t
        m.generate(PROMPT, num_images=1, cfg_weight=CFG, seed=0, progress=False)  # warm-up (PTX JIT)
        for n in sizes:
            t = time.perf_counter()
            out = m.generate(PROMPT, num_images=n, cfg_weight=CFG, seed=1, progress=False)
            elapsed = time.perf_counter() - t
            assert out.array.shape[0] == n
            rows[f"{n} image(s), s total"] = elapsed
        stamps: list[float] = []
        m.understand(test_image(), QUESTION, max_new_tokens=8)  # warm-up
        m.understand(test_image(), QUESTION, max_new_tokens=NEW_TOKENS, on_token=lambda _t: stamps.append(time.perf_counter()))
        rows["understanding decode, tokens/s"] = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        rows["understanding tokens decoded"] = len(stamps)
    rows["peak memory (GiB)"] = (mem.peak - mem.baseline) / 1024
    return {"name": f"janus-rs {janus_rs.__version__} ({m.dtype}, {m.device})", "rows": rows}


# ------------------------------------------------------------------------------------ reference
def run_reference(model_dir: Path, device: str, sizes: list[int]) -> dict:
    import numpy as np
    import torch
    import transformers
    from tokenizers import Tokenizer

    from hf_reference import build_reference_model, token_id

    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    dtype = torch.bfloat16 if device != "cpu" else torch.float32
    rows = {}
    with GpuMemory(device) as mem:
        t = time.perf_counter()
        model = build_reference_model(model_dir, dtype, device)
        rows["load (s)"] = time.perf_counter() - t
        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        ids = {name: token_id(model_dir, name) for name in ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                                                             "<｜▁pad▁｜>", "<begin_of_image>", "<end_of_image>",
                                                             "<image_placeholder>")}
        bos, eos, pad = ids["<｜begin▁of▁sentence｜>"], ids["<｜end▁of▁sentence｜>"], ids["<｜▁pad▁｜>"]
        boi, eoi, img = ids["<begin_of_image>"], ids["<end_of_image>"], ids["<image_placeholder>"]

        def encode(text: str) -> list[int]:
            out = tok.encode(text, add_special_tokens=False).ids
            return [bos] + out

        gen_ids = torch.tensor([encode(f"<|User|>: {PROMPT}\n\n<|Assistant|>:") + [boi]], device=device)
        gc = model.generation_config
        gc.pad_token_id, gc.bos_token_id, gc.eos_token_id = pad, bos, eos
        gc.generation_kwargs = {"boi_token_id": boi}

        @torch.no_grad()
        def generate(n: int):
            tokens = model.generate(input_ids=gen_ids, attention_mask=torch.ones_like(gen_ids),
                                    generation_mode="image", do_sample=True, guidance_scale=CFG,
                                    num_return_sequences=n)
            pixels = model.decode_image_tokens(tokens)  # (n, H, W, 3) in about [-1, 1]
            u8 = ((pixels.float().clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).cpu().numpy()
            sync()
            return u8

        generate(1)  # warm-up
        for n in sizes:
            t = time.perf_counter()
            u8 = generate(n)
            rows[f"{n} image(s), s total"] = time.perf_counter() - t
            assert u8.shape[0] == n

        n_img = model.config.vision_config.num_image_tokens
        image_size = model.config.vision_config.image_size
        system = ("You are a helpful language and vision assistant. You are able to understand the visual content "
                  "that the user provides, and assist the user with a variety of tasks using natural language.")
        before, after = f"{system}\n\n<|User|>: ", f"\n{QUESTION}\n\n<|Assistant|>:"
        und_ids = encode(before) + [boi] + [img] * n_img + [eoi] + tok.encode(after, add_special_tokens=False).ids
        und = torch.tensor([und_ids], device=device)
        px = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, image_size, image_size)))
        px = px.to(device=device, dtype=dtype)

        @torch.no_grad()
        def answer(k: int) -> float:
            t = time.perf_counter()
            model.generate(input_ids=und, attention_mask=torch.ones_like(und), pixel_values=px, max_new_tokens=k,
                           min_new_tokens=k, do_sample=False, generation_mode="text")
            sync()
            return time.perf_counter() - t

        answer(8)  # warm-up
        t1, tk = answer(1), answer(NEW_TOKENS)
        rows["understanding decode, tokens/s"] = (NEW_TOKENS - 1) / (tk - t1)
        rows["understanding tokens decoded"] = NEW_TOKENS
    rows["peak memory (GiB)"] = (mem.peak - mem.baseline) / 1024
    name = f"transformers {transformers.__version__} / torch {torch.__version__} ({dtype}, {device})"
    return {"name": name, "rows": rows}


# ------------------------------------------------------------------------------------ driver
def prepare(model: str, data: Path) -> Path:
    if model == "tiny":  # smoke test: the bundled tiny checkpoint with safetensors weights
        out = Path(tempfile.mkdtemp(prefix="janus-tiny-"))
        for f in (ROOT / "tests/fixtures/tiny-janus-pro").iterdir():
            if f.suffix == ".json":
                shutil.copy(f, out / f.name)
        shutil.copy(ROOT / "tests/fixtures/weight-variants/model.safetensors", out / "model.safetensors")
        return out
    out = data / model
    if not (out / "model.safetensors").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts/make_random_checkpoint.py"), "--model", model,
                        "--out", str(out)], check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["Janus-Pro-1B", "Janus-Pro-7B"])
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "janus-bench")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 16], help="num_images values")
    ap.add_argument("--sides", nargs="+", default=["ours", "reference"], choices=["ours", "reference"])
    ap.add_argument("--side", choices=["ours", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.side:  # child process: one side, one model, JSON on the last line
        run = run_ours if args.side == "ours" else run_reference
        print(json.dumps(run(args.model_dir, args.device, args.sizes)))
        return

    tables = []
    for model in args.models:
        model_dir = prepare(model, args.data)
        results = {}
        for side in args.sides:
            cmd = [sys.executable, __file__, "--side", side, "--model-dir", str(model_dir), "--device", args.device,
                   "--sizes", *map(str, args.sizes)]
            print("$", " ".join(cmd), file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE)
            if proc.returncode != 0:
                results[side] = {"name": f"{side}: FAILED (exit {proc.returncode})", "rows": {}}
            else:
                results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
        tables.append((model, results))

    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip() if shutil.which("nvidia-smi") else "no GPU"
    print(f"\n{time.strftime('%Y-%m-%d')}, {gpu}, device {args.device}")
    for model, results in tables:
        ours, ref = results.get("ours", {"rows": {}}), results.get("reference", {"rows": {}})
        print(f"\n### {model}\n")
        for side in results.values():
            print(f"- {side['name']}")
        print("\n| metric | janus-rs | reference | speed-up |")
        print("|---|---:|---:|---:|")
        keys = list(dict.fromkeys([*ours["rows"], *ref["rows"]]))
        for key in keys:
            a, b = ours["rows"].get(key), ref["rows"].get(key)
            cell = lambda v: "–" if v is None else (f"{v:.0f}" if "decoded" in key else f"{v:.3f}")
            if a and b and "s total" in key:
                speedup = f"{b / a:.1f}×"
            elif a and b and "tokens/s" in key:
                speedup = f"{a / b:.1f}×"
            else:
                speedup = ""
            print(f"| {key} | {cell(a)} | {cell(b)} | {speedup} |")
        for n in args.sizes:
            a = ours["rows"].get(f"{n} image(s), s total")
            if a:
                print(f"\njanus-rs: {a / n:.3f} s per image at num_images={n}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
