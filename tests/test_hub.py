"""Hub ids through the standard Hugging Face cache: a fabricated cache (blobs, snapshots with
symlinks, refs) holding the tiny fixture, the HF_* environment variables, offline errors, and
a real download from a local stand-in for the hub (loopback only)."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import shutil
import socket
import threading
from pathlib import Path

import pytest

from janus_rs import InputError, JanusPro, NotFoundError

from conftest import REFERENCE, TINY, TINY_HF

REPO = "deepseek-ai/Janus-Pro-1B"
COMMIT = "4f5c1b3e0a9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b"
OTHER_COMMIT = "0123456789abcdef0123456789abcdef01234567"
IMAGE = REFERENCE / "input.png"


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def hub_env(monkeypatch):
    """No HF settings from the machine, and any network attempt goes to a closed local port."""
    for var in ["HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "XDG_CACHE_HOME"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")


def add_snapshot(cache: Path, repo: str, source: Path, commit: str = COMMIT, ref: str | None = "main",
                 skip: tuple[str, ...] = ()) -> Path:
    """Put ``source``'s files into ``cache`` the way huggingface_hub does: content-addressed
    blobs, a snapshot folder of relative symlinks, and ``refs/<ref>`` holding the commit."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "blobs").mkdir(exist_ok=True)
    for f in sorted(source.iterdir()):
        if f.name in skip or f.name == "README.md":
            continue
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        blob = repo_dir / "blobs" / digest
        if not blob.exists():
            shutil.copy(f, blob)
        (snapshot / f.name).symlink_to(Path("..") / ".." / "blobs" / digest)
    if ref is not None:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture(scope="module")
def local_answer():
    return JanusPro.from_pretrained(TINY).understand(IMAGE, "What is this?", max_new_tokens=8)


def test_hub_id_loads_from_hf_hub_cache_without_network(tmp_path, monkeypatch, local_answer):
    cache = tmp_path / "hub"
    snapshot = add_snapshot(cache, REPO, TINY)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    model = JanusPro.from_pretrained(REPO)
    assert model.name == REPO
    assert Path(model.info["path"]) == snapshot
    assert "deepseek-ai/Janus-Pro-1B" in repr(model)
    assert model.understand(IMAGE, "What is this?", max_new_tokens=8) == local_answer


def test_hf_home_locates_the_cache(tmp_path, monkeypatch):
    add_snapshot(tmp_path / "home" / "hub", REPO, TINY)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert JanusPro.from_pretrained(REPO).name == REPO


def test_xdg_cache_home_is_the_last_resort(tmp_path, monkeypatch):
    add_snapshot(tmp_path / "xdg" / "huggingface" / "hub", REPO, TINY)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert JanusPro.from_pretrained(REPO).name == REPO


def test_hf_hub_cache_wins_over_hf_home(tmp_path, monkeypatch):
    add_snapshot(tmp_path / "hub", REPO, TINY)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert JanusPro.from_pretrained(REPO).name == REPO


def test_cache_dir_argument(tmp_path):
    add_snapshot(tmp_path / "mine", REPO, TINY)
    assert JanusPro.from_pretrained(REPO, cache_dir=tmp_path / "mine").name == REPO


def test_revisions_by_ref_and_by_commit(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    main = add_snapshot(cache, REPO, TINY, commit=COMMIT, ref="main")
    v2 = add_snapshot(cache, REPO, TINY_HF, commit=OTHER_COMMIT, ref="v2")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert Path(JanusPro.from_pretrained(REPO).info["path"]) == main
    by_ref = JanusPro.from_pretrained(REPO, revision="v2")
    assert Path(by_ref.info["path"]) == v2 and by_ref.info["layout"] == "transformers"
    by_commit = JanusPro.from_pretrained(REPO, revision=COMMIT)
    assert Path(by_commit.info["path"]) == main


def test_transformers_layout_repo_from_the_cache(tmp_path, monkeypatch, local_answer):
    add_snapshot(tmp_path / "hub", "deepseek-community/Janus-Pro-1B", TINY_HF)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    model = JanusPro.from_pretrained("deepseek-community/Janus-Pro-1B")
    assert model.info["layout"] == "transformers"
    assert model.understand(IMAGE, "What is this?", max_new_tokens=8) == local_answer


def test_offline_missing_model_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotFoundError) as e:
        JanusPro.from_pretrained("deepseek-ai/Janus-Pro-7B")
    msg = str(e.value)
    assert "HF_HUB_OFFLINE" in msg
    assert "hf download deepseek-ai/Janus-Pro-7B" in msg
    assert str(tmp_path / "hub" / "models--deepseek-ai--Janus-Pro-7B") in msg
    assert isinstance(e.value, FileNotFoundError)


