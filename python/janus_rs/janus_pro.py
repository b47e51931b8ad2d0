"""``JanusPro``: Janus-Pro-1B/7B and Janus-1.3B from Python."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from . import _backend, _native
from ._chat import (
    DEFAULT_SYSTEM_PROMPT,
    ChatModel,
    Message,
    _check_int,
    _f32,
    _per_prompt_counts,
    _per_prompt_seeds,
    _prompts,
    _to_float,
    _token_ids,
)
from ._messages import IMAGE_TAG
from .errors import InputError
from .generation import GenerationResult, Progress, progress_hook
from .images import ImageInput, to_rgb_arrays

MAX_IMAGES_PER_CALL = 64
"""Default cap on images per :meth:`JanusPro.generate` call (the KV cache grows with it)."""

__all__ = ["JanusPro", "MAX_IMAGES_PER_CALL", "DEFAULT_SYSTEM_PROMPT", "IMAGE_TAG", "Message"]


class JanusPro(ChatModel):
    """A loaded Janus / Janus-Pro checkpoint (deepseek-ai or transformers layout).

    Load with :meth:`from_pretrained`; ask about images with :meth:`understand` (optionally
    streaming the answer) or run a multi-turn conversation with :meth:`chat`; make images with
    :meth:`generate`. Lower-level methods (:meth:`preprocess`, :meth:`vision_features`,
    :meth:`inputs_embeds`, :meth:`forward`, :meth:`encode_image`, :meth:`decode_tokens`, ...)
    expose each stage of the pipeline as numpy arrays, mirroring the official modules.

    Threads: one model may be shared by several Python threads. Every call releases the GIL
    while it computes, and calls run concurrently (the weights are read-only; each call has
    its own KV cache and random generator), so a seeded call gives the same result whatever
    else runs. Memory is freed when the last reference to the model is dropped.
    """

    def __init__(self, native: _native.JanusProModel, name: str | None = None) -> None:
        super().__init__(native, name)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        quantize: str | None = None,
        threads: int | None = None,
        roles: tuple[str, str] | None = None,
        local_files_only: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | None = None,
        progress: bool = True,
    ) -> "JanusPro":
        """Load a checkpoint from a local folder or the Hugging Face hub.

        Both layouts load unchanged, detected from ``config.json``: the official deepseek-ai
        one (``deepseek-ai/Janus-Pro-1B``, ``model_type: multi_modality``) and the
        transformers-converted one (``deepseek-community/Janus-Pro-1B``, ``model_type: janus``).

        Args:
            name_or_path: a folder with ``config.json``, ``tokenizer.json``, the processor
                configs and the weights (``pytorch_model.bin``, sharded ``.bin`` with
                ``pytorch_model.bin.index.json``, ``model.safetensors`` or sharded safetensors
                with ``model.safetensors.index.json``), or a hub id such as
                ``"deepseek-ai/Janus-Pro-1B"``. A hub id is looked up in the standard HF cache
                (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``); a
                snapshot there that has every needed file loads with no network access, anything
                missing is downloaded into that cache unless ``HF_HUB_OFFLINE=1`` is set.
            revision: branch, tag or commit of a hub id (default ``"main"``).
            device: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``.
            dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, or ``None`` / ``"auto"``
                (on CUDA bfloat16; on CPU bfloat16 for checkpoints stored in bf16, as the official
                ones are, else float32). On CPU ``"bfloat16"`` keeps the weight
                matrices in bf16 (half the memory; exact for the official bf16 checkpoints) and
                computes in float32, so results match float32 to rounding
                (``info["compute_dtype"]``). Also accepted: ``"f32"``, ``"fp32"``,
                ``"bf16"``, ``"f16"``, ``"fp16"``, ``"half"``; any case.
            quantize: ``None`` (default), ``"q8_0"``, ``"q6_k"`` or ``"q4_k"``: keep the LLM's
                projections and ``lm_head`` block-quantized (llama.cpp's formats, candle's
                kernels): less memory and faster CPU decoding at a measured cost in accuracy
                (docs/performance.md). Everything else (embeddings, norms, SigLIP, the image
                head, the VQ decoder) stays as ``dtype`` says; so does a matrix whose input width
                is not a multiple of the format's block (32 for q8_0, 256 for the k-quants), said
                once in the ``janus_rs`` log and counted in ``info["llm_weight_formats"]``.
            threads: CPU threads for this process (see :func:`janus_rs.set_num_threads`: set
                once, by the first model loaded; default ``JANUS_RS_NUM_THREADS``, else the
                physical cores).
            roles: the chat role strings ``(user, assistant)``. Default: ``("<|User|>",
                "<|Assistant|>")`` when the tokenizer has those tokens (Janus-Pro), else
                ``("User", "Assistant")`` (Janus-1.3B).
            local_files_only: never download, like ``HF_HUB_OFFLINE=1`` (default False).
            cache_dir: the hub cache folder to use instead of the default.
            token: access token for gated or private repos (default: ``HF_TOKEN`` or the
                token saved by ``hf auth login``).
            progress: show download progress bars (default True).

        Raises:
            NotFoundError: the folder, a required file, or (offline) the cached model is
                missing; the message says what to download and where it looked.
            ConfigError, WeightsError, TokenizerError: a file is unusable (the message names it).
            InputError: a malformed ``device`` (not ``"cpu"``, ``"cuda"`` or ``"cuda:N"``) or
                ``dtype``, or an argument of the wrong type; checked before anything is loaded.
            DeviceError: the device is not available.
        """
        quantize = _backend.check_quantize(quantize)
        threads = _backend.check_threads(threads)
        name, roles = _backend.check_load_args(
            name_or_path, device=device, dtypes={"dtype": dtype}, roles=roles,
            strings={"revision": revision, "token": token},
        )
        path = _native.resolve_pretrained(
            name,
            revision=revision,
            local_files_only=bool(local_files_only),
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            token=token,
            progress=bool(progress),
        )
        native = _backend.module_for(device).JanusProModel.load(
            path, device=device, dtype=dtype, roles=roles, quantize=quantize, threads=threads
        )
        display = name if os.path.normpath(path) != os.path.normpath(name) else None
        return cls(native, name=display)

    def __repr__(self) -> str:
        return (
            f"JanusPro(name={self._name!r}, device={self.device!r}, dtype={self.dtype!r}"
            f"{self._quantize_repr()}, parameters={self.num_parameters / 1e6:.1f}M, "
            f"layout={self._info['layout']!r})"
        )

    # ------------------------------------------------------------------ text-to-image
    def generate(
        self,
        prompt: str | Sequence[str],
        *,
        num_images: int | Sequence[int] = 1,
        parallel_size: int | None = None,
        cfg_weight: float = 5.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | Sequence[int] | None = None,
        progress: Progress = True,
        max_images: int = MAX_IMAGES_PER_CALL,
    ) -> GenerationResult:
        """Generate images from a text prompt (or a list of prompts, batched together).

        Follows the official loop: the prompt in the SFT format with an empty system prompt and
        ``<begin_of_image>`` appended; for every image a conditional and an unconditional row;
        per step ``logits = u + cfg_weight·(c − u)``, softmax at ``temperature``, one draw per
        image; (image_size/16)² steps; the VQ decoder turns the tokens into pixels.

        Args:
            prompt: the image description, or a list of them. A prompt already rendered with
                the SFT template and ending in ``<begin_of_image>`` (what the official README
                passes: ``sft_format + vl_chat_processor.image_start_tag``) is used as it is,
                not wrapped a second time.
            num_images: images per prompt, default 1, or a list with one count per prompt.
            parallel_size: the official name of ``num_images``, accepted as an alias.
            cfg_weight: classifier-free guidance weight (official default 5).
            temperature: sampling temperature (official default 1); 0 takes the argmax.
            top_k: optional extra filtering of the guided distribution (off by default, as in
                the official code).
            top_p: optional extra filtering of the guided distribution (off by default, as in
                the official code).
            seed: makes the images reproducible: one int for every prompt, or a list with one
                per prompt; ``None`` draws a fresh seed, reported as ``result.seed``. Image ``i``
                of a prompt draws from random stream ``i`` of its prompt's seed and nothing
                else, so it is the same whatever other prompts share the call, in any order, in
                any thread (up to float rounding of the batched matmuls): ``generate([a, b],
                seed=[1, 2])`` gives ``generate(a, seed=1)``'s and ``generate(b, seed=2)``'s
                images.
            progress: ``True`` shows a tqdm bar, ``False`` nothing, a callable gets
                ``(done, total)`` after each token.
            max_images: refuse calls asking for more images than this (memory guard).

        Returns:
            A :class:`GenerationResult` with ``.images`` (PIL), ``.array`` (uint8 ``N×H×W×3``),
            ``.tokens`` (``N×grid²``) and ``.seed``. Ctrl-C raises ``KeyboardInterrupt`` within one
            step.
        """
        num_images = _num_images(num_images, parallel_size)
        tokens, used_seed, prompts, seeds = self._generate_tokens(
            prompt, num_images, cfg_weight, temperature, top_k, top_p, seed, progress, max_images
        )
        array = self.decode_tokens(tokens)
        return GenerationResult(array, tokens, used_seed, prompts, seeds=seeds)

    def generate_tokens(
        self,
        prompt: str | Sequence[str],
        *,
        num_images: int | Sequence[int] = 1,
        parallel_size: int | None = None,
        cfg_weight: float = 5.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | Sequence[int] | None = None,
        progress: Progress = True,
        max_images: int = MAX_IMAGES_PER_CALL,
    ) -> np.ndarray:
        """Like :meth:`generate` but stops before the VQ decoder: returns the ``(N, grid²)``
        int64 image tokens (decode them later with :meth:`decode_tokens`)."""
        num_images = _num_images(num_images, parallel_size)
        tokens, _seed, _prompts, _seeds = self._generate_tokens(
            prompt, num_images, cfg_weight, temperature, top_k, top_p, seed, progress, max_images
        )
        return tokens

    def _generate_tokens(self, prompt, num_images, cfg_weight, temperature, top_k, top_p, seed, progress, max_images):
        prompts = _prompts(prompt)
        counts = _per_prompt_counts(num_images, len(prompts))
        seeds, used_seed = _per_prompt_seeds(seed, len(prompts))
        _check_int("max_images", max_images, minimum=1)
        if top_k is not None:
            _check_int("top_k", top_k, minimum=1)
        cfg_weight = _to_float("cfg_weight", cfg_weight)
        temperature = _to_float("temperature", temperature)
        top_p = None if top_p is None else _to_float("top_p", top_p)
        total = self.image_token_grid ** 2
        on_step, close = progress_hook(progress, total, "janus-rs generate")
        try:
            tokens = self._native.generate_image_tokens(
                prompts, counts, cfg_weight, temperature, top_k, top_p, seeds, max_images, on_step,
            )
        finally:
            close()
        per_image = [p for p, n in zip(prompts, counts) for _ in range(n)]
        image_seeds = [s for s, n in zip(seeds, counts) for _ in range(n)]
        return tokens.astype(np.int64), used_seed, per_image, image_seeds

    @property
    def image_token_grid(self) -> int:
        """Side of the generated token grid (24 for 384-pixel models)."""
        return self._info["image_token_grid"]

    def _tokens_arg(self, tokens: Any) -> tuple[list[int], int]:
        arr = np.asarray(tokens)
        grid2 = self.image_token_grid ** 2
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != grid2 or arr.shape[0] == 0:
            raise InputError(f"tokens must have shape (n, {grid2}) or ({grid2},), got {np.asarray(tokens).shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"tokens must be integers, got dtype {arr.dtype}")
        if (arr < 0).any() or (arr >= self._info["image_vocab_size"]).any():
            raise InputError(
                f"tokens must be in [0, {self._info['image_vocab_size']}), got values from {arr.min()} to {arr.max()}"
            )
        return [int(t) for t in arr.reshape(-1)], arr.shape[0]

    def decode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """VQ-decode image tokens ``(n, grid²)`` to uint8 images ``(n, H, W, 3)`` with the
        official ``clip((x + 1) / 2 · 255)`` truncation. Runs in float32 on CPU."""
        flat, n = self._tokens_arg(tokens)
        return self._native.decode_image_tokens(flat, n)

    def decode_tokens_float(self, tokens: np.ndarray) -> np.ndarray:
        """The VQ decoder's float output ``(n, 3, H, W)`` (≈ [−1, 1]) for image tokens."""
        flat, n = self._tokens_arg(tokens)
        return self._native.decode_image_tokens_float(flat, n)

    def encode_image(self, image: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """Tokenize images with the VQ encoder: each image is resized (bicubic) to
        ``image_size × image_size``, scaled to [−1, 1], encoded, and quantised to the nearest
        L2-normalised code. Returns ``(n, grid²)`` int64 tokens; ``decode_tokens`` reconstructs."""
        pixels = self._native.vq_pixels(to_rgb_arrays(image))
        return self.encode_pixels(pixels)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """VQ tokens ``(n, grid²)`` of pixel values ``(n, 3, S, S)`` in [−1, 1]."""
        return self._native.encode_pixels(_f32(pixels, "pixels")).astype(np.int64)

    def generation_prompt_ids(self, prompt: str) -> np.ndarray:
        """Token ids of the official generation prompt (BOS … ``<begin_of_image>``)."""
        return np.asarray(self._native.generation_prompt_ids(prompt), dtype=np.int64)

    def image_token_logits(self, hidden: np.ndarray) -> np.ndarray:
        """``gen_head`` logits of final-norm LLM hidden states ``(..., hidden)``."""
        return self._native.image_token_logits(_f32(hidden, "hidden"))

    def image_token_embeddings(self, tokens: Sequence[int]) -> np.ndarray:
        """LLM input embeddings of image tokens (``gen_embed`` → ``gen_aligner``)."""
        return self._native.image_token_embeddings(_token_ids("tokens", tokens))


def _num_images(num_images: int | Sequence[int], parallel_size: int | None) -> int | Sequence[int]:
    """``num_images``, or the official ``parallel_size`` when that is given instead."""
    if parallel_size is None:
        return num_images
    if num_images != 1 and num_images != parallel_size:
        raise InputError(f"num_images={num_images!r} and parallel_size={parallel_size!r} disagree: give one of them")
    return parallel_size
