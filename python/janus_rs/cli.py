"""Command line: ``janus-rs`` / ``python -m janus_rs``.

Exit status: 0 on success, 1 when janus-rs reports an error (the message names the file,
parameter or device at fault), 2 for bad command-line usage, 130 when interrupted (Ctrl-C).
Every error is one line on stderr, ``janus-rs: error: ...``, never a traceback (set
``JANUS_RS_DEBUG=1`` to get the traceback of an unexpected one). Outputs (``--out``,
``--tokens-out``) and inputs (``--image``) are checked before the model is loaded, so a bad
path fails at once instead of after minutes of generation.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any, Union

from ._auto import is_janusflow, load_model
from .errors import JanusError

if TYPE_CHECKING:
    from .janus_flow import JanusFlow
    from .janus_pro import JanusPro

    Model = Union[JanusPro, JanusFlow]

EXAMPLES = """\
examples:
  janus-rs understand --model deepseek-ai/Janus-Pro-1B --image cat.png --question "What is this?"
  janus-rs generate --model ./Janus-Pro-1B --prompt "a red cat" --num-images 4 --seed 7 --out cat.png
  janus-rs generate --model deepseek-ai/JanusFlow-1.3B --vae stabilityai/sdxl-vae --prompt "a red cat"
  janus-rs understand --model deepseek-ai/Janus-1.3B --roles User Assistant --image cat.png --question "?"
  janus-rs quantize --model deepseek-ai/Janus-Pro-7B --to q4_k        # once; later --quantize q4_k loads fast
  janus-rs demo --model tests/fixtures/tiny-janus-pro     (an image and an answer, offline)
  janus-rs info --model deepseek-ai/Janus-Pro-7B --offline
  janus-rs info                              (version and CUDA availability only)
  janus-rs batch generate --model deepseek-ai/Janus-Pro-1B --prompts geneval/evaluation_metadata.jsonl \\
      --out geneval-out --num-images 4 --shard 0/8        (one of 8 processes; resumable)
  janus-rs serve --model deepseek-ai/Janus-Pro-1B --port 8000   (OpenAI-compatible server; needs
                                                   pip install "janus-rs[server]")

--model takes a local checkpoint folder (official deepseek-ai or transformers layout) or a
Hugging Face hub id, looked up in the HF cache (HF_HOME / HF_HUB_CACHE) and downloaded if
missing, unless --offline or HF_HUB_OFFLINE=1. Janus-Pro, Janus-1.3B and JanusFlow checkpoints
are told apart by their config.json; JanusFlow needs --vae to generate images.

--out and --tokens-out are checked before the model is loaded: the folder must exist and the
image extension must be one Pillow writes (.png, .jpg, .jpeg, .webp, .bmp, .tiff, ...); an
existing folder as --out writes janus.png (janus_0.png, janus_1.png, ...) into it.

exit status: 0 success, 1 error (one line on stderr), 2 usage error, 130 interrupted.
"""

# Python parameter names as they appear in janus-rs's messages -> the CLI's flags.
_FLAG_ALWAYS = {
    "num_images": "--num-images",
    "cfg_weight": "--cfg-weight",
    "max_new_tokens": "--max-new-tokens",
    "top_p": "--top-p",
    "top_k": "--top-k",
    "num_steps": "--num-steps",
    "system_prompt": "--system-prompt",
    "local_files_only": "--offline",
}
# Plain words that are only parameter names when the message says something about them.
_FLAG_WHEN_SUBJECT = {
    "temperature": "--temperature",
    "seed": "--seed",
    "dtype": "--dtype",
    "quantize": "--quantize",
    "threads": "--threads",
    "device": "--device",
    "revision": "--revision",
    "roles": "--roles",
    "vae": "--vae",
}
_ALWAYS_RE = re.compile(r"(?<![\w./-])(" + "|".join(_FLAG_ALWAYS) + r")\b")
_SUBJECT_RE = re.compile(r"(?<![\w./-])(" + "|".join(_FLAG_WHEN_SUBJECT) + r")(?=( must\b| =|=| is not\b| was\b))")


def flag_names(message: str) -> str:
    """Rewrite Python parameter names in a janus-rs message as the CLI's flags."""
    message = _ALWAYS_RE.sub(lambda m: _FLAG_ALWAYS[m.group(1)], message)
    return _SUBJECT_RE.sub(lambda m: _FLAG_WHEN_SUBJECT[m.group(1)], message)


