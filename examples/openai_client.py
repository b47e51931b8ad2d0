"""Talk to `janus-rs serve` with the official `openai` client: a chat about an image, the same
chat streamed, and two generated images saved as PNG files.

    pip install ".[server]" openai
    janus-rs serve --model tests/fixtures/tiny-janus-pro          # in one terminal
    python examples/openai_client.py                              # in another

Options: --base-url (default http://127.0.0.1:8000/v1), --api-key (if the server has one),
--image (default: the bundled fixture image), --out (default: the current folder).
With the tiny random model the answer is gibberish and the images are noise; point the server at
a real checkpoint (--model deepseek-ai/Janus-Pro-1B) for real ones.
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
import sys
from pathlib import Path

from openai import APIConnectionError, OpenAI

HERE = Path(__file__).resolve().parent
DEFAULT_IMAGE = HERE.parent / "tests" / "fixtures" / "tiny-janus-pro-reference" / "input.png"


def data_url(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--api-key", default="unused")
    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    p.add_argument("--out", type=Path, default=Path("."))
    args = p.parse_args()

    client = OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0)
    try:
        model = client.models.list().data[0].id
    except APIConnectionError:
        print(f"no server at {args.base_url}: start one with `janus-rs serve --model tests/fixtures/tiny-janus-pro`",
              file=sys.stderr)
        return 1
    print(f"model: {model}")

    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(args.image)}},
        {"type": "text", "text": "What is in this image?"},
    ]}]
    reply = client.chat.completions.create(model=model, messages=messages, max_tokens=32)
    print("answer:", reply.choices[0].message.content)
    print("usage:", reply.usage.prompt_tokens, "prompt +", reply.usage.completion_tokens, "completion tokens")

    print("streamed: ", end="")
    for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=32, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()

    result = client.images.generate(model=model, prompt="a red cat sitting on a wooden table", n=2,
                                    size="512x512", response_format="b64_json", extra_body={"seed": 7})
    for i, item in enumerate(result.data):
        path = args.out / f"openai-client-{i}.png"
        path.write_bytes(base64.b64decode(item.b64_json))
        print("image:", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
