"""What every janus-rs model class shares: facts about the loaded checkpoint, understanding
(``understand``, ``chat``, streaming) and the pipeline stages of the understanding path, over a
native model that offers the same methods (``JanusProModel``, ``JanusFlowModel``)."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence, overload

import numpy as np

from . import _backend
from .errors import InputError, InputTypeError
from .images import ImageInput, to_rgb_array, to_rgb_arrays
from ._messages import normalise_conversation, with_image_tags
from .streaming import stream_tokens

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual content "
    "that the user provides, and assist the user with a variety of tasks using natural language."
)
"""The system prompt the official processor uses for understanding (Janus, Janus-Pro, JanusFlow)."""

Message = Mapping[str, Any]
"""A conversation turn: ``{"role": "user" | "assistant", "content": str, "images": [...]}``.

Roles may also be given as the checkpoint's own strings (``"<|User|>"``, ``"User"``)."""


class ChatModel:
    """Base of :class:`~janus_rs.JanusPro` and :class:`~janus_rs.JanusFlow`: the loaded
    checkpoint's facts, :meth:`understand` / :meth:`chat`, and the understanding pipeline stages
    as numpy arrays. Not instantiated directly."""

    def __init__(self, native: Any, name: str | None = None) -> None:
        self._native = native
        self._info = dict(native.info())
        _backend.log_weight_formats(self._info)
        self._name = name if name is not None else os.path.basename(os.path.normpath(str(self._info["path"])))
        self._info["name"] = self._name

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
        """The dtype asked for at load (of the weight matrices; on CPU compute is float32)."""
        return self._info["dtype"]

    @property
    def quantize(self) -> str | None:
        """The quantized format of the LLM's projections and ``lm_head``, or None."""
        return self._info["quantize"]

    def _quantize_repr(self) -> str:
        return f", quantize={self.quantize!r}" if self.quantize else ""

    @property
    def num_parameters(self) -> int:
        """Parameters (tensor elements) in the checkpoint (2,089,232,011 for Janus-Pro-1B)."""
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
        ``<|User|>: <image_placeholder>\\n{question}``, then ``<|Assistant|>:`` (the roles are
        ``User``/``Assistant`` for Janus-1.3B and JanusFlow). With several
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
        content, images = _question_turn(image, question)
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

    def understand_many(
        self,
        requests: Sequence[tuple[ImageInput | Sequence[ImageInput] | None, str]],
        *,
        max_new_tokens: int = 512,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float | None = None,
        top_k: int | None = None,
        repetition_penalty: float | None = None,
        seed: int | Sequence[int] | None = None,
        system_prompt: str | None = None,
    ) -> list[str]:
        """Answer many ``(image or images or None, question)`` pairs as one batch; returns the
        answers in order.

        The images of all requests go through SigLIP together and the prompts through the LLM as
        one left-padded, masked batch (prefill and decode), each row stopping at its own
        end-of-sentence token — faster than one call per request (decoding reads the weights
        once per step for every row). Each answer is what ``understand(image, question, ...)``
        gives with the same arguments (up to float rounding of batched matmuls): greedy answers
        match, and sampled ones use ``seed`` (one int for every request, or one per request) as
        one call per request would; ``None`` draws one fresh seed. Rows whose padded positions
        don't fit the context together run one after another. Memory: one KV cache row per
        request (checked before allocating, like every call).
        """
        if isinstance(requests, (str, bytes)) or not isinstance(requests, Sequence):
            raise InputTypeError(f"requests must be a list of (image, question) pairs, got {type(requests).__name__}")
        for i, r in enumerate(requests):
            if not (isinstance(r, (tuple, list)) and len(r) == 2):
                raise InputError(f"requests[{i}] must be an (image, question) pair, got {_describe(r)}")
        seeds, _ = _per_prompt_seeds(seed, len(requests))
        temperature, top_p, repetition_penalty = _sampling_args(
            max_new_tokens, temperature, top_p, top_k, repetition_penalty, system_prompt
        )
        if not requests:
            return []
        prompts, images = [], []
        for image, question in requests:
            content, arrays = _question_turn(image, question)
            prompts.append(self.format_prompt([("user", content)], system_prompt=system_prompt))
            images.append(arrays)
        replies = self._native.generate_replies(
            prompts, images, max_new_tokens, bool(do_sample), temperature, top_k, top_p, repetition_penalty, seeds,
        )
        return [self._native.decode(list(ids), skip_special_tokens=True) for ids in replies]

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
        with images but no placeholder gets one placeholder line per image before its text (the
        official training format). Images may be anything :meth:`understand` takes, or
        ``data:image/...;base64,...`` URLs. Roles are ``user``/``assistant`` (any case) or the
        checkpoint's own strings (``<|User|>``, ``User``); a trailing empty assistant turn is
        allowed; ``system`` messages become the system prompt (then don't also pass
        ``system_prompt``).

        The OpenAI and Hugging Face spellings work too, so their conversations need no rewriting::

            [{"role": "system", "content": "Answer briefly."},
             {"role": "user", "content": [
                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR..."}},
                 {"type": "image", "path": "cat.png"},          # HF: url | path | image | base64
                 {"type": "text", "text": "What differs between these two?"}]}]

        A message's images come first (its ``images`` list, then its image parts in order), one
        placeholder line each, then its text parts joined by newlines, unless the text places
        the ``<image_placeholder>`` tags itself. ``http(s)://`` image URLs are not downloaded
        here (``janus-rs serve`` fetches them, with limits). Other arguments (``stream``
        included) are as in :meth:`understand`.

        Raises:
            InputError: a malformed conversation (the message and part are named), e.g. an
                unknown part type, or placeholder tags that don't match the images.
            ImageError: an image that cannot be decoded (bad base64, not an image).
        """
        conversation = normalise_conversation(messages)
        if conversation.system_prompt is not None:
            if system_prompt is not None:
                raise InputError("the system prompt is given twice: as a system message and as system_prompt=")
            system_prompt = conversation.system_prompt
        return self._reply(
            conversation.turns,
            conversation.images,
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
        temperature, top_p, repetition_penalty = _sampling_args(
            max_new_tokens, temperature, top_p, top_k, repetition_penalty, system_prompt
        )
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
                temperature,
                top_k,
                top_p,
                repetition_penalty,
                seed,
                callback,
            )
            return list(ids)

        def decode(ids: Sequence[int]) -> str:
            return self._native.decode(list(ids), skip_special_tokens=True)

        if stream:
            return stream_tokens(run, decode, on_token)
        return decode(run(on_token))

    # ------------------------------------------------------------------ pipeline stages
    def format_prompt(self, messages: Sequence[tuple[str, str]], *, system_prompt: str | None = None) -> str:
        """Render ``(role, content)`` turns with the official SFT template, ending with an empty
        assistant turn for the model to complete. ``system_prompt=None`` uses the default."""
        system = DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt
        if not isinstance(system, str):
            raise InputTypeError(f"system_prompt must be a string or None, got {type(system).__name__}")
        turns = []
        for i, m in enumerate(messages):
            if not (isinstance(m, (tuple, list)) and len(m) == 2):
                raise InputTypeError(f"messages[{i}] must be a (role, content) pair, got {_describe(m)}")
            turns.append((str(m[0]), str(m[1])))
        return self._native.render_prompt(turns, system)

    def prompt_ids(self, prompt: str) -> np.ndarray:
        """Token ids of a rendered prompt: BOS first, each ``<image_placeholder>`` expanded to
        ``<begin_of_image>`` + N × ``<image_placeholder>`` + ``<end_of_image>``."""
        ids, _n = self._native.prompt_ids(prompt)
        return np.asarray(ids, dtype=np.int64)

    def encode(self, text: str, *, add_bos: bool = False) -> list[int]:
        """Tokenize ``text`` (no image expansion)."""
        if not isinstance(text, str):
            raise InputTypeError(f"text must be a string, got {type(text).__name__}")
        return self._native.encode(text, add_bos=add_bos)

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = True) -> str:
        """Detokenize ``ids``."""
        return self._native.decode(_token_ids("ids", ids), skip_special_tokens=skip_special_tokens)

    def token_id(self, token: str) -> int | None:
        """Id of a token string in this checkpoint's tokenizer, or ``None``."""
        if not isinstance(token, str):
            raise InputTypeError(f"token must be a string, got {type(token).__name__}")
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
        """The understanding aligner on SigLIP features: Linear → GELU → Linear (Janus-Pro's
        ``aligner``) or a single Linear (JanusFlow's ``vision_und_enc_aligner``)."""
        return self._native.align_image_features(_f32(features, "features"))

    def inputs_embeds(self, input_ids: Sequence[int] | np.ndarray, pixel_values: np.ndarray | None = None) -> np.ndarray:
        """LLM input embeddings ``(T, hidden)``: token embeddings with the image positions
        replaced by the aligned SigLIP features of ``pixel_values`` (one image per block).
        JanusFlow also replaces each image's ``<begin_of_image>`` embedding by its learned
        ``beg_of_und_embed``; ``<end_of_image>`` keeps its token embedding."""
        ids = _token_ids("input_ids", input_ids)
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


