"""A real Ctrl-C (SIGINT) during generation stops it within one step. Run in a subprocess so
the signal cannot reach pytest itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import REFERENCE, TINY

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading
    from janus_rs import JanusPro

    # A shell that starts us in the background leaves SIGINT ignored; Ctrl-C in a terminal
    # raises KeyboardInterrupt, so make sure that handler is installed.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    model = JanusPro.from_pretrained(sys.argv[1])
    started = threading.Event()
    steps = []

    def on_step(done, total):
        steps.append(done)
        started.set()

    def interrupt():
        started.wait()
        os.kill(os.getpid(), signal.SIGINT)   # arrives while the main thread is inside Rust

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        model.{call}
    except KeyboardInterrupt:
        n = len(steps)
        # The model still works afterwards.
        assert model.generate("a red cat", progress=False, seed=1).array.shape == (1, 64, 64, 3)
        print("interrupted after", n, "of", {total})
        sys.exit(0)
    print("not interrupted", len(steps))
    sys.exit(1)
    """
)


def run(call: str, total: int) -> str:
    code = SCRIPT.replace("{call}", call).replace("{total}", str(total))
    r = subprocess.run([sys.executable, "-c", code, str(TINY)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_sigint_stops_image_generation():
    # 64 images × 16 steps; the signal is sent after the first step.
    out = run("generate_tokens('a red cat', num_images=64, progress=on_step)", 16)
    n = int(out.split()[2])
    assert n <= 3  # the signal lands during step 2 (or 3, if the sender thread is slow to wake)


def test_sigint_stops_text_generation():
    image = str(REFERENCE / "input.png")
    out = run(f"understand({image!r}, 'Describe.', max_new_tokens=400, on_token=lambda t: on_step(t, 0))", 400)
    n = int(out.split()[2])
    assert n < 50  # text steps take under a millisecond here; the sender's wake-up dominates
