"""Offline batch work (``janus-rs batch``): many prompts to image files, many (image, question)
pairs to answers; resumable, shardable across processes or machines, reproducible.

Seeds derive from each item's index in the input file (``seed + index``), and an image depends
only on its prompt and seed (per-row seeds), so any sharding, batch size or rerun produces the
same files byte for byte.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from .errors import InputError, NotFoundError

if TYPE_CHECKING:
    import numpy as np

    from ._chat import ChatModel

LAYOUTS = ("geneval", "flat")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the items whose index ``i`` has ``i % count == index``."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"i/N"`` (0-based ``i``)."""
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise InputError(f"shard must be I/N such as 0/4, got {text!r}") from None
        if not (n >= 1 and 0 <= i < n):
            raise InputError(f"shard must be I/N with 0 <= I < N, got {text!r}")
        return cls(i, n)

    def items(self, total: int) -> list[int]:
        return [k for k in range(total) if k % self.count == self.index]


def read_jsonl_items(path: str | os.PathLike[str], key: str) -> list[dict[str, Any]]:
    """The items of a ``.jsonl`` file (one JSON object per line, each with a string ``key``;
    a line that is a JSON string is ``{key: string}``) or of a text file (one ``key`` per line).
    Blank lines are skipped; item indices count the other lines."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise NotFoundError(f"input file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {p}: {e}") from None
    items = []
    is_jsonl = p.suffix.lower() in (".jsonl", ".json", ".ndjson")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not is_jsonl:
            items.append({key: line.strip()})
            continue
        try:
            item = json.loads(line)
        except ValueError as e:
            raise InputError(f"{p}:{number}: not valid JSON ({e})") from None
        if isinstance(item, str):
            item = {key: item}
        if not isinstance(item, dict) or not isinstance(item.get(key), str) or not item[key].strip():
            raise InputError(f"{p}:{number}: each line needs a non-empty string {key!r}")
        items.append(item)
    if not items:
        raise InputError(f"{p} holds no items")
    return items


# ---------------------------------------------------------------------------------- images
def image_paths(out: Path, index: int, count: int, layout: str) -> list[Path]:
    if layout == "geneval":
        return [out / f"{index:05d}" / "samples" / f"{j:05d}.png" for j in range(count)]
    return [out / f"{index:05d}_{j:02d}.png" for j in range(count)]


def _done_marker(out: Path, index: int, layout: str) -> Path:
    return out / f"{index:05d}" / "metadata.jsonl" if layout == "geneval" else out / f"{index:05d}_00.png"


def is_done(out: Path, index: int, count: int, layout: str) -> bool:
    return _done_marker(out, index, layout).exists() and all(p.exists() for p in image_paths(out, index, count, layout))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def png_bytes(array: "np.ndarray", text: dict[str, str]) -> bytes:
    """A PNG of ``array`` with ``text`` as tEXt/iTXt chunks (deterministic: same input, same bytes)."""
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_itxt(k, v)
    buf = io.BytesIO()
    Image.fromarray(array, "RGB").save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _parameters_text(prompt: str, record: dict[str, Any]) -> str:
    """The ``parameters`` chunk A1111-style tools read: prompt, then ``Key: value`` pairs."""
    keys = [("Seed", "seed"), ("Image index", "image"), ("CFG scale", "cfg_weight"), ("Temperature", "temperature"),
            ("Top k", "top_k"), ("Top p", "top_p"), ("Steps", "num_steps"), ("Model", "model"),
            ("Version", "janus_rs_version")]
    pairs = ", ".join(f"{label}: {record[k]}" for label, k in keys if record.get(k) is not None)
    return f"{prompt}\n{pairs}"


def generate_images(
    model: "ChatModel",
    items: Sequence[dict[str, Any]],
    out: str | os.PathLike[str],
    *,
    num_images: int = 4,
    seed: int = 0,
    shard: Shard = Shard(),
    layout: str = "geneval",
    batch_size: int = 1,
    model_name: str | None = None,
    settings: dict[str, Any] | None = None,
    progress: bool | Callable[[int, int], Any] = True,
) -> dict[str, int]:
    """Generate ``num_images`` images for every item of this shard not done yet.

    Item ``k`` (its index in ``items``) gets seed ``seed + k``; its images are written to
    ``out/<k:05d>/samples/<j:05d>.png`` with ``out/<k:05d>/metadata.jsonl`` (the item's JSON, as
    the GenEval evaluator reads them) for ``layout="geneval"``, or ``out/<k:05d>_<j:02d>.png``
    and a sorted ``out/metadata.jsonl`` of every image in the folder for ``layout="flat"``.
    Every PNG carries the prompt, seed, image index and settings as text chunks. Items whose
    files exist are skipped (a rerun resumes); files are written atomically.

    ``settings`` are passed to ``model.generate`` (``cfg_weight``, ``temperature``, ``top_k``,
    ``top_p``; JanusFlow ``num_steps``). Returns counts: ``items`` (in the shard), ``skipped``
    (already done), ``generated`` (items made now), ``images`` (written now).
    """
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if num_images < 1 or batch_size < 1 or seed < 0:
        raise InputError("num_images and batch_size must be >= 1 and seed >= 0")
    out_dir = Path(out)
    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    mine = shard.items(len(items))
    todo = [k for k in mine if not is_done(out_dir, k, num_images, layout)]
    bar, tick = _progress(progress, len(mine), len(mine) - len(todo), "janus-rs batch generate", "prompt")
    written = 0
    try:
        for chunk in _chunks(todo, batch_size):
            prompts = [items[k]["prompt"] for k in chunk]
            result = model.generate(prompts, num_images=num_images, seed=[seed + k for k in chunk],  # type: ignore[attr-defined]
                                    progress=False, **settings)
            for n, k in enumerate(chunk):
                arrays = result.array[n * num_images : (n + 1) * num_images]
                written += len(write_item(out_dir, k, items[k], arrays, seed + k, layout,
                                          model_name or model.name, settings))
                tick()
    finally:
        bar()
    if layout == "flat":
        write_flat_metadata(out_dir)
    return {"items": len(mine), "skipped": len(mine) - len(todo), "generated": len(todo), "images": written}


def write_item(out: Path, index: int, item: dict[str, Any], arrays: "np.ndarray", seed: int, layout: str,
               model_name: str, settings: dict[str, Any]) -> list[Path]:
    """Write item ``index``'s images (``arrays`` (n, H, W, 3)) and, for the GenEval layout, its
    metadata.jsonl (last, so a present metadata file means a finished item)."""
    from . import __version__

    paths = image_paths(out, index, len(arrays), layout)
    for j, (path, array) in enumerate(zip(paths, arrays)):
        record = {"item": index, "image": j, "prompt": item["prompt"], "seed": seed, "model": model_name,
                  "janus_rs_version": __version__, **settings, "metadata": item}
        text = {"parameters": _parameters_text(item["prompt"], record),
                "janus_rs": json.dumps(record, ensure_ascii=False, sort_keys=True)}
        _write_atomic(path, png_bytes(array, text))
    if layout == "geneval":
        line = json.dumps(item, ensure_ascii=False) + "\n"
        _write_atomic(out / f"{index:05d}" / "metadata.jsonl", line.encode("utf-8"))
    return paths


def write_flat_metadata(out: Path) -> None:
    """``out/metadata.jsonl``: one line per PNG in ``out`` (its janus_rs text chunk and file name),
    sorted by name. Rebuilt from the files, so shards that finish in any order agree."""
    from PIL import Image

    lines = []
    for path in sorted(out.glob("[0-9][0-9][0-9][0-9][0-9]_[0-9][0-9].png")):
        with Image.open(path) as im:
            record = json.loads(im.text.get("janus_rs", "{}"))  # type: ignore[attr-defined]
        lines.append(json.dumps({"file": path.name, **record}, ensure_ascii=False, sort_keys=True) + "\n")
    _write_atomic(out / "metadata.jsonl", "".join(lines).encode("utf-8"))


# ---------------------------------------------------------------------------------- answers
def answer_questions(
    model: "ChatModel",
    items: Sequence[dict[str, Any]],
    out: str | os.PathLike[str],
    *,
    shard: Shard = Shard(),
    batch_size: int = 8,
    seed: int = 0,
    image_root: str | os.PathLike[str] | None = None,
    settings: dict[str, Any] | None = None,
    progress: bool | Callable[[int, int], Any] = True,
) -> dict[str, int]:
    """Answer every ``{"image": path | [paths] | null, "question": str, ...}`` item of this shard
    not yet in ``out`` (a ``.jsonl`` file, appended to: each line is the item with ``index`` and
    ``answer`` added). Images are paths (relative ones to ``image_root``, default the current
    folder). Batches of ``batch_size`` go through :meth:`understand_many`; sampling uses seed
    ``seed + index``. Returns counts as :func:`generate_images`."""
    out_path = Path(out)
    done: set[int] = set()
    if out_path.exists():
        for line in out_path.read_text(encoding="utf-8").splitlines():
            try:
                done.add(int(json.loads(line)["index"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interrupted run: answered again
    settings = {k: v for k, v in (settings or {}).items() if v is not None}
    mine = shard.items(len(items))
    todo = [k for k in mine if k not in done]
    root = Path(image_root) if image_root is not None else Path(".")
    bar, tick = _progress(progress, len(mine), len(mine) - len(todo), "janus-rs batch understand", "question")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(out_path, "a", encoding="utf-8") as f:
            for chunk in _chunks(todo, batch_size):
                requests = [(_item_images(items[k], root), items[k]["question"]) for k in chunk]
                seeds = [seed + k for k in chunk]
                answers = model.understand_many(requests, seed=seeds, **settings)
                for k, answer in zip(chunk, answers):
                    f.write(json.dumps({**items[k], "index": k, "answer": answer}, ensure_ascii=False) + "\n")
                    tick()
                f.flush()
    finally:
        bar()
    return {"items": len(mine), "skipped": len(mine) - len(todo), "generated": len(todo), "images": 0}


def _item_images(item: dict[str, Any], root: Path) -> list[str]:
    images = item.get("image", item.get("images"))
    if images is None:
        return []
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise InputError(f"item {item!r}: 'image' must be a path or a list of paths")
    return [str(root / i) for i in images]


def _chunks(indices: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(indices), size):
        yield indices[i : i + size]


def _progress(progress: bool | Callable[[int, int], Any], total: int, initial: int, desc: str,
              unit: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """(close, tick): a tqdm bar, a callable called as ``f(done, total)``, or nothing."""
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=initial, desc=desc, unit=unit)
        return bar.close, lambda: bar.update(1)
    if callable(progress):
        state = [initial]

        def tick() -> None:
            state[0] += 1
            progress(state[0], total)

        return (lambda: None), tick
    return (lambda: None), (lambda: None)