def _prompts(prompt: Any) -> list[str]:
    """A text-to-image ``prompt`` argument (a string or a non-empty list of strings) as a list."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    raise InputTypeError(f"prompt must be a string or a non-empty list of strings, got {_describe(prompt)}")


def _question_turn(image: Any, question: Any) -> tuple[str, list[np.ndarray]]:
    """The user turn of an ``understand`` question and its images as arrays."""
    images = to_rgb_arrays(image)
    if not isinstance(question, str):
        raise InputTypeError(f"question must be a string, got {type(question).__name__}")
    return with_image_tags(question, len(images)), images


def _sampling_args(
    max_new_tokens: Any, temperature: Any, top_p: Any, top_k: Any, repetition_penalty: Any, system_prompt: Any
) -> tuple[float, float | None, float | None]:
    """Type checks of the text-generation arguments (ranges are checked by the core);
    returns temperature, top_p and repetition_penalty as floats."""
    _check_int("max_new_tokens", max_new_tokens, minimum=0)
    temperature = _to_float("temperature", temperature)
    top_p = None if top_p is None else _to_float("top_p", top_p)
    repetition_penalty = None if repetition_penalty is None else _to_float("repetition_penalty", repetition_penalty)
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InputTypeError(f"system_prompt must be a string or None, got {type(system_prompt).__name__}")
    if top_k is not None:
        _check_int("top_k", top_k, minimum=1)
    return temperature, top_p, repetition_penalty


def _per_prompt_counts(num_images: Any, n_prompts: int) -> list[int]:
    """``num_images`` (one int, or one per prompt) as one count per prompt."""
    if isinstance(num_images, (list, tuple)):
        if len(num_images) != n_prompts:
            raise InputError(f"num_images has {len(num_images)} entries but there are {n_prompts} prompts")
        for i, n in enumerate(num_images):
            _check_int(f"num_images[{i}]", n, minimum=1)
        return [int(n) for n in num_images]
    _check_int("num_images", num_images, minimum=1)
    return [int(num_images)] * n_prompts


def _per_prompt_seeds(seed: Any, n_prompts: int) -> tuple[list[int], int | list[int]]:
    """One seed per prompt from ``seed`` (None: a fresh one for all, an int for all, or a list
    with one per prompt), and the value to report as ``result.seed``."""
    if seed is None:
        import secrets

        seed = secrets.randbits(64)
    if isinstance(seed, (list, tuple)):
        if len(seed) != n_prompts:
            raise InputError(f"seed has {len(seed)} entries but there are {n_prompts} prompts")
        for i, s in enumerate(seed):
            _check_int(f"seed[{i}]", s, minimum=0)
        seeds = [int(s) for s in seed]
        return seeds, list(seeds)
    _check_int("seed", seed, minimum=0)
    return [int(seed)] * n_prompts, int(seed)


def _describe(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 60 else type(value).__name__


U64_MAX = 2**64 - 1
"""Largest value of an integer parameter (seeds are 64-bit; counts are limited further by the core)."""


def _token_ids(name: str, ids: Any) -> list[int]:
    """Token ids (any integer sequence or array) as a list of ints in ``[0, 2**32)``."""
    try:
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
    except TypeError:
        raise InputTypeError(f"{name} must be a sequence of integer token ids, got {type(ids).__name__}") from None
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == object):
        raise InputTypeError(f"{name} must be integer token ids, got dtype {arr.dtype}")
    out = []
    for i in arr.reshape(-1).tolist():
        if isinstance(i, bool) or not isinstance(i, int):
            raise InputTypeError(f"{name} must be integer token ids, got {i!r}")
        if not 0 <= i < 2**32:
            raise InputError(f"{name} must be non-negative token ids below 2**32, got {i}")
        out.append(i)
    return out


def _check_int(name: str, value: Any, *, minimum: int, maximum: int = U64_MAX) -> None:
    """:class:`InputTypeError` unless ``value`` is an int (not a bool); :class:`InputError` unless
    ``minimum <= value <= maximum``. Both messages name the parameter and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value > maximum:
        raise InputError(f"{name} must be an integer >= {minimum} and <= {maximum}, got {value!r}")


def _to_float(name: str, value: Any) -> float:
    """``value`` as a float: :class:`InputTypeError` unless it is a real number (not a bool or a
    string), :class:`InputError` if it is an integer too large for a float. The range of each
    parameter is checked by the core, whose messages name it too."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise InputError(f"{name} must be a finite number, got an integer too large for a float: {value}") from None
