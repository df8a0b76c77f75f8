//! Conversations rendered as text for models that get text only (the judge):
//! every part they cannot see is named, so they know a member saw it.

use super::neutral::{Conversation, Message, Part};
use super::Api;

/// A user turn as text: its text parts, and a marker for each other part.
pub fn user_turn_for_judge(parts: &[Part]) -> String {
    let pieces: Vec<String> = parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.clone(),
            Part::Image { .. } => "[image omitted: the panel saw an image]".to_string(),
            Part::File { filename, .. } => match filename {
                Some(name) => format!("[file omitted: the panel saw the file `{name}`]"),
                None => "[file omitted: the panel saw a file]".to_string(),
            },
            Part::Audio { .. } => "[audio omitted: the panel heard an audio clip]".to_string(),
        })
        .collect();
    crate::text::join(&pieces, "\n")
}

/// Whether any user turn holds a part that is not text.
pub fn has_non_text(conversation: &Conversation) -> bool {
    conversation.messages.iter().any(|m| match m {
        Message::User(parts) => parts.iter().any(|p| !matches!(p, Part::Text(_))),
        _ => false,
    })
}

/// Which of the members (model, API it is called with) saw the conversation's
/// non-text parts: those whose API takes every one of them. The judge is told
/// so next to the answers.
pub fn members_seeing_non_text<'a>(
    conversation: &Conversation,
    members: &[(&'a str, Api)],
) -> Vec<&'a str> {
    if !has_non_text(conversation) {
        return Vec::new();
    }
    members
        .iter()
        .filter(|(_, api)| super::unsupported_part(*api, conversation).is_none())
        .map(|(model, _)| *model)
        .collect()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::wire::neutral::Source;

    #[test]
    fn non_text_parts_are_named_for_the_judge() {
        let parts = vec![
            Part::Text("What is in this image?".into()),
            Part::Image {
                source: Source::Url("https://x/y.png".into()),
                detail: None,
            },
            Part::File {
                source: Source::Url("https://x/a.pdf".into()),
                filename: Some("a.pdf".into()),
            },
        ];
        assert_eq!(
            user_turn_for_judge(&parts),
            "What is in this image?\n[image omitted: the panel saw an image]\n[file omitted: the panel saw the file `a.pdf`]"
        );
        let conv = Conversation {
            system: None,
            messages: vec![Message::User(vec![
                Part::Text("listen".into()),
                Part::Audio {
                    data: "UklGR".into(),
                    format: "wav".into(),
                },
            ])],
        };
        assert!(has_non_text(&conv));
        assert_eq!(
            members_seeing_non_text(&conv, &[("gpt", Api::Chat), ("claude", Api::Messages)]),
            ["gpt"]
        );
        let text_only = Conversation {
            system: None,
            messages: vec![Message::user_text("hi")],
        };
        assert!(members_seeing_non_text(&text_only, &[("gpt", Api::Chat)]).is_empty());
    }
}
