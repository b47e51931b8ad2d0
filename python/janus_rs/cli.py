"""Command line: ``janus-rs`` / ``python -m janus_rs``.

Exit status: 0 on success, 1 when janus-rs reports an error (the message names the file,
parameter or device at fault), 2 for bad command-line usage, 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from .errors import JanusError

if TYPE_CHECKING:
    from .janus_pro import JanusPro

EXAMPLES = """\
examples:
  janus-rs understand --model deepseek-ai/Janus-Pro-1B --image cat.png --question "What is this?"
  janus-rs generate --model ./Janus-Pro-1B --prompt "a red cat" --num-images 4 --seed 7 --out cat.png
  janus-rs demo --model tests/fixtures/tiny-janus-pro     (an image and an answer, offline)
  janus-rs info --model deepseek-ai/Janus-Pro-7B --offline
  janus-rs info                              (version and CUDA availability only)

--model takes a local checkpoint folder (official deepseek-ai or transformers layout) or a
Hugging Face hub id, looked up in the HF cache (HF_HOME / HF_HUB_CACHE) and downloaded if
missing, unless --offline or HF_HUB_OFFLINE=1.

exit status: 0 success, 1 error (message on stderr), 2 usage error, 130 interrupted.
"""


def _load(args: argparse.Namespace) -> "JanusPro":
    from .janus_pro import JanusPro

    return JanusPro.from_pretrained(
        args.model,
        revision=args.revision,
        device=args.device,
        dtype=args.dtype,
        local_files_only=args.offline,
    )


def _cmd_understand(args: argparse.Namespace) -> int:
    model = _load(args)
    kwargs: dict[str, Any] = dict(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.sample,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
        system_prompt=args.system_prompt,
    )
    images = args.image or None
    if args.stream:
        for piece in model.understand(images, args.question, stream=True, **kwargs):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        print(model.understand(images, args.question, **kwargs))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    model = _load(args)
    result = model.generate(
        args.prompt,
        num_images=args.num_images,
        cfg_weight=args.cfg_weight,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        progress=not args.quiet,
    )
    stem, ext = os.path.splitext(args.out)
    ext = ext or ".png"
    paths = [stem + ext if len(result) == 1 else f"{stem}_{i}{ext}" for i in range(len(result))]
    for img, path in zip(result.images, paths):
        img.save(path)
        print(path)
    if args.tokens_out:
        import numpy as np

        np.save(args.tokens_out, result.tokens)
        print(args.tokens_out)
    print(f"seed {result.seed}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    model = _load(args)
    print(model, file=sys.stderr)
    result = model.generate(args.prompt, seed=args.seed, progress=not args.quiet)
    result.images[0].save(args.out)
    print(f"image: {args.out} (prompt {args.prompt!r}, seed {result.seed})")
    question = "Describe this image."
    sys.stdout.write(f"{question} ")
    for piece in model.understand(result.images[0], question, max_new_tokens=args.max_new_tokens, stream=True):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from . import __version__, _backend

    info: dict[str, Any] = {"janus_rs_version": __version__}
    if args.model is not None:
        info.update(_load(args).info)
    info["cuda_available"] = _backend.cuda_available()
    reason = _backend.cuda_unavailable_reason()
    if reason:
        info["cuda_unavailable_reason"] = reason
    print(json.dumps(info, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="janus-rs",
        description="Run DeepSeek's Janus models (Janus-Pro-1B/7B, Janus-1.3B) on CPU or CUDA with janus-rs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"janus-rs {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(sp: argparse.ArgumentParser, required: bool = True) -> None:
        g = sp.add_argument_group("model")
        g.add_argument("--model", required=required, metavar="FOLDER_OR_HUB_ID",
                       help="checkpoint folder or hub id, e.g. deepseek-ai/Janus-Pro-1B")
        g.add_argument("--revision", default=None, help="hub branch, tag or commit (default: main)")
        g.add_argument("--offline", action="store_true", help="use only the local HF cache (like HF_HUB_OFFLINE=1)")
        g.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
        g.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                       help="weights dtype (default: float32 on CPU, bfloat16 on CUDA)")

    def subparser(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    u = subparser("understand", "answer a question about one or more images (or none)")
    model_args(u)
    u.add_argument("--image", action="append", metavar="FILE", help="image file; repeat for several images")
    u.add_argument("--question", required=True, help="the question to ask")
    u.add_argument("--max-new-tokens", type=int, default=512, help="most tokens to generate")
    u.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    u.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (with --sample)")
    u.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold (with --sample)")
    u.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (with --sample)")
    u.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    u.add_argument("--system-prompt", default=None, help="replace the default system prompt")
    u.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True,
                   help="print the answer as it is generated")
    u.set_defaults(func=_cmd_understand)

    g = subparser("generate", "generate images from a text prompt")
    model_args(g)
    g.add_argument("--prompt", required=True, help="the image description")
    g.add_argument("--out", default="janus.png", help="output file; with several images _0, _1, ... are added")
    g.add_argument("--num-images", type=int, default=1, help="images to generate")
    g.add_argument("--cfg-weight", type=float, default=5.0, help="classifier-free guidance weight")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = argmax)")
    g.add_argument("--top-k", type=int, default=None, help="keep the k most likely image tokens")
    g.add_argument("--top-p", type=float, default=None, help="nucleus threshold for image tokens")
    g.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one, printed)")
    g.add_argument("--tokens-out", default=None, metavar="FILE.npy", help="also save the VQ image tokens")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_cmd_generate)

    d = subparser("demo", "generate an image from a prompt, save it, then have the model describe it")
    model_args(d)
    d.add_argument("--prompt", default="a red cat sitting on a wooden table", help="the image description")
    d.add_argument("--out", default="janus-demo.png", help="where to save the image")
    d.add_argument("--seed", type=int, default=0, help="random seed for the image")
    d.add_argument("--max-new-tokens", type=int, default=64, help="most tokens in the description")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_demo)

    i = subparser("info", "print janus-rs's version, CUDA availability and, with --model, the model's facts")
    model_args(i, required=False)
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except (JanusError, FileNotFoundError) as e:
        print(f"janus-rs: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\njanus-rs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`janus-rs understand ... | head -c 20`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
