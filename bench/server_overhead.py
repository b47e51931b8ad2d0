"""What the OpenAI-compatible server adds on top of calling the library directly.

    python bench/server_overhead.py                       # the bundled tiny model, 200 rounds
    python bench/server_overhead.py --model PATH --rounds 20 --max-tokens 16

For each kind of request the same work is done directly (``model.chat`` / ``model.generate``)
and through the server with the real ``openai`` client, alternating, in one process: over a
loopback socket (uvicorn in a thread, what a user runs) and in process (starlette's
TestClient, no sockets). The overhead is the difference of the medians (and of the 90th
percentiles); the server's side includes JSON, SSE/base64 and, for images, PNG encoding, which
the library call does not do. Needs ``pip install "janus-rs[server]" openai``. Prints a markdown
table; paste it into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import cpu_description  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(pairs: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in pairs}
    for f in pairs.values():  # warm-up
        f()
    for _ in range(rounds):
        for name, f in pairs.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "tests" / "fixtures" / "tiny-janus-pro"))
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--max-tokens", type=int, default=8)
    args = p.parse_args()

    import openai
    import uvicorn
    from starlette.testclient import TestClient

    from janus_rs import JanusPro
    from janus_rs.server import create_app

    model = JanusPro.from_pretrained(args.model)
    messages = [{"role": "user", "content": "Describe a sunny day."}]
    n = args.max_tokens

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(model), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    socket_client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)

    rows = []
    with TestClient(create_app(model)) as http:
        local_client = openai.OpenAI(base_url="http://testserver/v1", api_key="x", http_client=http, max_retries=0)
        kinds = {
            f"chat, {n} tokens": {
                "direct": lambda: model.chat(messages, max_new_tokens=n),
                "socket": lambda: socket_client.chat.completions.create(model=model.name, messages=messages,
                                                                        max_tokens=n),
                "in process": lambda: local_client.chat.completions.create(model=model.name, messages=messages,
                                                                           max_tokens=n),
            },
            f"chat streamed, {n} tokens": {
                "direct": lambda: "".join(model.chat(messages, max_new_tokens=n, stream=True)),
                "socket": lambda: [c for c in socket_client.chat.completions.create(
                    model=model.name, messages=messages, max_tokens=n, stream=True)],
                "in process": lambda: [c for c in local_client.chat.completions.create(
                    model=model.name, messages=messages, max_tokens=n, stream=True)],
            },
            "image, b64_json": {
                "direct": lambda: model.generate("a red cat", seed=1, progress=False).array,
                "socket": lambda: socket_client.images.generate(model=model.name, prompt="a red cat",
                                                                extra_body={"seed": 1}),
                "in process": lambda: local_client.images.generate(model=model.name, prompt="a red cat",
                                                                   extra_body={"seed": 1}),
            },
        }
        for kind, pairs in kinds.items():
            t = measure(pairs, args.rounds)
            d50, d90 = statistics.median(t["direct"]), percentile(t["direct"], 0.9)
            for via in ("socket", "in process"):
                s50, s90 = statistics.median(t[via]), percentile(t[via], 0.9)
                rows.append((kind, via, d50, s50, s50 - d50, s90 - d90))
    server.should_exit = True
    thread.join(timeout=10)

    print(f"CPU: {cpu_description()}, {os.cpu_count()} logical cores; model {model.name}; {args.rounds} rounds; "
          f"Python {platform.python_version()}, openai {openai.__version__}, uvicorn {uvicorn.__version__}")
    print()
    print("| request | via | library p50 | server p50 | overhead p50 | overhead p90 |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, via, d50, s50, o50, o90 in rows:
        print(f"| {kind} | {via} | {d50 * 1e3:.2f} ms | {s50 * 1e3:.2f} ms | {o50 * 1e3:.2f} ms | {o90 * 1e3:.2f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
