#!/usr/bin/env python3
"""Build the tiny Janus-Pro reference fixtures for janus-rs (run by hand, never in CI).

    /work/oracle-venv/bin/python scripts/make_fixtures.py

Needs: torch, transformers (tested with 5.24.0, which has `transformers.models.janus`), safetensors, pillow,
numpy, tokenizers; torchvision is optional (only used to compare the torchvision-backed HF image processor).

Writes (deterministic, seed 0):
  tests/fixtures/tiny-janus-pro/            tiny random checkpoint in the OFFICIAL deepseek-ai Janus-Pro-1B layout
                                            (config.json multi_modality, pytorch_model.bin bf16, tokenizer, processor cfgs)
  tests/fixtures/weight-variants/           the same bf16 tensors as model.safetensors, sharded .bin (+ index),
                                            sharded .safetensors (+ index); not committed: the tests derive the
                                            same bytes from pytorch_model.bin without torch (tests/fixture_variants.py)
  tests/fixtures/tiny-janus-pro-reference/  reference.safetensors + reference.json + input images + README.md

All reference values are computed in float32 from the bf16-rounded weights with the transformers port
(JanusForConditionalGeneration), loaded through the official->HF key mapping written below. The image-generation loop
(official semantics: interleaved cond/uncond rows, pads attended, argmax instead of multinomial) and the VQ
quantiser (official l2-normalised semantics) are written here on top of the HF modules.
"""
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import PIL
from PIL import Image

torch.set_num_threads(1)  # keep CPU use modest; the model is tiny
torch.use_deterministic_algorithms(True)

import safetensors.torch as st  # noqa: E402
import transformers  # noqa: E402
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers,  # noqa: E402
                        processors, trainers)
from transformers import (GenerationConfig, JanusConfig, JanusForConditionalGeneration,  # noqa: E402
                          JanusVisionConfig, JanusVQVAEConfig, LlamaConfig)
from transformers.cache_utils import DynamicCache  # noqa: E402

SEED = 0
ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
CKPT = FIX / "tiny-janus-pro"
VAR = FIX / "weight-variants"
REF = FIX / "tiny-janus-pro-reference"
KEYS_1B = Path("/work/shared/reference/janus-keys-Janus-Pro-1B.json")  # optional cross-check
MAKE_TOKENIZER = Path("/work/shared/reference/make_tokenizer.py")      # optional cross-check

# ----------------------------------------------------------------------------------------------------------------
# Tiny sizes
# ----------------------------------------------------------------------------------------------------------------
IMG, PATCH = 64, 16
GRID = IMG // PATCH                      # 4
N_IMG_TOK = GRID * GRID                  # 16
SIG_W, SIG_L, SIG_HEADS, SIG_MLP = 32, 2, 4, 4
H, FFN, HEADS, KV_HEADS, LAYERS, VOCAB, MAXPOS = 64, 172, 4, 4, 2, 416, 512
VQ_CODES, VQ_DIM, VQ_CH, VQ_MULT, VQ_Z, VQ_NRES = 256, 8, 32, [1, 1, 2, 2, 4], 32, 2
CODEBOOK_USED_LEN = 1024                 # real: 65536
assert IMG // 2 ** (len(VQ_MULT) - 1) == GRID  # VQ grid == understanding grid (HF port requirement)

CFG_WEIGHT, TEMPERATURE, PARALLEL = 5.0, 1.0, 1
UND_MAX_NEW, UND_EOS_MAX_NEW, MI_MAX_NEW = 8, 32, 8

SYSTEM_PROMPT = ("You are a helpful language and vision assistant. You are able to understand the visual content "
                 "that the user provides, and assist the user with a variety of tasks using natural language.")
BOS_T, EOS_T, PAD_T = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
IMG_T, BOI_T, EOI_T = "<image_placeholder>", "<begin_of_image>", "<end_of_image>"
USER, ASSISTANT = "<|User|>", "<|Assistant|>"


