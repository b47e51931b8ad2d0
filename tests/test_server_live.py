"""The server on a real loopback socket (uvicorn in a thread, and ``janus-rs serve`` as a
process): remote image fetching, concurrency, the queue limit, and a disconnecting client."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from conftest import FIXTURES, TINY  # noqa: E402
from janus_rs import JanusPro  # noqa: E402
from janus_rs.server import create_app  # noqa: E402

INPUT = FIXTURES / "tiny-janus-pro-reference" / "input.png"
MODEL_ID = "tiny-janus-pro"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a background thread."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def client(self, **kwargs) -> "openai.OpenAI":
        return openai.OpenAI(base_url=self.url, api_key=kwargs.pop("api_key", "unused"), max_retries=0, **kwargs)


class SlowNative:
    """The native model with a delay after every generated token / image step, counting them."""

    def __init__(self, native, delay: float) -> None:
        self._native = native
        self.delay = delay
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._native, name)

    def _wrap(self, callback):
        def slow(arg):
            self.calls += 1
            time.sleep(self.delay)
            if callback is not None:
                callback(arg)

        return slow

    def generate_reply(self, *args):
        *rest, callback = args
        return self._native.generate_reply(*rest, self._wrap(callback))

    def generate_image_tokens(self, *args):
        *rest, callback = args
        return self._native.generate_image_tokens(*rest, self._wrap(callback))


def slow_model(delay: float) -> tuple[JanusPro, SlowNative]:
    model = JanusPro.from_pretrained(TINY)
    slow = SlowNative(model._native, delay)
    model._native = slow
    return model, slow


@pytest.fixture(scope="module")
def live(model):
    with LiveServer(create_app(model)) as server:
        yield server


@pytest.fixture(scope="module")
def image_host():
    """A plain HTTP server on 127.0.0.1 serving the fixture folder (remote image URLs)."""
    handler = functools.partial(_QuietHandler, directory=str(INPUT.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_openai_client_over_a_socket(live, model):
    client = live.client()
    assert [m.id for m in client.models.list().data] == [MODEL_ID]
    messages = [{"role": "user", "content": "Hello there"}]
    reply = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=10)
    assert reply.choices[0].message.content == model.chat(messages, max_new_tokens=10)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=MODEL_ID, messages=messages, max_tokens=10, stream=True) if c.choices)
    assert streamed == reply.choices[0].message.content
    image = client.images.generate(model=MODEL_ID, prompt="a red cat", n=2, extra_body={"seed": 8})
    want = model.generate("a red cat", num_images=2, seed=8, progress=False).array
    for item, expected in zip(image.data, want):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(item.b64_json)))), expected)


def test_remote_image_urls_are_fetched(live, model, image_host):
    question = [{"type": "text", "text": "Describe this image."}]
    remote = live.client().chat.completions.create(model=MODEL_ID, max_tokens=10, messages=[
        {"role": "user", "content": question + [{"type": "image_url", "image_url": {"url": f"{image_host}/input.png"}}]}])
    assert remote.choices[0].message.content == model.understand(INPUT, "Describe this image.", max_new_tokens=10)
    with pytest.raises(openai.BadRequestError, match="HTTP 404"):
        live.client().chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"{image_host}/missing.png"}}]}])


def test_remote_media_limits(model, image_host):
    size = INPUT.stat().st_size
    with LiveServer(create_app(model, max_media_bytes=size - 1)) as small, \
            LiveServer(create_app(model, remote_media=False)) as off, \
            LiveServer(create_app(model, allowed_media_domains=["example.com"])) as listed:
        message = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"{image_host}/input.png"}}]}]
        with pytest.raises(openai.APIStatusError) as e:
            small.client().chat.completions.create(model=MODEL_ID, messages=message)
        assert e.value.status_code == 413
        with pytest.raises(openai.BadRequestError, match="remote image URLs are turned off"):
            off.client().chat.completions.create(model=MODEL_ID, messages=message)
        with pytest.raises(openai.BadRequestError, match="not in the server's allowed media domains"):
            listed.client().chat.completions.create(model=MODEL_ID, messages=message)


def test_local_files_only_inside_the_allowed_folder(model, tmp_path):
    with LiveServer(create_app(model, allowed_local_media_path=str(INPUT.parent))) as server:
        client = server.client()
        ok = client.chat.completions.create(model=MODEL_ID, max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": INPUT.resolve().as_uri()}}]}])
        assert ok.choices[0].message.content == model.understand(INPUT, "", max_new_tokens=5)
        with pytest.raises(openai.BadRequestError, match="outside the allowed local folder"):
            client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "../tiny-janus-pro/config.json"}}]}])


def test_four_concurrent_requests(model):
    with LiveServer(create_app(model, max_concurrency=2)) as server:
        client = server.client()
        prompts = [f"Question number {i}?" for i in range(4)]
        results: dict[int, str] = {}
        errors: list[BaseException] = []

        def ask(i: int) -> None:
            try:
                reply = client.chat.completions.create(model=MODEL_ID, max_tokens=16,
                                                       messages=[{"role": "user", "content": prompts[i]}])
                results[i] = reply.choices[0].message.content
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors
        for i, p in enumerate(prompts):
            assert results[i] == model.chat([{"role": "user", "content": p}], max_new_tokens=16)


def test_full_queue_answers_429():
    model, slow = slow_model(delay=0.05)
    with LiveServer(create_app(model, max_concurrency=1, max_queue=0)) as server:
        client = server.client()
        busy = threading.Thread(target=lambda: client.images.generate(model=MODEL_ID, prompt="a cat"))
        busy.start()
        deadline = time.monotonic() + 10
        while slow.calls == 0:  # the first request holds the only slot
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as e:
            client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}])
        assert e.value.response.headers.get("retry-after") == "1"
        busy.join(timeout=30)
        assert client.chat.completions.create(model=MODEL_ID, max_tokens=2,
                                              messages=[{"role": "user", "content": "hi"}]).choices


def _read_some_events(port: int, body: dict, events: int) -> None:
    """Send a streamed chat request, read ``events`` SSE events, then drop the connection."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    seen = b""
    while seen.count(b"data: ") < events:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the stream early"
        seen += chunk
    sock.close()


