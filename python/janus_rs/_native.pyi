"""Type stubs for the native core. Use the documented wrappers in ``janus_rs`` instead."""

from os import PathLike
from typing import Any, Callable, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "cuda_compiled",
    "cuda_device_count",
    "set_num_threads",
    "num_threads",
    "resolve_pretrained",
    "JanusProModel",
    "JanusFlowModel",
    "decode_image",
]

__version__: str
cuda_compiled: bool

def cuda_device_count() -> int: ...
def set_num_threads(threads: int | None = None) -> int: ...
def num_threads() -> int | None: ...

def decode_image(data: bytes) -> npt.NDArray[np.uint8]: ...

def resolve_pretrained(
    name_or_path: str,
    revision: str | None = None,
    local_files_only: bool = False,
    cache_dir: str | PathLike[str] | None = None,
    token: str | None = None,
    progress: bool = True,
    kind: str = "janus",
) -> str: ...

@final
class JanusProModel:
    @staticmethod
    def load(
        path: str | PathLike[str],
        device: str = "cpu",
        dtype: str | None = None,
        roles: tuple[str, str] | None = None,
        quantize: str | None = None,
        threads: int | None = None,
    ) -> JanusProModel: ...
    def info(self) -> dict[str, Any]: ...
    def render_prompt(self, messages: list[tuple[str, str]], system_prompt: str) -> str: ...
    def prompt_ids(self, prompt: str) -> tuple[list[int], int]: ...
    def encode(self, text: str, add_bos: bool = False) -> list[int]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...
    def token_to_id(self, token: str) -> int | None: ...
    def resize_image(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]: ...
    def preprocess_images(self, images: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]: ...
    def vision_features(self, pixel_values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
    def align_image_features(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
    def inputs_embeds(
        self, ids: list[int], pixel_values: npt.NDArray[np.float32] | None = None
    ) -> npt.NDArray[np.float32]: ...
    def forward(
        self, inputs_embeds: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    def generate_reply(
        self,
        prompt: str,
        images: list[npt.NDArray[np.uint8]],
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        repetition_penalty: float | None,
        seed: int | None,
        on_token: Callable[[int], Any] | None = None,
    ) -> tuple[list[int], int]: ...
    def generate_replies(
        self,
        prompts: list[str],
        images: list[list[npt.NDArray[np.uint8]]],
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        repetition_penalty: float | None,
        seeds: list[int],
        on_token: Callable[[tuple[int, int]], Any] | None = None,
    ) -> list[list[int]]: ...
    def generate_image_tokens(
        self,
        prompts: list[str],
        num_images: list[int],
        cfg_weight: float,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        seeds: list[int],
        max_images: int,
        on_step: Callable[[int], Any] | None = None,
    ) -> npt.NDArray[np.uint32]: ...
    def decode_image_tokens(self, tokens: list[int], n: int) -> npt.NDArray[np.uint8]: ...
    def decode_image_tokens_float(self, tokens: list[int], n: int) -> npt.NDArray[np.float32]: ...
    def vq_pixels(self, images: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]: ...
    def encode_pixels(self, pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.uint32]: ...
    def encode_latent(self, pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
    def image_token_logits(self, hidden: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
    def image_token_embeddings(self, tokens: list[int]) -> npt.NDArray[np.float32]: ...
    def generation_prompt_ids(self, prompt: str) -> list[int]: ...

@final
class JanusFlowModel:
    @staticmethod
    def load(
        path: str | PathLike[str],
        device: str = "cpu",
        dtype: str | None = None,
        roles: tuple[str, str] | None = None,
        vae: str | PathLike[str] | None = None,
        vae_dtype: str | None = None,
        quantize: str | None = None,
        threads: int | None = None,
    ) -> JanusFlowModel: ...
    @staticmethod
    def flow_schedule(num_steps: int) -> tuple[list[float], float]: ...
    def info(self) -> dict[str, Any]: ...
    def render_prompt(self, messages: list[tuple[str, str]], system_prompt: str) -> str: ...
    def prompt_ids(self, prompt: str) -> tuple[list[int], int]: ...
    def encode(self, text: str, add_bos: bool = False) -> list[int]: ...
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...
    def token_to_id(self, token: str) -> int | None: ...
    def resize_image(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]: ...
    def preprocess_images(self, images: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]: ...
    def vision_features(self, pixel_values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
    def align_image_features(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
    def inputs_embeds(
        self, ids: list[int], pixel_values: npt.NDArray[np.float32] | None = None
    ) -> npt.NDArray[np.float32]: ...
    def forward(
        self, inputs_embeds: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    def generate_reply(
        self,
        prompt: str,
        images: list[npt.NDArray[np.uint8]],
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        repetition_penalty: float | None,
        seed: int | None,
        on_token: Callable[[int], Any] | None = None,
    ) -> tuple[list[int], int]: ...
    def generate_replies(
        self,
        prompts: list[str],
        images: list[list[npt.NDArray[np.uint8]]],
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        repetition_penalty: float | None,
        seeds: list[int],
        on_token: Callable[[tuple[int, int]], Any] | None = None,
    ) -> list[list[int]]: ...
    def generation_prompt_ids(self, prompt: str) -> list[int]: ...
    def generate_latents(
        self,
        prompts: list[str],
        num_images: list[int],
        cfg_weight: float,
        num_steps: int,
        seeds: list[int],
        initial_noise: npt.NDArray[np.float32] | None,
        max_images: int,
        keep_all: bool = False,
        cache_prefix: bool = True,
        on_step: Callable[[int], Any] | None = None,
    ) -> npt.NDArray[np.float32]: ...
    def decode_latents(self, latents: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]: ...
    def decode_latents_float(self, latents: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
    def flow_encode(
        self, latents: npt.NDArray[np.float32], t: float
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    def flow_decode(
        self,
        hidden: npt.NDArray[np.float32],
        x_emb: npt.NDArray[np.float32],
        t_emb: npt.NDArray[np.float32],
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
    def velocity(
        self, prompt: str, latents: npt.NDArray[np.float32], t: float, cfg_weight: float
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
