#!/usr/bin/env python3
"""Write the tiny Janus-Pro fixture in the transformers-converted layout (run by hand, never in CI).

    /work/oracle-venv/bin/python scripts/make_hf_layout_fixture.py

Needs: torch, transformers (tested with 5.24.0), torchvision (JanusImageProcessor), safetensors, tokenizers, pillow.

Reads the official-layout fixture tests/fixtures/tiny-janus-pro/ (written by make_fixtures.py) and writes
tests/fixtures/tiny-janus-pro-hf/: the SAME bf16 weights in the layout of the hub repo
deepseek-community/Janus-Pro-1B, i.e. what `JanusForConditionalGeneration.save_pretrained` and
`JanusProcessor.save_pretrained` write (config.json with model_type "janus", model.safetensors, generation_config.json,
preprocessor/processor/tokenizer files), plus a README.md with the verification results and the saved configs.

The model, processor and generation settings are built the way transformers' own conversion
(convert_janus_weights_to_hf.py) builds them from an official checkpoint, except that the tiny sizes are passed
explicitly and `tie_word_embeddings=False` (Janus has a separate lm_head; see oracle.md section 2).

Verification (printed and written to the README):
  1. from_pretrained(folder) gives every tensor bit-equal (bf16) to official_to_hf(official fixture); the raw
     model.safetensors holds exactly those keys, shapes and bf16 values.
  2. the reloaded model (float32, eager) reproduces the reference logits of
     tests/fixtures/tiny-janus-pro-reference/reference.safetensors (und_logits, mi_logits_last, generation step-0
     logits, greedy text and CFG image tokens, VQ decode).
  3. the saved tokenizer (AutoTokenizer and the raw tokenizer.json through `tokenizers`) gives the same ids as the
     official fixture's tokenizer.json; the reloaded JanusProcessor builds the reference input ids.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# make_fixtures.py only defines constants and functions at import time (plus torch thread / determinism settings);
# its work happens in main(), which is not called here.
import make_fixtures as mf  # noqa: E402
from janus_layout import official_to_hf  # noqa: E402

import numpy as np  # noqa: E402
import safetensors.torch as st  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import (AutoTokenizer, GenerationConfig, JanusConfig, JanusForConditionalGeneration,  # noqa: E402
                          JanusImageProcessor, JanusProcessor, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig)

CKPT = mf.CKPT                                  # tests/fixtures/tiny-janus-pro (official layout)
REF = mf.REF                                    # tests/fixtures/tiny-janus-pro-reference
OUT = mf.FIX / "tiny-janus-pro-hf"

# Chat template written for this fixture (not copied from the hub): renders the official `deepseek` SFT format
# WITHOUT the system prompt, which JanusProcessor prepends itself when use_default_system_prompt is true (text mode).
# user: "<|User|>: " + body + "\n\n"; assistant: "<|Assistant|>: " + body + EOS (empty body: "<|Assistant|>:");
# body = content string, or the parts of a content list joined by "\n" (image part -> "<image_placeholder>").
# add_generation_prompt appends "<|Assistant|>:".
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set role = message['role'] | lower -%}"
    "{%- if message['content'] is string -%}{%- set body = message['content'] -%}"
    "{%- else -%}{%- set ns = namespace(parts=[]) -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{%- set ns.parts = ns.parts + ['<image_placeholder>'] -%}"
    "{%- elif part['type'] == 'text' -%}{%- set ns.parts = ns.parts + [part['text']] -%}{%- endif -%}"
    "{%- endfor -%}{%- set body = ns.parts | join('\\n') -%}{%- endif -%}"
    "{%- if role == 'user' or role == '<|user|>' -%}{%- set tag = '<|User|>' -%}{%- set sep = '\\n\\n' -%}"
    "{%- elif role == 'assistant' or role == '<|assistant|>' -%}{%- set tag = '<|Assistant|>' -%}"
    "{%- set sep = '<\uff5cend\u2581of\u2581sentence\uff5c>' -%}"
    "{%- else -%}{%- set tag = message['role'] | capitalize -%}{%- set sep = '\\n\\n' -%}{%- endif -%}"
    "{%- if body | length > 0 -%}{{ tag + ': ' + body + sep }}{%- else -%}{{ tag + ':' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|Assistant|>:' }}{%- endif -%}"
)


def check(cond, msg):
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def err(a, b):
    a, b = a.float(), b.float()
    d = (a - b).abs().max().item()
    return {"max_abs": d, "rel": d / max(b.abs().max().item(), 1e-30)}


def fmt(e):
    return f"max abs {e['max_abs']:.3e}, rel {e['rel']:.3e}"


def hf_config(tid):
    """JanusConfig for the tiny sizes (as make_fixtures.build_hf_model) plus what the hub conversion sets
    (pad/bos/eos ids on the text config, image_token_id); tie_word_embeddings=False on both levels."""
    text = LlamaConfig(hidden_size=mf.H, intermediate_size=mf.FFN, num_attention_heads=mf.HEADS,
                       num_key_value_heads=mf.KV_HEADS, num_hidden_layers=mf.LAYERS,
                       max_position_embeddings=mf.MAXPOS, vocab_size=mf.VOCAB, tie_word_embeddings=False,
                       pad_token_id=tid[mf.PAD_T], bos_token_id=tid[mf.BOS_T], eos_token_id=tid[mf.EOS_T])
    vision = JanusVisionConfig(hidden_size=mf.SIG_W, num_hidden_layers=mf.SIG_L, num_attention_heads=mf.SIG_HEADS,
                               image_size=mf.IMG, patch_size=mf.PATCH, mlp_ratio=mf.SIG_MLP, projection_dim=mf.H,
                               depth=2, num_image_tokens=mf.N_IMG_TOK, hidden_act="gelu", layer_norm_eps=1e-6,
                               attention_bias=True)
    vq = JanusVQVAEConfig(embed_dim=mf.VQ_DIM, num_embeddings=mf.VQ_CODES, latent_channels=mf.VQ_Z,
                          base_channels=mf.VQ_CH, channel_multiplier=list(mf.VQ_MULT), num_res_blocks=mf.VQ_NRES,
                          projection_dim=mf.H, image_token_embed_dim=mf.H, num_hidden_layers=2, hidden_act="gelu")
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=tid[mf.IMG_T],
                       tie_word_embeddings=False)


def collapse(keys_shapes):
    """Key list with SigLIP / LLM layer indices collapsed to N (shapes of layer 0)."""
    out, seen = [], set()
    for k, s in keys_shapes:
        c = re.sub(r"(encoder\.layers|language_model\.layers)\.\d+\.", r"\1.N.", k)
        if c not in seen:
            seen.add(c)
            out.append((c, s))
    return out


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    R = st.load_file(str(REF / "reference.safetensors"))
    off_cfg = json.load(open(CKPT / "config.json"))
    off_pre = json.load(open(CKPT / "preprocessor_config.json"))
    off_proc = json.load(open(CKPT / "processor_config.json"))
    off_tokcfg = json.load(open(CKPT / "tokenizer_config.json"))
    # the official fixture's sizes must be the ones make_fixtures.py's constants describe
    check(off_cfg["language_config"]["hidden_size"] == mf.H and off_cfg["vision_config"]["params"]["width"] == mf.SIG_W
          and off_cfg["gen_vision_config"]["params"]["image_token_size"] == mf.VQ_CODES
          and off_pre["image_size"] == mf.IMG and off_proc["num_image_tokens"] == mf.N_IMG_TOK,
          "official fixture sizes differ from make_fixtures constants")

    off_tok = Tokenizer.from_file(str(CKPT / "tokenizer.json"))
    tid = {t: off_tok.token_to_id(t) for t in (mf.BOS_T, mf.EOS_T, mf.PAD_T, mf.IMG_T, mf.BOI_T, mf.EOI_T,
                                              mf.USER, mf.ASSISTANT)}

    # ------------------------------------------------------------------ official weights -> HF names (bf16)
    off_sd = torch.load(CKPT / "pytorch_model.bin", weights_only=True)
    check(all(v.dtype == torch.bfloat16 for v in off_sd.values()), "official fixture not bf16")
    hf_sd = official_to_hf(off_sd)
    dropped = sorted(k for k in off_sd if ".attn_pool." in k or k.endswith("quantize.codebook_used"))
    n_qkv = sum(1 for k in off_sd if ".attn.qkv." in k)
    print(f"official: {len(off_sd)} tensors -> HF: {len(hf_sd)} tensors "
          f"({n_qkv} fused qkv split into 3, {len(dropped)} dropped)")

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    # ------------------------------------------------------------------ processor (tokenizer + image processor)
    tok = AutoTokenizer.from_pretrained(str(CKPT), model_max_length=off_tokcfg["model_max_length"],
                                        extra_special_tokens={"image_token": mf.IMG_T, "boi_token": mf.BOI_T,
                                                              "eoi_token": mf.EOI_T})
    print(f"tokenizer class: {type(tok).__name__}")
    image_processor = JanusImageProcessor(
        size={"height": off_pre["image_size"], "width": off_pre["image_size"]}, do_normalize=off_pre["do_normalize"],
        image_mean=off_pre["image_mean"], image_std=off_pre["image_std"], min_size=off_pre["min_size"],
        rescale_factor=off_pre["rescale_factor"])
    check(tuple(image_processor.background_color) == tuple(off_pre["background_color"]), "background colour")
    processor = JanusProcessor(image_processor=image_processor, tokenizer=tok, chat_template=CHAT_TEMPLATE,
                               use_default_system_prompt=True, num_image_tokens=off_proc["num_image_tokens"])
    processor.save_pretrained(str(OUT))
    # transformers 5.x writes the image processor only inside processor_config.json ("image_processor"); the hub repos
    # converted with 4.x also carry it as a standalone preprocessor_config.json (what JanusImageProcessor.save_pretrained
    # writes). Write that file too, so a loader can be tested on both; the two hold the same settings (checked below).
    image_processor.save_pretrained(str(OUT))

    # ------------------------------------------------------------------ model
    config = hf_config(tid)
    model = JanusForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    ref_model = mf.build_hf_model(tid[mf.IMG_T])        # make_fixtures' oracle model: same module structure?
    check({k: tuple(v.shape) for k, v in model.state_dict().items()}
          == {k: tuple(v.shape) for k, v in ref_model.state_dict().items()}, "structure differs from build_hf_model")
    del ref_model
    missing, unexpected = model.load_state_dict(hf_sd, strict=True)
    check(not missing and not unexpected, f"load_state_dict {missing} {unexpected}")
    check(model.lm_head.weight.data_ptr() != model.model.language_model.embed_tokens.weight.data_ptr(),
          "lm_head is tied to embed_tokens")
    model.eval()
    gc = model.generation_config
    gc._from_model_config = False
    gc.temperature = 1.0
    gc.guidance_scale = 5.0
    gc.pad_token_id = tid[mf.PAD_T]
    gc.bos_token_id = tid[mf.BOS_T]
    gc.eos_token_id = tid[mf.EOS_T]
    gc.boi_token_id = tid[mf.BOI_T]                      # what the hub conversion sets ...
    gc.generation_kwargs = {"boi_token_id": tid[mf.BOI_T]}  # ... and what 5.24's image CFG loop actually reads
    model.save_pretrained(str(OUT))

    files = sorted(p.name for p in OUT.iterdir())
    print("written:", ", ".join(f"{f} ({(OUT / f).stat().st_size} B)" for f in files))

    # ================================================================== 1. weights
    raw = st.load_file(str(OUT / "model.safetensors"))
    with open(OUT / "model.safetensors", "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        st_header = json.loads(f.read(n))
    st_meta = st_header.get("__metadata__", {})
    raw_keys_extra = sorted(set(raw) - set(hf_sd))
    raw_keys_missing = sorted(set(hf_sd) - set(raw))
    raw_eq = (not raw_keys_extra and not raw_keys_missing and all(
        raw[k].dtype == torch.bfloat16 and raw[k].shape == hf_sd[k].shape and torch.equal(raw[k], hf_sd[k])
        for k in hf_sd))
    print(f"[1] model.safetensors: {len(raw)} tensors, dtypes {sorted({str(v.dtype) for v in raw.values()})}, "
          f"metadata {st_meta}; extra {raw_keys_extra}, missing {raw_keys_missing}; bit-equal to "
          f"official_to_hf(official): {raw_eq}")
    check(raw_eq, "model.safetensors differs from official_to_hf(official)")

    m_bf16, info = JanusForConditionalGeneration.from_pretrained(str(OUT), output_loading_info=True)
    loaded = m_bf16.state_dict()
    load_dtype = str(next(m_bf16.parameters()).dtype)
    loaded_eq = set(loaded) == set(hf_sd) and all(
        loaded[k].dtype == torch.bfloat16 and torch.equal(loaded[k], hf_sd[k]) for k in hf_sd)
    info = {k: sorted(v) if isinstance(v, (list, set)) else str(v) for k, v in info.items()}
    tied = m_bf16.lm_head.weight.data_ptr() == m_bf16.model.language_model.embed_tokens.weight.data_ptr()
    print(f"[1] from_pretrained: dtype {load_dtype}, {len(loaded)} tensors, loading info {info}, lm_head tied "
          f"{tied}; every tensor bit-equal: {loaded_eq}")
    check(loaded_eq and not tied, "from_pretrained tensors differ")
    check(all(not v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys")),
          f"loading info {info}")
    del m_bf16, loaded

    # ================================================================== 2. reference outputs (float32)
    model32 = JanusForConditionalGeneration.from_pretrained(str(OUT), dtype=torch.float32,
                                                            attn_implementation="eager").eval()
    res = {}
    with torch.no_grad():
        ids = R["und_input_ids"][None]
        pv = R["und_pixel_values"][None]
        lg = model32(input_ids=ids, pixel_values=pv, attention_mask=torch.ones_like(ids)).logits[0]
        res["und_logits"] = err(lg, R["und_logits"])
        mids = R["mi_input_ids"][None]
        lg = model32(input_ids=mids, pixel_values=R["mi_pixel_values"],
                     attention_mask=torch.ones_like(mids)).logits[0, -1]
        res["mi_logits_last"] = err(lg, R["mi_logits_last"])
        M = model32.model
        h = M.language_model(input_ids=R["gen_tokens_rows"]).last_hidden_state[:, -1]
        g = M.generation_head(h)
        res["gen_step0_logits_cond"] = err(g[0], R["gen_step0_logits_cond"])
        res["gen_step0_logits_uncond"] = err(g[1], R["gen_step0_logits_uncond"])
        dec = M.vqmodel.decode(R["gen_image_tokens"][None])
        res["gen_decoded"] = err(dec, R["gen_decoded"])
        # generate() with the SAVED generation_config.json (pad / bos / boi ids, guidance_scale 5)
        out = model32.generate(input_ids=ids, pixel_values=pv, attention_mask=torch.ones_like(ids),
                               max_new_tokens=8, do_sample=False, eos_token_id=None, generation_mode="text")
        und_greedy = out[0, ids.shape[1]:].tolist()
        gp = R["gen_prompt_ids"][None]
        img_tok = model32.generate(input_ids=gp, attention_mask=torch.ones_like(gp), generation_mode="image",
                                   do_sample=False)[0].tolist()
    res["und_greedy_ids_equal"] = und_greedy == R["und_greedy_ids"].tolist()
    res["gen_image_tokens_equal"] = img_tok == R["gen_image_tokens"].tolist()
    for k, v in res.items():
        print(f"[2] {k}: {fmt(v) if isinstance(v, dict) else v}")
    check(all(v["rel"] < 1e-4 for v in res.values() if isinstance(v, dict)), "reference mismatch")
    check(res["und_greedy_ids_equal"] and res["gen_image_tokens_equal"], "token mismatch")

    # ================================================================== 3. tokenizer / processor
    hf_tok = AutoTokenizer.from_pretrained(str(OUT))
    raw_tok = Tokenizer.from_file(str(OUT / "tokenizer.json"))
    strings = [f"{mf.USER}: {mf.IMG_T}\nhello 42\n\n{mf.ASSISTANT}:",
               json.load(open(REF / "reference.json"))["und_prompt"],
               json.load(open(REF / "reference.json"))["mi_prompt"],
               json.load(open(REF / "reference.json"))["gen_prompt"],
               f"{mf.BOS_T}{mf.EOS_T}{mf.PAD_T}<patch_placeholder><|ref|><|/ref|><|det|><|/det|><|grounding|>"
               f"{mf.BOI_T}{mf.EOI_T}",
               "  Ünïcödé ΐ 中文 12345\r\n\tend "]
    tok_rows = []
    for s in strings:
        a = off_tok.encode(s).ids
        b = hf_tok(s)["input_ids"]
        c = raw_tok.encode(s).ids
        d = off_tok.encode(s, add_special_tokens=False).ids
        e = hf_tok(s, add_special_tokens=False)["input_ids"]
        tok_rows.append({"text": s, "ids": a, "autotokenizer_equal": a == b, "raw_tokenizer_json_equal": a == c,
                         "no_special_equal": d == e})
        check(a == b and a == c and d == e, f"tokenizer mismatch on {s!r}: {a} / {b} / {c}")
    for r in tok_rows[:1]:
        print(f"[3] {r['text']!r} -> {r['ids']}")
    print(f"[3] {len(tok_rows)} strings: AutoTokenizer(saved) == tokenizers(saved tokenizer.json) == official "
          f"tokenizer.json (with and without BOS): True")
    special_ids = {t: hf_tok.convert_tokens_to_ids(t) for t in tid}
    check(special_ids == tid, f"special ids {special_ids}")
    tok_json_identical = (OUT / "tokenizer.json").read_bytes() == (CKPT / "tokenizer.json").read_bytes()
    a_off = {t["content"]: t for t in json.load(open(CKPT / "tokenizer.json"))["added_tokens"]}
    a_hf = {t["content"]: t for t in json.load(open(OUT / "tokenizer.json"))["added_tokens"]}
    added_diff = {c: {k: (a_off[c].get(k), a_hf[c].get(k)) for k in set(a_off[c]) | set(a_hf[c])
                      if a_off[c].get(k) != a_hf[c].get(k)} for c in a_off if c in a_hf}
    added_diff = {c: d for c, d in added_diff.items() if d}
    print(f"[3] saved tokenizer.json byte-identical to the official one: {tok_json_identical}; added-token flag "
          f"changes (official, saved): {added_diff}")

    proc2 = JanusProcessor.from_pretrained(str(OUT))
    pre_same = (json.load(open(OUT / "preprocessor_config.json"))
                == json.load(open(OUT / "processor_config.json"))["image_processor"])
    print(f"[3] preprocessor_config.json == processor_config.json['image_processor']: {pre_same}")
    check(pre_same, "the two image-processor configs differ")
    im1 = Image.open(REF / "input.png").convert("RGB")
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}]
    templ = proc2.apply_chat_template(msgs, add_generation_prompt=True)
    p = proc2(text=templ, images=im1, return_tensors="pt")
    proc_ids_equal = p["input_ids"][0].tolist() == R["und_input_ids"].tolist()
    proc_pv = err(p["pixel_values"][0], R["und_pixel_values"])
    ref_json = json.load(open(REF / "reference.json"))
    mi_msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                            {"type": "text", "text": "Compare the two images."}]},
               {"role": "assistant", "content": "The first is wide and the second is tall."},
               {"role": "user", "content": "Which one is brighter?"}]
    mi_templ = proc2.apply_chat_template(mi_msgs, add_generation_prompt=True)
    sysp = ref_json["und_prompt"][:ref_json["und_prompt"].index(mf.USER)]
    templ_ok = {"und": sysp + templ == ref_json["und_prompt"], "mi": sysp + mi_templ == ref_json["mi_prompt"]}
    gen_p = proc2(text=f"{mf.USER}: a red cat\n\n{mf.ASSISTANT}:", generation_mode="image", return_tensors="pt")
    gen_ids_equal = gen_p["input_ids"][0].tolist() == R["gen_prompt_ids"].tolist()
    print(f"[3] JanusProcessor.from_pretrained: type {type(proc2.image_processor).__name__} / "
          f"{type(proc2.tokenizer).__name__}; chat template + processor -> und_input_ids equal {proc_ids_equal}; "
          f"template == official prompt {templ_ok}; image-mode gen_prompt_ids equal {gen_ids_equal}; "
          f"pixel_values vs und_pixel_values {fmt(proc_pv)} (torchvision resize, see make_fixtures README)")
    check(proc_ids_equal and all(templ_ok.values()) and gen_ids_equal, "processor mismatch")

    # ================================================================== README
    def verbatim(name):
        return (OUT / name).read_text(encoding="utf-8").rstrip("\n")

    sizes = {f: (OUT / f).stat().st_size for f in files}
    keys = collapse([(k, list(v.shape)) for k, v in raw.items()])
    meta = dict(res=res, tok_rows=tok_rows, tok_json_identical=tok_json_identical, added_diff=added_diff,
                proc_ids_equal=proc_ids_equal, proc_pv=proc_pv, templ_ok=templ_ok, gen_ids_equal=gen_ids_equal,
                info=info, load_dtype=load_dtype, st_meta=st_meta, dropped=dropped, n_qkv=n_qkv,
                n_off=len(off_sd), n_hf=len(hf_sd), n_params=sum(v.numel() for v in raw.values()))
    (OUT / "README.md").write_text(readme(files, sizes, verbatim, keys, meta), encoding="utf-8")
    print(f"README.md written; {OUT}")


def readme(files, sizes, verbatim, keys, m):
    what = {
        "config.json": "`JanusConfig` (model_type `janus`) written by `save_pretrained`: top level + `text_config` "
                       "(llama), `vision_config` (janus_vision_model), `vq_config` (janus_vqgan)",
        "generation_config.json": "`GenerationConfig` written by `save_pretrained` (pad/bos/eos, `boi_token_id`, "
                                  "`guidance_scale` 5, `temperature` 1, `generation_kwargs.boi_token_id`)",
        "model.safetensors": "all weights, **bfloat16**, HF names (single file, no index). **Not committed**: the "
                             "tests derive it from `../tiny-janus-pro/pytorch_model.bin` without torch, "
                             "byte-identical to what `save_pretrained` wrote (`tests/fixture_variants.py`; by hand: "
                             "`python tests/fixture_variants.py`)",
        "preprocessor_config.json": "`JanusImageProcessor.save_pretrained`: the standalone image-processor file of "
                                    "4.x-converted hub repos; 5.24's `JanusProcessor.save_pretrained` does **not** "
                                    "write it. Same content as `processor_config.json[\"image_processor\"]`",
        "processor_config.json": "`JanusProcessor.save_pretrained` (5.x format: `image_processor` nested, plus "
                                 "`num_image_tokens`, `use_default_system_prompt`, `processor_class`)",
        "chat_template.jinja": "chat template (this script's own; see the script's `CHAT_TEMPLATE`)",
        "tokenizer.json": "the tokenizer, re-serialised by transformers (same ids as the official fixture's)",
        "tokenizer_config.json": "tokenizer settings as transformers 5.24 writes them (special tokens included; 5.24 "
                                 "writes no `special_tokens_map.json`)",
        "README.md": "this file",
    }
    res = m["res"]
    lines = []
    A = lines.append
    A("# Tiny Janus-Pro checkpoint, transformers-converted layout")
    A("")
    A("The **same bf16 weights** as `../tiny-janus-pro/` (official deepseek-ai layout), saved in the layout of the hub "
      "repo `deepseek-community/Janus-Pro-1B`: what `transformers.JanusForConditionalGeneration.save_pretrained` and "
      "`JanusProcessor.save_pretrained` write. The reference tensors in `../tiny-janus-pro-reference/` apply to "
      "both layouts.")
    A("")
    A("Made by hand (CI never runs it) with")
    A("```")
    A("/work/oracle-venv/bin/python scripts/make_hf_layout_fixture.py")
    A("```")
    A(f"torch {torch.__version__}, transformers {transformers.__version__}. The script reads "
      "`../tiny-janus-pro/pytorch_model.bin`, maps the keys with `scripts/janus_layout.py:official_to_hf`, loads them "
      "into a `JanusForConditionalGeneration` built in bf16 (`strict=True`), and saves model + processor the way "
      "transformers' `convert_janus_weights_to_hf.py` does (tokenizer through `AutoTokenizer` with "
      "`extra_special_tokens` image/boi/eoi, `JanusImageProcessor` from the official preprocessor values, "
      "`JanusProcessor(use_default_system_prompt=True)`, pad/bos/eos ids on `text_config`, generation config with "
      "`guidance_scale` 5, `temperature` 1, `pad_token_id`, `boi_token_id`). Differences from that conversion: tiny "
      "sizes are passed explicitly, `tie_word_embeddings=False` (Janus has a separate `lm_head`), "
      "`num_image_tokens` 16, and the chat template is this script's own (same prompt format).")
    A("")
    A("## Files")
    A("")
    A("| file | bytes | content |")
    A("|---|---|---|")
    for f in files + ["README.md"]:
        A(f"| `{f}` | {sizes.get(f, '—')} | {what.get(f, '')} |")
    A("")
    A("## Weights and key mapping")
    A("")
    A(f"`model.safetensors`: {m['n_hf']} tensors, {m['n_params']:,} elements, all bfloat16, safetensors metadata "
      f"`{json.dumps(m['st_meta'])}`. Official fixture: {m['n_off']} tensors; the {m['n_qkv']} fused SigLIP "
      f"`attn.qkv.{{weight,bias}}` tensors become {3 * m['n_qkv']} `q_proj/k_proj/v_proj` tensors and "
      f"{len(m['dropped'])} tensors are dropped: {', '.join('`' + d + '`' for d in m['dropped'])}. "
      f"{m['n_off']} − {len(m['dropped'])} + 2·{m['n_qkv']} = {m['n_off'] - len(m['dropped']) + 2 * m['n_qkv']}.")
    A("")
    A("| official (`../tiny-janus-pro`) | this layout |")
    A("|---|---|")
    for a, b in [
        ("`vision_model.vision_tower.pos_embed` (1, 16, 32)", "`model.vision_model.embeddings.position_embedding.weight` (16, 32) (squeezed)"),
        ("`vision_model.vision_tower.patch_embed.proj.*`", "`model.vision_model.embeddings.patch_embedding.*`"),
        ("`vision_model.vision_tower.blocks.N.norm1/norm2.*`", "`model.vision_model.encoder.layers.N.layer_norm1/layer_norm2.*`"),
        ("`…blocks.N.attn.qkv.{weight,bias}` (96, 32)/(96,)", "`…layers.N.self_attn.{q,k,v}_proj.*` (32, 32)/(32,): thirds along dim 0 in q, k, v order"),
        ("`…blocks.N.attn.proj.*`", "`…layers.N.self_attn.projection_layer.*`"),
        ("`…blocks.N.mlp.fc1/fc2.*`", "`…layers.N.mlp.fc1/fc2.*`"),
        ("`vision_model.vision_tower.norm.*`", "`model.vision_model.post_layernorm.*`"),
        ("`vision_model.vision_tower.attn_pool.*`", "dropped"),
        ("`aligner.layers.0/2.*`", "`model.aligner.fc1/hidden_layers.0.*`"),
        ("`gen_aligner.layers.0/2.*`", "`model.generation_aligner.fc1/hidden_layers.0.*`"),
        ("`gen_head.output_mlp_projector/vision_head.*`", "`model.generation_head.proj_out/vision_head.*`"),
        ("`gen_embed.weight`", "`model.generation_embeddings.weight`"),
        ("`gen_vision_model.*`", "`model.vqmodel.*` with `encoder.conv_blocks`→`encoder.down`, `decoder.conv_blocks`→`decoder.up`, `.res.`→`.block.`, `mid.0/1/2`→`mid.block_1/attn_1/block_2`"),
        ("`gen_vision_model.quantize.codebook_used`", "dropped"),
        ("`language_model.model.*`", "`model.language_model.*`"),
        ("`language_model.lm_head.weight`", "`lm_head.weight` (stored, not tied)"),
    ]:
        A(f"| {a} | {b} |")
    A("")
    A("Everything else (VQ `attn` q/k/v/proj_out convolutions, decoder block order, Llama q/k/v/o, norms) keeps its "
      "tensor unchanged; only names change. Note that `decoder.up.0` is the **first** decoder stage as in the "
      "official `decoder.conv_blocks.0` (the deepest resolution): the HF port does not reverse the order.")
    A("")
    A("<details><summary>Key list of model.safetensors (SigLIP / LLM layer index collapsed to N; shapes)</summary>")
    A("")
    A("```")
    for k, s in keys:
        A(f"{k} {s}")
    A("```")
    A("</details>")
    A("")
    A("## Verification (run by the script)")
    A("")
    A("1. **Weights.** The raw `model.safetensors` holds exactly the keys of `official_to_hf(official fixture)`, every "
      "tensor bfloat16 and bit-equal. `JanusForConditionalGeneration.from_pretrained(folder)` loads as "
      f"`{m['load_dtype']}` with loading info `{json.dumps(m['info'])}` and every parameter bit-equal; `lm_head` is "
      "not tied to `embed_tokens`.")
    A("2. **Reference outputs** (`from_pretrained(folder, dtype=float32, attn_implementation=\"eager\")` vs "
      "`../tiny-janus-pro-reference/reference.safetensors`):")
    A("")
    A("   | tensor | max abs error | relative (max abs / max abs ref) |")
    A("   |---|---|---|")
    for k, v in res.items():
        if isinstance(v, dict):
            A(f"   | `{k}` | {v['max_abs']:.3e} | {v['rel']:.3e} |")
    A("")
    A(f"   `und_logits`: `model(input_ids=und_input_ids, pixel_values=und_pixel_values)`; `mi_logits_last` the same on "
      "the two-image input; step-0 generation logits: `generation_head(language_model(gen_tokens_rows)[:, -1])`; "
      "`gen_decoded`: `vqmodel.decode(gen_image_tokens)`. `generate` with the saved `generation_config.json`: greedy "
      f"text tokens equal `und_greedy_ids`: {res['und_greedy_ids_equal']}; CFG image tokens (guidance 5 from the "
      f"file, boi/pad from the file) equal `gen_image_tokens`: {res['gen_image_tokens_equal']}.")
    A("3. **Tokenizer / processor.** `AutoTokenizer.from_pretrained(folder)` and `tokenizers.Tokenizer.from_file("
      "folder/tokenizer.json)` give the same ids as `../tiny-janus-pro/tokenizer.json`, with and without the BOS "
      "post-processor, on:")
    A("")
    for r in m["tok_rows"]:
        A(f"   * `{json.dumps(r['text'], ensure_ascii=False)}` → {r['ids'] if len(r['ids']) <= 40 else str(len(r['ids'])) + ' ids'}")
    A("")
    A(f"   The saved `tokenizer.json` is byte-identical to the official one: {m['tok_json_identical']}. Added-token "
      f"fields that changed (official, saved): `{json.dumps(m['added_diff'], ensure_ascii=False)}`.")
    A(f"   `JanusProcessor.from_pretrained(folder)`: chat template + processor on `input.png` builds `und_input_ids`: "
      f"{m['proc_ids_equal']}; template output (+ the processor's default system prompt) equals the official "
      f"`und_prompt` / `mi_prompt`: {m['templ_ok']}; `generation_mode=\"image\"` builds `gen_prompt_ids`: "
      f"{m['gen_ids_equal']}. Its `pixel_values` differ from the official `und_pixel_values` by "
      f"{m['proc_pv']['max_abs']:.4g} (max abs): `JanusImageProcessor` resizes a tensor with torchvision and rounds "
      "the resized size, the official code truncates and uses PIL (see the reference README). Use the reference "
      "pixel values for model tests.")
    A("")
    A("## Notes on what transformers 5.24 writes")
    A("")
    A(NOTES)
    A("")
    A("## Saved configs (verbatim)")
    A("")
    for f in ["config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
              "tokenizer_config.json", "special_tokens_map.json"]:
        if f in files:
            A(f"### `{f}`")
            A("")
            A("```json")
            A(verbatim(f))
            A("```")
            A("")
    for f in ["chat_template.jinja", "chat_template.json"]:
        if f in files:
            A(f"### `{f}`")
            A("")
            A("```")
            A(verbatim(f))
            A("```")
            A("")
    A("## What a loader needs from config.json")
    A("")
    A(LOADER_NOTES)
    return "\n".join(lines) + "\n"


NOTES = """\
* **File set.** `JanusProcessor.save_pretrained` in 5.24 writes `processor_config.json` (image-processor settings
  nested under `image_processor`), `chat_template.jinja`, `tokenizer.json` and `tokenizer_config.json` only: no
  `preprocessor_config.json` and no `special_tokens_map.json` (both are in hub repos converted with transformers 4.x).
  `preprocessor_config.json` is added here by `JanusImageProcessor.save_pretrained` (identical settings); there is no
  `special_tokens_map.json`: the special tokens are in `tokenizer_config.json` (`bos_token`, `eos_token`,
  `pad_token`, `extra_special_tokens` = the 9 additional special tokens, `image_token`/`boi_token`/`eoi_token`).
  A loader should read the image settings from `preprocessor_config.json` if present, else from
  `processor_config.json["image_processor"]`.
