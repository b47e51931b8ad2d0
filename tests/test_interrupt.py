"""A real Ctrl-C (SIGINT) during generation stops it within one step, and the model works
afterwards."""

from __future__ import annotations

from conftest import REFERENCE, TINY, steps_before_sigint

LOAD = f"janus_rs.JanusPro.from_pretrained({str(TINY)!r})"
AFTER = "assert model.generate('a red cat', progress=False, seed=1).array.shape == (1, 64, 64, 3)"


def test_sigint_stops_image_generation():
    # 64 images × 16 steps; the signal is sent after the first step.
    n = steps_before_sigint(LOAD, "generate_tokens('a red cat', num_images=64, progress=on_step)", AFTER)
    assert n <= 3  # the signal lands during step 2 (or 3, if the sender thread is slow to wake)


def test_sigint_stops_text_generation():
    image = str(REFERENCE / "input.png")
    call = f"understand({image!r}, 'Describe.', max_new_tokens=400, on_token=lambda t: on_step(t, 0))"
    n = steps_before_sigint(LOAD, call, AFTER)
    assert n < 50  # text steps take under a millisecond here; the sender's wake-up dominates
