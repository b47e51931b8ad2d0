//! Parsing and validation of the original `config.json` layout.

use super::*;

fn pro_config(language: &str, vision_params: &str) -> String {
    format!(
        r#"{{"model_type": "multi_modality",
        "language_config": {language},
        "vision_config": {{"cls": "CLIPVisionTower", "params": {vision_params}}},
        "aligner_config": {{"cls": "MlpProjector", "params": {{"depth": 2, "input_dim": 1024, "n_embed": 4096, "projector_type": "mlp_gelu"}}}},
        "gen_vision_config": {{"cls": "VQ-16", "params": {{"image_token_size": 16384, "n_embed": 8}}}},
        "gen_aligner_config": {{"cls": "MlpProjector", "params": {{"depth": 2, "input_dim": 8, "n_embed": 4096, "projector_type": "mlp_gelu"}}}},
        "gen_head_config": {{"cls": "vision_head", "params": {{"image_token_embed": 4096, "image_token_size": 16384, "n_embed": 4096}}}}}}"#
    )
}

#[test]
fn janus_pro_7b_config_takes_llama_defaults_and_presets() {
    // The real Janus-Pro-7B language_config, verbatim.
    let language = r#"{"max_position_embeddings": 16384, "model_type": "llama", "num_hidden_layers": 30, "torch_dtype": "bfloat16", "vocab_size": 102400}"#;
    let vision = r#"{"image_size": 384, "model_name": "siglip_large_patch16_384", "select_feature": "same", "select_layer": -1}"#;
    let cfg =
        JanusConfig::from_json(&pro_config(language, vision), Path::new("config.json")).unwrap();
    let l = &cfg.language;
    assert_eq!(
        (
            l.hidden_size,
            l.intermediate_size,
            l.num_attention_heads,
            l.num_kv_heads()
        ),
        (4096, 11008, 32, 32)
    );
    assert_eq!(
        (l.num_hidden_layers, l.vocab_size, l.max_position_embeddings),
        (30, 102400, 16384)
    );
    assert_eq!(
        (l.rms_norm_eps, l.rope_theta, l.tie_word_embeddings),
        (1e-6, 10000.0, false)
    );
    let v = &cfg.vision;
    assert_eq!(
        (
            v.width,
            v.layers,
            v.heads,
            v.mlp_dim,
            v.patch_size,
            v.num_patches()
        ),
        (1024, 24, 16, 4096, 16, 576)
    );
    let q = &cfg.gen_vision;
    assert_eq!(
        (
            q.codebook_size,
            q.codebook_embed_dim,
            q.ch,
            q.z_channels,
            q.downsample()
        ),
        (16384, 8, 128, 256, 16)
    );
    assert_eq!(q.ch_mult, vec![1, 1, 2, 2, 4]);
}

#[test]
fn select_layer_truncates_the_tower() {
    let language = r#"{"num_hidden_layers": 1}"#;
    let vision =
        r#"{"image_size": 384, "model_name": "siglip_large_patch16_384", "select_layer": -2}"#;
    let cfg = JanusConfig::from_json(&pro_config(language, vision), Path::new("c")).unwrap();
    assert_eq!(cfg.vision.layers, 23);
}

#[test]
fn mismatched_aligner_is_a_config_error() {
    let vision = r#"{"image_size": 384, "model_name": "siglip_large_patch16_384"}"#;
    let err = JanusConfig::from_json(
        &pro_config(r#"{"hidden_size": 2048}"#, vision),
        Path::new("c"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert!(err.to_string().contains("LLM hidden size is 2048"), "{err}");
}
