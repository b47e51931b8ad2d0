"""Loading a checkpoint as whichever model class its ``config.json`` says it is."""

from __future__ import annotations

import json
import os
from typing import Any

from ._chat import ChatModel


def is_janusflow(path: str) -> bool:
    """True for a JanusFlow checkpoint folder (its config has ``vision_und_enc_config``)."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return False  # the loader reports an unreadable config with its own message
    return isinstance(config, dict) and "vision_und_enc_config" in config


def load_model(name_or_path: str, *, vae: str | None = None, revision: str | None = None,
               local_files_only: bool = False, **options: Any) -> ChatModel:
    """Load ``name_or_path`` (a folder or hub id) as :class:`JanusPro` or :class:`JanusFlow`.

    ``vae`` is passed to JanusFlow (Janus-Pro refuses it with :class:`InputError`); ``options``
    are the ``from_pretrained`` keywords both classes share (device, dtype, quantize, threads,
    roles). A hub id keeps its name (not the cache folder's)."""
    from . import _native
    from .errors import InputError

    path = _native.resolve_pretrained(name_or_path, revision=revision, local_files_only=local_files_only)
    model: ChatModel
    if is_janusflow(path):
        from .janus_flow import JanusFlow

        model = JanusFlow.from_pretrained(path, vae=vae, local_files_only=local_files_only, **options)
    else:
        if vae is not None:
            raise InputError(f"a VAE is for JanusFlow checkpoints; {name_or_path} is a Janus-Pro/Janus checkpoint, "
                             "which makes images with its own VQ decoder")
        from .janus_pro import JanusPro

        model = JanusPro.from_pretrained(path, **options)
    if os.path.normpath(path) != os.path.normpath(name_or_path):  # a hub id: show it, not the cache folder
        model._name = name_or_path
        model._info["name"] = name_or_path
    return model
