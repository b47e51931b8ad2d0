"""``JanusPro``: Janus-Pro-1B/7B and Janus-1.3B from Python."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence, overload

import numpy as np

from . import _backend, _native
from .errors import InputError
from .generation import GenerationResult, Progress, progress_hook
from .images import ImageInput, to_rgb_array, to_rgb_arrays
from .streaming import stream_tokens

IMAGE_TAG = "<image_placeholder>"

MAX_IMAGES_PER_CALL = 64
"""Default cap on images per :meth:`JanusPro.generate` call (the KV cache grows with it)."""

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual content "
    "that the user provides, and assist the user with a variety of tasks using natural language."
)
"""The system prompt the official processor uses for understanding."""

Message = Mapping[str, Any]
"""A conversation turn: ``{"role": "user" | "assistant", "content": str, "images": [...]}``.

Roles may also be given as the checkpoint's own strings (``"<|User|>"``, ``"User"``)."""


class JanusPro:
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
        self._native = native
        self._info = dict(native.info())
        self._name = name if name is not None else os.path.basename(os.path.normpath(str(self._info["path"])))
        self._info["name"] = self._name

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
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
            dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or ``None`` (auto: float32 on
                CPU, bfloat16 on CUDA).
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
            DeviceError: the device is not available.
        """
        name = os.fspath(name_or_path)
        path = _native.resolve_pretrained(
            name,
            revision=revision,
            local_files_only=bool(local_files_only),
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            token=token,
            progress=bool(progress),
        )
        native = _backend.module_for(device).JanusProModel.load(path, device=device, dtype=dtype, roles=roles)
        display = name if os.path.normpath(path) != os.path.normpath(name) else None
        return cls(native, name=display)

    # ------------------------------------------------------------------ facts
    @property
    def info(self) -> dict[str, Any]:
        """Facts about the model: path, device, dtype, sizes, special token ids, ..."""
        return dict(self._info)

    @property
    def device(self) -> str:
        return self._info["device"]

    @property
    def dtype(self) -> str:
        return self._info["dtype"]

    @property
    def num_parameters(self) -> int:
        """Parameters (tensor elements) in the checkpoint: 2,089,232,011 for Janus-Pro-1B."""
        return self._info["num_parameters"]

    @property
    def image_size(self) -> int:
        return self._info["image_size"]

    @property
    def num_image_tokens(self) -> int:
        """LLM positions each image takes: (image_size / patch_size)², 576 for real models."""
        return self._info["num_image_tokens"]

    @property
    def name(self) -> str:
        """The hub id the model was loaded from, or its folder's name."""
        return self._name

    def __repr__(self) -> str:
        return (
            f"JanusPro(name={self._name!r}, device={self.device!r}, dtype={self.dtype!r}, "
            f"parameters={self.num_parameters / 1e6:.1f}M, layout={self._info['layout']!r})"
        )

    # ------------------------------------------------------------------ high level
    @overload
    def understand(
        self,
        image: ImageInput | Sequence[ImageInput] | None,
        question: str,
        *,
        max_new_tokens: int = ...,
        do_sample: bool = ...,
        temperature: float = ...,
        top_p: float | None = ...,
        top_k: int | None = ...,
        repetition_penalty: float | None = ...,
        seed: int | None = ...,
        system_prompt: str | None = ...,
        on_token: Callable[[int], Any] | None = ...,
        stream: Literal[False] = ...,
    ) -> str: ...

    @overload
    def understand(
        self,
        image: ImageInput | Sequence[ImageInput] | None,
        question: str,
        *,
        max_new_tokens: int = ...,
        do_sample: bool = ...,
        temperature: float = ...,
        top_p: float | None = ...,
        top_k: int | None = ...,
        repetition_penalty: float | None = ...,
        seed: int | None = ...,
        system_prompt: str | None = ...,
        on_token: Callable[[int], Any] | None = ...,
        stream: Literal[True],
    ) -> Iterator[str]: ...

    def understand(
        self,
        image: ImageInput | Sequence[ImageInput] | None,
        question: str,
        *,
        max_new_tokens: int = 512,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float | None = None,
        top_k: int | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        system_prompt: str | None = None,
        on_token: Callable[[int], Any] | None = None,
        stream: bool = False,
    ) -> str | Iterator[str]:
        """Answer ``question`` about one image (or a list of images, or none).

        The prompt is the official one: the default system prompt, then
        ``<|User|>: <image_placeholder>\\n{question}``, then ``<|Assistant|>:``. With several
        images, one placeholder line per image is put before the question, unless the question
        already contains ``<image_placeholder>`` tags (then they mark where each image goes).

        Args:
            image: a PIL image, an ``HxWx3`` uint8 array, a file path, encoded image bytes, a
                list of those, or ``None`` for a text-only question.
            question: the user's question.
            max_new_tokens: most tokens to generate (default 512, the official value); the
                answer stops earlier at the end-of-sentence token.
            do_sample: sample instead of greedy decoding (the official default is greedy).
            temperature: softmax temperature when sampling (0 means greedy).
            top_p: nucleus sampling threshold in (0, 1], or ``None``.
            top_k: keep only the k most likely tokens, or ``None``.
            repetition_penalty: transformers-style penalty (> 1 discourages repeats), or ``None``.
            seed: makes sampling reproducible; ``None`` draws a fresh seed.
            system_prompt: replaces the default system prompt (``""`` for none).
            on_token: called with each new token id as it is generated.
            stream: return an iterator that yields the answer's text pieces as they are
                decoded (whole UTF-8 characters only) instead of the finished string. Stopping
                the iteration early stops the generation.

        Returns:
            The answer text, special tokens removed (or, with ``stream=True``, an iterator of
            its pieces; joined, they equal the non-streamed answer).
        """
        images = to_rgb_arrays(image)
        if not isinstance(question, str):
            raise InputError(f"question must be a string, got {type(question).__name__}")
        content = question
        if IMAGE_TAG not in question:
            content = "".join(IMAGE_TAG + "\n" for _ in images) + question
        return self._reply(
            [("user", content)],
            images,
            system_prompt,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
            seed=seed,
            on_token=on_token,
            stream=stream,
        )

    @overload
    def chat(
        self,
        messages: Iterable[Message],
        *,
        max_new_tokens: int = ...,
        do_sample: bool = ...,
        temperature: float = ...,
        top_p: float | None = ...,
        top_k: int | None = ...,
        repetition_penalty: float | None = ...,
        seed: int | None = ...,
        system_prompt: str | None = ...,
        on_token: Callable[[int], Any] | None = ...,
        stream: Literal[False] = ...,
    ) -> str: ...

    @overload
    def chat(
        self,
        messages: Iterable[Message],
        *,
        max_new_tokens: int = ...,
        do_sample: bool = ...,
        temperature: float = ...,
        top_p: float | None = ...,
        top_k: int | None = ...,
        repetition_penalty: float | None = ...,
        seed: int | None = ...,
        system_prompt: str | None = ...,
        on_token: Callable[[int], Any] | None = ...,
        stream: Literal[True],
    ) -> Iterator[str]: ...

    def chat(
        self,
        messages: Iterable[Message],
        *,
        max_new_tokens: int = 512,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float | None = None,
        top_k: int | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        system_prompt: str | None = None,
        on_token: Callable[[int], Any] | None = None,
        stream: bool = False,
    ) -> str | Iterator[str]:
        """Continue a multi-turn conversation and return the assistant's next reply.

        ``messages`` alternate user and assistant turns, as in the official code::

            [{"role": "user", "content": "<image_placeholder>\\nWhat is this?", "images": [img]},
             {"role": "assistant", "content": "A cat."},
             {"role": "user", "content": "What colour is it?"}]

        Each ``<image_placeholder>`` takes the next image of its message's ``images``; a message
        with images but no placeholder gets one placeholder line per image before its text.
        Other arguments (``stream`` included) are as in :meth:`understand`.
        """
        turns, images = self._normalise_messages(messages)
        return self._reply(
            turns,
            images,
            system_prompt,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
            seed=seed,
            on_token=on_token,
            stream=stream,
        )

    def _reply(
        self,
        turns: Sequence[tuple[str, str]],
        images: list[np.ndarray],
        system_prompt: str | None,
        *,
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        top_p: float | None,
        top_k: int | None,
        repetition_penalty: float | None,
        seed: int | None,
        on_token: Callable[[int], Any] | None,
        stream: bool,
    ) -> str | Iterator[str]:
        _check_int("max_new_tokens", max_new_tokens, minimum=0)
        if top_k is not None:
            _check_int("top_k", top_k, minimum=1)
        if seed is not None:
            _check_int("seed", seed, minimum=0)
        if on_token is not None and not callable(on_token):
            raise InputError(f"on_token must be callable, got {type(on_token).__name__}")
        prompt = self.format_prompt(turns, system_prompt=system_prompt)

        def run(callback: Callable[[int], Any] | None) -> list[int]:
            ids, _seed = self._native.generate_reply(
                prompt,
                images,
                max_new_tokens,
                bool(do_sample),
                float(temperature),
                top_k,
                None if top_p is None else float(top_p),
                None if repetition_penalty is None else float(repetition_penalty),
                seed,
                callback,
            )
            return list(ids)

        def decode(ids: Sequence[int]) -> str:
            return self._native.decode(list(ids), skip_special_tokens=True)

        if stream:
            return stream_tokens(run, decode, on_token)
        return decode(run(on_token))

    @staticmethod
    def _normalise_messages(messages: Iterable[Message]) -> tuple[list[tuple[str, str]], list[np.ndarray]]:
        turns: list[tuple[str, str]] = []
        images: list[np.ndarray] = []
        for i, m in enumerate(messages):
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise InputError(f"message {i} must be a dict with 'role' and 'content' keys, got {m!r}")
            content = m["content"]
            if not isinstance(content, str):
                raise InputError(f"message {i}: content must be a string, got {type(content).__name__}")
            imgs = to_rgb_arrays(m.get("images"))
            if imgs and IMAGE_TAG not in content:
                content = "".join(IMAGE_TAG + "\n" for _ in imgs) + content
            elif content.count(IMAGE_TAG) != len(imgs):
                raise InputError(
                    f"message {i} has {content.count(IMAGE_TAG)} {IMAGE_TAG} tags but {len(imgs)} images"
                )
            turns.append((str(m["role"]), content))
            images.extend(imgs)
        if not turns:
            raise InputError("the conversation is empty")
        return turns, images

    # ------------------------------------------------------------------ text-to-image
    def generate(
        self,
        prompt: str | Sequence[str],
        *,
        num_images: int = 1,
        cfg_weight: float = 5.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        progress: Progress = True,
        max_images: int = MAX_IMAGES_PER_CALL,
    ) -> GenerationResult:
        """Generate images from a text prompt (or a list of prompts, batched together).

        Follows the official loop: the prompt in the SFT format with an empty system prompt and
        ``<begin_of_image>`` appended; for every image a conditional and an unconditional row;
        per step ``logits = u + cfg_weight·(c − u)``, softmax at ``temperature``, one draw per
        image; (image_size/16)² steps; the VQ decoder turns the tokens into pixels.

        Args:
            prompt: the image description, or a list of them.
            num_images: images per prompt (the official ``parallel_size``), default 1.
            cfg_weight: classifier-free guidance weight (official default 5).
            temperature: sampling temperature (official default 1); 0 takes the argmax.
            top_k, top_p: optional extra filtering of the guided distribution (off by default,
                as in the official code).
            seed: makes the images reproducible in any thread; ``None`` draws a fresh seed,
                reported as ``result.seed``.
            progress: ``True`` shows a tqdm bar, ``False`` nothing, a callable gets
                ``(done, total)`` after each token.
            max_images: refuse calls asking for more images than this (memory guard).

        Returns:
            A :class:`GenerationResult` with ``.images`` (PIL), ``.array`` (uint8 ``N×H×W×3``),
            ``.tokens`` (``N×grid²``) and ``.seed``. Ctrl-C raises ``KeyboardInterrupt`` within one
            step.
        """
        tokens, used_seed, prompts = self._generate_tokens(
            prompt, num_images, cfg_weight, temperature, top_k, top_p, seed, progress, max_images
        )
        array = self.decode_tokens(tokens)
        return GenerationResult(array, tokens, used_seed, prompts)

    def generate_tokens(
        self,
        prompt: str | Sequence[str],
        *,
        num_images: int = 1,
        cfg_weight: float = 5.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        progress: Progress = True,
        max_images: int = MAX_IMAGES_PER_CALL,
    ) -> np.ndarray:
        """Like :meth:`generate` but stops before the VQ decoder: returns the ``(N, grid²)``
        int64 image tokens (decode them later with :meth:`decode_tokens`)."""
        tokens, _seed, _prompts = self._generate_tokens(
            prompt, num_images, cfg_weight, temperature, top_k, top_p, seed, progress, max_images
        )
        return tokens

    def _generate_tokens(self, prompt, num_images, cfg_weight, temperature, top_k, top_p, seed, progress, max_images):
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise InputError("prompt must be a string or a non-empty list of strings")
        _check_int("num_images", num_images, minimum=1)
        _check_int("max_images", max_images, minimum=1)
        if top_k is not None:
            _check_int("top_k", top_k, minimum=1)
        if seed is not None:
            _check_int("seed", seed, minimum=0)
        for name, value in [("cfg_weight", cfg_weight), ("temperature", temperature)]:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise InputError(f"{name} must be a number, got {value!r}")
        total = self.image_token_grid ** 2
        on_step, close = progress_hook(progress, total, "janus-rs generate")
        try:
            tokens, used_seed = self._native.generate_image_tokens(
                prompts, num_images, float(cfg_weight), float(temperature), top_k,
                None if top_p is None else float(top_p), seed, max_images, on_step,
            )
        finally:
            close()
        per_image = [p for p in prompts for _ in range(num_images)]
        return tokens.astype(np.int64), used_seed, per_image

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
        return self._native.image_token_embeddings([int(t) for t in tokens])

    # ------------------------------------------------------------------ pipeline stages
    def format_prompt(self, messages: Sequence[tuple[str, str]], *, system_prompt: str | None = None) -> str:
        """Render ``(role, content)`` turns with the official SFT template, ending with an empty
        assistant turn for the model to complete. ``system_prompt=None`` uses the default."""
        system = DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt
        return self._native.render_prompt([(str(r), str(c)) for r, c in messages], system)

    def prompt_ids(self, prompt: str) -> np.ndarray:
        """Token ids of a rendered prompt: BOS first, each ``<image_placeholder>`` expanded to
        ``<begin_of_image>`` + N × ``<image_placeholder>`` + ``<end_of_image>``."""
        ids, _n = self._native.prompt_ids(prompt)
        return np.asarray(ids, dtype=np.int64)

    def encode(self, text: str, *, add_bos: bool = False) -> list[int]:
        """Tokenize ``text`` (no image expansion)."""
        return self._native.encode(text, add_bos=add_bos)

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = True) -> str:
        """Detokenize ``ids``."""
        return self._native.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_id(self, token: str) -> int | None:
        """Id of a token string in this checkpoint's tokenizer, or ``None``."""
        return self._native.token_to_id(token)

    def resize_image(self, image: ImageInput) -> np.ndarray:
        """The resize step of preprocessing alone: long side to ``image_size``, PIL-style
        antialiased bicubic. Returns ``H'xW'x3`` uint8."""
        return self._native.resize_image(to_rgb_array(image))

    def preprocess(self, images: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """Pixel values ``(n, 3, S, S)`` float32 as the official ``VLMImageProcessor`` makes them."""
        return self._native.preprocess_images(to_rgb_arrays(images))

    def vision_features(self, pixel_values: np.ndarray) -> np.ndarray:
        """SigLIP output ``(n, N, width)`` for pixel values ``(n, 3, S, S)``."""
        return self._native.vision_features(_f32(pixel_values, "pixel_values"))

    def align_image_features(self, features: np.ndarray) -> np.ndarray:
        """The understanding aligner (Linear → GELU → Linear) on SigLIP features."""
        return self._native.align_image_features(_f32(features, "features"))

    def inputs_embeds(self, input_ids: Sequence[int] | np.ndarray, pixel_values: np.ndarray | None = None) -> np.ndarray:
        """LLM input embeddings ``(T, hidden)``: token embeddings with the image positions
        replaced by the aligned SigLIP features of ``pixel_values`` (one image per block)."""
        ids = [int(i) for i in np.asarray(input_ids).reshape(-1)]
        if any(i < 0 for i in ids):
            raise InputError("input_ids must be non-negative")
        px = None if pixel_values is None else _f32(pixel_values, "pixel_values")
        return self._native.inputs_embeds(ids, px)

    def forward(self, inputs_embeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the LLM on ``(T, hidden)`` or ``(B, T, hidden)`` embeddings from position 0.

        Returns ``(last_hidden_state, logits)``: the final-norm hidden states and the
        ``lm_head`` logits for every position."""
        return self._native.forward(_f32(inputs_embeds, "inputs_embeds"))


def _f32(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return arr


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
