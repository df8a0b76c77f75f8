//! Merge mode (`"model": "fusion"` with a `fusion` block): no judge and no tool
//! loop; the synthesis model reads the conversation and the panel's answers and
//! writes the one final answer.

use crate::wire::neutral::{Conversation, Message};

const INSTRUCTIONS: &str = "Several independent AI models answered the conversation below. \
Write the single best final answer to the user's last message yourself, as if you were answering directly: \
keep what the answers agree on, resolve contradictions toward the best-supported claim, \
keep valuable points that only one answer makes, and drop what is wrong. \
Do not mention the other models, the answers or this process.";

/// The client's conversation, with the panel's answers (numbered, no model
/// names) and the merge instructions after the last message.
pub fn synthesis_conversation(conversation: &Conversation, answers: &[&str]) -> Conversation {
    let mut text = format!("{INSTRUCTIONS}\n\n## Answers\n");
    for (i, a) in answers.iter().enumerate() {
        text.push_str(&format!("\n### Answer {}\n\n{}\n", i + 1, a));
    }
    let mut out = conversation.clone();
    // Instructions go last: the client's system prompt stays the system prompt.
    out.messages.push(Message::user_text(text));
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn answers_follow_the_conversation_unnamed() {
        let c = Conversation {
            system: Some("be brief".into()),
            messages: vec![Message::user_text("Is tea healthy?")],
        };
        let s = synthesis_conversation(&c, &["yes", "mostly"]);
        assert_eq!(s.system.as_deref(), Some("be brief"));
        assert_eq!(s.messages.len(), 2);
        let Some(t) = s.messages[1].user_text_of() else {
            panic!("instructions are a user message")
        };
        assert!(t.contains("### Answer 1\n\nyes") && t.contains("### Answer 2\n\nmostly"));
        assert!(t.contains("resolve contradictions"));
    }
}
