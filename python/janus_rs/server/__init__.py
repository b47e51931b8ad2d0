"""An OpenAI-compatible HTTP server for Janus models (``janus-rs serve``).

Install with ``pip install "janus-rs[server]"``. Start it from the shell::

    janus-rs serve --model deepseek-ai/Janus-Pro-1B --port 8000

or build the ASGI app yourself (any ASGI server, Ray Serve, ...)::

    from janus_rs.server import create_app
    app = create_app("deepseek-ai/Janus-Pro-1B", api_key="secret")
    # uvicorn.run(app, host="127.0.0.1", port=8000)

and talk to it with any OpenAI client::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="secret")
    client.chat.completions.create(model="Janus-Pro-1B", messages=[...])
    client.images.generate(model="Janus-Pro-1B", prompt="a red cat", extra_body={"seed": 1})
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import starlette  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised by hand in an environment without the extra
    raise ImportError(
        f"janus_rs.server needs the server extra ({e.name} is missing): pip install \"janus-rs[server]\""
    ) from e

from ._app import ServerOptions, create_app
from ._errors import APIError
from ._media import MediaPolicy

__all__ = ["create_app", "ServerOptions", "MediaPolicy", "APIError"]
