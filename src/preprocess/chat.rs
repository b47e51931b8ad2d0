//! The official `deepseek` SFT conversation template and `<image_placeholder>` expansion.

use crate::error::{Error, Result};

/// System prompt the official `VLChatProcessor` uses for understanding.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful language and vision assistant. You are able to understand the visual content that the user provides, and assist the user with a variety of tasks using natural language.";

const SEP: &str = "\n\n";
const SEP2: &str = "<｜end▁of▁sentence｜>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    /// Accepts `user`/`assistant` (any case) and the literal role strings of either template.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "user" | "<|user|>" => Ok(Role::User),
            "assistant" | "<|assistant|>" => Ok(Role::Assistant),
            _ => Err(Error::input(format!(
                "unknown role {s:?}: use \"user\" or \"assistant\""
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// Role strings of a checkpoint: `<|User|>`/`<|Assistant|>` (Janus-Pro) or `User`/`Assistant`
/// (Janus-1.3B, JanusFlow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    pub user: String,
    pub assistant: String,
}

impl ChatTemplate {
    pub fn janus_pro() -> Self {
        Self {
            user: "<|User|>".into(),
            assistant: "<|Assistant|>".into(),
        }
    }
    pub fn plain() -> Self {
        Self {
            user: "User".into(),
            assistant: "Assistant".into(),
        }
    }

    fn role(&self, role: Role) -> &str {
        match role {
            Role::User => &self.user,
            Role::Assistant => &self.assistant,
        }
    }

    /// `apply_sft_template_for_multi_turn_prompts` + `Conversation.get_prompt` (DeepSeek style):
    /// `system\n\n` (if any), then per message `role: content` followed by `\n\n` or
    /// `<｜end▁of▁sentence｜>` by the message's parity, or `role:` for an empty message;
    /// contents and the whole prompt are stripped.
    pub fn render(&self, system_prompt: &str, messages: &[Message]) -> String {
        let mut out = String::new();
        if !system_prompt.is_empty() {
            out.push_str(system_prompt);
            out.push_str(SEP);
        }
        for (i, m) in messages.iter().enumerate() {
            let content = m.content.trim();
            out.push_str(self.role(m.role));
            if content.is_empty() {
                out.push(':');
            } else {
                out.push_str(": ");
                out.push_str(content);
                out.push_str(if i % 2 == 0 { SEP } else { SEP2 });
            }
        }
        out.trim().to_string()
    }

    /// The body of a generation prompt the caller already rendered with this template, as the
    /// official text-to-image code does (`sft_format + image_start_tag`): `prompt` without a
    /// trailing `tag` when, after that, it has a user turn and ends with the empty assistant
    /// turn (`...{assistant}:`). `None` for a plain description, which still needs the template.
    pub fn pre_rendered_generation_prompt<'a>(
        &self,
        prompt: &'a str,
        tag: &str,
    ) -> Option<&'a str> {
        let trimmed = prompt.trim_end();
        let body = trimmed.strip_suffix(tag).unwrap_or(trimmed);
        let text = body.trim();
        let user = format!("{}:", self.user);
        let assistant = format!("{}:", self.assistant);
        (text.contains(&user) && text.ends_with(&assistant)).then_some(body)
    }

    /// A prompt that asks the assistant to answer `messages`: an empty assistant turn is
    /// appended unless the conversation already ends with one.
    pub fn render_for_reply(&self, system_prompt: &str, messages: &[Message]) -> String {
        let mut msgs = messages.to_vec();
        if !matches!(msgs.last(), Some(Message { role: Role::Assistant, content }) if content.trim().is_empty())
        {
            msgs.push(Message {
                role: Role::Assistant,
                content: String::new(),
            });
        }
        self.render(system_prompt, &msgs)
    }
}

/// Replace every `image` id by `[begin, image × n, end]` (official `add_image_token` with
/// `add_special_token=False`). Returns the new ids and the number of images found.
pub fn expand_image_tokens(
    ids: &[u32],
    image: u32,
    begin: u32,
    end: u32,
    n: usize,
) -> (Vec<u32>, usize) {
    let count = ids.iter().filter(|&&t| t == image).count();
    let mut out = Vec::with_capacity(ids.len() + count * (n + 1));
    for &t in ids {
        if t == image {
            out.push(begin);
            out.extend(std::iter::repeat_n(image, n));
            out.push(end);
        } else {
            out.push(t);
        }
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn understanding_prompt_matches_official() {
        let t = ChatTemplate::janus_pro();
        let p = t.render_for_reply(
            DEFAULT_SYSTEM_PROMPT,
            &[msg(Role::User, "<image_placeholder>\nWhat is this?")],
        );
        assert_eq!(
            p,
            format!("{DEFAULT_SYSTEM_PROMPT}\n\n<|User|>: <image_placeholder>\nWhat is this?\n\n<|Assistant|>:")
        );
    }

    #[test]
    fn multi_turn_uses_eos_after_assistant() {
        let t = ChatTemplate::plain();
        let p = t.render_for_reply(
            "",
            &[
                msg(Role::User, " hi "),
                msg(Role::Assistant, "hello"),
                msg(Role::User, "again"),
            ],
        );
        assert_eq!(
            p,
            "User: hi\n\nAssistant: hello<｜end▁of▁sentence｜>User: again\n\nAssistant:"
        );
    }

    #[test]
    fn generation_prompt_has_no_system() {
        let t = ChatTemplate::janus_pro();
        assert_eq!(
            t.render_for_reply("", &[msg(Role::User, "a red cat")]),
            "<|User|>: a red cat\n\n<|Assistant|>:"
        );
    }

    #[test]
    fn pre_rendered_generation_prompts_are_recognised() {
        let t = ChatTemplate::janus_pro();
        let sft = t.render_for_reply("", &[msg(Role::User, "a red cat")]);
        let tag = "<begin_of_image>";
        assert_eq!(
            t.pre_rendered_generation_prompt(&format!("{sft}{tag}"), tag),
            Some(sft.as_str())
        );
        assert_eq!(
            t.pre_rendered_generation_prompt(&sft, tag),
            Some(sft.as_str())
        );
        for plain in [
            "a red cat",
            "a sign reading <|Assistant|>:",
            "<|User|>: a red cat",
        ] {
            assert_eq!(
                t.pre_rendered_generation_prompt(plain, tag),
                None,
                "{plain}"
            );
        }
        let flow = ChatTemplate::plain();
        let sft = flow.render_for_reply("", &[msg(Role::User, "a red cat")]);
        assert_eq!(
            flow.pre_rendered_generation_prompt(&format!("{sft}<gen>"), "<gen>"),
            Some(sft.as_str())
        );
    }

    #[test]
    fn image_tokens_expand() {
        let (ids, n) = expand_image_tokens(&[1, 9, 2, 9], 9, 7, 8, 3);
        assert_eq!(n, 2);
        assert_eq!(ids, vec![1, 7, 9, 9, 9, 8, 2, 7, 9, 9, 9, 8]);
    }
}
