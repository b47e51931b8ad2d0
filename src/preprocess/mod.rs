//! Preprocessing: images, the chat template and the tokenizer.
pub mod chat;
pub mod image;
pub mod resize;
pub mod tokenizer;

pub use chat::{ChatTemplate, Message, Role, DEFAULT_SYSTEM_PROMPT};
pub use image::{ImageProcessor, RgbImage};
pub use tokenizer::{JanusTokenizer, SpecialTokens};
