"""How the server turns image references in chat messages into image bytes.

``data:`` URLs are always accepted. ``http(s)://`` URLs are downloaded with a size cap and a
timeout unless remote media are off, optionally only from listed domains (redirects are
checked too). ``file://`` URLs and plain paths are read only inside an explicitly allowed local
folder. Everything refused is an :class:`~janus_rs.InputError` (a 400 for the client)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import unquote, urlparse

from .._messages import decode_data_url, is_url_like
from ..errors import ImageError, InputError


@dataclass(frozen=True)
class MediaPolicy:
    """Where chat images may come from.

    Attributes:
        remote: download ``http(s)://`` image URLs (default True).
        allowed_domains: if given, only these hosts (and their subdomains) are fetched.
        local_folder: a folder whose files may be named by ``file://`` URLs or paths (default
            none: local files are refused).
        max_bytes: largest image accepted, downloaded or inline (default 20 MB).
        timeout: seconds allowed for one download (default 10).
    """

    remote: bool = True
    allowed_domains: Sequence[str] | None = None
    local_folder: str | None = None
    max_bytes: int = 20 * 1024 * 1024
    timeout: float = 10.0

    def resolve(self, reference: str) -> Any:
        """Image bytes (or an allowed path) for a reference string; :class:`InputError` if refused."""
        scheme = reference[:8].lower()
        if scheme.startswith("data:"):
            data = decode_data_url(reference)
            self._check_size(len(data))
            return data
        if scheme.startswith(("http://", "https://")):
            return self._download(reference)
        if scheme.startswith("file://"):
            return self._local(unquote(urlparse(reference).path), reference)
        if is_url_like(reference):
            raise InputError(f"unsupported image URL scheme in {_short(reference)}: use data:, http: or https:")
        return self._local(reference, reference)

    def _check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise ImageTooLarge(f"image of {size} bytes exceeds the limit of {self.max_bytes} bytes")

    def _host_allowed(self, url: str) -> bool:
        if self.allowed_domains is None:
            return True
        host = (urlparse(url).hostname or "").lower()
        return any(host == d.lower() or host.endswith("." + d.lower()) for d in self.allowed_domains)

    def _download(self, url: str) -> bytes:
        if not self.remote:
            raise InputError(f"remote image URLs are turned off on this server ({_short(url)}): send a data: URL")
        if not self._host_allowed(url):
            raise InputError(f"image host of {_short(url)} is not in the server's allowed media domains")
        policy = self

        class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
                if not newurl.lower().startswith(("http://", "https://")) or not policy._host_allowed(newurl):
                    raise InputError(f"image URL {_short(url)} redirects to a URL that is not allowed")
                return super().redirect_request(req, fp, code, msg, headers, newurl)

        opener = urllib.request.build_opener(_CheckedRedirects)
        request = urllib.request.Request(url, headers={"User-Agent": "janus-rs-server"})
        try:
            with opener.open(request, timeout=self.timeout) as response:
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit():
                    self._check_size(int(declared))
                data: bytes = response.read(self.max_bytes + 1)
        except InputError:  # over the size limit, or a refused redirect
            raise
        except urllib.error.HTTPError as e:
            raise ImageError(f"fetching {_short(url)} failed: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ImageError(f"fetching {_short(url)} failed: {reason}") from None
        self._check_size(len(data))
        return data

    def _local(self, path: str, reference: str) -> str:
        if self.local_folder is None:
            raise InputError(
                f"local image paths are not allowed on this server ({_short(reference)}): send a data: URL"
            )
        root = os.path.realpath(self.local_folder)
        full = os.path.realpath(os.path.join(root, path))
        if os.path.commonpath([root, full]) != root:
            raise InputError(f"image path {_short(reference)} is outside the allowed local folder")
        return full


class ImageTooLarge(InputError):
    """An image over the server's byte limit (answered with 413)."""


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