def test_a_disconnecting_streamed_client_stops_the_generation():
    model, slow = slow_model(delay=0.02)
    with LiveServer(create_app(model)) as server:
        body = {"messages": [{"role": "user", "content": "Tell me everything."}], "max_tokens": 400, "stream": True}
        _read_some_events(server.port, body, events=3)
        time.sleep(0.5)
        after_disconnect = slow.calls
        time.sleep(0.5)
        assert slow.calls == after_disconnect, "tokens were still generated after the client left"
        assert after_disconnect < 100  # 400 would take 8 s
        # The slot was released: the next request runs.
        assert server.client().chat.completions.create(
            model=MODEL_ID, max_tokens=2, messages=[{"role": "user", "content": "hi"}]).choices


def test_a_disconnecting_image_client_stops_the_generation():
    model, slow = slow_model(delay=0.2)  # 16 image-token steps: 3.2 s if not stopped
    with LiveServer(create_app(model)) as server:
        payload = json.dumps({"prompt": "a red cat"}).encode()
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        deadline = time.monotonic() + 10
        while slow.calls < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        sock.close()
        time.sleep(1.0)
        stopped_at = slow.calls
        time.sleep(0.6)
        assert slow.calls == stopped_at and stopped_at < 16


def test_janus_rs_serve_command(tmp_path):
    port = free_port()
    env = {**os.environ, "JANUS_RS_API_KEY": "k3y"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "janus_rs", "serve", "--model", str(TINY), "--port", str(port),
         "--served-model-name", "tiny", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k3y", max_retries=0)
        deadline = time.monotonic() + 60
        while True:
            try:
                models = client.models.list()
                break
            except openai.APIConnectionError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "janus-rs serve did not start"
                time.sleep(0.1)
        assert [m.id for m in models.data] == ["tiny"]
        reply = client.chat.completions.create(model="tiny", max_tokens=3, messages=[{"role": "user", "content": "hi"}])
        assert reply.usage.completion_tokens == 3
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="nope", max_retries=0).models.list()
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert f"serving 'tiny' (JanusPro, cpu) at http://127.0.0.1:{port}/v1 (API key required)" in err


def test_serve_cli_errors(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "janus_rs", "serve", *args], capture_output=True, text=True,
                              timeout=60)

    help_text = run("--help")
    assert help_text.returncode == 0 and "--api-key KEY" in help_text.stdout and "--max-queue N" in help_text.stdout
    missing = run("--model", str(tmp_path / "nothing"), "--port", str(free_port()))
    assert missing.returncode == 1 and missing.stderr.startswith("janus-rs: error:") and "Traceback" not in missing.stderr
    folder = run("--model", str(TINY), "--allowed-local-media-path", str(tmp_path / "nope"))
    assert folder.returncode == 2 and "no such folder" in folder.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run("--model", str(TINY), "--port", str(taken.getsockname()[1]))
    assert busy.returncode == 2 and "cannot listen on 127.0.0.1:" in busy.stderr and "in use" in busy.stderr
    assert Path(TINY).exists()


def test_the_example_client_runs(live, tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "openai_client.py"
    proc = subprocess.run([sys.executable, str(example), "--base-url", live.url, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "model: tiny-janus-pro" in proc.stdout and "answer:" in proc.stdout
    for i in range(2):
        assert Image.open(tmp_path / f"openai-client-{i}.png").size == (512, 512)