def test_offline_incomplete_snapshot_lists_the_missing_files(tmp_path, monkeypatch):
    add_snapshot(tmp_path / "hub", REPO, TINY, skip=("pytorch_model.bin", "tokenizer.json"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    with pytest.raises(NotFoundError, match=r"lacks tokenizer\.json, weights \(one of .*pytorch_model\.bin\)"):
        JanusPro.from_pretrained(REPO)


def test_offline_revision_not_cached(tmp_path, monkeypatch):
    add_snapshot(tmp_path / "hub", REPO, TINY)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(NotFoundError, match=r'no snapshot for revision "v9".*--revision v9'):
        JanusPro.from_pretrained(REPO, revision="v9", local_files_only=True)


def test_unreachable_hub_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(NotFoundError, match="could not be fetched from the Hugging Face hub"):
        JanusPro.from_pretrained(REPO, progress=False)


def test_not_a_folder_nor_a_hub_id(tmp_path):
    with pytest.raises(NotFoundError, match="model folder not found: .*nor is it a Hugging Face hub id"):
        JanusPro.from_pretrained(tmp_path / "a" / "b" / "c")


@pytest.mark.parametrize(
    "name,repo",
    [("Janus-Pro-7B", "deepseek-ai/Janus-Pro-7B"), ("janusflow-1.3b", "deepseek-ai/JanusFlow-1.3B")],
)
def test_a_bare_official_name_suggests_the_hub_id(name, repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFoundError, match=f"did you mean {repo}\\?"):
        JanusPro.from_pretrained(name)


def test_revision_with_a_local_folder_is_refused():
    with pytest.raises(InputError, match="revision= applies to hub ids"):
        JanusPro.from_pretrained(TINY, revision="main")


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Just enough of the hub's HTTP API for hf-hub: repo info and ranged file downloads."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        FakeHub.requests.append(self.path)
        info = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", self.path)
        if info:
            body = json.dumps({"sha": COMMIT, "siblings": [{"rfilename": n} for n in sorted(self.files)]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        m = re.fullmatch(r"/[^/]+/[^/]+/resolve/[^/]+/(.+)", self.path)
        if not m or m.group(1) not in self.files:
            self.send_error(404)
            return
        data = self.files[m.group(1)]
        start, end = 0, len(data) - 1
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if rng:
            start = int(rng.group(1))
            end = int(rng.group(2)) if rng.group(2) else end
        chunk = data[start : end + 1]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        self.wfile.write(chunk)


def test_download_into_the_cache_then_offline(tmp_path, monkeypatch, local_answer):
    FakeHub.files = {f.name: f.read_bytes() for f in TINY.iterdir()}
    FakeHub.files["README.md"] = b"# model card (not needed, not downloaded)"
    FakeHub.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        model = JanusPro.from_pretrained(REPO, progress=False)
    finally:
        server.shutdown()
    snapshot = tmp_path / "hub" / "models--deepseek-ai--Janus-Pro-1B" / "snapshots" / COMMIT
    assert Path(model.info["path"]) == snapshot
    assert (tmp_path / "hub" / "models--deepseek-ai--Janus-Pro-1B" / "refs" / "main").read_text() == COMMIT
    assert (snapshot / "pytorch_model.bin").read_bytes() == (TINY / "pytorch_model.bin").read_bytes()
    assert not (snapshot / "README.md").exists()
    assert model.understand(IMAGE, "What is this?", max_new_tokens=8) == local_answer
    # Now cached: offline (and with the fake hub gone) it loads from the snapshot.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = len(FakeHub.requests)
    assert Path(JanusPro.from_pretrained(REPO).info["path"]) == snapshot
    assert len(FakeHub.requests) == n