class CliError(Exception):
    """A user error the CLI found itself: one line on stderr and ``status`` (1, or 2 for usage)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------- argument types
def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**64-1, got {text!r}") from None
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**64-1, got {value}")
    return value


_seed.__name__ = "seed"


# ---------------------------------------------------------------------- paths, checked before work
def _image_format(ext: str) -> str | None:
    """The Pillow format that writes RGB images for a file extension, or None."""
    from PIL import Image

    Image.init()
    fmt = Image.registered_extensions().get(ext.lower())
    if fmt is None or fmt not in Image.SAVE:
        return None
    try:  # some formats Pillow knows cannot hold an RGB image (e.g. .xbm): find out now
        Image.new("RGB", (8, 8)).save(io.BytesIO(), format=fmt)
    except Exception:
        return None
    return fmt


def _check_writable(path: str, flag: str, given: str | None = None) -> None:
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise CliError(f"{flag} {given or path}: folder {parent} does not exist (create it first)")
    if os.path.isdir(path):
        raise CliError(f"{flag} {path} is a folder; give a file name")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CliError(f"{flag} {path}: cannot write there (permission denied)")


def image_out_paths(out: str, count: int, default_name: str, flag: str = "--out") -> list[str]:
    """The files ``count`` images go to: ``out`` (a file, or an existing folder to write
    ``default_name`` into), with ``_0``, ``_1``, ... added when there are several. Raises
    :class:`CliError` if they cannot be written, before any work is done."""
    if os.path.isdir(out):
        base = os.path.join(out, default_name)
    elif out.endswith(("/", os.sep)):
        raise CliError(f"{flag} {out}: folder does not exist (create it first)")
    else:
        base = out
    stem, ext = os.path.splitext(base)
    if not ext:
        ext = ".png"
    if _image_format(ext) is None:
        raise CliError(f"{flag} {out}: unknown image extension {ext!r} "
                       "(use .png, .jpg, .jpeg, .webp, .bmp, .tiff, .gif, ...)", status=2)
    paths = [stem + ext] if count == 1 else [f"{stem}_{i}{ext}" for i in range(count)]
    for path in paths:
        _check_writable(path, flag, out)
    return paths


def tokens_out_path(path: str) -> str:
    """Where ``np.save`` will write ``--tokens-out`` (it adds ``.npy``), checked writable."""
    given = path
    if os.path.isdir(path):
        raise CliError(f"--tokens-out {path} is a folder; give a file name such as "
                       f"{os.path.join(path, 'tokens.npy')}")
    if not path.endswith(".npy"):
        path += ".npy"
    _check_writable(path, "--tokens-out", given)
    return path


def _check_images(images: list[str] | None) -> None:
    for image in images or []:
        if os.path.isdir(image):
            raise CliError(f"--image {image} is a folder, not an image file")
        if not os.path.exists(image):
            raise CliError(f"--image {image}: no such file")
        if not os.access(image, os.R_OK):
            raise CliError(f"--image {image}: cannot read it (permission denied)")


# ---------------------------------------------------------------------- loading
def _load(args: argparse.Namespace, *, needs_vae: bool = False) -> "Model":
    """Load --model as JanusPro or JanusFlow, whichever its config.json says it is."""
    from . import _native

    path = _native.resolve_pretrained(args.model, revision=args.revision, local_files_only=args.offline)
    vae = getattr(args, "vae", None)
    roles = tuple(args.roles) if getattr(args, "roles", None) else None
    model: Model
    if is_janusflow(path):
        if needs_vae and vae is None:
            raise CliError(f"{args.model} is a JanusFlow checkpoint: pass --vae PATH_OR_ID to generate "
                           "images (the SDXL VAE, e.g. --vae stabilityai/sdxl-vae)", status=2)
        _check_flow_options(args)
    else:
        if vae is not None:
            raise CliError(f"--vae is for JanusFlow checkpoints; {args.model} is a Janus-Pro/Janus "
                           "checkpoint, which makes images with its own VQ decoder: drop --vae", status=2)
        if getattr(args, "num_steps", None) is not None:
            raise CliError(f"--num-steps is for JanusFlow checkpoints; {args.model} is a Janus-Pro/Janus "
                           "checkpoint (it samples a fixed number of image tokens): drop --num-steps", status=2)
    model = load_model(path, vae=vae, local_files_only=args.offline,  # type: ignore[assignment]
                       device=args.device, dtype=args.dtype, quantize=getattr(args, "quantize", None), roles=roles,
                       threads=getattr(args, "threads", None))
    if os.path.normpath(path) != os.path.normpath(args.model):  # a hub id: show it, not the cache folder
        model._name = args.model
        model._info["name"] = args.model
    return model


def _check_flow_options(args: argparse.Namespace) -> None:
    if args.command != "generate":
        return
    given = [flag for flag, value in [("--temperature", args.temperature), ("--top-k", args.top_k),
                                      ("--top-p", args.top_p)] if value is not None]
    if given:
        raise CliError(f"{args.model} is a JanusFlow checkpoint, which generates by rectified flow: "
                       f"{', '.join(given)} only apply to Janus-Pro/Janus (JanusFlow takes "
                       "--cfg-weight and --num-steps)", status=2)


# ---------------------------------------------------------------------- commands
def _cmd_understand(args: argparse.Namespace) -> int:
    _check_images(args.image)
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
    from . import MAX_IMAGES_PER_CALL

    if args.num_images > MAX_IMAGES_PER_CALL:
        raise CliError(f"--num-images {args.num_images} exceeds the limit of {MAX_IMAGES_PER_CALL} images per "
                       "call (run the command several times with different --seed)", status=2)
    paths = image_out_paths(args.out, args.num_images, "janus.png")
    tokens_path = tokens_out_path(args.tokens_out) if args.tokens_out else None
    model = _load(args, needs_vae=True)
    from .janus_flow import JanusFlow

    if isinstance(model, JanusFlow):
        result = model.generate(
            args.prompt,
            num_images=args.num_images,
            cfg_weight=2.0 if args.cfg_weight is None else args.cfg_weight,
            num_steps=30 if args.num_steps is None else args.num_steps,
            seed=args.seed,
            progress=not args.quiet,
        )
    else:
        result = model.generate(
            args.prompt,
            num_images=args.num_images,
            cfg_weight=5.0 if args.cfg_weight is None else args.cfg_weight,
            temperature=1.0 if args.temperature is None else args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            progress=not args.quiet,
        )
    if len(result) != len(paths):  # pragma: no cover - one prompt gives num_images images
        paths = image_out_paths(args.out, len(result), "janus.png")
    for img, path in zip(result.images, paths):
        img.save(path)
        print(path)
    if tokens_path:
        import numpy as np

        np.save(tokens_path, result.tokens)
        print(tokens_path)
    print(f"seed {result.seed}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    (out,) = image_out_paths(args.out, 1, "janus-demo.png")
    model = _load(args, needs_vae=True)
    print(model, file=sys.stderr)
    result = model.generate(args.prompt, seed=args.seed, progress=not args.quiet)
    result.images[0].save(out)
    print(f"image: {out} (prompt {args.prompt!r}, seed {result.seed})")
    question = "Describe this image."
    sys.stdout.write(f"{question} ")
    for piece in model.understand(result.images[0], question, max_new_tokens=args.max_new_tokens, stream=True):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    if args.cache_dir is not None:
        os.environ["JANUS_RS_CACHE_DIR"] = os.fspath(args.cache_dir)
    if os.environ.get("JANUS_RS_QUANT_CACHE", "").strip() == "0":
        raise CliError("the quantized-weights cache is off (JANUS_RS_QUANT_CACHE=0): nothing to write to", status=2)
    args.quantize = args.to
    start = time.perf_counter()
    model = _load(args)
    status, path = model.info["quant_cache"], model.info["quant_cache_path"]
    formats = ", ".join(f"{n} {f}" for f, n in sorted(model.info["llm_weight_formats"].items()))
    if status not in ("written", "hit"):
        raise CliError(f"{args.model} quantized to {args.to} but not cached: {status}")
    verb = "already cached" if status == "hit" else f"quantized in {time.perf_counter() - start:.1f} s and cached"
    print(f"{args.model}: {verb} ({formats}): {path}")
    print(f"later loads with quantize={args.to!r} read it"
          + (f" when JANUS_RS_CACHE_DIR={args.cache_dir} is set" if args.cache_dir is not None else ""))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from . import __version__, _backend, _distribution

    info: dict[str, Any] = {"janus_rs_version": __version__,
                            "distribution": _distribution.installed_distribution()}
    if args.model is not None:
        model = _load(args)
        info["model_class"] = type(model).__name__
        info.update(model.info)
    info["cuda_available"] = _backend.cuda_available()
    reason = _backend.cuda_unavailable_reason()
    if reason:
        info["cuda_unavailable_reason"] = reason
    print(json.dumps(info, indent=2, default=str))
    return 0


def _cmd_batch_generate(args: argparse.Namespace) -> int:
    from .batch import Shard, generate_images, read_jsonl_items

    shard = Shard.parse(args.shard)
    items = read_jsonl_items(args.prompts, "prompt")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CliError(f"--out {args.out} is a file; give a folder (it is created if missing)", status=2)
    model = _load(args, needs_vae=True)
    from .janus_flow import JanusFlow

    if isinstance(model, JanusFlow):
        given = [f for f, v in [("--temperature", args.temperature), ("--top-k", args.top_k),
                                ("--top-p", args.top_p)] if v is not None]
        if given:
            raise CliError(f"{args.model} is a JanusFlow checkpoint: {', '.join(given)} only apply to "
                           "Janus-Pro/Janus (JanusFlow takes --cfg-weight and --num-steps)", status=2)
        settings = {"cfg_weight": 2.0 if args.cfg_weight is None else args.cfg_weight,
                    "num_steps": 30 if args.num_steps is None else args.num_steps}
    else:
        settings = {"cfg_weight": 5.0 if args.cfg_weight is None else args.cfg_weight,
                    "temperature": 1.0 if args.temperature is None else args.temperature,
                    "top_k": args.top_k, "top_p": args.top_p}
    counts = generate_images(model, items, args.out, num_images=args.num_images, seed=args.seed, shard=shard,
                             layout=args.layout, batch_size=args.batch_size, model_name=args.model,
                             settings=settings, progress=not args.quiet)
    print(f"{counts['generated']} prompts done now ({counts['images']} images), {counts['skipped']} already done, "
          f"of {counts['items']} in shard {shard.index}/{shard.count}; files in {args.out}", file=sys.stderr)
    return 0


def _cmd_batch_understand(args: argparse.Namespace) -> int:
    from .batch import Shard, answer_questions, read_jsonl_items

    shard = Shard.parse(args.shard)
    items = read_jsonl_items(args.input, "question")
    _check_writable(args.out, "--out")
    model = _load(args)
    settings = {"max_new_tokens": args.max_new_tokens, "do_sample": args.sample, "temperature": args.temperature,
                "top_p": args.top_p, "top_k": args.top_k, "system_prompt": args.system_prompt}
    counts = answer_questions(model, items, args.out, shard=shard, batch_size=args.batch_size, seed=args.seed,
                              image_root=args.image_root, settings=settings, progress=not args.quiet)
    print(f"{counts['generated']} answered now, {counts['skipped']} already answered, of {counts['items']} in "
          f"shard {shard.index}/{shard.count}; answers in {args.out}", file=sys.stderr)
    return 0


def _check_can_listen(host: str, port: int) -> None:
    """Fail before the model is loaded if the address can't be bound (port taken, bad host)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as e:
        raise CliError(f"--host {host}: {e.strerror or e}", status=2) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(address)
        except OSError as e:
            raise CliError(f"cannot listen on {host}:{port}: {e.strerror or e}", status=2) from None


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .server import create_app
    except ImportError as e:
        raise CliError(f"the server needs extra packages ({e}): pip install \"janus-rs[server]\"", status=2) from None
    if args.allowed_local_media_path is not None and not os.path.isdir(args.allowed_local_media_path):
        raise CliError(f"--allowed-local-media-path {args.allowed_local_media_path}: no such folder", status=2)
    if not (args.max_media_mb > 0 and args.media_timeout > 0):
        raise CliError("--max-media-mb and --media-timeout must be positive", status=2)
    _check_can_listen(args.host, args.port)
    import logging

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Load before binding the port, so that a bad --model is a one-line error, not a traceback.
    model = _load(args)
    api_key = args.api_key if args.api_key is not None else (os.environ.get("JANUS_RS_API_KEY") or None)
    app = create_app(
        model,
        served_model_name=args.served_model_name,
        api_key=api_key,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        max_images=args.max_images,
        default_max_tokens=args.max_tokens,
        strict_size=args.strict_size,
        remote_media=not args.no_remote_media,
        allowed_media_domains=args.allowed_media_domains,
        allowed_local_media_path=args.allowed_local_media_path,
        max_media_bytes=int(args.max_media_mb * 1024 * 1024),
        media_timeout=args.media_timeout,
    )
    name = args.served_model_name or model.name
    print(f"janus-rs: serving {name!r} ({type(model).__name__}, {model.device}) at "
          f"http://{args.host}:{args.port}/v1{' (API key required)' if api_key else ''}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


# ---------------------------------------------------------------------- parser
class _HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help when it has a meaningful default and the help
    does not already say it (never "(default: None)" or "(default: False)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if ("(default" in help or action.default in (None, False, argparse.SUPPRESS)
                or action.required or not action.option_strings):
            return help
        return help + " (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="janus-rs",
        description="Run DeepSeek's Janus models (Janus-Pro-1B/7B, Janus-1.3B, JanusFlow-1.3B) on CPU "
                    "or CUDA with janus-rs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"janus-rs {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(sp: argparse.ArgumentParser, required: bool = True, vae: bool = False,
                   quantize: bool = True) -> None:
        g = sp.add_argument_group("model")
        g.add_argument("--model", required=required, metavar="FOLDER_OR_HUB_ID",
                       help="checkpoint folder or hub id, e.g. deepseek-ai/Janus-Pro-1B or "
                            "deepseek-ai/JanusFlow-1.3B")
        g.add_argument("--revision", default=None, help="hub branch, tag or commit (default: main)")
        g.add_argument("--offline", action="store_true", help="use only the local HF cache (like HF_HUB_OFFLINE=1)")
        g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
        g.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                       help="weights dtype (default: bfloat16 on CUDA; on CPU bfloat16 for checkpoints "
                            "stored in bf16, else float32; on CPU bfloat16 keeps the weights in bf16 "
                            "and computes in float32)")
        if quantize:
            g.add_argument("--quantize", default=None, choices=["q8_0", "q6_k", "q4_k"],
                           help="keep the LLM's projections and lm_head block-quantized (less memory, "
                                "faster CPU decoding, approximate: see docs/performance.md)")
        g.add_argument("--threads", type=_int_at_least(1), default=None, metavar="N",
                       help="CPU threads (default: JANUS_RS_NUM_THREADS, else the physical cores)")
        g.add_argument("--roles", nargs=2, default=None, metavar=("USER", "ASSISTANT"),
                       help="chat role strings, e.g. --roles User Assistant for Janus-1.3B "
                            "(default: <|User|> <|Assistant|> when the tokenizer has them, else User Assistant)")
        if vae:
            g.add_argument("--vae", default=None, metavar="FOLDER_OR_HUB_ID",
                           help="JanusFlow only: the SDXL VAE that decodes its latents, e.g. stabilityai/sdxl-vae "
                                "(needed to generate images)")

    def subparser(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                              formatter_class=_HelpFormatter)

    u = subparser("understand", "answer a question about one or more images (or none)")
    model_args(u)
    u.add_argument("--image", action="append", metavar="FILE", help="image file; repeat for several images")
    u.add_argument("--question", required=True, help="the question to ask")
    u.add_argument("--max-new-tokens", type=_int_at_least(1), default=512, help="most tokens to generate")
    u.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    u.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (with --sample)")
    u.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold (with --sample)")
    u.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (with --sample)")
    u.add_argument("--seed", type=_seed, default=None, help="random seed for sampling")
    u.add_argument("--system-prompt", default=None, help="replace the default system prompt")
    u.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True,
                   help="print the answer as it is generated")
    u.set_defaults(func=_cmd_understand)

    g = subparser("generate", "generate images from a text prompt")
    model_args(g, vae=True)
    g.add_argument("--prompt", required=True, help="the image description")
    g.add_argument("--out", default="janus.png", metavar="FILE_OR_FOLDER",
                   help="output image (.png, .jpg, .webp, ...) or an existing folder; with several "
                        "images _0, _1, ... are added")
    g.add_argument("--num-images", type=_int_at_least(1), default=1, help="images to generate")
    g.add_argument("--cfg-weight", type=float, default=None,
                   help="classifier-free guidance weight (default: 5.0; JanusFlow: 2.0)")
    g.add_argument("--temperature", type=float, default=None,
                   help="Janus-Pro: sampling temperature, 0 = argmax (default: 1.0)")
    g.add_argument("--top-k", type=int, default=None, help="Janus-Pro: keep the k most likely image tokens")
    g.add_argument("--top-p", type=float, default=None, help="Janus-Pro: nucleus threshold for image tokens")
    g.add_argument("--num-steps", type=_int_at_least(1), default=None,
                   help="JanusFlow: Euler steps of the rectified flow (default: 30)")
    g.add_argument("--seed", type=_seed, default=None, help="random seed (default: a fresh one, printed)")
    g.add_argument("--tokens-out", default=None, metavar="FILE.npy",
                   help="also save the VQ image tokens (JanusFlow: the final latents)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_cmd_generate)

    d = subparser("demo", "generate an image from a prompt, save it, then have the model describe it")
    model_args(d, vae=True)
    d.add_argument("--prompt", default="a red cat sitting on a wooden table", help="the image description")
    d.add_argument("--out", default="janus-demo.png", metavar="FILE_OR_FOLDER",
                   help="where to save the image (a file, or an existing folder)")
    d.add_argument("--seed", type=_seed, default=0, help="random seed for the image")
    d.add_argument("--max-new-tokens", type=_int_at_least(1), default=64, help="most tokens in the description")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_demo)

    q = subparser("quantize", "quantize a model's LLM once and keep it in the quantized-weights cache")
    model_args(q, quantize=False)
    q.add_argument("--to", required=True, choices=["q8_0", "q6_k", "q4_k"], help="the format")
    q.add_argument("-o", "--cache-dir", default=None, metavar="DIR",
                   help="the cache folder (default: JANUS_RS_CACHE_DIR, else ~/.cache/janus-rs/quantized); "
                        "set JANUS_RS_CACHE_DIR=DIR for later loads to find it")
    q.set_defaults(func=_cmd_quantize)

    b = subparser("batch", "run many prompts or questions from a file: resumable, shardable over processes "
                           "or machines, reproducible (item k gets seed SEED + k)")
    bsub = b.add_subparsers(dest="batch_command", required=True, metavar="KIND")
    bg = bsub.add_parser("generate", help="images for every prompt of a file",
                         description="Generate --num-images images for every prompt of --prompts into --out. "
                                     "Reruns skip finished prompts; --shard I/N takes every N-th prompt, so N "
                                     "processes (one per GPU, or per machine) split the work and together "
                                     "write exactly the files one run would.",
                         formatter_class=_HelpFormatter)
    model_args(bg, vae=True)
    bg.add_argument("--prompts", required=True, metavar="FILE",
                    help="a .jsonl file with a 'prompt' per line (GenEval's evaluation_metadata.jsonl as is; "
                         "the other fields are kept) or a text file with one prompt per line")
    bg.add_argument("--out", required=True, metavar="FOLDER", help="where the images go (created if missing)")
    bg.add_argument("--num-images", type=_int_at_least(1), default=4, help="images per prompt")
    bg.add_argument("--seed", type=_seed, default=0, help="prompt k (0-based line index) gets seed SEED + k")
    bg.add_argument("--shard", default="0/1", metavar="I/N", help="do only the prompts k with k %% N == I")
    bg.add_argument("--layout", choices=["geneval", "flat"], default="geneval",
                    help="geneval: OUT/<k:05d>/metadata.jsonl and OUT/<k:05d>/samples/<j:05d>.png, what the "
                         "GenEval evaluator reads; flat: OUT/<k:05d>_<j:02d>.png and OUT/metadata.jsonl")
    bg.add_argument("--batch-size", type=_int_at_least(1), default=1, metavar="B",
                    help="prompts per model call (the images don't depend on it)")
    bg.add_argument("--cfg-weight", type=float, default=None,
                    help="classifier-free guidance weight (default: 5.0; JanusFlow: 2.0)")
    bg.add_argument("--temperature", type=float, default=None, help="Janus-Pro: sampling temperature (default 1.0)")
    bg.add_argument("--top-k", type=int, default=None, help="Janus-Pro: keep the k most likely image tokens")
    bg.add_argument("--top-p", type=float, default=None, help="Janus-Pro: nucleus threshold for image tokens")
    bg.add_argument("--num-steps", type=_int_at_least(1), default=None, help="JanusFlow: Euler steps (default 30)")
    bg.add_argument("--quiet", action="store_true", help="no progress bar")
    bg.set_defaults(func=_cmd_batch_generate)

    bu = bsub.add_parser("understand", help="answers for every (image, question) of a file",
                         description="Answer every {\"image\": path or [paths] or null, \"question\": ...} line "
                                     "of --input, appending one line per answer to --out (the item plus "
                                     "\"index\" and \"answer\"). Reruns skip answered items.",
                         formatter_class=_HelpFormatter)
    model_args(bu)
    bu.add_argument("--input", required=True, metavar="FILE.jsonl", help="one JSON object per line")
    bu.add_argument("--out", required=True, metavar="FILE.jsonl", help="answers file (appended to)")
    bu.add_argument("--image-root", default=None, metavar="FOLDER",
                    help="folder that relative image paths are relative to (default: the current folder)")
    bu.add_argument("--shard", default="0/1", metavar="I/N", help="do only the items k with k %% N == I")
    bu.add_argument("--batch-size", type=_int_at_least(1), default=8, metavar="B", help="items per model call")
    bu.add_argument("--max-new-tokens", type=_int_at_least(1), default=512, help="most tokens per answer")
    bu.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    bu.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (with --sample)")
    bu.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold (with --sample)")
    bu.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (with --sample)")
    bu.add_argument("--seed", type=_seed, default=0, help="item k samples with seed SEED + k")
    bu.add_argument("--system-prompt", default=None, help="replace the default system prompt")
    bu.add_argument("--quiet", action="store_true", help="no progress bar")
    bu.set_defaults(func=_cmd_batch_understand)

    sv = subparser("serve", "serve a model over an OpenAI-compatible HTTP API (chat with images, image "
                            "generation); needs pip install \"janus-rs[server]\"")
    model_args(sv, vae=True)
    h = sv.add_argument_group("server")
    h.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes it to the network)")
    h.add_argument("--port", type=_int_at_least(0), default=8000, help="port to listen on")
    h.add_argument("--served-model-name", default=None, metavar="NAME",
                   help="the model id clients use (default: the model's folder name or hub id)")
    h.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' (default: JANUS_RS_API_KEY if set, else no key)")
    h.add_argument("--max-concurrency", type=_int_at_least(1), default=1, metavar="N",
                   help="model calls running at once; more requests wait")
    h.add_argument("--max-queue", type=_int_at_least(0), default=64, metavar="N",
                   help="requests that may wait; beyond that the server answers 429")
    h.add_argument("--max-images", type=_int_at_least(1), default=10, metavar="N",
                   help="most images (n) per image request")
    h.add_argument("--max-tokens", type=_int_at_least(1), default=512, metavar="N",
                   help="new tokens for chat requests that give no max_tokens")
    h.add_argument("--strict-size", action="store_true",
                   help="refuse image sizes other than the model's own (default: resize with LANCZOS)")
    m = sv.add_argument_group("chat images")
    m.add_argument("--no-remote-media", action="store_true",
                   help="don't download http(s) image URLs (data: URLs always work)")
    m.add_argument("--allowed-media-domains", nargs="+", default=None, metavar="HOST",
                   help="download images only from these hosts and their subdomains")
    m.add_argument("--allowed-local-media-path", default=None, metavar="FOLDER",
                   help="allow file:// URLs and paths of images inside FOLDER (default: none)")
    m.add_argument("--max-media-mb", type=float, default=20.0, metavar="MB",
                   help="largest image accepted, inline or downloaded")
    m.add_argument("--media-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="time allowed for one image download")
    sv.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                    help="log level of the server and its access log")
    sv.set_defaults(func=_cmd_serve)

    i = subparser("info", "print janus-rs's version, CUDA availability and, with --model, the model's facts")
    model_args(i, required=False, vae=True)
    i.set_defaults(func=_cmd_info)
    return p


def _error(message: str) -> None:
    lines = [line for line in str(message).strip().splitlines() if line.strip()] or ["(no message)"]
    print(f"janus-rs: error: {flag_names(lines[0])}", file=sys.stderr)
    for line in lines[1:]:  # a multi-line message (e.g. the hub's "run: hf download ...") stays whole
        print(f"  {flag_names(line)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except CliError as e:
        _error(str(e))
        return e.status
    except KeyboardInterrupt:
        print("\njanus-rs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`janus-rs understand ... | head -c 20`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (JanusError, OSError) as e:  # bad files, parameters, devices; disk full, permissions
        if isinstance(e, OSError) and not isinstance(e, JanusError) and e.filename is not None:
            _error(f"{e.filename}: {e.strerror or e}")
        else:
            _error(str(e))
        return 1
    except Exception as e:  # a bug, not a user error: still one line unless JANUS_RS_DEBUG is set
        if os.environ.get("JANUS_RS_DEBUG"):
            raise
        _error(f"unexpected {type(e).__name__}: {e} (please report it; JANUS_RS_DEBUG=1 shows the traceback)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
