"""A small user script written against janus-rs's public API.

``tests/test_typing.py`` type-checks this file with ``mypy --strict``: it must keep passing, so
that the package's annotations (``py.typed``, ``_native.pyi``) serve users who type-check their
own code. The tests never run it; by hand: ``python tests/typing/sample_usage.py MODEL IMAGE``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

import janus_rs
from janus_rs import GenerationResult, JanusFlow, JanusPro


def load(model_id: str, device: str = "cpu") -> JanusPro:
    """Load a hub id or a local checkpoint folder."""
    model = JanusPro.from_pretrained(model_id, device=device)
    print(f"janus-rs {janus_rs.__version__}: {model!r}")
    print(f"  {model.num_parameters / 1e9:.2f}B parameters on {model.device} ({model.dtype})")
    return model


def describe(model: JanusPro, image: Path) -> str:
    """One question about one image, the whole answer at once."""
    answer: str = model.understand(image, "What is in this image?", max_new_tokens=64)
    return answer.strip()


def describe_streaming(model: JanusPro, image: Image.Image) -> str:
    """The same, printing the answer as it is written."""
    stream: Iterator[str] = model.understand(image, "Describe it in detail.", max_new_tokens=128, stream=True)
    pieces: list[str] = []
    for piece in stream:
        print(piece, end="", flush=True)
        pieces.append(piece)
    print()
    return "".join(pieces)


def count_streamed_pieces(model: JanusPro, images: Sequence[Path]) -> int:
    """Streaming also works with several images (or none) and sampling options."""
    count = 0
    for piece in model.understand(
        list(images) or None, "Compare these.", max_new_tokens=32, do_sample=True, top_p=0.9, seed=1, stream=True
    ):
        count += bool(piece)
    return count


def conversation(model: JanusPro, image: Path) -> str:
    """A multi-turn chat: the first message carries the image."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "<image_placeholder>\nWhat is this?", "images": [image]},
        {"role": "assistant", "content": "A picture."},
        {"role": "user", "content": "What colours does it have?"},
    ]
    reply: str = model.chat(messages, max_new_tokens=64, system_prompt=janus_rs.DEFAULT_SYSTEM_PROMPT)
    messages.append({"role": "assistant", "content": reply})
    return reply


def openai_style_chat(model: JanusPro, data_url: str) -> str:
    """The conversation formats other stacks write work unchanged."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url}},
                                     {"type": "text", "text": "What is this?"}]},
    ]
    return model.chat(messages, max_new_tokens=16)


def server_app(model: JanusPro) -> Any:
    """The OpenAI-compatible ASGI app around a loaded model (extra [server])."""
    from janus_rs.server import create_app

    app = create_app(model, api_key="secret", max_concurrency=1, remote_media=False)
    return app


def report(done: int, total: int) -> None:
    if done == total or done % 100 == 0:
        print(f"  {done}/{total} image tokens", file=sys.stderr)


def paint(model: JanusPro, prompts: list[str], out_dir: Path, seed: int | None = None) -> GenerationResult:
    """Several prompts in one batched call; save every image and the grid of tokens."""
    out = model.generate(prompts, num_images=2, cfg_weight=5.0, seed=seed, progress=report)
    images: list[Image.Image] = out.images
    pixels: npt.NDArray[np.uint8] = out.array
    tokens: npt.NDArray[np.int64] = out.tokens
    used_seed: int | list[int] = out.seed
    per_image: list[str] = out.prompts
    assert len(out) == len(images) == len(per_image) == pixels.shape[0] == tokens.shape[0]

    out_dir.mkdir(parents=True, exist_ok=True)
    for i, (picture, prompt) in enumerate(zip(images, per_image)):
        picture.save(out_dir / f"{i:02d}-{prompt.replace(' ', '-')}.png")
    np.save(out_dir / "tokens.npy", tokens)
    print(f"{out!r}: seed {used_seed}, saved to {out_dir}")
    return out


def tokens_round_trip(model: JanusPro, out: GenerationResult, image: Path) -> npt.NDArray[np.uint8]:
    """Work with VQ tokens: decode stored tokens, encode an image, generate tokens only."""
    decoded: npt.NDArray[np.uint8] = model.decode_tokens(out.tokens)
    if not np.array_equal(decoded, out.array):
        raise AssertionError("decode_tokens(out.tokens) differs from out.array")

    codes: npt.NDArray[np.int64] = model.encode_image(image)
    reconstruction: npt.NDArray[np.uint8] = model.decode_tokens(codes)
    Image.fromarray(reconstruction[0]).save(Path(image).with_suffix(".vq.png"))

    later: npt.NDArray[np.int64] = model.generate_tokens("a red cat", num_images=1, seed=out.seed, progress=False)
    return model.decode_tokens(later)


def flow_paint(model_id: str, vae: str, image: Path, out_dir: Path) -> GenerationResult:
    """JanusFlow: the same understanding API, and rectified-flow images from an SDXL VAE."""
    flow = JanusFlow.from_pretrained(model_id, vae=vae)
    print(repr(flow), flow.latent_shape, flow.has_vae)
    answer: str = flow.understand(image, "What does this chart show?")
    pieces: Iterator[str] = flow.understand(image, "Describe it.", stream=True)
    print(answer, "".join(pieces))
    timesteps, dt = JanusFlow.schedule(30)
    noise = np.random.default_rng(0).standard_normal((2, *flow.latent_shape)).astype(np.float32)
    out = flow.generate("a cozy cabin in the snow", num_images=2, cfg_weight=2.0, num_steps=30, initial_noise=noise)
    out.images[0].save(out_dir / "cabin.png")
    if out.latents is not None:
        again: npt.NDArray[np.uint8] = flow.decode_latents(out.latents)
        print(again.shape, timesteps[-1], dt)
    steps: npt.NDArray[np.float32] = flow.generate_latents("a cabin", num_steps=4, return_all_steps=True, seed=out.seed)
    print(steps.shape)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="janus-rs sample")
    parser.add_argument("model", help='a hub id ("deepseek-ai/Janus-Pro-1B") or a checkpoint folder')
    parser.add_argument("image", type=Path)
    parser.add_argument("--device", default="cuda" if janus_rs.cuda_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("outputs"))
    args = parser.parse_args(argv)

    try:
        model = load(args.model, args.device)
    except janus_rs.NotFoundError as e:
        print(f"no such checkpoint: {e}", file=sys.stderr)
        return 2
    except janus_rs.LoadError as e:
        print(f"unusable checkpoint: {e}", file=sys.stderr)
        return 2

    print(describe(model, args.image))
    describe_streaming(model, Image.open(args.image))
    print(count_streamed_pieces(model, [args.image]), "pieces")
    print(conversation(model, args.image))

    out = paint(model, ["a red cat", "a blue house"], args.out, seed=7)
    tokens_round_trip(model, out, args.image)

    try:
        model.generate("a red cat", num_images=0)
    except janus_rs.InputError as e:
        print(f"rejected as expected: {e}", file=sys.stderr)
    try:
        model.understand(b"not an image", "?")
    except janus_rs.ImageError as e:
        print(f"rejected as expected: {e}", file=sys.stderr)
    except janus_rs.JanusError as e:
        print(f"unexpected janus-rs error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
