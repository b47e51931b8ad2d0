//! `tokenizer.json` through the `tokenizers` crate, with the special tokens Janus needs
//! looked up by string (their ids differ between checkpoints, e.g. Pro-1B vs Pro-7B).

use std::path::Path;

use crate::error::{Error, Result};
use crate::loading::ProcessorConfig;

pub const BOS_TOKEN: &str = "<｜begin▁of▁sentence｜>";
pub const EOS_TOKEN: &str = "<｜end▁of▁sentence｜>";

/// Ids of the tokens the pipeline uses, resolved from the checkpoint's own tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: u32,
    pub eos: u32,
    /// `<｜▁pad▁｜>`; falls back to EOS when the tokenizer has no pad token.
    pub pad: u32,
    pub image: u32,
    pub begin_of_image: u32,
    pub end_of_image: u32,
}

impl SpecialTokens {
    /// The ids with their names (`bos`, `eos`, `pad`, `image`, `begin_of_image`, `end_of_image`).
    pub fn named(&self) -> [(&'static str, u32); 6] {
        [
            ("bos", self.bos),
            ("eos", self.eos),
            ("pad", self.pad),
            ("image", self.image),
            ("begin_of_image", self.begin_of_image),
            ("end_of_image", self.end_of_image),
        ]
    }
}

pub struct JanusTokenizer {
    inner: tokenizers::Tokenizer,
    pub special: SpecialTokens,
}

impl JanusTokenizer {
    pub fn from_file(path: &Path, proc: &ProcessorConfig) -> Result<Self> {
        Self::from_file_adding(path, proc, &[])
    }

    /// Like [`from_file`](Self::from_file), after adding each token of `add_if_missing` that the
    /// file lacks as a special token, in order, with the next free id: what the official
    /// `VLChatProcessor.__init__` does with `tokenizer.add_special_tokens` (JanusFlow's adds
    /// `<｜begin▁of▁generation｜>`, absent from the shipped tokenizer).
    pub fn from_file_adding(
        path: &Path,
        proc: &ProcessorConfig,
        add_if_missing: &[&str],
    ) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::not_found("tokenizer.json", path));
        }
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("cannot load {}: {e}", path.display())))?;
        for token in add_if_missing {
            if inner.token_to_id(token).is_none() {
                inner
                    .add_special_tokens([tokenizers::AddedToken::from(token.to_string(), true)])
                    .map_err(|e| Error::Tokenizer(format!("cannot add token {token:?}: {e}")))?;
            }
        }
        let need = |token: &str| {
            inner.token_to_id(token).ok_or_else(|| {
                Error::Tokenizer(format!(
                    "{} has no token {token:?}, which this model needs",
                    path.display()
                ))
            })
        };
        let eos = need(EOS_TOKEN)?;
        let special = SpecialTokens {
            bos: need(BOS_TOKEN)?,
            eos,
            pad: inner.token_to_id(&proc.pad_tag).unwrap_or(eos),
            image: need(&proc.image_tag)?,
            begin_of_image: need(&proc.image_start_tag)?,
            end_of_image: need(&proc.image_end_tag)?,
        };
        Ok(Self { inner, special })
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of ids the tokenizer can produce (base vocabulary plus added tokens).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text` with BOS at position 0 and nothing appended, as the official
    /// `LlamaTokenizerFast` (add_bos_token=True) gives. The file's own post-processor is not
    /// used, so a file with or without a BOS template gives the same ids.
    pub fn encode_with_bos(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = vec![self.special.bos];
        ids.extend(self.encode_plain(text)?);
        Ok(ids)
    }

    /// Token ids of `text` with no special tokens added.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(format!("cannot encode text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("cannot decode ids: {e}")))
    }
}
