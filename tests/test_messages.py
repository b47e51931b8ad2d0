"""The conversation normaliser behind chat() and the server (official, OpenAI and HF spellings,
data URLs, system messages), pre-rendered generation prompts and the parallel_size alias."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES
from janus_rs import ImageError, InputError, InputTypeError, NotFoundError
from janus_rs._messages import decode_data_url, normalise_conversation

INPUT = FIXTURES / "tiny-janus-pro-reference" / "input.png"
TINY_FLOW = FIXTURES / "tiny-janusflow"
TOKENS = 12


def data_url(image: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.asarray(Image.open(INPUT).convert("RGB"))


def test_three_spellings_of_one_conversation_give_the_same_prompt_and_answer(model, pixels):
    url = data_url(pixels)
    official = [
        {"role": "<|User|>", "content": "<image_placeholder>\nWhat is this?", "images": [str(INPUT)]},
        {"role": "<|Assistant|>", "content": "A cat."},
        {"role": "<|User|>", "content": "And its colour?"},
        {"role": "<|Assistant|>", "content": ""},
    ]
    openai_style = [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": url, "detail": "auto"}}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": [{"type": "text", "text": "And its colour?"}]},
    ]
    hf_style = [
        {"role": "user", "content": [{"type": "image", "path": str(INPUT)}, {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
        {"role": "user", "content": [{"type": "text", "text": "And its colour?"}]},
    ]
    conversations = [normalise_conversation(c) for c in (official, openai_style, hf_style)]
    prompts = [model.format_prompt(c.turns) for c in conversations]
    assert prompts[0] == prompts[1] == prompts[2]
    assert "<|User|>: <image_placeholder>\nWhat is this?" in prompts[0]
    for c in conversations:
        assert len(c.images) == 1 and np.array_equal(c.images[0], pixels)
    answers = [model.chat(c, max_new_tokens=TOKENS) for c in (official, openai_style, hf_style)]
    assert answers[0] == answers[1] == answers[2]


def test_image_forms_are_equal(model, pixels):
    """A data URL, a path, a file:// URL, HF base64 and an in-memory image are the same image."""
    url = data_url(pixels)
    b64 = url.split(",", 1)[1]
    forms = [
        {"images": [url]},
        {"images": [str(INPUT)]},
        {"images": [INPUT.resolve().as_uri()]},
        {"content": [{"type": "image", "base64": b64}]},
        {"content": [{"type": "image", "url": url}]},
        {"content": [{"type": "image", "image": Image.fromarray(pixels)}]},
        {"content": [{"type": "image_url", "image_url": url}]},  # the url as a bare string
    ]
    for form in forms:
        message = {"role": "user", "content": form.get("content", "hi")}
        if "images" in form:
            message["images"] = form["images"]
        (image,) = normalise_conversation([message]).images
        assert np.array_equal(image, pixels), form


def test_two_images_go_before_the_text_in_order(model, pixels):
    flipped = np.ascontiguousarray(pixels[::-1])
    c = normalise_conversation([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(pixels)}},
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": data_url(flipped)}},
        {"type": "text", "text": "these."},
    ]}])
    assert c.turns == [("user", "<image_placeholder>\n<image_placeholder>\nCompare\nthese.")]
    assert np.array_equal(c.images[0], pixels) and np.array_equal(c.images[1], flipped)
    direct = model.understand([pixels, flipped], "Compare\nthese.", max_new_tokens=TOKENS)
    assert model.chat([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(pixels)}},
        {"type": "image_url", "image_url": {"url": data_url(flipped)}},
        {"type": "text", "text": "Compare\nthese."},
    ]}], max_new_tokens=TOKENS) == direct


def test_text_that_places_its_images_keeps_them_there(pixels):
    c = normalise_conversation([{"role": "user", "content": [
        {"type": "text", "text": "Left: <image_placeholder> right: <image_placeholder>"},
        {"type": "image_url", "image_url": {"url": data_url(pixels)}},
        {"type": "image_url", "image_url": {"url": data_url(pixels)}},
    ]}])
    assert c.turns == [("user", "Left: <image_placeholder> right: <image_placeholder>")]


def test_system_messages_become_the_system_prompt(model):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hello"}]
    assert normalise_conversation(messages).system_prompt == "Answer briefly."
    assert model.chat(messages, max_new_tokens=TOKENS) == model.chat(
        [{"role": "user", "content": "Hello"}], system_prompt="Answer briefly.", max_new_tokens=TOKENS
    )
    with pytest.raises(InputError, match="system prompt is given twice"):
        model.chat(messages, system_prompt="Other")
    two = [{"role": "system", "content": "A."}, {"role": "system", "content": [{"type": "text", "text": "B."}]},
           {"role": "user", "content": "hi"}]
    assert normalise_conversation(two).system_prompt == "A.\n\nB."


