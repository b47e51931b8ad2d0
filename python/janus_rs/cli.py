"""Command line: ``janus-rs`` / ``python -m janus_rs``."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import JanusError


def _load(args: argparse.Namespace):
    from .janus_pro import JanusPro

    return JanusPro.from_pretrained(args.model, device=args.device, dtype=args.dtype)


def _cmd_understand(args: argparse.Namespace) -> int:
    model = _load(args)
    images = args.image or None
    answer = model.understand(
        images,
        args.question,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.temperature > 0 and args.sample,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
    )
    print(answer)
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    import os

    model = _load(args)
    result = model.generate(
        args.prompt,
        num_images=args.num_images,
        cfg_weight=args.cfg_weight,
        temperature=args.temperature,
        seed=args.seed,
        progress=not args.quiet,
    )
    stem, ext = os.path.splitext(args.out)
    ext = ext or ".png"
    paths = [args.out if len(result) == 1 else f"{stem}_{i}{ext}" for i in range(len(result))]
    for img, path in zip(result.images, paths):
        img.save(path)
        print(path)
    print(f"seed {result.seed}", file=sys.stderr)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from . import _backend

    info = dict(_load(args).info)
    info["cuda_available"] = _backend.cuda_available()
    reason = _backend.cuda_unavailable_reason()
    if reason:
        info["cuda_unavailable_reason"] = reason
    print(json.dumps(info, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="janus-rs", description="Run DeepSeek Janus models with janus-rs.")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", required=True, help="checkpoint folder (official deepseek-ai layout)")
        sp.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
        sp.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: auto)")

    u = sub.add_parser("understand", help="answer a question about one or more images")
    model_args(u)
    u.add_argument("--image", action="append", help="image file (repeat for several images)")
    u.add_argument("--question", required=True, help="the question to ask")
    u.add_argument("--max-new-tokens", type=int, default=512, help="most tokens to generate (default 512)")
    u.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    u.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    u.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold")
    u.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    u.set_defaults(func=_cmd_understand)

    g = sub.add_parser("generate", help="generate images from a text prompt")
    model_args(g)
    g.add_argument("--prompt", required=True, help="the image description")
    g.add_argument("--out", default="janus.png", help="output file; with several images, _0, _1, ... are added")
    g.add_argument("--num-images", type=int, default=1, help="images to generate (default 1)")
    g.add_argument("--cfg-weight", type=float, default=5.0, help="classifier-free guidance weight (default 5)")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1; 0 = argmax)")
    g.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one, printed)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_cmd_generate)

    i = sub.add_parser("info", help="print the model's configuration and sizes")
    model_args(i)
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (JanusError, FileNotFoundError) as e:
        print(f"janus-rs: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("janus-rs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
