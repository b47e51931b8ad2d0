"""Loading a torch ``.bin`` never runs code, and a pickle that names anything other than the
tensor-rebuild functions of a state dict is refused with a clear ``WeightsError``.

The malicious files are the tiny checkpoint's own ``pytorch_model.bin`` with its ``data.pkl``
replaced or altered, so everything else about them (zip layout, tensor data) is real.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest

from conftest import TINY, make_checkpoint
from janus_rs import JanusPro, WeightsError

ORIGINAL = TINY / "pytorch_model.bin"


class _Call:
    """Pickles as a call of ``func(*args)`` (what an attacker's ``__reduce__`` does)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _with_pickle(dest: Path, make_pickle) -> Path:
    """A checkpoint whose pytorch_model.bin has ``make_pickle(original_data_pkl)`` as data.pkl."""
    ckpt = make_checkpoint(dest, [])
    with zipfile.ZipFile(ORIGINAL) as src, zipfile.ZipFile(ckpt / "pytorch_model.bin", "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = make_pickle(data)
            out.writestr(info, data)
    return ckpt


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _prepended_call(module: str, name: str, arg: str):
    """PROTO 2, then module.name(arg) whose result is set aside, then the original pickle."""

    def make(original: bytes) -> bytes:
        assert original[:2] == b"\x80\x02"
        arg_bytes = arg.encode()
        call = _global(module, name) + b"X" + struct.pack("<I", len(arg_bytes)) + arg_bytes + b"\x85R0"
        return original[:2] + call + original[2:]

    return make


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a pickle ran code"


CASES = {
    "whole file is os.system": lambda m: lambda _: pickle.dumps(_Call(os.system, f"touch {m}"), protocol=2),
    "state dict value calls os.system": lambda m: lambda _: pickle.dumps(
        OrderedDict(weight=_Call(os.system, f"touch {m}")), protocol=2
    ),
    "eval before the real state dict": lambda m: _prepended_call("builtins", "eval", f"open('{m}','w')"),
    "subprocess before the real state dict": lambda m: _prepended_call("subprocess", "getoutput", f"touch {m}"),
    "a torch global outside the allowlist": lambda m: _prepended_call("torch", "load", str(m)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malicious_pickle_is_refused(tmp_path, marker, case):
    ckpt = _with_pickle(tmp_path / "ckpt", CASES[case](marker))
    with pytest.raises(WeightsError, match=r"pytorch_model\.bin: refusing to load: .* references `[\w.]+\.\w+`"):
        JanusPro.from_pretrained(ckpt)


def test_the_message_names_the_global(tmp_path, marker):
    ckpt = _with_pickle(tmp_path / "ckpt", _prepended_call("posix", "system", f"touch {marker}"))
    with pytest.raises(WeightsError, match=r"references `posix\.system`.*trusted source"):
        JanusPro.from_pretrained(ckpt)


def test_unsupported_opcodes_are_refused(tmp_path):
    # Protocol-4 framing (and the opcodes that come with it) is outside what a torch.save state
    # dict uses; the pickle is refused before anything is built from it.
    ckpt = _with_pickle(tmp_path / "ckpt", lambda _: pickle.dumps(OrderedDict(a=1), protocol=4))
    with pytest.raises(WeightsError, match="not a plain state-dict pickle"):
        JanusPro.from_pretrained(ckpt)


def test_a_bin_that_is_not_a_zip(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", [])
    (ckpt / "pytorch_model.bin").write_bytes(pickle.dumps(OrderedDict(), protocol=2))
    with pytest.raises(WeightsError, match=r"cannot read weight file .*pytorch_model\.bin: .*not a PyTorch zip checkpoint"):
        JanusPro.from_pretrained(ckpt)


def test_the_real_layout_still_loads():
    # The allowlist covers what torch.save writes (collections.OrderedDict,
    # torch._utils._rebuild_tensor_v2, torch.BFloat16Storage).
    assert JanusPro.from_pretrained(TINY).understand(None, "hi", max_new_tokens=2) is not None