@pytest.mark.parametrize(
    "messages,error,match",
    [
        ([{"role": "user", "content": [{"type": "audio", "audio": "x"}]}], InputError,
         r"messages\[0\]\.content\[0\]: unsupported part type 'audio'"),
        ([{"role": "user", "content": "hi"}, {"role": "user", "content": [{"text": "no type"}]}], InputError,
         r"messages\[1\]\.content\[0\] has no 'type'"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}],
         ImageError, r"messages\[0\]\.content\[0\]: data URL holds invalid base64"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}}]}],
         ImageError, r"messages\[0\]\.content\[0\]: "),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/plain,hello"}}]}],
         ImageError, "media type 'text/plain', not an image"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}],
         InputError, r"chat\(\) does not download images"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://host/a.png"}}]}],
         InputError, "unsupported image URL scheme"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], InputError, "needs {'image_url': {'url': str}}"),
        ([{"role": "user", "content": [{"type": "image"}]}], InputError, "needs one of 'image', 'url', 'path'"),
        ([{"role": "user", "content": [{"type": "text", "text": 5}]}], InputError, "needs a string 'text'"),
        ([{"role": "user", "content": 3}], InputError, "content must be a string or a list of parts"),
        ([{"role": "user"}], InputError, r"messages\[0\] has no 'content'"),
        ([{"role": 1, "content": "x"}], InputError, "role must be a string"),
        ([{"role": "system", "content": "x", "images": [str(INPUT)]}], InputError, "system message cannot hold images"),
        ([{"role": "user", "content": "hi", "images": ["missing.png"]}], NotFoundError,
         r"messages\[0\]\.images\[0\]: image file not found"),
        ([], InputError, "the conversation is empty"),
    ],
)
def test_malformed_conversations_name_the_message_and_part(model, messages, error, match):
    with pytest.raises(error, match=match):
        model.chat(messages, max_new_tokens=1)


def test_messages_must_be_a_list(model):
    with pytest.raises(InputTypeError):
        model.chat({"role": "user", "content": "hi"})


def test_data_urls(pixels):
    assert decode_data_url("data:,hello") == b"hello"
    assert decode_data_url("data:image/png;base64," + base64.b64encode(b"\x89PNG").decode()) == b"\x89PNG"
    with pytest.raises(ImageError, match="malformed data URL"):
        decode_data_url("data:image/png;base64")


def test_official_pre_rendered_generation_prompt_is_not_wrapped_twice(model):
    """The official README passes sft_format + image_start_tag to its generate(); the same string
    here gives the same tokens (and images) as the plain description."""
    sft_format = model.format_prompt([("<|User|>", "a red cat"), ("<|Assistant|>", "")], system_prompt="")
    official_prompt = sft_format + "<begin_of_image>"
    assert list(model.generation_prompt_ids(official_prompt)) == list(model.generation_prompt_ids("a red cat"))
    assert list(model.generation_prompt_ids(sft_format)) == list(model.generation_prompt_ids("a red cat"))
    a = model.generate_tokens("a red cat", seed=3, progress=False)
    b = model.generate_tokens(official_prompt, seed=3, progress=False)
    assert np.array_equal(a, b)
    # A description that merely mentions a role is still wrapped.
    assert len(model.generation_prompt_ids("<|Assistant|>:")) > len(model.generation_prompt_ids("x"))


def test_janusflow_pre_rendered_generation_prompt():
    from janus_rs import JanusFlow

    flow = JanusFlow.from_pretrained(TINY_FLOW)
    sft_format = flow.format_prompt([("User", "a red cat"), ("Assistant", "")], system_prompt="")
    tag = "<｜begin▁of▁generation｜>"
    assert flow.token_id(tag) is not None
    assert list(flow.generation_prompt_ids(sft_format + tag)) == list(flow.generation_prompt_ids("a red cat"))


def test_parallel_size_is_an_alias_of_num_images(model):
    a = model.generate_tokens("a red cat", parallel_size=2, seed=1, progress=False)
    b = model.generate_tokens("a red cat", num_images=2, seed=1, progress=False)
    assert a.shape[0] == 2 and np.array_equal(a, b)
    assert len(model.generate("a red cat", parallel_size=2, seed=1, progress=False)) == 2
    with pytest.raises(InputError, match="num_images=3 and parallel_size=2 disagree"):
        model.generate_tokens("a red cat", num_images=3, parallel_size=2, progress=False)