def sha256(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer: verbatim logic of /work/shared/reference/make_tokenizer.py (embedded so the script is self-contained)
# ----------------------------------------------------------------------------------------------------------------
def make_tokenizer(out, vocab_size=400):
    os.makedirs(out, exist_ok=True)
    LETTERS = "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+"  # noqa: E501  (\u escapes on purpose: NFC corrupts some)
    SPLITS = ["[\r\n]", LETTERS, "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+"]
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False) for r in SPLITS]
        + [pre_tokenizers.Digits(individual_digits=True),
           pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    corpus = [
        "You are a helpful language and vision assistant. You are able to understand the visual content "
        "that the user provides, and assist the user with a variety of tasks using natural language.",
        "Describe this image in detail. What is shown in the picture? A cat sitting on a red sofa.",
        "A close-up high-contrast photo of Sydney Opera House sitting next to Eiffel tower, under a blue night sky.",
        "Convert the formula into latex code. The quick brown fox jumps over the lazy dog 0123456789.",
        "User: Assistant: hello world! How are you today? I am fine, thanks.",
    ] * 20
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus, trainer=trainer)
    special = [BOS_T, EOS_T, PAD_T, IMG_T, "<patch_placeholder>", "<|ref|>", "<|/ref|>",
               "<|det|>", "<|/det|>", "<|grounding|>", USER, ASSISTANT]
    nonspecial_added = [BOI_T, EOI_T]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in nonspecial_added])
    bos_id = tok.token_to_id(BOS_T)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_T}:0 $A:0", pair=f"{BOS_T}:0 $A:0 {BOS_T}:1 $B:1", special_tokens=[(BOS_T, bos_id)])
    tok.save(os.path.join(out, "tokenizer.json"))
    d = json.load(open(os.path.join(out, "tokenizer.json"), encoding="utf-8"))
    d["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in d["model"]["merges"]]
    d["model"].pop("ignore_merges", None)
    json.dump(d, open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False, indent=2)
    json.dump({"bos_token": BOS_T, "clean_up_tokenization_spaces": False, "eos_token": EOS_T,
               "model_max_length": 16384, "pad_token": None, "tokenizer_class": "LlamaTokenizer",
               "unk_token": None, "use_default_system_prompt": True},
              open(os.path.join(out, "tokenizer_config.json"), "w"), ensure_ascii=False, indent=2)
    json.dump({"additional_special_tokens": special[3:], "bos_token": BOS_T, "eos_token": EOS_T, "pad_token": PAD_T},
              open(os.path.join(out, "special_tokens_map.json"), "w"), ensure_ascii=False, indent=2)


TOK_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def check_tokenizer_against_shared_script(out):
    """If the shared make_tokenizer.py is present, run it and require byte-identical files."""
    if not MAKE_TOKENIZER.exists():
        return "not checked (make_tokenizer.py not found)"
    with tempfile.TemporaryDirectory() as td:
        subprocess.run([sys.executable, str(MAKE_TOKENIZER), td], check=True, capture_output=True)
        for f in TOK_FILES:
            if sha256(Path(td) / f) != sha256(Path(out) / f):
                raise SystemExit(f"tokenizer file {f} differs from make_tokenizer.py output")
    return "byte-identical to make_tokenizer.py output"


# ----------------------------------------------------------------------------------------------------------------
# Official checkpoint layout (key -> shape), in official module order
# ----------------------------------------------------------------------------------------------------------------
def official_shapes():
    s = {}

    def lin(name, o, i, bias=True):
        s[name + ".weight"] = (o, i)
        if bias:
            s[name + ".bias"] = (o,)

    def norm(name, c, bias=True):
        s[name + ".weight"] = (c,)
        if bias:
            s[name + ".bias"] = (c,)

    def conv(name, o, i, k):
        s[name + ".weight"] = (o, i, k, k)
        s[name + ".bias"] = (o,)

    def res(name, cin, cout):
        norm(name + ".norm1", cin)
        conv(name + ".conv1", cout, cin, 3)
        norm(name + ".norm2", cout)
        conv(name + ".conv2", cout, cout, 3)
        if cin != cout:
            conv(name + ".nin_shortcut", cout, cin, 1)

    def attn(name, c):
        norm(name + ".norm", c)
        for p in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{p}", c, c, 1)

    vt = "vision_model.vision_tower."
    s[vt + "pos_embed"] = (1, N_IMG_TOK, SIG_W)
    conv(vt + "patch_embed.proj", SIG_W, 3, PATCH)
    for n in range(SIG_L):
        b = f"{vt}blocks.{n}."
        norm(b + "norm1", SIG_W)
        lin(b + "attn.qkv", 3 * SIG_W, SIG_W)
        lin(b + "attn.proj", SIG_W, SIG_W)
        norm(b + "norm2", SIG_W)
        lin(b + "mlp.fc1", SIG_MLP * SIG_W, SIG_W)
        lin(b + "mlp.fc2", SIG_W, SIG_MLP * SIG_W)
    norm(vt + "norm", SIG_W)
    s[vt + "attn_pool.latent"] = (1, 1, SIG_W)
    lin(vt + "attn_pool.q", SIG_W, SIG_W)
    lin(vt + "attn_pool.kv", 2 * SIG_W, SIG_W)
    lin(vt + "attn_pool.proj", SIG_W, SIG_W)
    norm(vt + "attn_pool.norm", SIG_W)
    lin(vt + "attn_pool.mlp.fc1", SIG_MLP * SIG_W, SIG_W)
    lin(vt + "attn_pool.mlp.fc2", SIG_W, SIG_MLP * SIG_W)
    lin("aligner.layers.0", H, SIG_W)
    lin("aligner.layers.2", H, H)

    # VQ-16 (LlamaGen VQModel) encoder
    g = "gen_vision_model."
    nlev = len(VQ_MULT)
    conv(g + "encoder.conv_in", VQ_CH, 3, 3)
    in_mult = (1,) + tuple(VQ_MULT)
    for il in range(nlev):
        cin, cout = VQ_CH * in_mult[il], VQ_CH * VQ_MULT[il]
        for ib in range(VQ_NRES):
            res(f"{g}encoder.conv_blocks.{il}.res.{ib}", cin, cout)
            cin = cout
            if il == nlev - 1:
                attn(f"{g}encoder.conv_blocks.{il}.attn.{ib}", cin)
        if il != nlev - 1:
            conv(f"{g}encoder.conv_blocks.{il}.downsample.conv", cin, cin, 3)
    c = VQ_CH * VQ_MULT[-1]
    res(g + "encoder.mid.0", c, c)
    attn(g + "encoder.mid.1", c)
    res(g + "encoder.mid.2", c, c)
    norm(g + "encoder.norm_out", c)
    conv(g + "encoder.conv_out", VQ_Z, c, 3)
    # decoder (conv_blocks.0 = deepest level)
    cin = VQ_CH * VQ_MULT[-1]
    conv(g + "decoder.conv_in", cin, VQ_Z, 3)
    res(g + "decoder.mid.0", cin, cin)
    attn(g + "decoder.mid.1", cin)
    res(g + "decoder.mid.2", cin, cin)
    for il in range(nlev):
        cout = VQ_CH * VQ_MULT[nlev - il - 1]
        for ib in range(VQ_NRES + 1):
            res(f"{g}decoder.conv_blocks.{il}.res.{ib}", cin, cout)
            cin = cout
            if il == 0:
                attn(f"{g}decoder.conv_blocks.{il}.attn.{ib}", cin)
        if il != nlev - 1:
            conv(f"{g}decoder.conv_blocks.{il}.upsample.conv", cin, cin, 3)
    norm(g + "decoder.norm_out", cin)
    conv(g + "decoder.conv_out", 3, cin, 3)
    s[g + "quantize.embedding.weight"] = (VQ_CODES, VQ_DIM)
    s[g + "quantize.codebook_used"] = (CODEBOOK_USED_LEN,)
    conv(g + "quant_conv", VQ_DIM, VQ_Z, 1)
    conv(g + "post_quant_conv", VQ_Z, VQ_DIM, 1)

    lin("gen_aligner.layers.0", H, VQ_DIM)
    lin("gen_aligner.layers.2", H, H)
    lin("gen_head.output_mlp_projector", H, H)
    lin("gen_head.vision_head", VQ_CODES, H)
    s["gen_embed.weight"] = (VQ_CODES, VQ_DIM)

    lm = "language_model.model."
    s[lm + "embed_tokens.weight"] = (VOCAB, H)
    for n in range(LAYERS):
        b = f"{lm}layers.{n}."
        for p in ("q", "k", "v", "o"):
            s[f"{b}self_attn.{p}_proj.weight"] = (H, H)
        s[b + "mlp.gate_proj.weight"] = (FFN, H)
        s[b + "mlp.up_proj.weight"] = (FFN, H)
        s[b + "mlp.down_proj.weight"] = (H, FFN)
        s[b + "input_layernorm.weight"] = (H,)
        s[b + "post_attention_layernorm.weight"] = (H,)
    s[lm + "norm.weight"] = (H,)
    s["language_model.lm_head.weight"] = (VOCAB, H)
    return s


def cross_check_with_1b(shapes):
    """Same key names modulo layer counts, same ranks, as the real Janus-Pro-1B key list."""
    if not KEYS_1B.exists():
        return "not checked (janus-keys-Janus-Pro-1B.json not found)"
    real = json.load(open(KEYS_1B))

    def keep(k):
        m = re.search(r"vision_tower\.blocks\.(\d+)\.", k)
        if m and int(m.group(1)) >= SIG_L:
            return False
        m = re.search(r"language_model\.model\.layers\.(\d+)\.", k)
        if m and int(m.group(1)) >= LAYERS:
            return False
        return True

    real_f = {k: v for k, v in real.items() if keep(k)}
    assert set(real_f) == set(shapes), (set(real_f) ^ set(shapes))
    for k, v in real_f.items():
        assert len(v) == len(shapes[k]), (k, v, shapes[k])
    return f"{len(shapes)} keys = the {len(real)} Janus-Pro-1B keys restricted to {SIG_L} SigLIP blocks and " \
           f"{LAYERS} LLM layers; all ranks equal"


def init_weights(shapes, gen):
    """Random init with healthy activations; returned as float32 values that are exactly bf16-representable."""
    out = {}
    for k, shp in shapes.items():
        n = torch.randn(shp, generator=gen, dtype=torch.float32)
        if k.endswith("quantize.codebook_used"):
            t = torch.zeros(shp)                                 # unused buffer
        elif k.endswith("embed_tokens.weight") or k in ("gen_embed.weight",
                                                         "gen_vision_model.quantize.embedding.weight",
                                                         "vision_model.vision_tower.attn_pool.latent"):
            t = n                                                # embeddings: std 1
        elif k.endswith("pos_embed"):
            t = 0.5 * n                                          # comparable to the patch embedding output
        elif k.endswith(".bias"):
            t = 0.02 * n
        elif len(shp) == 1:                                      # LayerNorm / GroupNorm / RMSNorm weights
            t = 1.0 + 0.1 * n
        else:                                                    # linear / conv weights
            fan_in = int(np.prod(shp[1:]))
            t = n / math.sqrt(fan_in)
        out[k] = t.to(torch.bfloat16)
    return out


from janus_layout import official_to_hf  # noqa: E402  (scripts/janus_layout.py)


def build_hf_model(image_token_id):
    text = LlamaConfig(hidden_size=H, intermediate_size=FFN, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                       num_hidden_layers=LAYERS, max_position_embeddings=MAXPOS, vocab_size=VOCAB,
                       tie_word_embeddings=False)            # rms_norm_eps / rope_theta: LlamaConfig defaults
    assert text.rms_norm_eps == 1e-6 and float(text.rope_parameters["rope_theta"]) == 10000.0
    vision = JanusVisionConfig(hidden_size=SIG_W, num_hidden_layers=SIG_L, num_attention_heads=SIG_HEADS,
                               image_size=IMG, patch_size=PATCH, mlp_ratio=SIG_MLP, projection_dim=H, depth=2,
                               num_image_tokens=N_IMG_TOK, hidden_act="gelu", layer_norm_eps=1e-6,
                               attention_bias=True)
    vq = JanusVQVAEConfig(embed_dim=VQ_DIM, num_embeddings=VQ_CODES, latent_channels=VQ_Z, base_channels=VQ_CH,
                          channel_multiplier=list(VQ_MULT), num_res_blocks=VQ_NRES, projection_dim=H,
                          image_token_embed_dim=H, num_hidden_layers=2, hidden_act="gelu")
    cfg = JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=image_token_id,
                      tie_word_embeddings=False)
    model = JanusForConditionalGeneration._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    assert model.config.vq_config.num_patches == GRID
    assert model.lm_head.weight.data_ptr() != model.model.language_model.embed_tokens.weight.data_ptr()
    return model


