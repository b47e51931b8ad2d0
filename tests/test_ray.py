"""Ray: a Data job over prompts with two actors writes exactly what ``janus-rs batch`` writes;
understanding rows get the library's answers; a Serve app with two replicas answers the openai
client and spreads requests over both. Marker ``ray`` (deselected by default; ``.ci/run`` runs
``pytest -m ray`` after the main suite, with Ray installed)."""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest

from conftest import FIXTURES, TINY

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

INPUT = FIXTURES / "tiny-janus-pro-reference" / "input.png"


def tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=256 * 1024 * 1024,
             runtime_env={"env_vars": {"JANUS_RS_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def test_data_job_writes_the_files_of_janus_rs_batch(cluster, tmp_path, model):
    from janus_rs.batch import generate_images, read_jsonl_items
    from janus_rs.integrations.ray import JanusImageGenerator, prompts_dataset

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"a photo of object number {i}", "tag": "t"}) + "\n"
                               for i in range(32)), encoding="utf-8")
    expected = tmp_path / "batch"
    generate_images(model, read_jsonl_items(prompts, "prompt"), expected, num_images=2, seed=7,
                    model_name=str(TINY), progress=False)
    out = tmp_path / "ray"
    rows = prompts_dataset(prompts).map_batches(
        JanusImageGenerator, fn_constructor_kwargs={"model": str(TINY), "out": str(out), "num_images": 2, "seed": 7},
        batch_size=8, concurrency=2, num_cpus=1,
    ).take_all()
    assert sorted(int(r["index"]) for r in rows) == list(range(32))
    assert len({r["worker"] for r in rows}) == 2
    assert tree(out) == tree(expected)


def test_understanding_rows(cluster, model):
    from janus_rs.integrations.ray import JanusUnderstander

    items = [{"index": i, "image": str(INPUT) if i % 2 else "", "question": f"Question {i}?"} for i in range(6)]
    rows = ray.data.from_items(items).map_batches(
        JanusUnderstander, fn_constructor_kwargs={"model": str(TINY), "max_new_tokens": 8},
        batch_size=3, concurrency=1, num_cpus=1,
    ).take_all()
    by_index = {int(r["index"]): r["answer"] for r in rows}
    for item in items:
        image = item["image"] or None
        assert by_index[item["index"]] == model.understand(image, item["question"], max_new_tokens=8)


def test_serve_two_replicas(cluster, model):
    import openai
    from ray import serve

    from janus_rs.integrations.ray import serve_deployment

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(serve_deployment(str(TINY), num_replicas=2, num_cpus=0.5, threads_per_replica=1,
                                   max_ongoing_requests=2),
                  name="janus", route_prefix="/")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list().data] == ["tiny-janus-pro"]
        workers, errors = [], []

        def ask(i: int) -> None:
            try:
                messages = [{"role": "user", "content": f"Question {i}?"}]
                raw = client.chat.completions.with_raw_response.create(model="tiny-janus-pro", messages=messages,
                                                                       max_tokens=200)
                workers.append(raw.headers["x-janus-rs-worker"])
                assert raw.parse().choices[0].message.content == model.chat(messages, max_new_tokens=200)
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert len(set(workers)) == 2, workers
        result = client.images.generate(model="tiny-janus-pro", prompt="a red cat", n=2, extra_body={"seed": 3})
        import base64
        import io

        from PIL import Image

        want = model.generate("a red cat", num_images=2, seed=3, progress=False).array
        for item, expected in zip(result.data, want):
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(item.b64_json)))), expected)
    finally:
        serve.shutdown()