* **Tokenizer.** `tokenizer_class` becomes `TokenizersBackend` (with `"backend": "tokenizers"`); `is_local` /
  `local_files_only` leak from the load call into `tokenizer_config.json` (harmless). In `tokenizer.json`,
  `<begin_of_image>` / `<end_of_image>` are now `"special": true` (they were non-special added tokens; registering them
  as `boi_token` / `eoi_token` flags them). Ids are unchanged, but a detokeniser that skips special tokens now drops
  them. The BOS `TemplateProcessing` post-processor is kept. BPE `merges` are re-serialised as `[["a", "b"], ...]` pairs
  with `"ignore_merges": false` (the official fixture has `"a b"` strings); both parse with the `tokenizers` crate
  0.2x.
* **Weights.** Keys are exactly the oracle.md mapping (`scripts/janus_layout.py`): nothing renamed differently,
  nothing extra (no `rotary_emb.inv_freq`, no `codebook_used`, no `attn_pool`). `lm_head.weight` is stored because
  `tie_word_embeddings` is false (with the JanusConfig default true, `save_pretrained` would drop it and tie it to
  `embed_tokens`, which is wrong for Janus). safetensors metadata is `{"format": "pt"}`.
* **Config spelling (5.x).** `dtype` (not `torch_dtype`) at every level; RoPE as `text_config.rope_parameters =
  {"rope_theta": 10000.0, "rope_type": "default"}` (not `rope_theta`); `text_config.head_dim` is written;
  `rms_norm_eps` is written explicitly (1e-06). Hub configs written by 4.x spell these `torch_dtype` / `rope_theta`
  and may omit fields, so read both spellings and fall back to LlamaConfig / JanusConfig defaults.
