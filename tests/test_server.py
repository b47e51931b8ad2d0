"""The OpenAI-compatible server driven by the real ``openai`` client, in process (starlette's
TestClient as the client's transport, no sockets), on the tiny fixtures."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
from starlette.testclient import TestClient  # noqa: E402

from conftest import FIXTURES  # noqa: E402
from janus_rs.server import create_app  # noqa: E402

INPUT = FIXTURES / "tiny-janus-pro-reference" / "input.png"
MODEL_ID = "tiny-janus-pro"
TOKENS = 12


def data_url(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.asarray(Image.open(INPUT).convert("RGB"))


@pytest.fixture(scope="module")
def http(model):
    with TestClient(create_app(model), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def client(http):
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=http, max_retries=0)


def decode_png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


# ----------------------------------------------------------------------------- models
def test_models_and_health(client, http):
    (card,) = client.models.list().data
    assert card.id == MODEL_ID and card.owned_by == "janus-rs"
    assert client.models.retrieve(MODEL_ID).id == MODEL_ID
    assert http.get("/health").json()["status"] == "ok"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("gpt-4o")


# ----------------------------------------------------------------------------- chat
def chat_cases(pixels):
    """(OpenAI messages, the same conversation for model.chat)."""
    flipped = np.ascontiguousarray(pixels[::-1])
    return {
        "data-url image": (
            [{"role": "user", "content": [{"type": "text", "text": "Describe this image."},
                                          {"type": "image_url", "image_url": {"url": data_url(pixels)}}]}],
            [{"role": "user", "content": "Describe this image.", "images": [pixels]}],
        ),
        "two images": (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(pixels)}},
                                          {"type": "image_url", "image_url": {"url": data_url(flipped)}},
                                          {"type": "text", "text": "What changed?"}]}],
            [{"role": "user", "content": "What changed?", "images": [pixels, flipped]}],
        ),
        "text only": (
            [{"role": "user", "content": "Tell me a story."}],
            [{"role": "user", "content": "Tell me a story."}],
        ),
        "system message": (
            [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Hi?"}],
            [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Hi?"}],
        ),
        "multi-turn": (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(pixels)}},
                                          {"type": "text", "text": "What is it?"}]},
             {"role": "assistant", "content": "A pattern."},
             {"role": "user", "content": "Which colours?"}],
            [{"role": "<|User|>", "content": "<image_placeholder>\nWhat is it?", "images": [str(INPUT)]},
             {"role": "<|Assistant|>", "content": "A pattern."},
             {"role": "<|User|>", "content": "Which colours?"}],
        ),
    }


@pytest.mark.parametrize("case", ["data-url image", "two images", "text only", "system message", "multi-turn"])
def test_chat_equals_the_library_streamed_or_not(client, model, pixels, case):
    messages, library_messages = chat_cases(pixels)[case]
    expected = model.chat(library_messages, max_new_tokens=TOKENS)
    reply = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=TOKENS)
    (choice,) = reply.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == expected
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= TOKENS and reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    pieces, finish, usage, roles = [], [], [], []
    for chunk in client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=TOKENS, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage.append(chunk.usage)
        for c in chunk.choices:
            if c.delta.role:
                roles.append(c.delta.role)
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish.append(c.finish_reason)
    assert "".join(pieces) == expected
    assert roles == ["assistant"] and finish == [choice.finish_reason]
    assert len(usage) == 1 and usage[0].model_dump() == reply.usage.model_dump()


def test_usage_counts_the_prompt_with_its_image_tokens(client, model, pixels):
    messages, library = chat_cases(pixels)["data-url image"]
    reply = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=3)
    prompt = model.format_prompt([("user", "<image_placeholder>\nDescribe this image.")])
    assert reply.usage.prompt_tokens == len(model.prompt_ids(prompt))
    assert reply.usage.completion_tokens == 3 and reply.choices[0].finish_reason == "length"


def test_sampling_with_a_seed_repeats_and_matches_the_library(client, model):
    messages = [{"role": "user", "content": "Say something."}]
    kwargs = dict(model=MODEL_ID, messages=messages, max_tokens=TOKENS, temperature=0.9, top_p=0.95, seed=11)
    a = client.chat.completions.create(**kwargs).choices[0].message.content
    b = client.chat.completions.create(**kwargs).choices[0].message.content
    assert a == b == model.chat(messages, max_new_tokens=TOKENS, do_sample=True, temperature=0.9, top_p=0.95, seed=11)
    others = {client.chat.completions.create(**{**kwargs, "seed": s}).choices[0].message.content for s in range(4)}
    assert len(others) > 1


def test_n_choices_use_consecutive_seeds(client, model):
    messages = [{"role": "user", "content": "Say something."}]
    reply = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=TOKENS, temperature=1.0,
                                           seed=20, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    for i, c in enumerate(reply.choices):
        assert c.message.content == model.chat(messages, max_new_tokens=TOKENS, do_sample=True, seed=20 + i)
    streamed: dict[int, str] = {}
    for chunk in client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=TOKENS,
                                                temperature=1.0, seed=20, n=3, stream=True):
        for c in chunk.choices:
            streamed[c.index] = streamed.get(c.index, "") + (c.delta.content or "")
    assert streamed == {c.index: c.message.content for c in reply.choices}


def test_stop_strings_cut_the_answer(client, model):
    messages = [{"role": "user", "content": "Tell me a story."}]
    full = model.chat(messages, max_new_tokens=40)
    stop = full[5:8]
    assert stop and full.index(stop) >= 1
    expected = full[: full.index(stop)]
    reply = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=40, stop=[stop, "zzzz"])
    assert reply.choices[0].message.content == expected and reply.choices[0].finish_reason == "stop"
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=MODEL_ID, messages=messages, max_tokens=40, stop=stop, stream=True) if c.choices]
    assert "".join(pieces) == expected


def test_max_completion_tokens_and_default_model(http, model):
    r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                               "max_completion_tokens": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"]["completion_tokens"] == 2 and body["model"] == MODEL_ID and body["object"] == "chat.completion"
    assert r.headers["x-request-id"]


def test_request_id_is_echoed(http):
    r = http.post("/v1/chat/completions", headers={"X-Request-Id": "abc-123"},
                  json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    assert r.headers["x-request-id"] == "abc-123" and r.json()["id"] == "chatcmpl-abc-123"


# ----------------------------------------------------------------------------- images
def test_images_equal_the_library(client, model):
    result = client.images.generate(model=MODEL_ID, prompt="a red cat", n=2, response_format="b64_json",
                                    extra_body={"seed": 42})
    expected = model.generate("a red cat", num_images=2, seed=42, progress=False).array
    assert len(result.data) == 2
    for item, want in zip(result.data, expected):
        assert np.array_equal(decode_png(item.b64_json), want)


def test_image_extensions(client, model):
    result = client.images.generate(model=MODEL_ID, prompt="a red cat", response_format="b64_json",
                                    extra_body={"seed": 3, "guidance_scale": 2.5, "temperature": 0.7, "top_k": 50})
    want = model.generate("a red cat", seed=3, cfg_weight=2.5, temperature=0.7, top_k=50, progress=False).array[0]
    assert np.array_equal(decode_png(result.data[0].b64_json), want)
    same = client.images.generate(model=MODEL_ID, prompt="a red cat", response_format="b64_json",
                                  extra_body={"seed": 3, "cfg_weight": 2.5, "temperature": 0.7, "top_k": 50})
    assert same.data[0].b64_json == result.data[0].b64_json


def test_size_resizes_with_lanczos(client, model):
    result = client.images.generate(model=MODEL_ID, prompt="a red cat", size="512x512", response_format="b64_json",
                                    extra_body={"seed": 9})
    got = decode_png(result.data[0].b64_json)
    assert got.shape == (512, 512, 3)
    native = model.generate("a red cat", seed=9, progress=False).images[0]
    assert np.array_equal(got, np.asarray(native.resize((512, 512), Image.LANCZOS)))
    wide = client.images.generate(model=MODEL_ID, prompt="a red cat", size="96x64", response_format="b64_json")
    assert decode_png(wide.data[0].b64_json).shape == (64, 96, 3)


def test_url_round_trip(client, http, model):
    result = client.images.generate(model=MODEL_ID, prompt="a red cat", response_format="url", extra_body={"seed": 4})
    url = result.data[0].url
    assert url.startswith("http://testserver/v1/images/files/") and url.endswith(".png")
    r = http.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    want = model.generate("a red cat", seed=4, progress=False).array[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), want)
    assert http.get("/v1/images/files/nothing-here.png").status_code == 404


def test_jpeg_output(client):
    result = client.images.generate(model=MODEL_ID, prompt="a red cat", response_format="b64_json",
                                    extra_body={"output_format": "jpeg", "output_compression": 20})
    assert base64.b64decode(result.data[0].b64_json)[:3] == b"\xff\xd8\xff"


def test_seed_is_reported(http):
    r = http.post("/v1/images/generations", json={"prompt": "a red cat"})
    body = r.json()
    seed = body["seed"]
    again = http.post("/v1/images/generations", json={"prompt": "a red cat", "seed": seed}).json()
    assert again["data"][0]["b64_json"] == body["data"][0]["b64_json"]


# ----------------------------------------------------------------------------- auth and model errors
def test_api_key(model):
    with TestClient(create_app(model, api_key="s3cret")) as http:
        good = openai.OpenAI(base_url="http://testserver/v1", api_key="s3cret", http_client=http, max_retries=0)
        bad = openai.OpenAI(base_url="http://testserver/v1", api_key="wrong", http_client=http, max_retries=0)
        assert good.models.list().data[0].id == MODEL_ID
        with pytest.raises(openai.AuthenticationError, match="invalid or missing API key"):
            bad.models.list()
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}])
        r = http.post("/v1/images/generations", json={"prompt": "x"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert http.get("/health").status_code == 200  # health checks need no key


def test_served_model_name(model):
    with TestClient(create_app(model, served_model_name="janus-pro-1b")) as http:
        c = openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=http, max_retries=0)
        assert [m.id for m in c.models.list().data] == ["janus-pro-1b"]
        assert c.chat.completions.create(model="janus-pro-1b", messages=[{"role": "user", "content": "hi"}],
                                         max_tokens=1).model == "janus-pro-1b"
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])


def test_memory_limit_is_503(client, monkeypatch):
    monkeypatch.setenv("JANUS_RS_MAX_KV_CACHE_BYTES", "1000")
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 503 and "KV cache" in str(e.value)
    with pytest.raises(openai.InternalServerError) as e:
        client.images.generate(model=MODEL_ID, prompt="a cat")
    assert e.value.status_code == 503


def test_without_lifespan_the_app_says_the_model_is_not_loaded(model):
    http = TestClient(create_app(model))  # not entered: the lifespan never runs
    r = http.get("/v1/models")
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_loaded"


def test_janusflow_server():
    from janus_rs import JanusFlow

    flow = JanusFlow.from_pretrained(FIXTURES / "tiny-janusflow", vae=FIXTURES / "tiny-janusflow" / "vae")
    with TestClient(create_app(flow)) as http:
        c = openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=http, max_retries=0)
        result = c.images.generate(model="tiny-janusflow", prompt="a red cat", n=1, response_format="b64_json",
                                   extra_body={"seed": 5, "num_inference_steps": 3, "guidance_scale": 1.5})
        want = flow.generate("a red cat", seed=5, num_steps=3, cfg_weight=1.5, progress=False).array[0]
        assert np.array_equal(decode_png(result.data[0].b64_json), want)
        reply = c.chat.completions.create(model="tiny-janusflow", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=TOKENS)
        assert reply.choices[0].message.content == flow.chat([{"role": "user", "content": "hi"}],
                                                             max_new_tokens=TOKENS)
        r = http.post("/v1/images/generations", json={"prompt": "x", "temperature": 0.5})
        assert r.status_code == 400 and "rectified flow" in r.json()["error"]["message"]


# ----------------------------------------------------------------------------- bad requests
BIG_BASE64 = "data:image/png;base64," + "A" * (21 * 1024 * 1024 // 3 * 4)
BAD_JSON = object()
USER = [{"role": "user", "content": "hi"}]


def _not_an_image() -> str:
    return "data:image/png;base64," + base64.b64encode(b"this is not a picture").decode()


def _huge_image() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (20000, 20000)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


CHAT_BAD = [
    ("bad json", b"{not json", 400),
    ("json array", b"[1, 2]", 400),
    ("empty body", b"", 400),
    ("no messages", {}, 400),
    ("messages not a list", {"messages": "hi"}, 400),
    ("empty messages", {"messages": []}, 400),
    ("message not an object", {"messages": ["hi"]}, 400),
    ("unknown role", {"messages": [{"role": "narrator", "content": "x"}]}, 400),
    ("content a number", {"messages": [{"role": "user", "content": 5}]}, 400),
    ("unknown part type", {"messages": [{"role": "user", "content": [{"type": "video_url"}]}]}, 400),
    ("image part without url", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400),
    ("bad base64", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}]}]}, 400),
    ("not an image", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": _not_an_image()}}]}]}, 400),
    ("huge image", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": _huge_image()}}]}]}, 400),
    ("image over the byte limit", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": BIG_BASE64}}]}]}, 413),
    ("file url", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]}, 400),
    ("local path", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "/etc/hostname"}}]}]}, 400),
    ("placeholder mismatch", {"messages": [{"role": "user", "content": "<image_placeholder> twice <image_placeholder>"}]},
     400),
    ("max_tokens negative", {"messages": USER, "max_tokens": -1}, 400),
    ("max_tokens a string", {"messages": USER, "max_tokens": "10"}, 400),
    ("temperature negative", {"messages": USER, "temperature": -0.5}, 400),
    ("temperature a string", {"messages": USER, "temperature": "hot"}, 400),
    ("top_p zero", {"messages": USER, "top_p": 0}, 400),
    ("top_p over one", {"messages": USER, "top_p": 1.5}, 400),
    ("n zero", {"messages": USER, "n": 0}, 400),
    ("n negative", {"messages": USER, "n": -2}, 400),
    ("n over the limit", {"messages": USER, "n": 100}, 400),
    ("seed negative", {"messages": USER, "seed": -1}, 400),
    ("seed a float", {"messages": USER, "seed": 1.5}, 400),
    ("stop a number", {"messages": USER, "stop": 3}, 400),
    ("five stops", {"messages": USER, "stop": ["a", "b", "c", "d", "e"]}, 400),
    ("stream a string", {"messages": USER, "stream": "yes"}, 400),
    ("stream_options a list", {"messages": USER, "stream": True, "stream_options": []}, 400),
    ("tools", {"messages": USER, "tools": [{"type": "function", "function": {"name": "f"}}]}, 400),
    ("tool_choice required", {"messages": USER, "tool_choice": "required"}, 400),
    ("logprobs", {"messages": USER, "logprobs": True}, 400),
    ("json response format", {"messages": USER, "response_format": {"type": "json_object"}}, 400),
    ("audio modality", {"messages": USER, "modalities": ["text", "audio"]}, 400),
    ("frequency penalty", {"messages": USER, "frequency_penalty": 0.5}, 400),
    ("repetition penalty zero", {"messages": USER, "repetition_penalty": 0}, 400),
    ("prompt over the context", {"messages": [{"role": "user", "content": "hello world " * 400}]}, 400),
    ("images over the context", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "DATA"}}] * 40}]}, 400),
    ("unknown model", {"model": "gpt-4o", "messages": USER}, 404),
    ("model a number", {"model": 3, "messages": USER}, 400),
]

IMAGES_BAD = [
    ("no prompt", {}, 400),
    ("empty prompt", {"prompt": "  "}, 400),
    ("prompt a list", {"prompt": ["a", "b"]}, 400),
    ("n zero", {"prompt": "x", "n": 0}, 400),
    ("n over the limit", {"prompt": "x", "n": 11}, 400),
    ("n a string", {"prompt": "x", "n": "2"}, 400),
    ("size words", {"prompt": "x", "size": "large"}, 400),
    ("size too big", {"prompt": "x", "size": "10000x10000"}, 400),
    ("size too small", {"prompt": "x", "size": "1x1"}, 400),
    ("response_format unknown", {"prompt": "x", "response_format": "base64"}, 400),
    ("output_format gif", {"prompt": "x", "output_format": "gif"}, 400),
    ("compression over 100", {"prompt": "x", "output_format": "jpeg", "output_compression": 101}, 400),
    ("guidance a string", {"prompt": "x", "guidance_scale": "high"}, 400),
    ("guidance and cfg disagree", {"prompt": "x", "guidance_scale": 2, "cfg_weight": 3}, 400),
    ("temperature negative", {"prompt": "x", "temperature": -1}, 400),
    ("top_k zero", {"prompt": "x", "top_k": 0}, 400),
    ("steps for Janus-Pro", {"prompt": "x", "num_inference_steps": 10}, 400),
    ("seed too large", {"prompt": "x", "seed": 2**70}, 400),
    ("stream", {"prompt": "x", "stream": True}, 400),
    ("prompt over the context", {"prompt": "word " * 2000}, 400),
    ("unknown model", {"prompt": "x", "model": "dall-e-3"}, 404),
]


def _post(http, path, body, pixels):
    if isinstance(body, bytes):
        return http.post(path, content=body, headers={"content-type": "application/json"})
    text = json.dumps(body).replace('"DATA"', json.dumps(data_url(pixels)))
    return http.post(path, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("name,body,status", CHAT_BAD, ids=[c[0] for c in CHAT_BAD])
def test_bad_chat_requests(http, pixels, name, body, status):
    r = _post(http, "/v1/chat/completions", body, pixels)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


@pytest.mark.parametrize("name,body,status", IMAGES_BAD, ids=[c[0] for c in IMAGES_BAD])
def test_bad_image_requests(http, pixels, name, body, status):
    r = _post(http, "/v1/images/generations", body, pixels)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_errors_name_the_problem(http):
    r = http.post("/v1/chat/completions", json={"messages": USER, "temperature": "hot"})
    assert r.json()["error"]["param"] == "temperature"
    r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [{"type": "video_url"}]}]})
    assert "messages[0].content[0]" in r.json()["error"]["message"]
    r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x " * 600}]})
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_body_over_the_limit_is_413(model):
    with TestClient(create_app(model, max_body_bytes=1000)) as http:
        r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 2000}]})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_unknown_routes_and_methods_are_openai_shaped(http):
    r = http.get("/v1/embeddings")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = http.get("/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_the_server_survives_bad_requests(client, http, pixels):
    for _name, body, _status in CHAT_BAD + IMAGES_BAD:
        _post(http, "/v1/chat/completions", body, pixels)
        _post(http, "/v1/images/generations", body, pixels)
    assert client.chat.completions.create(model=MODEL_ID, messages=USER, max_tokens=2).choices[0].message.content
    assert client.images.generate(model=MODEL_ID, prompt="a cat").data[0].b64_json
