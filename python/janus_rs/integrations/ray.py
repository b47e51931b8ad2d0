"""Janus on a Ray cluster: offline batch inference with Ray Data, online serving with Ray Serve.

Install with ``pip install "janus-rs[ray]"``. Offline (an actor pool, each actor loading the
model once; any number of machines)::

    import ray
    from janus_rs.integrations.ray import JanusImageGenerator, prompts_dataset

    ds = prompts_dataset("evaluation_metadata.jsonl")            # index, prompt, metadata
    ds.map_batches(JanusImageGenerator, fn_constructor_kwargs={"model": "deepseek-ai/Janus-Pro-1B",
                   "out": "/shared/geneval", "num_images": 4, "seed": 0},
                   batch_size=8, concurrency=4, num_gpus=1).materialize()

writes exactly the files ``janus-rs batch generate --seed 0 --num-images 4`` writes (seeds come
from each prompt's index, and an image depends only on its prompt and seed). Online::

    from ray import serve
    from janus_rs.integrations.ray import serve_deployment

    serve.run(serve_deployment("deepseek-ai/Janus-Pro-1B", num_replicas=2, num_gpus=0.5))

serves the OpenAI-compatible app of ``janus-rs serve`` (``/v1/chat/completions``,
``/v1/images/generations``, ...) from every replica behind Ray Serve's proxy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["JanusImageGenerator", "JanusUnderstander", "prompts_dataset", "serve_deployment"]


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:  # pragma: no cover - exercised by hand without the extra
        raise ImportError('janus_rs.integrations.ray needs Ray: pip install "janus-rs[ray]"') from e
    return ray


def _load(model: str | os.PathLike[str], load_options: dict[str, Any] | None) -> Any:
    from .._auto import load_model

    return load_model(os.fspath(model), progress=False, **(load_options or {}))


def _worker() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def prompts_dataset(path: str | os.PathLike[str]) -> Any:
    """A Ray dataset of a prompts file (as ``janus-rs batch generate`` reads it): one row per
    prompt with ``index`` (its line index, which fixes its seed), ``prompt`` and ``metadata``
    (the line's JSON object as a string, e.g. GenEval's tags)."""
    from ..batch import read_jsonl_items

    items = read_jsonl_items(path, "prompt")
    rows = [{"index": k, "prompt": item["prompt"], "metadata": json.dumps(item, ensure_ascii=False)}
            for k, item in enumerate(items)]
    return _ray().data.from_items(rows)


class JanusImageGenerator:
    """A callable class for ``Dataset.map_batches``: each actor loads the model once, then
    makes ``num_images`` images per row (``prompt``, and ``index`` for its seed ``seed + index``;
    without an ``index`` column rows use their position in the batch, which is only
    reproducible for a fixed batching).

    With ``out``, images are written as ``janus-rs batch generate`` writes them (``layout``
    ``"geneval"`` or ``"flat"``, PNG metadata included; the row's ``metadata`` column, if any,
    is the item JSON) and the batch returned holds ``index``, ``seed`` and the file ``paths``;
    without it, the returned batch holds the images as an ``image`` column (n, num_images, H, W, 3).

    Args:
        model: a folder or hub id (each actor loads it; weights must be reachable from every node).
        num_images: images per prompt.
        seed: the seed base.
        out: where to write files (optional).
        layout: how to write files (optional).
        load_options: ``from_pretrained`` keywords (device, dtype, quantize, threads, vae, ...).
        settings: ``generate`` keywords (cfg_weight, temperature, top_k, top_p; JanusFlow num_steps).
    """

    def __init__(self, model: str | os.PathLike[str], *, num_images: int = 1, seed: int = 0,
                 out: str | os.PathLike[str] | None = None, layout: str = "geneval",
                 load_options: dict[str, Any] | None = None, **settings: Any) -> None:
        self.model = _load(model, load_options)
        self.model_name = os.fspath(model)
        self.num_images = num_images
        self.seed = seed
        self.out = None if out is None else Path(out)
        self.layout = layout
        self.settings = {k: v for k, v in settings.items() if v is not None}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from ..batch import write_item

        prompts = [str(p) for p in batch["prompt"]]
        indices = [int(i) for i in batch["index"]] if "index" in batch else list(range(len(prompts)))
        seeds = [self.seed + k for k in indices]
        result = self.model.generate(prompts, num_images=self.num_images, seed=seeds, progress=False,
                                     **self.settings)
        images = result.array.reshape((len(prompts), self.num_images) + result.array.shape[1:])
        worker = np.asarray([_worker()] * len(prompts))
        if self.out is None:
            return {"index": np.asarray(indices), "prompt": np.asarray(prompts), "seed": np.asarray(seeds),
                    "image": images, "worker": worker}
        metadata = batch.get("metadata")
        paths = []
        for n, (k, prompt) in enumerate(zip(indices, prompts)):
            item = json.loads(str(metadata[n])) if metadata is not None else {"prompt": prompt}
            written = write_item(self.out, k, item, images[n], self.seed + k, self.layout, self.model_name,
                                 self.settings)
            paths.append(json.dumps([str(p) for p in written]))
        return {"index": np.asarray(indices), "seed": np.asarray(seeds), "paths": np.asarray(paths), "worker": worker}


class JanusUnderstander:
    """A callable class for ``Dataset.map_batches``: answers rows ``image`` (a path, encoded
    bytes, or empty for text only) + ``question`` with one batched ``understand_many`` call per
    batch, adding an ``answer`` column. Sampling (``do_sample=True``) uses seed ``seed + index``
    (``index`` column, else the position in the batch)."""

    def __init__(self, model: str | os.PathLike[str], *, seed: int = 0,
                 load_options: dict[str, Any] | None = None, **settings: Any) -> None:
        self.model = _load(model, load_options)
        self.seed = seed
        self.settings = {k: v for k, v in settings.items() if v is not None}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        questions = [str(q) for q in batch["question"]]
        images: list[Any] = []
        for im in batch.get("image", [None] * len(questions)):
            if im is None or (isinstance(im, (str, bytes)) and not im):
                images.append(None)
            else:
                images.append(bytes(im) if isinstance(im, (bytes, bytearray, np.bytes_)) else str(im))
        indices = [int(i) for i in batch["index"]] if "index" in batch else list(range(len(questions)))
        answers = self.model.understand_many(list(zip(images, questions)), seed=[self.seed + k for k in indices],
                                             **self.settings)
        return {**batch, "answer": np.asarray(answers), "worker": np.asarray([_worker()] * len(answers))}


def serve_deployment(model: str | os.PathLike[str], *, name: str = "janus", num_replicas: int | str = 1,
                     autoscaling_config: dict[str, Any] | None = None, num_gpus: float = 0,
                     num_cpus: float | None = None, threads_per_replica: int | None = None,
                     max_ongoing_requests: int | None = None, **app_options: Any) -> Any:
    """A Ray Serve application serving ``create_app(model, **app_options)`` from replicas.

    Each replica runs the app's lifespan, so it loads its own copy of the model (``model`` must
    be a path or hub id every node can reach). ``num_gpus`` may be a fraction (two 1B replicas
    per GPU with 0.5); ``autoscaling_config`` is Ray Serve's (``min_replicas``,
    ``max_replicas``, ``target_ongoing_requests``, ...) and replaces ``num_replicas``;
    ``threads_per_replica`` sets ``JANUS_RS_NUM_THREADS``/``RAYON_NUM_THREADS`` in each replica;
    ``max_ongoing_requests`` is how many requests Serve hands one replica at a time (Serve's
    default 5; the app itself runs ``max_concurrency`` of them at once and queues the rest).
    Run it with ``serve.run(app)``; the OpenAI routes are under Serve's HTTP proxy
    (``http://host:8000/v1`` by default). Responses carry ``x-janus-rs-worker`` (host:pid).
    """
    _ray()
    from ray import serve

    from ..server import create_app

    app = create_app(os.fspath(model), **app_options)
    env = {}
    if threads_per_replica is not None:
        env = {"JANUS_RS_NUM_THREADS": str(threads_per_replica), "RAYON_NUM_THREADS": str(threads_per_replica)}
    actor_options: dict[str, Any] = {"num_gpus": num_gpus}
    if num_cpus is not None:
        actor_options["num_cpus"] = num_cpus
    if env:
        actor_options["runtime_env"] = {"env_vars": env}
    options: dict[str, Any] = {"name": name, "ray_actor_options": actor_options}
    if max_ongoing_requests is not None:
        options["max_ongoing_requests"] = max_ongoing_requests
    if autoscaling_config is not None:
        options["autoscaling_config"] = autoscaling_config
    else:
        options["num_replicas"] = num_replicas

    @serve.deployment(**options)
    @serve.ingress(app)
    class JanusServer:
        pass

    return JanusServer.bind()