# ----------------------------------------------------------------------------------------------------------------
# Independent plain-torch forward on the OFFICIAL keys (no HF modules): catches silent key-mapping errors
# ----------------------------------------------------------------------------------------------------------------
class OfficialRef:
    def __init__(self, sd_bf16):
        self.W = {k: v.float() for k, v in sd_bf16.items()}

    def lin(self, x, p, bias=True):
        return torch.nn.functional.linear(x, self.W[p + ".weight"], self.W[p + ".bias"] if bias else None)

    def ln(self, x, p):
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), self.W[p + ".weight"], self.W[p + ".bias"], 1e-6)

    def mlp_gelu(self, x, p):                                  # MlpProjector mlp_gelu depth 2
        return self.lin(torch.nn.functional.gelu(self.lin(x, p + ".layers.0")), p + ".layers.2")

    def siglip(self, pv):
        F, vt = torch.nn.functional, "vision_model.vision_tower."
        x = F.conv2d(pv, self.W[vt + "patch_embed.proj.weight"], self.W[vt + "patch_embed.proj.bias"], stride=PATCH)
        x = x.flatten(2).transpose(1, 2) + self.W[vt + "pos_embed"]
        B, N, C = x.shape
        hd = C // SIG_HEADS
        for n in range(SIG_L):
            b = f"{vt}blocks.{n}."
            qkv = self.lin(self.ln(x, b + "norm1"), b + "attn.qkv").reshape(B, N, 3, SIG_HEADS, hd).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            a = torch.softmax(q @ k.transpose(-1, -2) * hd ** -0.5, -1) @ v
            x = x + self.lin(a.transpose(1, 2).reshape(B, N, C), b + "attn.proj")
            x = x + self.lin(F.gelu(self.lin(self.ln(x, b + "norm2"), b + "mlp.fc1")), b + "mlp.fc2")
        return self.ln(x, vt + "norm")

    def llama(self, emb):                                      # full causal forward, positions 0..T-1
        F = torch.nn.functional
        B, T, _ = emb.shape
        hd = H // HEADS
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        fr = torch.outer(torch.arange(T, dtype=torch.float32), inv)
        cos, sin = torch.cat([fr, fr], -1).cos(), torch.cat([fr, fr], -1).sin()

        def rot(x):
            x1, x2 = x.chunk(2, -1)
            return torch.cat([-x2, x1], -1)

        def rms(x, p):
            return self.W[p + ".weight"] * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))

        mask = torch.full((T, T), float("-inf")).triu(1)
        x = emb
        for n in range(LAYERS):
            b = f"language_model.model.layers.{n}."
            h = rms(x, b + "input_layernorm")
            q, k, v = (self.lin(h, f"{b}self_attn.{p}_proj", False).view(B, T, HEADS, hd).transpose(1, 2)
                       for p in ("q", "k", "v"))
            q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
            a = torch.softmax(q @ k.transpose(-1, -2) * hd ** -0.5 + mask, -1) @ v
            x = x + self.lin(a.transpose(1, 2).reshape(B, T, H), b + "self_attn.o_proj", False)
            h = rms(x, b + "post_attention_layernorm")
            x = x + self.lin(F.silu(self.lin(h, b + "mlp.gate_proj", False)) * self.lin(h, b + "mlp.up_proj", False),
                             b + "mlp.down_proj", False)
        return rms(x, "language_model.model.norm")

    def lm_head(self, h):
        return self.lin(h, "language_model.lm_head", False)

    def gen_head(self, h):
        return self.lin(torch.nn.functional.gelu(self.lin(h, "gen_head.output_mlp_projector")), "gen_head.vision_head")

    def gen_embed(self, ids):
        return self.mlp_gelu(self.W["gen_embed.weight"][ids], "gen_aligner")

    # VQ-16
    def _gn(self, x, p):
        return torch.nn.functional.group_norm(x, 32, self.W[p + ".weight"], self.W[p + ".bias"], 1e-6)

    def _conv(self, x, p, pad=0, stride=1):
        return torch.nn.functional.conv2d(x, self.W[p + ".weight"], self.W[p + ".bias"], stride=stride, padding=pad)

    def _res(self, x, p):
        sw = torch.nn.functional.silu
        h = self._conv(sw(self._gn(x, p + ".norm1")), p + ".conv1", 1)
        h = self._conv(sw(self._gn(h, p + ".norm2")), p + ".conv2", 1)
        if p + ".nin_shortcut.weight" in self.W:
            x = self._conv(x, p + ".nin_shortcut")
        return x + h

    def _attn(self, x, p):
        h = self._gn(x, p + ".norm")
        q, k, v = (self._conv(h, f"{p}.{n}") for n in ("q", "k", "v"))
        B, C, hh, ww = q.shape
        w = torch.softmax(q.reshape(B, C, -1).permute(0, 2, 1) @ k.reshape(B, C, -1) * C ** -0.5, dim=2)
        o = (v.reshape(B, C, -1) @ w.permute(0, 2, 1)).reshape(B, C, hh, ww)
        return x + self._conv(o, p + ".proj_out")

    def vq_decode(self, codes):                                # codes (B, 16)
        g, d, nlev = "gen_vision_model.", "gen_vision_model.decoder.", len(VQ_MULT)
        cb = torch.nn.functional.normalize(self.W[g + "quantize.embedding.weight"], p=2, dim=-1)
        z = cb[codes].reshape(codes.shape[0], GRID, GRID, VQ_DIM).permute(0, 3, 1, 2)
        h = self._conv(self._conv(z, g + "post_quant_conv"), d + "conv_in", 1)
        h = self._res(self._attn(self._res(h, d + "mid.0"), d + "mid.1"), d + "mid.2")
        for il in range(nlev):
            for ib in range(VQ_NRES + 1):
                h = self._res(h, f"{d}conv_blocks.{il}.res.{ib}")
                if il == 0:
                    h = self._attn(h, f"{d}conv_blocks.{il}.attn.{ib}")
            if il != nlev - 1:
                h = torch.nn.functional.interpolate(h, scale_factor=2.0, mode="nearest")
                h = self._conv(h, f"{d}conv_blocks.{il}.upsample.conv", 1)
        return self._conv(torch.nn.functional.silu(self._gn(h, d + "norm_out")), d + "conv_out", 1)

    def vq_encode(self, x):                                    # returns quant_conv(encoder(x))
        g, e, nlev = "gen_vision_model.", "gen_vision_model.encoder.", len(VQ_MULT)
        h = self._conv(x, e + "conv_in", 1)
        for il in range(nlev):
            for ib in range(VQ_NRES):
                h = self._res(h, f"{e}conv_blocks.{il}.res.{ib}")
                if il == nlev - 1:
                    h = self._attn(h, f"{e}conv_blocks.{il}.attn.{ib}")
            if il != nlev - 1:
                h = self._conv(torch.nn.functional.pad(h, (0, 1, 0, 1)), f"{e}conv_blocks.{il}.downsample.conv",
                               0, 2)
        h = self._res(self._attn(self._res(h, e + "mid.0"), e + "mid.1"), e + "mid.2")
        h = self._conv(torch.nn.functional.silu(self._gn(h, e + "norm_out")), e + "conv_out", 1)
        return self._conv(h, g + "quant_conv")


def rel_err(a, b):
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30))


# ----------------------------------------------------------------------------------------------------------------
# Images and official preprocessing
# ----------------------------------------------------------------------------------------------------------------
def make_images(rng):
    # input.png: 80x48 (W x H), smooth structure + mild noise
    w, h = 80, 48
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 90 * np.sin(2 * np.pi * xx / 53.0) * np.cos(2 * np.pi * yy / 41.0)
    g = 30 + 190 * xx / (w - 1)
    d = np.sqrt((xx - 28) ** 2 + (yy - 22) ** 2)
    b = 60 + 160 / (1 + np.exp((d - 13) / 1.5))           # soft disc
    img1 = np.stack([r, g, b], -1) + rng.normal(0, 8, (h, w, 3))
    img1 = np.clip(np.round(img1), 0, 255).astype(np.uint8)
    # input2.png: 40x72 (W x H, tall), brighter, different structure
    w, h = 40, 72
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 200 + 40 * np.cos(2 * np.pi * yy / 30.0)
    g = 150 + 80 * (yy / (h - 1)) + 20 * np.sin(2 * np.pi * xx / 17.0)
    b = 235 - 120 * ((xx - 20) ** 2 + (yy - 50) ** 2 < 100)
    img2 = np.stack([r, g, b], -1) + rng.normal(0, 8, (h, w, 3))
    img2 = np.clip(np.round(img2), 0, 255).astype(np.uint8)
    return Image.fromarray(img1, "RGB"), Image.fromarray(img2, "RGB")


def official_resize_size(w, h, image_size=IMG, min_size=14):
    m = max(w, h)
    return max(int(h / m * image_size), min_size), max(int(w / m * image_size), min_size)   # (h', w')


