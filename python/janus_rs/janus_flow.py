"""``JanusFlow``: JanusFlow-1.3B (understanding + rectified-flow image generation) from Python."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from . import _backend, _native
from ._chat import ChatModel, _check_int, _f32, _per_prompt_counts, _per_prompt_seeds, _prompts, _to_float
from .errors import InputError, InputTypeError
from .generation import GenerationResult, Progress, progress_hook
from .janus_pro import MAX_IMAGES_PER_CALL

DEFAULT_VAE = "stabilityai/sdxl-vae"
"""The VAE JanusFlow was trained with (the official code loads it from this hub id)."""

__all__ = ["JanusFlow", "DEFAULT_VAE"]


class JanusFlow(ChatModel):
    """A loaded JanusFlow checkpoint (``deepseek-ai/JanusFlow-1.3B`` layout) and its SDXL VAE.

    Load with :meth:`from_pretrained`; ask about images with :meth:`understand` (optionally
    streaming the answer) or :meth:`chat`, exactly as with :class:`JanusPro`; make images with
    :meth:`generate` (rectified flow: Euler steps on an SDXL-VAE latent, classifier-free
    guidance, then the VAE decoder). Lower-level methods expose each stage as numpy arrays:
    :meth:`preprocess`, :meth:`vision_features`, :meth:`align_image_features`,
    :meth:`inputs_embeds`, :meth:`forward` for understanding; :meth:`generation_prompt_ids`,
    :meth:`flow_encode`, :meth:`flow_decode`, :meth:`velocity`, :meth:`generate_latents`,
    :meth:`decode_latents` for generation.

    Threads: as :class:`JanusPro` (calls release the GIL and run concurrently; a seeded call
    gives the same result whatever else runs).
    """

    def __init__(self, native: _native.JanusFlowModel, name: str | None = None) -> None:
        super().__init__(native, name)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        vae: str | os.PathLike[str] | None = None,
        revision: str | None = None,
        vae_revision: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        vae_dtype: str | None = None,
        quantize: str | None = None,
        threads: int | None = None,
        roles: tuple[str, str] | None = None,
        local_files_only: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | None = None,
        progress: bool = True,
    ) -> "JanusFlow":
        """Load a JanusFlow checkpoint and its VAE from local folders or the Hugging Face hub.

        Args:
            name_or_path: a folder in the official layout (``config.json`` with
                ``vision_und_enc_config`` / ``vision_gen_enc_config`` / ``vision_gen_dec_config``,
                ``tokenizer.json``, the processor configs, ``pytorch_model.bin`` or safetensors,
                sharded or not), or a hub id such as ``"deepseek-ai/JanusFlow-1.3B"`` (looked up
                and downloaded as in :meth:`JanusPro.from_pretrained`).
            vae: the diffusers ``AutoencoderKL`` that decodes latents to pixels: a folder with
                ``config.json`` and ``diffusion_pytorch_model.safetensors`` (or ``.bin``), or a
                hub id, normally ``"stabilityai/sdxl-vae"`` (:data:`DEFAULT_VAE`, what the
                official code uses). ``None`` loads no VAE: understanding and
                :meth:`generate_latents` work, :meth:`generate` and :meth:`decode_latents`
                raise :class:`InputError`.
            revision: branch, tag or commit of the model's hub id.
            vae_revision: branch, tag or commit of the VAE's hub id.
            device: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``.
            dtype: the model's dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, or ``None`` /
                ``"auto"`` (on CUDA bfloat16; on CPU bfloat16 for checkpoints stored in bf16, else
                float32); the short names of
                :meth:`JanusPro.from_pretrained` are accepted too. On CPU ``"bfloat16"`` keeps
                the LLM's and SigLIP's weight matrices in bf16 and computes in float32
                (``info["compute_dtype"]``).
            quantize: ``None`` (default), ``"q8_0"``, ``"q6_k"`` or ``"q4_k"``: the LLM's
                projections and ``lm_head`` block-quantized, as in
                :meth:`JanusPro.from_pretrained`.
            threads: CPU threads for this process, as in :meth:`JanusPro.from_pretrained`.
            vae_dtype: the VAE's dtype: ``None`` or ``"auto"`` (float32 on CPU; on CUDA the
                model's dtype, bfloat16 if that is float16), ``"float32"``, or ``"bfloat16"`` (CUDA only).
                ``"float16"`` is refused: the SDXL VAE overflows in it (NaN images).
            roles: the chat role strings ``(user, assistant)``; default ``("User",
                "Assistant")``, as JanusFlow was trained.
            local_files_only: as in :meth:`JanusPro.from_pretrained` (applies to both the model
                and the VAE).
            cache_dir: as in :meth:`JanusPro.from_pretrained` (applies to both).
            token: as in :meth:`JanusPro.from_pretrained` (applies to both).
            progress: as in :meth:`JanusPro.from_pretrained` (applies to both).

        Raises:
            NotFoundError: a folder or required file is missing (the model's or the VAE's).
            ConfigError: an unusable config, e.g. a VAE folder that holds no diffusers VAE or
                one whose latents are not 4-channel.
            WeightsError, TokenizerError: unusable weights or tokenizer (the message names them).
            InputError: ``vae_dtype="float16"`` (or bfloat16 on the CPU), a malformed ``device``
                or ``dtype``, or an argument of the wrong type (checked before anything loads).
            DeviceError: the device is not available.
        """
        quantize = _backend.check_quantize(quantize)
        threads = _backend.check_threads(threads)
        name, roles = _backend.check_load_args(
            name_or_path, device=device, dtypes={"dtype": dtype, "vae_dtype": vae_dtype}, roles=roles,
            strings={"revision": revision, "vae_revision": vae_revision, "token": token},
        )
        if vae is not None and not isinstance(vae, (str, os.PathLike)):
            raise InputTypeError(f"vae must be a folder path or a hub id such as {DEFAULT_VAE!r}, got {vae!r}")
        if isinstance(vae_dtype, str) and vae_dtype.strip().lower() == "auto":
            vae_dtype = None  # "auto" means the default, as for dtype
        if vae is None and vae_revision is not None:
            raise InputError("vae_revision was given without vae")
        cache = None if cache_dir is None else os.fspath(cache_dir)
        path = _native.resolve_pretrained(
            name, revision=revision, local_files_only=bool(local_files_only), cache_dir=cache,
            token=token, progress=bool(progress),
        )
        vae_path = None
        if vae is not None:
            vae_path = _native.resolve_pretrained(
                os.fspath(vae), revision=vae_revision, local_files_only=bool(local_files_only),
                cache_dir=cache, token=token, progress=bool(progress), kind="diffusers_vae",
            )
        native = _backend.module_for(device).JanusFlowModel.load(
            path, device=device, dtype=dtype, roles=roles, vae=vae_path, vae_dtype=vae_dtype,
            quantize=quantize, threads=threads,
        )
        display = name if os.path.normpath(path) != os.path.normpath(name) else None
        return cls(native, name=display)

    # ------------------------------------------------------------------ facts
    def __repr__(self) -> str:
        vae = self._info["vae_path"]
        vae_part = "None" if vae is None else f"{os.path.basename(os.path.normpath(vae))!r} ({self._info['vae_dtype']})"
        return (
            f"JanusFlow(name={self._name!r}, device={self.device!r}, dtype={self.dtype!r}"
            f"{self._quantize_repr()}, parameters={self.num_parameters / 1e6:.1f}M, vae={vae_part})"
        )

    @property
    def has_vae(self) -> bool:
        """Whether a VAE is loaded (needed by :meth:`generate` and :meth:`decode_latents`)."""
        return self._info["vae_path"] is not None

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, h, w)`` of one image's latent: ``(4, 48, 48)`` for 384-pixel images."""
        c, s = int(self._info["latent_channels"]), int(self._info["latent_size"])
        return (c, s, s)

    @staticmethod
    def schedule(num_steps: int = 30) -> tuple[np.ndarray, float]:
        """The sampler's ``(timesteps, dt)`` for ``num_steps`` Euler steps, rounded to bfloat16
        as the official loop does: ``t_s = bf16(s / S · 1000)`` (0, 33.25, 66.5, 100, … for
        S = 30) and ``dt = bf16(1 / S)`` (0.033447265625 for S = 30)."""
        _check_int("num_steps", num_steps, minimum=1)
        t, dt = _native.JanusFlowModel.flow_schedule(int(num_steps))
        return np.asarray(t, dtype=np.float32), float(dt)

    # ------------------------------------------------------------------ text-to-image
    def generate(
        self,
        prompt: str | Sequence[str],
        *,
        num_images: int | Sequence[int] = 1,
        cfg_weight: float = 2.0,
        num_steps: int = 30,
        seed: int | Sequence[int] | None = None,
        initial_noise: np.ndarray | None = None,
        progress: Progress = True,
        max_images: int = MAX_IMAGES_PER_CALL,
    ) -> GenerationResult:
        """Generate images from a text prompt (or a list of prompts).

        Follows the official JanusFlow sampler: the prompt ``User: {prompt}\\n\\nAssistant:``
        (empty system prompt) plus the generation tag; for every image a conditional row and an
        unconditional row (BOS only, the rest of its prompt masked); ``num_steps`` Euler steps
        from Gaussian noise at ``t = 0`` to the image at ``t = 1``, each with
        ``v = cfg_weight·v_cond − (cfg_weight − 1)·v_uncond``; then the SDXL VAE decodes
        ``latent / scaling_factor`` and pixels are ``uint8((clip(x, −1, 1) + 1) / 2 · 255)``.
        The prompt is run through the LLM once and cached; each step only runs the time
        embedding and the latent tokens (the official code recomputes the prompt every step;
        the result is the same).

        Args:
            prompt: the image description, or a list of them (each gets ``num_images`` images;
                prompts are sampled one after another).
            num_images: images per prompt (the official ``batch_size``), default 1, or a list
                with one count per prompt.
            cfg_weight: classifier-free guidance weight ``w`` (default 2.0, the official
                README's and demo's value; 1.0 disables guidance). Any finite number.
            num_steps: Euler steps (default 30, the official value), an integer >= 1.
            seed: seeds the initial noise: one int for every prompt, or a list with one per
                prompt; ``None`` draws a fresh seed, reported as ``result.seed``. Image ``i`` of
                a prompt takes its noise from random stream ``i`` of its prompt's seed, so it is
                the same whatever else the call holds. The noise comes from janus-rs's own
                generator (ChaCha8 + Box–Muller), not torch's: the same seed does not give the
                official code's image. To reproduce an official run, pass its noise as
                ``initial_noise``. Unused when ``initial_noise`` is given.
            initial_noise: the starting latents, an ``(N, 4, H/8, W/8)`` float array with
                ``N`` the number of images in all (prompt-major), instead of seeded noise.
            progress: ``True`` shows a tqdm bar (one tick per Euler step), ``False`` nothing,
                a callable gets ``(done, total)`` after each step.
            max_images: refuse calls asking for more images than this (memory guard).

        Returns:
            A :class:`GenerationResult` with ``.images`` (PIL), ``.array`` (uint8
            ``N×H×W×3``), ``.latents`` and ``.tokens`` (both the final latents
            ``N×4×(H/8)×(W/8)`` float32, decodable with :meth:`decode_latents`) and ``.seed``.
            Ctrl-C raises ``KeyboardInterrupt`` within one step.

        Raises:
            InputError: bad arguments (the model stays usable), or no VAE is loaded.
        """
        self._require_vae()
        latents, used_seed, prompts, seeds = self._sample(
            prompt, num_images, cfg_weight, num_steps, seed, initial_noise, progress, max_images,
            keep_all=False, cache_prefix=True,
        )
        array = self.decode_latents(latents)
        return GenerationResult(array, latents, used_seed, prompts, latents=latents, seeds=seeds)

    def generate_latents(
        self,
        prompt: str | Sequence[str],
        *,
        num_images: int | Sequence[int] = 1,
        cfg_weight: float = 2.0,
        num_steps: int = 30,
        seed: int | Sequence[int] | None = None,
        initial_noise: np.ndarray | None = None,
        progress: Progress = True,
        max_images: int = MAX_IMAGES_PER_CALL,
        return_all_steps: bool = False,
        cache_prefix: bool = True,
    ) -> np.ndarray:
        """Like :meth:`generate` but stops before the VAE (needs none): returns the final
        latents ``(N, 4, H/8, W/8)`` float32, or with ``return_all_steps=True`` every latent
        ``(num_steps + 1, N, 4, H/8, W/8)`` (the initial noise first). ``cache_prefix=False``
        recomputes the whole LLM sequence at every step, as the official code does (slower;
        same latents up to float rounding)."""
        latents, _seed, _prompts, _seeds = self._sample(
            prompt, num_images, cfg_weight, num_steps, seed, initial_noise, progress, max_images,
            keep_all=bool(return_all_steps), cache_prefix=bool(cache_prefix),
        )
        return latents

    def _sample(
        self,
        prompt: str | Sequence[str],
        num_images: int | Sequence[int],
        cfg_weight: float,
        num_steps: int,
        seed: int | Sequence[int] | None,
        initial_noise: np.ndarray | None,
        progress: Progress,
        max_images: int,
        *,
        keep_all: bool,
        cache_prefix: bool,
    ) -> tuple[np.ndarray, int | list[int], list[str], list[int]]:
        prompts = _prompts(prompt)
        counts = _per_prompt_counts(num_images, len(prompts))
        seeds, used_seed = _per_prompt_seeds(seed, len(prompts))
        _check_int("num_steps", num_steps, minimum=1)
        _check_int("max_images", max_images, minimum=1)
        w = _finite("cfg_weight", cfg_weight)
        noise = None
        if initial_noise is not None:
            noise = self._latents_arg(initial_noise, "initial_noise", count=sum(counts))
        on_step, close = progress_hook(progress, len(prompts) * int(num_steps), "janus-rs generate", unit="step")
        try:
            latents = self._native.generate_latents(
                prompts, counts, w, int(num_steps), seeds, noise, int(max_images),
                keep_all, cache_prefix, on_step,
            )
        finally:
            close()
        per_image = [p for p, n in zip(prompts, counts) for _ in range(n)]
        image_seeds = [s for s, n in zip(seeds, counts) for _ in range(n)]
        return latents, used_seed, per_image, image_seeds

    def _latents_arg(self, latents: Any, name: str, count: int | None = None, any_size: bool = False) -> np.ndarray:
        """``latents`` as a float32 array of shape (count, C, h, w); ``any_size``: any h, w >= 1."""
        arr = np.asarray(latents)
        if arr.dtype.kind != "f":
            raise InputError(f"{name} must be a float array, got dtype {arr.dtype}")
        c, h, w = self.latent_shape
        n = "N" if count is None else str(count)
        ok = arr.ndim == 4 and arr.shape[0] > 0 and arr.shape[1] == c and (count is None or arr.shape[0] == count)
        if any_size:
            ok = ok and arr.shape[2] > 0 and arr.shape[3] > 0
        else:
            ok = ok and arr.shape[2:] == (h, w)
        if not ok:
            want = f"({n}, {c}, h, w)" if any_size else f"({n}, {c}, {h}, {w})"
            raise InputError(f"{name} must have shape {want}, got {arr.shape}")
        return _f32(arr, name)

    def _require_vae(self) -> None:
        if not self.has_vae:
            raise InputError(
                "no VAE is loaded: pass vae= to JanusFlow.from_pretrained (a diffusers AutoencoderKL "
                f"folder or hub id, normally {DEFAULT_VAE!r}) to decode images"
            )

    def decode_latents(self, latents: np.ndarray) -> np.ndarray:
        """VAE-decode latents ``(N, 4, h, w)`` (any size; ``(N, 4, H/8, W/8)`` from the sampler) to
        uint8 images ``(N, 8h, 8w, 3)``:
        ``vae.decode(latents / scaling_factor)``, then ``uint8((clip(x, −1, 1) + 1) / 2 · 255)``
        (truncation, as the official demo converts)."""
        self._require_vae()
        return self._native.decode_latents(self._latents_arg(latents, "latents", any_size=True))

    def decode_latents_float(self, latents: np.ndarray) -> np.ndarray:
        """The VAE decoder's float output ``(N, 3, 8h, 8w)`` (≈ [−1, 1], unclipped) for latents
        ``(N, 4, h, w)``: diffusers ``vae.decode(latents / scaling_factor).sample``."""
        self._require_vae()
        return self._native.decode_latents_float(self._latents_arg(latents, "latents", any_size=True))

    def generation_prompt_ids(self, prompt: str) -> np.ndarray:
        """Token ids of the official generation prompt: BOS, ``User: {prompt}\\n\\nAssistant:``,
        ``<｜begin▁of▁generation｜>`` (the sampler drops the last id, as the official code does)."""
        return np.asarray(self._native.generation_prompt_ids(prompt), dtype=np.int64)

    def flow_encode(self, latents: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The generation encoder (``vision_gen_enc_model``) and ``vision_gen_enc_aligner`` at
        timestep ``t`` (0..1000) for latents ``(R, 4, h, w)``. Returns ``x_emb``
        ``(R, C, h/2, w/2)`` (also the decoder's skip input), ``t_emb`` ``(R, hidden)`` and the
        LLM's latent tokens ``(R, h·w/4, hidden)`` in raster order."""
        return self._native.flow_encode(self._latents_arg(latents, "latents"), _finite("t", t))

    def flow_decode(
        self, hidden: np.ndarray, x_emb: np.ndarray, t_emb: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The generation head: from the LLM's final-norm hidden states of the latent tokens
        ``(R, N, hidden)``, ``vision_gen_dec_aligner(vision_gen_dec_aligner_norm(h))`` as an image
        ``(R, C, g, g)`` and the decoder's velocity ``(R, 4, 2g, 2g)``, given the encoder's
        ``x_emb`` and ``t_emb``. Returns ``(decoder_input, velocity)``."""
        return self._native.flow_decode(
            _f32(hidden, "hidden"), _f32(x_emb, "x_emb"), _f32(t_emb, "t_emb")
        )

    def velocity(
        self, prompt: str, latents: np.ndarray, t: float, *, cfg_weight: float = 2.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """One evaluation of the sampler's velocity field for ``prompt`` at latents
        ``(B, 4, h, w)`` and timestep ``t`` (0..1000; the sampler uses ``schedule()`` values).
        Returns the velocities of the ``2B`` CFG rows before guidance (conditional rows first)
        and the guided velocity ``cfg_weight·v_cond − (cfg_weight − 1)·v_uncond`` ``(B, ...)``."""
        return self._native.velocity(
            prompt, self._latents_arg(latents, "latents"), _finite("t", t), _finite("cfg_weight", cfg_weight)
        )


def _finite(name: str, value: Any) -> float:
    x = _to_float(name, value)
    if not math.isfinite(x):
        raise InputError(f"{name} must be finite, got {value!r}")
    return x