* **Aligner depths.** The vision aligner has `vision_config.depth` linears; the generation aligner has
  `vq_config.num_hidden_layers` linears (`modeling_janus.py` reads that field; transformers' conversion script passes
  a `depth` to `JanusVQVAEConfig`, which the model does not read, so a hub `vq_config` may carry a `depth` key as
  well). Both are 2 for all Janus-Pro checkpoints; counting `hidden_layers.*` tensors is the robust way.
"""

LOADER_NOTES = """\
| need | field in this layout | value here | official-layout source |
|---|---|---|---|
| LLM hidden / FFN / layers / heads / kv heads / head dim | `text_config.{hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim}` | 64 / 172 / 2 / 4 / 4 / 16 | `language_config.*` |
| vocab, max positions | `text_config.{vocab_size, max_position_embeddings}` | 416 / 512 | `language_config.*` |
| RMSNorm eps, RoPE theta | `text_config.rms_norm_eps`, `text_config.rope_parameters.rope_theta` (4.x: `rope_theta`) | 1e-06 / 10000.0 | absent → Llama defaults 1e-6 / 10000 |
| LLM act, biases | `text_config.{hidden_act, attention_bias, mlp_bias}` | silu / false / false | Llama defaults |
| tied lm_head | `tie_word_embeddings` (top level and `text_config`) | false; `lm_head.weight` is in the file | always separate |
| SigLIP width / layers / heads / patch / image / channels | `vision_config.{hidden_size, num_hidden_layers, num_attention_heads, patch_size, image_size, num_channels}` | 32 / 2 / 4 / 16 / 64 / 3 | `vision_config.params.*` |
| SigLIP MLP | `vision_config.mlp_ratio`: intermediate = int(hidden_size · mlp_ratio) | 4 → 128 | `mlp_ratio` |
| SigLIP LayerNorm eps, qkv bias, act, qk-norm | `vision_config.{layer_norm_eps, attention_bias, hidden_act, use_qk_norm}` | 1e-06 / true / gelu (erf) / false | fixed |
| understanding aligner | `model.aligner`: `fc1` = Linear(vision `hidden_size` → `vision_config.projection_dim`), then (`vision_config.depth` − 1) × [GELU, `hidden_layers.i` = Linear(projection_dim → projection_dim)] | 32 → 64, depth 2 | `aligner_config.params.{input_dim, n_embed, depth}` |
| image tokens per image | `vision_config.num_image_tokens` (= (image_size / patch_size)²) | 16 | `processor_config.num_image_tokens` |
| VQ codebook | `vq_config.{num_embeddings, embed_dim}` | 256 / 8 | `gen_vision_config.params.{image_token_size, n_embed}` |
| VQ conv sizes | `vq_config.{base_channels, channel_multiplier, latent_channels, num_res_blocks, in_channels, out_channels, double_latent}` | 32 / [1,1,2,2,4] / 32 / 2 / 3 / 3 / false | `ch`, `ch_mult`, `z_channels` (VQ-16 preset otherwise) |
| VQ token grid | `vq_config.num_patches` (= vision image_size / patch_size, set by `JanusConfig.__post_init__`) | 4 | derived |
| generation aligner | `model.generation_aligner`: `fc1` = Linear(`vq_config.embed_dim` → `vq_config.projection_dim`), then (`vq_config.num_hidden_layers` − 1) × [GELU, Linear] | 8 → 64, 2 | `gen_aligner_config.params` |
| generation head | `model.generation_head`: `proj_out` = Linear(`vq_config.image_token_embed_dim` → `vq_config.projection_dim`), GELU, `vision_head` = Linear(projection_dim → `num_embeddings`) | 64 → 64 → 256 | `gen_head_config.params` |
| generation embedding | `model.generation_embeddings.weight` (`num_embeddings`, `embed_dim`) | (256, 8) | `gen_embed` |
| image token id | `image_token_id` (top level) | 403 | tokenizer lookup |
| BOS / EOS / pad | `text_config.{bos_token_id, eos_token_id, pad_token_id}`, also `generation_config.json` | 400 / 401 / 402 | tokenizer |
| `<begin_of_image>` id | `generation_config.json`: `boi_token_id` and `generation_kwargs.boi_token_id` (5.24 reads the latter) | 412 | tokenizer lookup |
| CFG weight, temperature | `generation_config.json`: `guidance_scale`, `temperature` | 5.0 / 1.0 | demo defaults |
| preprocessing | `preprocessor_config.json` or `processor_config.json["image_processor"]`: `size.{height,width}`, `min_size`, `image_mean`, `image_std`, `rescale_factor`, `resample` (3 = bicubic), `background_color`, `do_resize/do_rescale/do_normalize/do_pad` | 64×64 / 14 / 0.5 / 0.5 / 1/255 / 3 / [127,127,127] / all true | `image_size`, `min_size`, `image_mean`, `image_std`, `rescale_factor`, `background_color` |
| prompt | `processor_config.json`: `use_default_system_prompt` (text mode prepends the default system prompt), `num_image_tokens`; `chat_template.jinja` | true / 16 | `sft_format` deepseek |
"""


if __name__ == "__main__":
    main()