def official_preprocess(img):
    """VLMImageProcessor (Janus-Pro preprocessor_config, image_size 64). Returns (resized uint8 HWC, pixels CHW f32,
    info)."""
    w, h = img.size
    hh, ww = official_resize_size(w, h)
    resized = img.resize((ww, hh), Image.BICUBIC)     # == torchvision F.resize(pil, [hh, ww], BICUBIC, antialias=True)
    bg = (127, 127, 127)
    if ww == hh:
        sq, off = resized, (0, 0)
    elif ww > hh:
        off = (0, (ww - hh) // 2)
        sq = Image.new(resized.mode, (ww, ww), bg)
        sq.paste(resized, off)
    else:
        off = ((hh - ww) // 2, 0)
        sq = Image.new(resized.mode, (hh, hh), bg)
        sq.paste(resized, off)
    x = np.asarray(sq).transpose(2, 0, 1)                                      # CHW uint8
    x = (x.astype(np.float64) * 0.00392156862745098).astype(np.float32)        # rescale (float64 -> float32)
    x = (x - np.float32(0.5)) / np.float32(0.5)                                 # normalize (float32)
    info = {"input_wh": [w, h], "resized_hw": [hh, ww], "paste_offset_xy": list(off)}
    return np.asarray(resized).copy(), x, info


def compare_hf_image_processors(images, official):
    """Compare official pixel values with the HF JanusImageProcessor(s). Returns a JSON-able report."""
    rep = {}
    procs = {}
    try:
        from transformers import JanusImageProcessorPil
        procs["JanusImageProcessorPil"] = JanusImageProcessorPil(size={"height": IMG, "width": IMG},
                                                                 image_mean=[0.5] * 3, image_std=[0.5] * 3)
    except Exception as e:  # pragma: no cover
        rep["JanusImageProcessorPil"] = f"unavailable: {e}"
    try:
        import torchvision  # noqa: F401
        from transformers import JanusImageProcessor
        procs["JanusImageProcessor"] = JanusImageProcessor(size={"height": IMG, "width": IMG},
                                                           image_mean=[0.5] * 3, image_std=[0.5] * 3)
    except Exception as e:
        rep["JanusImageProcessor"] = f"unavailable: {e}"
    for name, p in procs.items():
        r = {}
        for i, (img, ref) in enumerate(zip(images, official)):
            pv = p(images=img, return_tensors="pt")["pixel_values"][0].float().numpy()
            diff = np.abs(pv - ref)
            w, hgt = img.size
            m = max(w, hgt)
            r[f"image{i + 1}"] = {
                "max_abs_diff": float(diff.max()),
                "n_values_differing": int((diff > 0).sum()),
                "hf_resized_hw_formula": [max(round(hgt * (IMG / m)), 14), max(round(w * (IMG / m)), 14)],
                "official_resized_hw": list(official_resize_size(w, hgt)),
            }
        rep[name] = r
    return rep


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------
def top2_margin(logits):
    v = torch.topk(logits.float(), 2).values
    return float(v[0] - v[1])


def save_bin(sd, path):
    torch.save({k: v.clone().contiguous() for k, v in sd.items()}, path)


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    for d in (CKPT, VAR / "sharded-bin", VAR / "sharded-safetensors", REF):
        d.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- tokenizer
    make_tokenizer(str(CKPT))
    tok_check = check_tokenizer_against_shared_script(CKPT)
    tok = Tokenizer.from_file(str(CKPT / "tokenizer.json"))
    tid = {t: tok.token_to_id(t) for t in [BOS_T, EOS_T, PAD_T, IMG_T, "<patch_placeholder>", "<|ref|>", "<|/ref|>",
                                          "<|det|>", "<|/det|>", "<|grounding|>", USER, ASSISTANT, BOI_T, EOI_T]}
    BOS, EOS, PAD, IMG_ID, BOI, EOI = (tid[t] for t in (BOS_T, EOS_T, PAD_T, IMG_T, BOI_T, EOI_T))
    assert tok.get_vocab_size() == 414 and VOCAB >= 414

    def encode(text):
        ids = [BOS] + tok.encode(text, add_special_tokens=False).ids
        assert ids == tok.encode(text).ids            # the file's post-processor prepends exactly one BOS
        return ids

    def expand_images(ids):
        out = []
        for t in ids:
            out += [BOI] + [IMG_ID] * N_IMG_TOK + [EOI] if t == IMG_ID else [t]
        return out

    # ---------------------------------------------------------------- configs
    config = {
        "aligner_config": {"cls": "MlpProjector", "model_type": "aligner",
                           "params": {"depth": 2, "input_dim": SIG_W, "n_embed": H, "projector_type": "mlp_gelu"}},
        "architectures": ["MultiModalityCausalLM"],
        "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner",
                               "params": {"depth": 2, "input_dim": VQ_DIM, "n_embed": H,
                                          "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head",
                            "params": {"image_token_embed": H, "image_token_size": VQ_CODES, "n_embed": H}},
        "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision",
                              "params": {"image_token_size": VQ_CODES, "n_embed": VQ_DIM, "ch": VQ_CH,
                                         "ch_mult": VQ_MULT, "z_channels": VQ_Z}},
        "language_config": {"hidden_size": H, "intermediate_size": FFN, "max_position_embeddings": MAXPOS,
                            "model_type": "llama", "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
                            "num_key_value_heads": KV_HEADS, "torch_dtype": "bfloat16", "vocab_size": VOCAB},
        "model_type": "multi_modality",
        "torch_dtype": "bfloat16",
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision",
                          "params": {"image_size": IMG, "model_name": "siglip_tiny_patch16_64",
                                     "select_feature": "same", "select_layer": -1, "width": SIG_W,
                                     "layers": SIG_L, "heads": SIG_HEADS, "patch_size": PATCH,
                                     "mlp_ratio": SIG_MLP}},
        "_tiny_sizes": {
            "note": ("Not read by the official code. The official config cannot express a tiny model: the SigLIP "
                     "size comes from a registered model_name (siglip_large_patch16_384) and the VQ model is built "
                     "as VQ_16() with no arguments (ch 128, ch_mult [1,1,2,2,4], z_channels 256, 2 res blocks, "
                     "codebook 16384x8). The tiny sizes are therefore given explicitly in the same params objects: "
                     "vision_config.params {width, layers, heads, patch_size, mlp_ratio} and gen_vision_config.params "
                     "{ch, ch_mult, z_channels}; codebook size = gen_vision_config.params.image_token_size, codebook "
                     "dim = gen_vision_config.params.n_embed. language_config deliberately omits rms_norm_eps and "
                     "rope_theta (like the real files) so LlamaConfig defaults 1e-6 / 10000 apply."),
            "siglip": {"width": SIG_W, "layers": SIG_L, "heads": SIG_HEADS, "patch_size": PATCH,
                       "mlp_ratio": SIG_MLP, "image_size": IMG, "tokens": N_IMG_TOK,
                       "real": {"width": 1024, "layers": 24, "heads": 16, "patch_size": 16, "mlp_ratio": 4,
                                "image_size": 384, "tokens": 576}},
            "vq": {"codebook_size": VQ_CODES, "codebook_dim": VQ_DIM, "codebook_l2_norm": True, "ch": VQ_CH,
                   "ch_mult": VQ_MULT, "z_channels": VQ_Z, "num_res_blocks": VQ_NRES,
                   "group_norm": {"groups": 32, "eps": 1e-6}, "downsample": 2 ** (len(VQ_MULT) - 1),
                   "token_grid": GRID, "codebook_used_len": CODEBOOK_USED_LEN,
                   "real": {"codebook_size": 16384, "ch": 128, "z_channels": 256, "token_grid": 24,
                            "codebook_used_len": 65536}},
            "llm": {"hidden_size": H, "intermediate_size": FFN, "heads": HEADS, "kv_heads": KV_HEADS,
                    "layers": LAYERS, "vocab_size": VOCAB, "rms_norm_eps_default": 1e-6, "rope_theta_default": 10000,
                    "tie_word_embeddings": False},
            "num_image_tokens": N_IMG_TOK,
        },
    }
    json.dump(config, open(CKPT / "config.json", "w"), indent=2)
    json.dump({"background_color": [127, 127, 127], "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
               "image_processor_type": "VLMImageProcessor", "image_size": IMG, "image_std": [0.5, 0.5, 0.5],
               "min_size": 14, "processor_class": "VLChatProcessor", "rescale_factor": 0.00392156862745098},
              open(CKPT / "preprocessor_config.json", "w"), indent=2)
    json.dump({"add_special_token": False, "ignore_id": -100, "image_tag": IMG_T, "mask_prompt": True,
               "num_image_tokens": N_IMG_TOK, "processor_class": "VLChatProcessor", "sft_format": "deepseek"},
              open(CKPT / "processor_config.json", "w"), indent=2)

    # ---------------------------------------------------------------- weights
    gen = torch.Generator().manual_seed(SEED)
    shapes = official_shapes()
    keys_check = cross_check_with_1b(shapes)
    if KEYS_1B.exists():      # use the real file's key order (restricted to the tiny layer counts)
        order = [k for k in json.load(open(KEYS_1B)) if k in shapes]
        shapes = {k: shapes[k] for k in order}
    sd_bf16 = init_weights(shapes, gen)
    n_params = sum(t.numel() for t in sd_bf16.values())
    save_bin(sd_bf16, CKPT / "pytorch_model.bin")

    # weight variants
    st.save_file({k: v.contiguous() for k, v in sd_bf16.items()}, str(VAR / "model.safetensors"),
                 metadata={"format": "pt"})
    keys = list(sd_bf16)
    half = len(keys) // 2
    shards = [keys[:half], keys[half:]]
    total_size = sum(t.numel() * t.element_size() for t in sd_bf16.values())
    wm_bin, wm_st = {}, {}
    for i, ks in enumerate(shards):
        fb = f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin"
        fs = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_bin({k: sd_bf16[k] for k in ks}, VAR / "sharded-bin" / fb)
        st.save_file({k: sd_bf16[k].contiguous() for k in ks}, str(VAR / "sharded-safetensors" / fs),
                     metadata={"format": "pt"})
        for k in ks:
            wm_bin[k], wm_st[k] = fb, fs
    for path, wm in ((VAR / "sharded-bin" / "pytorch_model.bin.index.json", wm_bin),
                     (VAR / "sharded-safetensors" / "model.safetensors.index.json", wm_st)):
        with open(path, "w") as f:
            f.write(json.dumps({"metadata": {"total_size": total_size}, "weight_map": wm}, indent=2, sort_keys=True)
                    + "\n")

    # read everything back and check equality
    def eq(a, b):
        return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                                            and torch.equal(a[k], b[k]) for k in a)
    ref_st = st.load_file(str(VAR / "model.safetensors"))
    ref_bin = torch.load(CKPT / "pytorch_model.bin", weights_only=True)
    assert all(v.dtype == torch.bfloat16 for v in ref_bin.values())
    assert eq(ref_bin, ref_st) and eq(ref_bin, sd_bf16)
    sh_bin, sh_st = {}, {}
    for i in range(len(shards)):
        sh_bin.update(torch.load(VAR / "sharded-bin" / f"pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin",
                                 weights_only=True))
        sh_st.update(st.load_file(str(VAR / "sharded-safetensors" / f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors")))
    assert eq(dict(sorted(sh_bin.items())), dict(sorted(ref_st.items())))
    assert eq(dict(sorted(sh_st.items())), dict(sorted(ref_st.items())))
    print(f"weights: {len(sd_bf16)} tensors, {n_params} params; .bin == safetensors == shards")

    # ---------------------------------------------------------------- HF model (f32 from bf16-rounded weights)
    model = build_hf_model(IMG_ID)
    hf_sd = {k: v.float() for k, v in official_to_hf(ref_bin).items()}
    missing, unexpected = model.load_state_dict(hf_sd, strict=True)
    assert not missing and not unexpected
    M = model.model
    lm = M.language_model
    embed = lm.embed_tokens

    # ---------------------------------------------------------------- images
    rng = np.random.default_rng(SEED)
    im1, im2 = make_images(rng)
    im1.save(REF / "input.png")
    im2.save(REF / "input2.png")
    im1 = Image.open(REF / "input.png").convert("RGB")
    im2 = Image.open(REF / "input2.png").convert("RGB")
    try:   # the official code calls torchvision F.resize on a PIL image; confirm it is PIL's bicubic resize
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode
        for im in (im1, im2):
            hh, ww = official_resize_size(*im.size)
            a = np.asarray(TF.resize(im, [hh, ww], interpolation=InterpolationMode.BICUBIC, antialias=True))
            assert np.array_equal(a, np.asarray(im.resize((ww, hh), Image.BICUBIC)))
        tv_check = "torchvision F.resize(PIL, BICUBIC, antialias=True) == PIL Image.resize(BICUBIC): identical"
    except ImportError:
        tv_check = "torchvision not installed; not checked"
    res1, pv1, info1 = official_preprocess(im1)
    res2, pv2, info2 = official_preprocess(im2)
    hf_proc = compare_hf_image_processors([im1, im2], [pv1, pv2])

    R = {}           # reference tensors
    meta = {}        # reference.json extras

    # ---------------------------------------------------------------- understanding case 1
    und_prompt = f"{SYSTEM_PROMPT}\n\n{USER}: {IMG_T}\nDescribe this image.\n\n{ASSISTANT}:"
    und_ids_raw = encode(und_prompt)
    und_ids = expand_images(und_ids_raw)
    T = len(und_ids)
    ids_t = torch.tensor([und_ids])
    pv_t = torch.from_numpy(pv1)[None]
    with torch.no_grad():
        vis = M.vision_model(pv_t).last_hidden_state                  # (1,16,32) blocks + post_layernorm
        ali = M.aligner(vis)                                          # (1,16,64)
        assert torch.equal(ali, M.get_image_features(pv_t).pooler_output)
        emb = embed(ids_t).clone()
        mask = ids_t[0] == IMG_ID
        assert int(mask.sum()) == N_IMG_TOK
        emb[0, mask] = ali[0]
        last = lm(inputs_embeds=emb).last_hidden_state               # after final RMSNorm
        logits = model.lm_head(last)
        full = model(input_ids=ids_t, pixel_values=pv_t, attention_mask=torch.ones_like(ids_t))
        d_full = float((full.logits - logits).abs().max())
        assert d_full < 1e-5, d_full

        def greedy(emb0, n, eos=None):
            x, out, margins = emb0, [], []
            for _ in range(n):
                lg = model.lm_head(lm(inputs_embeds=x).last_hidden_state[:, -1])[0]
                margins.append(top2_margin(lg))
                t = int(lg.argmax())
                out.append(t)
                if eos is not None and t == eos:
                    break
                x = torch.cat([x, embed(torch.tensor([[t]]))], 1)
            return out, margins

        und_greedy, und_margins = greedy(emb, UND_MAX_NEW)
        und_greedy_eos, und_margins_eos = greedy(emb, UND_EOS_MAX_NEW, eos=EOS)

        def hf_text_generate(ids, pv, n, eos):
            gc = GenerationConfig(max_new_tokens=n, do_sample=False, eos_token_id=eos, pad_token_id=PAD,
                                  bos_token_id=BOS)
            o = model.generate(input_ids=ids, pixel_values=pv, attention_mask=torch.ones_like(ids),
                               generation_config=gc, generation_mode="text")
            return o[0, ids.shape[1]:].tolist()

        hf_und = hf_text_generate(ids_t, pv_t, UND_MAX_NEW, None)
        hf_und_eos = hf_text_generate(ids_t, pv_t, UND_EOS_MAX_NEW, EOS)

    # HF processor template (informational): does JanusProcessor build the same ids?
    try:
        from transformers import AutoTokenizer, JanusImageProcessorPil, JanusProcessor
        hft = AutoTokenizer.from_pretrained(str(CKPT), extra_special_tokens={
            "image_token": IMG_T, "boi_token": BOI_T, "eoi_token": EOI_T})
        proc = JanusProcessor(image_processor=JanusImageProcessorPil(size={"height": IMG, "width": IMG},
                                                                      image_mean=[.5] * 3, image_std=[.5] * 3),
                              tokenizer=hft, num_image_tokens=N_IMG_TOK, use_default_system_prompt=True)
        p_ids = proc(text=f"{USER}: {IMG_T}\nDescribe this image.\n\n{ASSISTANT}:", images=im1,
                     return_tensors="pt")["input_ids"][0].tolist()
        hf_template_same = (p_ids == und_ids)
    except Exception as e:  # pragma: no cover
        hf_template_same = f"not checked: {e}"

    R["und_image_resized"] = torch.from_numpy(res1)
    R["und_pixel_values"] = torch.from_numpy(pv1)
    R["und_input_ids"] = torch.tensor(und_ids)
    R["und_vision_out"] = vis[0]
    R["und_aligner_out"] = ali[0]
    R["und_inputs_embeds"] = emb[0]
    R["und_last_hidden"] = last[0]
    R["und_logits"] = logits[0]
    R["und_greedy_ids"] = torch.tensor(und_greedy)
    R["und_greedy_ids_eos"] = torch.tensor(und_greedy_eos)

    # ---------------------------------------------------------------- understanding case 2 (two images, two turns)
    conv = [{"role": USER, "content": f"{IMG_T}\n{IMG_T}\nCompare the two images."},
            {"role": ASSISTANT, "content": "The first is wide and the second is tall."},
            {"role": USER, "content": "Which one is brighter?"},
            {"role": ASSISTANT, "content": ""}]
    seps = ["\n\n", EOS_T]
    mi_prompt = SYSTEM_PROMPT + seps[0]
    for i, m in enumerate(conv):
        c = m["content"].strip()
        mi_prompt += f"{m['role']}: {c}{seps[i % 2]}" if c else f"{m['role']}:"
    mi_prompt = mi_prompt.strip()
    mi_ids = expand_images(encode(mi_prompt))
    mi_t = torch.tensor([mi_ids])
    mi_pv = torch.from_numpy(np.stack([pv1, pv2]))
    with torch.no_grad():
        feats = M.aligner(M.vision_model(mi_pv).last_hidden_state)        # (2,16,64)
        mi_emb = embed(mi_t).clone()
        mmask = mi_t[0] == IMG_ID
        assert int(mmask.sum()) == 2 * N_IMG_TOK
        mi_emb[0, mmask] = feats.reshape(-1, H)
        mi_logits = model.lm_head(lm(inputs_embeds=mi_emb).last_hidden_state)[0]
        full = model(input_ids=mi_t, pixel_values=mi_pv, attention_mask=torch.ones_like(mi_t))
        assert float((full.logits[0] - mi_logits).abs().max()) < 1e-5
        mi_greedy, mi_margins = greedy(mi_emb, MI_MAX_NEW)
        hf_mi = hf_text_generate(mi_t, mi_pv, MI_MAX_NEW, None)
    R["mi_input_ids"] = torch.tensor(mi_ids)
    R["mi_image2_resized"] = torch.from_numpy(res2)
    R["mi_pixel_values"] = mi_pv
    R["mi_inputs_embeds"] = mi_emb[0]
    R["mi_logits_last"] = mi_logits[-1]
    R["mi_greedy_ids"] = torch.tensor(mi_greedy)

    # ---------------------------------------------------------------- text-to-image generation (official loop)
    gen_prompt = f"{USER}: a red cat\n\n{ASSISTANT}:" + BOI_T
    gp = encode(gen_prompt)
    P = len(gp)
    assert gp[0] == BOS and gp[-1] == BOI
    rows = torch.tensor([gp, [gp[0]] + [PAD] * (P - 2) + [gp[-1]]])        # interleaved [cond, uncond]
    with torch.no_grad():
        cache = DynamicCache(config=lm.config)
        o = lm(inputs_embeds=embed(rows), cache=cache, use_cache=True)
        codes, cfg_margins = [], []
        for i in range(N_IMG_TOK):
            hl = o.last_hidden_state[:, -1]                                   # final-norm hidden state
            lg = M.generation_head(hl)                                        # (2,256)
            c, u = lg[0::2], lg[1::2]
            g = u + CFG_WEIGHT * (c - u)
            probs = torch.softmax(g / TEMPERATURE, dim=-1)
            t = int(probs[0].argmax())                                        # argmax instead of multinomial
            assert t == int(g[0].argmax())
            if i == 0:
                R["gen_step0_logits_cond"] = c[0].clone()
                R["gen_step0_logits_uncond"] = u[0].clone()
                R["gen_step0_logits_cfg"] = g[0].clone()
            cfg_margins.append(top2_margin(g[0]))
            codes.append(t)
            nxt = torch.tensor([t, t])                                        # same token to both rows
            e = M.generation_aligner(M.generation_embeddings(nxt))[:, None, :]
            o = lm(inputs_embeds=e, cache=cache, use_cache=True)
        # HF generate cross-check
        model.generation_config.pad_token_id = PAD
        model.generation_config.bos_token_id = BOS
        model.generation_config.generation_kwargs = {"boi_token_id": BOI}
        gp_t = torch.tensor([gp])
        hf_img = model.generate(input_ids=gp_t, attention_mask=torch.ones_like(gp_t), generation_mode="image",
                                do_sample=False, guidance_scale=CFG_WEIGHT)[0].tolist()
        codes_t = torch.tensor([codes])
        dec = M.vqmodel.decode(codes_t)                                       # (1,3,64,64)
        dec2 = model.decode_image_tokens(codes_t).permute(0, 3, 1, 2)
        assert torch.equal(dec, dec2)
    x = dec.float().numpy().transpose(0, 2, 3, 1)
    u8 = np.zeros(x.shape, dtype=np.uint8)
    u8[:] = np.clip((x + 1) / 2 * 255, 0, 255)                               # official: truncation on assignment
    hf_pp = model_postprocess = None
    try:
        from transformers import JanusImageProcessorPil
        pp = JanusImageProcessorPil(size={"height": IMG, "width": IMG}, image_mean=[.5] * 3, image_std=[.5] * 3)
        hf_pp = pp.postprocess(list(dec.float()), return_tensors="pt")["pixel_values"].numpy().transpose(0, 2, 3, 1)
        model_postprocess = {"max_abs_diff_u8": int(np.abs(hf_pp.astype(int) - u8.astype(int)).max()),
                             "n_differing": int((hf_pp != u8).sum())}
    except Exception as e:  # pragma: no cover
        model_postprocess = f"not checked: {e}"
    R["gen_prompt_ids"] = torch.tensor(gp)
    R["gen_tokens_rows"] = rows
    R["gen_image_tokens"] = torch.tensor(codes)
    R["gen_decoded"] = dec
    R["gen_image_u8"] = torch.from_numpy(u8)

    # ---------------------------------------------------------------- VQ encoder (official l2-normalised quantiser)
    vq_u8 = np.asarray(im1.resize((IMG, IMG), Image.BICUBIC))
    vq_in = torch.from_numpy(vq_u8.astype(np.float32) / np.float32(255.0) * np.float32(2.0) - np.float32(1.0))
    vq_in = vq_in.permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        z = M.vqmodel.quant_conv(M.vqmodel.encoder(vq_in.clone()))           # (1,8,4,4)
        zf = z.permute(0, 2, 3, 1).reshape(-1, VQ_DIM)                         # raster order (h, w)
        zf = torch.nn.functional.normalize(zf, p=2, dim=-1)
        cb = torch.nn.functional.normalize(M.vqmodel.quantize.embedding.weight, p=2, dim=-1)
        dist = (zf ** 2).sum(1, keepdim=True) + (cb ** 2).sum(1) - 2 * zf @ cb.t()
        vq_tokens = dist.argmin(1)
        ds = dist.sort(1).values
        vq_gap = float((ds[:, 1] - ds[:, 0]).min())
        vq_rt = M.vqmodel.decode(vq_tokens[None])
        hf_enc_tokens = M.vqmodel.encode(vq_in.clone()).image_tokens              # HF encode path (no l2 norm)
        rnd = torch.randint(0, VQ_CODES, (N_IMG_TOK,), generator=torch.Generator().manual_seed(SEED + 1))
        rnd_dec = M.vqmodel.decode(rnd[None])
    R["vq_input"] = vq_in
    R["vq_encoder_out"] = z
    R["vq_tokens"] = vq_tokens
    R["vq_roundtrip_decoded"] = vq_rt
    R["vq_decode_random_tokens"] = rnd
    R["vq_decode_random_out"] = rnd_dec

    # ---------------------------------------------------------------- independent check on official keys
    O = OfficialRef(ref_bin)
    with torch.no_grad():
        o_vis = O.siglip(R["und_pixel_values"][None])[0]
        o_ali = O.mlp_gelu(o_vis, "aligner")
        o_emb = O.W["language_model.model.embed_tokens.weight"][R["und_input_ids"]].clone()
        o_emb[R["und_input_ids"] == IMG_ID] = o_ali
        o_last = O.llama(o_emb[None])[0]
        o_mi_feats = O.mlp_gelu(O.siglip(R["mi_pixel_values"]), "aligner").reshape(-1, H)
        o_mi_emb = O.W["language_model.model.embed_tokens.weight"][R["mi_input_ids"]].clone()
        o_mi_emb[R["mi_input_ids"] == IMG_ID] = o_mi_feats
        o_mi_last = O.lm_head(O.llama(o_mi_emb[None])[0, -1])
        # generation: recompute the whole sequence each step (no KV cache), interleaved rows
        seq = O.W["language_model.model.embed_tokens.weight"][R["gen_tokens_rows"]]
        o_codes = []
        for i in range(N_IMG_TOK):
            lg = O.gen_head(O.llama(seq)[:, -1])
            c, u = lg[0], lg[1]
            g = u + CFG_WEIGHT * (c - u)
            if i == 0:
                o_step0 = (c, u, g)
            t = int(g.argmax())
            o_codes.append(t)
            seq = torch.cat([seq, O.gen_embed(torch.tensor([t, t]))[:, None]], 1)
        o_dec = O.vq_decode(R["gen_image_tokens"][None])
        o_enc = O.vq_encode(R["vq_input"])
        o_rnd = O.vq_decode(R["vq_decode_random_tokens"][None])
    independent = {
        "und_vision_out": rel_err(o_vis, R["und_vision_out"]),
        "und_aligner_out": rel_err(o_ali, R["und_aligner_out"]),
        "und_inputs_embeds": rel_err(o_emb, R["und_inputs_embeds"]),
        "und_last_hidden": rel_err(o_last, R["und_last_hidden"]),
        "und_logits": rel_err(O.lm_head(o_last), R["und_logits"]),
        "mi_inputs_embeds": rel_err(o_mi_emb, R["mi_inputs_embeds"]),
        "mi_logits_last": rel_err(o_mi_last, R["mi_logits_last"]),
        "gen_step0_logits_cond": rel_err(o_step0[0], R["gen_step0_logits_cond"]),
        "gen_step0_logits_uncond": rel_err(o_step0[1], R["gen_step0_logits_uncond"]),
        "gen_step0_logits_cfg": rel_err(o_step0[2], R["gen_step0_logits_cfg"]),
        "gen_decoded": rel_err(o_dec, R["gen_decoded"]),
        "vq_encoder_out": rel_err(o_enc, R["vq_encoder_out"]),
        "vq_decode_random_out": rel_err(o_rnd, R["vq_decode_random_out"]),
    }
    assert max(independent.values()) < 1e-4, independent
    assert o_codes == R["gen_image_tokens"].tolist(), (o_codes, R["gen_image_tokens"].tolist())
    independent["gen_image_tokens_equal"] = True

    # ---------------------------------------------------------------- write reference
    R = {k: v.detach().contiguous() for k, v in R.items()}
    for k, v in R.items():
        if v.is_floating_point():
            R[k] = v.float()
        elif v.dtype != torch.uint8:
            R[k] = v.long()
    st.save_file(R, str(REF / "reference.safetensors"), metadata={"format": "pt"})

    und_logit_std = float(logits[0].std(dim=-1).mean())
    files = {str(p.relative_to(FIX)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for d in (CKPT, VAR) for p in sorted(d.rglob("*")) if p.is_file()}
    meta = {
        "seed": SEED,
        "generator": {"script": "scripts/make_fixtures.py", "torch": torch.__version__,
                      "transformers": transformers.__version__, "numpy": np.__version__,
                      "pillow": PIL.__version__},
        "weights": {"n_tensors": len(sd_bf16), "n_params": n_params, "dtype": "bfloat16",
                    "key_cross_check": keys_check,
                    "init": "linear/conv N(0,1/fan_in); 1-D norm weights 1+0.1N; biases 0.02N; embed_tokens, "
                            "gen_embed, quantize.embedding, attn_pool.latent N(0,1); pos_embed 0.5N; "
                            "codebook_used zeros; then rounded to bf16"},
        "tokenizer": {"size_in_file": tok.get_vocab_size(), "embedding_rows": VOCAB, "ids": tid, "pad_id": PAD,
                      "check": tok_check,
                      "note": "BOS is prepended (the file's TemplateProcessing does it; ids built as [BOS] + "
                              "encode(text, add_special_tokens=False))"},
        "und_prompt": und_prompt,
        "und_prompt_ids_before_image_expansion": und_ids_raw,
        "und_settings": {"max_new_tokens": UND_MAX_NEW, "eos_token_id": None, "do_sample": False,
                         "eos_run": {"max_new_tokens": UND_EOS_MAX_NEW, "eos_token_id": EOS,
                                     "n_generated": len(und_greedy_eos),
                                     "stopped_on_eos": bool(und_greedy_eos and und_greedy_eos[-1] == EOS)}},
        "und_greedy_top2_margins": und_margins,
        "und_greedy_min_top2_margin": min(und_margins),
        "und_greedy_eos_min_top2_margin": min(und_margins_eos),
        "und_logits_mean_std_over_vocab": und_logit_std,
        "und_preprocess": info1,
        "mi_conversation": conv,
        "mi_prompt": mi_prompt,
        "mi_images": ["input.png", "input2.png"],
        "mi_preprocess": [info1, info2],
        "mi_greedy_top2_margins": mi_margins,
        "mi_greedy_min_top2_margin": min(mi_margins),
        "gen_prompt": gen_prompt,
        "gen_settings": {"cfg_weight": CFG_WEIGHT, "temperature": TEMPERATURE, "parallel_size": PARALLEL,
                         "image_token_num_per_image": N_IMG_TOK, "rows": "interleaved [cond, uncond]",
                         "uncond_row": "BOS + pad*(P-2) + <begin_of_image>, no attention mask (pads attended)",
                         "sampling": "argmax of softmax(cfg_logits / T) (in place of multinomial)"},
        "gen_cfg_top2_margins": cfg_margins,
        "gen_cfg_min_top2_margin": min(cfg_margins),
        "gen_decoded_range": [float(dec.min()), float(dec.max())],
        "gen_decoded_fraction_outside_pm1": float((dec.abs() > 1).float().mean()),
        "vq_input_formula": "float32(PIL resize(input.png, (64,64), BICUBIC)) / 255 * 2 - 1 (float32), NCHW",
        "vq_min_distance_gap": vq_gap,
        "vq_random_tokens_seed": "torch.randint(0, 256, (16,), generator=torch.Generator().manual_seed(1))",
        "checks": {
            "hf_model_forward_equals_manual_merge": True,
            "independent_official_key_reimplementation_max_rel_err": independent,
            "hf_text_generate_equals_own_greedy": {"und": hf_und == und_greedy, "und_eos": hf_und_eos == und_greedy_eos,
                                                   "mi": hf_mi == mi_greedy},
            "hf_image_generate_equals_official_loop": hf_img == codes,
            "hf_image_generate_tokens": hf_img,
            "hf_processor_template_equals_official_ids": hf_template_same,
            "hf_image_processors_vs_official_preprocessing": hf_proc,
            "torchvision_resize_vs_pil": tv_check,
            "hf_postprocess_vs_official_u8": model_postprocess,
            "hf_vq_encode_tokens_no_l2norm": hf_enc_tokens.tolist(),
            "hf_vq_encode_equals_official_l2norm_tokens": hf_enc_tokens.tolist() == vq_tokens.tolist(),
        },
        "files": files,
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in R.items()},
    }
    json.dump(meta, open(REF / "reference.json", "w", encoding="utf-8"), indent=2, ensure_ascii=False)
    (REF / "README.md").write_text(readme(meta, R, T, P, len(mi_ids)), encoding="utf-8")

    # ---------------------------------------------------------------- summary
    for k, v in meta["checks"].items():
        print(f"check {k}: {v}")
    print("und greedy", und_greedy, "min margin", min(und_margins))
    print("und greedy eos", und_greedy_eos)
    print("mi greedy", mi_greedy, "min margin", min(mi_margins))
    print("gen codes", codes, "min cfg margin", min(cfg_margins))
    print("vq tokens", vq_tokens.tolist(), "min gap", vq_gap)
    total = 0
    for p in sorted(FIX.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            print(f"{p.stat().st_size:>10}  {p.relative_to(ROOT)}")
    print(f"{total:>10}  total")


def readme(meta, R, T, P, T_mi):
    ids = meta["tokenizer"]["ids"]
    ch = meta["checks"]
    shp = {k: "(" + ", ".join(str(s) for s in v.shape) + ("," if v.dim() == 1 else "") + ")" for k, v in R.items()}
    dt = {k: str(v.dtype).replace("torch.", "") for k, v in R.items()}

    def row(name, text):
        return f"| `{name}` | {shp[name]} {dt[name]} | {text} |"

    proc = ch["hf_image_processors_vs_official_preprocessing"]

    def proc_line(name):
        r = proc.get(name)
        if not isinstance(r, dict):
            return f"  * `{name}`: {r}"
        parts = []
        for img, v in r.items():
            parts.append(f"{img}: official resize (h,w) {tuple(v['official_resized_hw'])}, HF formula "
                         f"{tuple(v['hf_resized_hw_formula'])}, max |diff| {v['max_abs_diff']:.4g} "
                         f"({v['n_values_differing']} of {3 * IMG * IMG} values differ)")
        return f"  * `{name}`: " + "; ".join(parts)

    i1, i2 = meta["mi_preprocess"]
    odd = {k: [int(t) for t in R[k].tolist() if t >= 414 or t in (ids[BOS_T], ids[PAD_T])]
           for k in ("und_greedy_ids", "und_greedy_ids_eos", "mi_greedy_ids")}
    odd = {k: v for k, v in odd.items() if v}
    unused_note = ("Ids 414 and 415 are embedding/lm_head rows with no token string (like the real model's rows "
                   "100015..102399), so a random model can emit them. "
                   + (("In this fixture the greedy outputs contain such ids or BOS/pad: "
                       + ", ".join(f"`{k}` {v}" for k, v in odd.items())
                       + ". A detokeniser must tolerate them (skip ids without a string).") if odd else
                      "The greedy outputs in this fixture contain none of them."))
    return f"""# Tiny Janus-Pro reference fixture (seed 0)

Generated by `scripts/make_fixtures.py` (run by hand: `/work/oracle-venv/bin/python scripts/make_fixtures.py`),
torch {meta['generator']['torch']}, transformers {meta['generator']['transformers']} on CPU.

Three directories belong together:

| directory | content |
|---|---|
| `tests/fixtures/tiny-janus-pro/` | a tiny random checkpoint in the **official deepseek-ai Janus-Pro-1B layout**: `config.json` (`multi_modality`), `pytorch_model.bin` (torch zip pickle of a flat `{{official_key: bf16 tensor}}` dict), `preprocessor_config.json`, `processor_config.json`, `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json` |
| `tests/fixtures/weight-variants/` | the **same bf16 tensors** in the other layouts real checkpoints use: `model.safetensors` (single file); `sharded-bin/pytorch_model-0000{{1,2}}-of-00002.bin` + `pytorch_model.bin.index.json`; `sharded-safetensors/model-0000{{1,2}}-of-00002.safetensors` + `model.safetensors.index.json`. Shards split the key list in half in file order; index files use the HF format `{{"metadata": {{"total_size": bytes}}, "weight_map": {{key: file}}}}`. **Not committed**: the tests derive these files from `tiny-janus-pro/pytorch_model.bin` without torch, byte-identical to what this script writes (`tests/fixture_variants.py`; by hand: `python tests/fixture_variants.py`) |
| `tests/fixtures/tiny-janus-pro-reference/` (this one) | `reference.safetensors`, `reference.json`, `input.png`, `input2.png`, this README |

Weights are random, rounded to bf16 and stored as bf16 (lossless). **All reference values were computed in float32
from those bf16-rounded weights** with the transformers port (`transformers.models.janus.JanusForConditionalGeneration`,
eager attention), loaded through the official→HF key mapping of `oracle.md` (qkv split into thirds, `pos_embed`
squeezed, `attn_pool.*` and `quantize.codebook_used` dropped, `tie_word_embeddings=False`). The image-generation loop
and the VQ quantiser are written in the script on top of the HF modules with official semantics (see below).

## Tiny sizes

| part | tiny | real Janus-Pro-1B |
|---|---|---|
| LLM (Llama) | hidden {H}, {LAYERS} layers, {HEADS} heads (head_dim {H // HEADS}), kv heads {KV_HEADS}, FFN {FFN}, vocab {VOCAB} (tokenizer has 414 tokens; rows 414, 415 unused), max_pos {MAXPOS}; `rms_norm_eps` and `rope_theta` are **absent** from `config.json`, so the LlamaConfig defaults 1e-6 / 10000 apply; untied `lm_head` | 2048, 24, 16, 16, 5632, 102400 |
| SigLIP | image {IMG}, patch {PATCH} ({GRID}×{GRID} = {N_IMG_TOK} tokens), width {SIG_W}, {SIG_L} blocks, {SIG_HEADS} heads, mlp ×{SIG_MLP}, LN eps 1e-6, erf GELU, fused qkv with bias, final LayerNorm, `attn_pool` present but unused | 384, 16 (576), 1024, 24, 16 |
| aligner / gen_aligner | Linear({SIG_W}→{H}) → GELU → Linear({H}→{H}) / Linear({VQ_DIM}→{H}) → GELU → Linear({H}→{H}) | 1024→2048, 8→2048 |
| gen_head | Linear({H}→{H}) → GELU → Linear({H}→{VQ_CODES}) | 2048→2048→16384 |
| gen_embed | ({VQ_CODES}, {VQ_DIM}) | (16384, 8) |
| VQ-16 | codebook {VQ_CODES}×{VQ_DIM} (L2-normalised at use), ch {VQ_CH}, ch_mult {VQ_MULT}, z_channels {VQ_Z}, {VQ_NRES} res blocks (+1 in the decoder), GroupNorm(32, eps 1e-6), ×16 down/up-sampling → a 64×64 image ↔ 4×4 = 16 tokens; `codebook_used` buffer shape ({CODEBOOK_USED_LEN},) | 16384×8, 128, same, 256, 2; 384² ↔ 24×24; (65536,) |

{meta['weights']['n_params']:,} parameters in {meta['weights']['n_tensors']} tensors. Key check:
{meta['weights']['key_cross_check']}. Init: {meta['weights']['init']}.

The official code builds the VQ model as `VQ_16()` (no arguments) and SigLIP from a registered `model_name`, so
`config.json` cannot describe tiny sizes in the official vocabulary. The tiny sizes are given explicitly in the same
`params` objects (`vision_config.params.{{width,layers,heads,patch_size,mlp_ratio}}`,
`gen_vision_config.params.{{ch,ch_mult,z_channels}}`; codebook size = `gen_vision_config.params.image_token_size`,
codebook dim = `n_embed`), and `_tiny_sizes` (ignored by the official code) documents all of them next to the real
values. A loader should fall back to the VQ-16 / siglip_large_patch16_384 presets when those fields are absent.

Token ids (tiny tokenizer, 414 tokens): BOS `<｜begin▁of▁sentence｜>` {ids[BOS_T]}, EOS `<｜end▁of▁sentence｜>` {ids[EOS_T]},
pad `<｜▁pad▁｜>` {ids[PAD_T]}, `<image_placeholder>` {ids[IMG_T]}, `<patch_placeholder>` {ids['<patch_placeholder>']},
`<|ref|>` {ids['<|ref|>']}, `<|/ref|>` {ids['<|/ref|>']}, `<|det|>` {ids['<|det|>']}, `<|/det|>` {ids['<|/det|>']},
`<|grounding|>` {ids['<|grounding|>']}, `<|User|>` {ids[USER]}, `<|Assistant|>` {ids[ASSISTANT]},
`<begin_of_image>` {ids[BOI_T]}, `<end_of_image>` {ids[EOI_T]}. The tokenizer files are {meta['tokenizer']['check']}.

{unused_note}

## Reference tensors (`reference.safetensors`)

Float tensors are float32, ids int64, images uint8. T = {T} (understanding), T_mi = {T_mi} (two images, two turns),
P = {P} (generation prompt). Exact prompt strings are in `reference.json` (`und_prompt`, `mi_prompt`, `gen_prompt`;
the BOS id is **not** part of the strings and is prepended to the ids).

### Understanding, one image (`und_*`)

Prompt = official `deepseek` SFT template with the default system prompt: `"{{SYSTEM}}\\n\\n<|User|>: <image_placeholder>\\nDescribe this image.\\n\\n<|Assistant|>:"`,
ids = [BOS] + BPE(prompt), then the single `<image_placeholder>` id is **replaced** by `<begin_of_image>` + 16 ×
`<image_placeholder>` + `<end_of_image>`.

| name | shape dtype | meaning / producer |
|---|---|---|
{row('und_image_resized', f"`Image.open('input.png').resize(({i1['resized_hw'][1]}, {i1['resized_hw'][0]}), Image.BICUBIC)` as HWC: official resize of the 80×48 input, `(h', w') = (max(int(h/m*64),14), max(int(w/m*64),14))`, m = max(w, h). (The official code calls torchvision `F.resize(pil, ..., BICUBIC, antialias=True)`, which on a PIL image is exactly this PIL call: {meta['checks']['torchvision_resize_vs_pil']}.)")}
{row('und_pixel_values', f"official `VLMImageProcessor`: paste the resized image into a 64×64 (127,127,127) canvas at (x, y) = {tuple(i1['paste_offset_xy'])} (wide: `(0, (W-h')//2)`), CHW, `float32(float64(u8) * 0.00392156862745098)`, then `(x - 0.5) / 0.5` in float32. This exact tensor was fed to the model")}
{row('und_input_ids', "ids after image expansion (exactly what was fed to the model)")}
{row('und_vision_out', "`model.model.vision_model(pixel_values).last_hidden_state`: patch conv + pos emb, all 2 blocks, **and** `post_layernorm` (= official `vision_tower.norm`); no pooling head")}
{row('und_aligner_out', "`model.model.aligner(und_vision_out)`: fc1 → GELU(erf) → hidden_layers.0 (= official `aligner.layers.0/2`)")}
{row('und_inputs_embeds', "`model.model.language_model.embed_tokens(ids)` with the 16 `<image_placeholder>` rows replaced by `und_aligner_out` in order; `<begin_of_image>`/`<end_of_image>` keep their text embeddings")}
{row('und_last_hidden', "`model.model.language_model(inputs_embeds=...).last_hidden_state` = hidden state **after** the final RMSNorm (`language_model.model.norm`)")}
{row('und_logits', "`model.lm_head(und_last_hidden)`; equal (max abs diff < 1e-5) to `model(input_ids, pixel_values, attention_mask).logits`")}
{row('und_greedy_ids', f"greedy new tokens, max_new_tokens {UND_MAX_NEW}, EOS disabled (exactly 8). Computed by a full-recompute greedy loop on `inputs_embeds`; HF `generate` (text mode, `eos_token_id=None`) agrees: {ch['hf_text_generate_equals_own_greedy']['und']}")}
{row('und_greedy_ids_eos', f"greedy with EOS id {ids[EOS_T]} enabled, max_new_tokens {UND_EOS_MAX_NEW}: {meta['und_settings']['eos_run']['n_generated']} tokens, stopped on EOS: {meta['und_settings']['eos_run']['stopped_on_eos']} (an emitted EOS would be included as the last id). HF `generate` agrees: {ch['hf_text_generate_equals_own_greedy']['und_eos']}")}

### Understanding, two images and two turns (`mi_*`)

Conversation (Janus-Pro roles): user `"<image_placeholder>\\n<image_placeholder>\\nCompare the two images."` with images
[input.png, input2.png]; assistant `"The first is wide and the second is tall."`; user `"Which one is brighter?"`;
assistant `""`. Prompt per the official `deepseek` template: system + `"\\n\\n"`, `role + ": " + content` followed by
`"\\n\\n"` after user turns and `"<｜end▁of▁sentence｜>"` after assistant turns, `role + ":"` for the empty last turn,
whole string stripped. So the earlier answer is followed directly by `<｜end▁of▁sentence｜><|User|>:` (no newline).

| name | shape dtype | meaning |
|---|---|---|
{row('mi_input_ids', "ids after expanding both placeholders (two 18-token image blocks)")}
{row('mi_image2_resized', f"official resize of the tall 40×72 `input2.png` to (h', w') = {tuple(i2['resized_hw'])} (PIL bicubic); pasted at (x, y) = {tuple(i2['paste_offset_xy'])} (tall: `((H-w')//2, 0)`)")}
{row('mi_pixel_values', "official preprocessing of [input.png, input2.png] (image 0 equals `und_pixel_values`)")}
{row('mi_inputs_embeds', "text embeddings with the 32 image positions replaced by `aligner(vision(mi_pixel_values))` flattened image-major (first image's 16 rows, then the second's)")}
{row('mi_logits_last', "lm_head logits at the last position")}
{row('mi_greedy_ids', f"greedy, max_new_tokens {MI_MAX_NEW}, EOS disabled. HF `generate` agrees: {ch['hf_text_generate_equals_own_greedy']['mi']}")}

### Text-to-image, official Janus loop with argmax (`gen_*`)

Prompt `"<|User|>: a red cat\\n\\n<|Assistant|>:<begin_of_image>"` (empty system prompt), BOS prepended (P = {P}).
parallel_size 1, cfg_weight {CFG_WEIGHT}, temperature {TEMPERATURE}, 16 image tokens.

Loop (written in the script on the HF modules): rows interleaved `[cond, uncond]`; the uncond row is BOS + pad ×
(P−2) + `<begin_of_image>`; **no attention mask** (pads are attended); positions 0.. (KV cache, `DynamicCache`).
Each step: `h = model.model.language_model(...).last_hidden_state[:, -1]` (after final RMSNorm) →
`lg = model.model.generation_head(h)` (proj_out → GELU → vision_head) → `g = u + w·(c − u)` → `argmax(softmax(g/T))`
→ the chosen id goes to **both** rows through `model.model.generation_embeddings` → `model.model.generation_aligner`.
HF `model.generate(..., generation_mode="image", do_sample=False, guidance_scale=5.0)` (block row layout, uncond =
non-BOS/BOI tokens padded, attention mask of ones) gives the same 16 tokens: {ch['hf_image_generate_equals_official_loop']}.

| name | shape dtype | meaning |
|---|---|---|
{row('gen_prompt_ids', "tokenized prompt (BOS … `<|Assistant|>`, `:`, `<begin_of_image>`)")}
{row('gen_tokens_rows', f"row 0 cond = prompt ids; row 1 uncond = [BOS] + [pad {ids[PAD_T]}]×(P−2) + [`<begin_of_image>` {ids[BOI_T]}]")}
{row('gen_step0_logits_cond', "generation_head logits of the cond row at the last prompt position (step 0)")}
{row('gen_step0_logits_uncond', "same for the uncond row")}
{row('gen_step0_logits_cfg', "`uncond + 5·(cond − uncond)`")}
{row('gen_image_tokens', "the 16 argmax codes, raster order (code k at row k // 4, column k % 4)")}
{row('gen_decoded', "`model.model.vqmodel.decode(codes)`: codebook rows **L2-normalised** → `post_quant_conv` → decoder, NCHW, unclipped (range in `reference.json: gen_decoded_range`)")}
{row('gen_image_u8', "official conversion in float32: `uint8(clip((x + 1) / 2 * 255, 0, 255))` with truncation, NHWC")}

### VQ encoder and decoder (`vq_*`)

The HF port's encode path does not L2-normalise (see `oracle.md`), so the quantiser is written in the script with the
official `VectorQuantizer(l2_norm=True)` semantics.

| name | shape dtype | meaning |
|---|---|---|
{row('vq_input', "`input.png` resized with PIL BICUBIC **directly** to 64×64 (no padding, aspect not kept), `float32(u8) / 255 * 2 − 1` in float32, NCHW")}
{row('vq_encoder_out', "`model.model.vqmodel.quant_conv(model.model.vqmodel.encoder(vq_input))` (= official `quant_conv(encoder(x))`)")}
{row('vq_tokens', "official quantiser: z permuted to NHWC and flattened (raster order), z rows and codebook rows L2-normalised (`F.normalize`, eps 1e-12), `d = ‖z‖² + ‖e‖² − 2 z·e`, argmin")}
{row('vq_roundtrip_decoded', "decode of `vq_tokens` (as `gen_decoded`)")}
{row('vq_decode_random_tokens', "a second token sequence: `torch.randint(0, 256, (16,), generator=manual_seed(1))`")}
{row('vq_decode_random_out', "decode of `vq_decode_random_tokens`")}

## Margins (how close the argmax decisions are)

| path | smallest top-2 gap |
|---|---|
| `und_greedy_ids` (logits) | {meta['und_greedy_min_top2_margin']:.4f} |
| `und_greedy_ids_eos` (logits) | {meta['und_greedy_eos_min_top2_margin']:.4f} |
| `mi_greedy_ids` (logits) | {meta['mi_greedy_min_top2_margin']:.4f} |
| `gen_image_tokens` (CFG logits) | {meta['gen_cfg_min_top2_margin']:.4f} |
| `vq_tokens` (squared L2 distance, second best − best) | {meta['vq_min_distance_gap']:.4f} |

Per-step margins are in `reference.json`. Mean per-position std of `und_logits` over the vocabulary:
{meta['und_logits_mean_std_over_vocab']:.3f}, so the smallest text margin is about
{100 * meta['mi_greedy_min_top2_margin'] / meta['und_logits_mean_std_over_vocab']:.1f}% of the logit scale: ample for a
float32 implementation (errors ~1e-5 relative), **not** enough to expect identical tokens from a bf16 implementation.

## Cross-checks recorded when the fixture was made

* An independent plain-torch re-implementation of the **official** forward that reads the official keys directly
  (fused qkv, `blocks.N.norm1/2`, `aligner.layers.0/2`, `mid.0/1/2`, decoder `conv_blocks.0` = deepest, …; no HF
  modules, no key mapping) reproduces the tensors with max relative error
  {max(v for v in ch['independent_official_key_reimplementation_max_rel_err'].values() if not isinstance(v, bool)):.1e}
  and the same 16 generation tokens (recomputing the full sequence each step, no KV cache). This validates the
  official→HF key mapping used to load the oracle.
* HF `generate` (text) equals the script's own greedy loop: {ch['hf_text_generate_equals_own_greedy']}.
* HF `generate` (image, CFG 5, greedy) equals the official-semantics loop: {ch['hf_image_generate_equals_official_loop']}.
* The HF `JanusProcessor` (default system prompt on) builds the same `und_input_ids`: {ch['hf_processor_template_equals_official_ids']}.
  The fixture does not depend on it: ids and pixels were built by the script and fed to the model directly.
* HF image processors vs. the official preprocessing (`und_pixel_values` / `mi_pixel_values`):
{proc_line('JanusImageProcessorPil')}
{proc_line('JanusImageProcessor')}

  The HF processors compute the resized size with `round()` where the official code uses `int()` (truncation), and
  the torchvision-backed one resizes a tensor instead of calling PIL. **Use the official numbers in this fixture.**
* HF `postprocess` ((x·255+255)/2, truncation) vs. the official `(x+1)/2·255`: {ch['hf_postprocess_vs_official_u8']}.
* HF `vqmodel.encode` (no L2 normalisation) tokens {ch['hf_vq_encode_tokens_no_l2norm']} vs. official l2-normalised
  `vq_tokens`: equal = {ch['hf_vq_encode_equals_official_l2norm_tokens']}.

## Expected tolerances (float32 implementation)

* Gather-only / weight-only tensors (`und_inputs_embeds`, `mi_inputs_embeds` given the aligner output): exact or ~1e-6.
* `und_vision_out`, `und_aligner_out`, `und_last_hidden`, `und_logits`, `mi_logits_last`, step-0 generation logits,
  `vq_encoder_out`, decoded images: about 1e-4 relative (max |diff| / max |ref|).
* Token sequences: identical (see the margins above).
* `gen_image_u8`: ±1 per subpixel (truncation at integer boundaries).
* `und_pixel_values` from a Rust resizer: PIL bicubic is hard to match byte-exactly; test the model on the stored
  pixel values and the resizer separately with a tolerance (compare with `und_image_resized` / `mi_image2_resized`).
"""


if __name__ == "__main__":
    main()
