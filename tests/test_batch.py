"""``janus-rs batch`` and ``janus_rs.batch``: files per prompt, sharding that reproduces one
run byte for byte, resuming, PNG metadata, answers files, and ``understand_many``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES, TINY
from janus_rs import InputError
from janus_rs.batch import Shard, answer_questions, generate_images, read_jsonl_items

INPUT = FIXTURES / "tiny-janus-pro-reference" / "input.png"
PROMPTS = [
    {"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"},
    {"tag": "two_object", "prompt": "a photo of a dog and a bench"},
    {"tag": "colors", "prompt": "a photo of a red apple"},
    {"tag": "counting", "prompt": "a photo of three birds"},
    {"tag": "position", "prompt": "a photo of a cup left of a book"},
]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def prompts_file(tmp_path) -> Path:
    path = tmp_path / "evaluation_metadata.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("layout", ["geneval", "flat"])
def test_shards_and_batch_sizes_write_the_files_of_one_run(model, tmp_path, prompts_file, layout):
    items = read_jsonl_items(prompts_file, "prompt")
    assert items == PROMPTS
    one = tmp_path / "one"
    generate_images(model, items, one, num_images=2, seed=10, layout=layout, batch_size=2, progress=False)
    sharded = tmp_path / "sharded"
    for i, batch_size in [(1, 3), (0, 1)]:  # out of order, different batch sizes
        generate_images(model, items, sharded, num_images=2, seed=10, layout=layout, batch_size=batch_size,
                        shard=Shard(i, 2), progress=False, model_name=model.name)
    files = tree(one)
    assert files == tree(sharded)
    assert len([f for f in files if f.endswith(".png")]) == 10
    if layout == "geneval":
        assert json.loads(files["00000/metadata.jsonl"]) == PROMPTS[0]
        assert "00004/samples/00001.png" in files
    else:
        lines = [json.loads(line) for line in files["metadata.jsonl"].decode().splitlines()]
        assert [(r["file"], r["seed"], r["image"]) for r in lines[:3]] == [
            ("00000_00.png", 10, 0), ("00000_01.png", 10, 1), ("00001_00.png", 11, 0)]


def test_images_and_metadata_are_those_of_generate(model, tmp_path, prompts_file):
    items = read_jsonl_items(prompts_file, "prompt")
    out = tmp_path / "out"
    generate_images(model, items, out, num_images=2, seed=5, settings={"cfg_weight": 3.0}, progress=False)
    for k, item in enumerate(items):
        want = model.generate(item["prompt"], num_images=2, seed=5 + k, cfg_weight=3.0, progress=False).array
        for j in range(2):
            with Image.open(out / f"{k:05d}" / "samples" / f"{j:05d}.png") as im:
                assert np.array_equal(np.asarray(im), want[j])
                record = json.loads(im.text["janus_rs"])
                assert im.text["parameters"].startswith(item["prompt"] + "\nSeed: ")
    assert record["prompt"] == items[-1]["prompt"] and record["seed"] == 9 and record["image"] == 1
    assert record["cfg_weight"] == 3.0 and record["metadata"]["tag"] == "position"


def test_reruns_resume(model, tmp_path, prompts_file):
    items = read_jsonl_items(prompts_file, "prompt")
    out = tmp_path / "out"
    first = generate_images(model, items, out, num_images=1, progress=False)
    assert first == {"items": 5, "skipped": 0, "generated": 5, "images": 5}
    before = tree(out)
    (out / "00002" / "samples" / "00000.png").unlink()
    (out / "00004" / "metadata.jsonl").unlink()  # an interrupted item: its metadata is written last
    again = generate_images(model, items, out, num_images=1, progress=False)
    assert again == {"items": 5, "skipped": 3, "generated": 2, "images": 2}
    assert tree(out) == before
    assert generate_images(model, items, out, num_images=1, progress=False)["generated"] == 0


def test_prompt_files(tmp_path):
    text = tmp_path / "prompts.txt"
    text.write_text("a cat\n\n  a dog  \n", encoding="utf-8")
    assert read_jsonl_items(text, "prompt") == [{"prompt": "a cat"}, {"prompt": "a dog"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: not valid JSON"):
        read_jsonl_items(bad, "prompt")
    bad.write_text('{"text": "no prompt"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:1: each line needs a non-empty string 'prompt'"):
        read_jsonl_items(bad, "prompt")
    with pytest.raises(FileNotFoundError):
        read_jsonl_items(tmp_path / "missing.jsonl", "prompt")
    for text in ["2", "2/2", "a/b", "-1/3"]:
        with pytest.raises(InputError, match="shard must be"):
            Shard.parse(text)
    assert Shard.parse("1/3").items(7) == [1, 4]


def test_understand_many_equals_one_at_a_time(model):
    requests = [(INPUT, "Describe this image."), (None, "Write a haiku."), ([INPUT, INPUT], "Compare them.")]
    greedy = model.understand_many(requests, max_new_tokens=10)
    assert greedy == [model.understand(i, q, max_new_tokens=10) for i, q in requests]
    sampled = model.understand_many(requests, max_new_tokens=10, do_sample=True, seed=[1, 2, 3])
    assert sampled == [model.understand(i, q, max_new_tokens=10, do_sample=True, seed=s)
                       for (i, q), s in zip(requests, [1, 2, 3])]
    flipped = np.ascontiguousarray(np.asarray(Image.open(INPUT).convert("RGB"))[::-1])
    many = [(INPUT, "Describe."), (None, "A long question " * 8), (flipped, "What is shown here?"),
            ([flipped, INPUT], "<image_placeholder> versus <image_placeholder>?"), (None, "Hi")] * 2
    kwargs = dict(max_new_tokens=30, do_sample=True, temperature=0.9, top_k=40)
    assert model.understand_many(many, seed=list(range(10)), **kwargs) == [
        model.understand(i, q, seed=s, **kwargs) for (i, q), s in zip(many, range(10))]
    # Budgets that don't fit the context side by side: the rows run one after another.
    long = model.understand_many(requests[:2], max_new_tokens=480)
    assert long == [model.understand(i, q, max_new_tokens=480) for i, q in requests[:2]]
    with pytest.raises(InputError, match="request 1: the conversation has 1 <image_placeholder> tags but 0 images"):
        model.understand_many([(None, "ok"), (None, "<image_placeholder> where?")])
    assert model.understand_many([]) == []
    with pytest.raises(InputError, match="seed has 2 entries but there are 3 prompts"):
        model.understand_many(requests, seed=[1, 2])
    with pytest.raises(InputError, match=r"requests\[0\] must be an \(image, question\) pair"):
        model.understand_many(["just a question"])


def test_janusflow_understand_many():
    from janus_rs import JanusFlow

    flow = JanusFlow.from_pretrained(FIXTURES / "tiny-janusflow")
    requests = [(INPUT, "Describe this image."), (None, "Write a poem about the sea."), (INPUT, "Colours?")]
    assert flow.understand_many(requests, max_new_tokens=12) == [
        flow.understand(i, q, max_new_tokens=12) for i, q in requests]


def test_answer_questions_appends_and_resumes(model, tmp_path):
    items = [{"id": "a", "image": INPUT.name, "question": "Describe this image."},
             {"id": "b", "image": None, "question": "Say hi."},
             {"id": "c", "image": [INPUT.name, INPUT.name], "question": "Compare."}]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    out = tmp_path / "answers.jsonl"
    settings = {"max_new_tokens": 8}
    counts = answer_questions(model, read_jsonl_items(source, "question"), out, image_root=INPUT.parent,
                              batch_size=2, shard=Shard(0, 2), settings=settings, progress=False)
    assert counts["generated"] == 2
    answer_questions(model, read_jsonl_items(source, "question"), out, image_root=INPUT.parent,
                     settings=settings, progress=False)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["index"] for r in lines) == [0, 1, 2]
    by_id = {r["id"]: r["answer"] for r in lines}
    assert by_id["a"] == model.understand(INPUT, "Describe this image.", max_new_tokens=8)
    assert by_id["b"] == model.understand(None, "Say hi.", max_new_tokens=8)
    assert by_id["c"] == model.understand([INPUT, INPUT], "Compare.", max_new_tokens=8)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "janus_rs", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def test_cli_batch_generate_and_understand(tmp_path, prompts_file, model):
    out = tmp_path / "geneval"
    r = run_cli("batch", "generate", "--model", str(TINY), "--prompts", str(prompts_file), "--out", str(out),
                "--num-images", "2", "--seed", "3", "--batch-size", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "5 prompts done now (10 images)" in r.stderr
    with Image.open(out / "00003" / "samples" / "00001.png") as im:
        want = model.generate(PROMPTS[3]["prompt"], num_images=2, seed=6, progress=False).array[1]
        assert np.array_equal(np.asarray(im), want)
    again = run_cli("batch", "generate", "--model", str(TINY), "--prompts", str(prompts_file), "--out", str(out),
                    "--num-images", "2", "--seed", "3", "--quiet")
    assert "0 prompts done now (0 images), 5 already done" in again.stderr

    source = tmp_path / "questions.jsonl"
    source.write_text(json.dumps({"image": str(INPUT), "question": "What is this?"}) + "\n", encoding="utf-8")
    answers = tmp_path / "answers.jsonl"
    r = run_cli("batch", "understand", "--model", str(TINY), "--input", str(source), "--out", str(answers),
                "--max-new-tokens", "6", "--quiet")
    assert r.returncode == 0, r.stderr
    (line,) = answers.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["answer"] == model.understand(INPUT, "What is this?", max_new_tokens=6)


def test_cli_batch_janusflow(tmp_path, prompts_file):
    flow_dir = FIXTURES / "tiny-janusflow"
    out = tmp_path / "flat"
    r = run_cli("batch", "generate", "--model", str(flow_dir), "--vae", str(flow_dir / "vae"), "--prompts",
                str(prompts_file), "--out", str(out), "--num-images", "1", "--num-steps", "2", "--layout", "flat",
                "--shard", "1/2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["00001_00.png", "00003_00.png"]
    bad = run_cli("batch", "generate", "--model", str(flow_dir), "--vae", str(flow_dir / "vae"), "--prompts",
                  str(prompts_file), "--out", str(out), "--temperature", "0.5")
    assert bad.returncode == 2 and "--temperature only apply to Janus-Pro" in bad.stderr


def test_cli_batch_errors(tmp_path, prompts_file):
    r = run_cli("batch", "generate", "--model", str(TINY), "--prompts", str(tmp_path / "nope.jsonl"), "--out",
                str(tmp_path / "o"))
    assert r.returncode == 1 and "input file not found" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("batch", "generate", "--model", str(TINY), "--prompts", str(prompts_file), "--out",
                str(tmp_path / "o"), "--shard", "3/2")
    assert r.returncode == 1 and "shard must be I/N with 0 <= I < N" in r.stderr
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    r = run_cli("batch", "generate", "--model", str(TINY), "--prompts", str(prompts_file), "--out", str(a_file))
    assert r.returncode == 2 and "is a file; give a folder" in r.stderr
    r = run_cli("batch", "--help")
    assert r.returncode == 0 and "generate" in r.stdout and "understand" in r.stdout
