//! Stored provider state a Responses request refers to: `previous_response_id`,
//! `conversation` and `item_reference` input items. They are never silently
//! ignored: forwarded where the provider that holds the state is the one called,
//! refused elsewhere with a 400 that says how to send the history instead.

use super::{Api, ApiError};
use serde_json::Value;

/// What a request refers to of the provider's stored state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatefulRefs {
    pub previous_response_id: Option<String>,
    /// The Conversations API's `conversation` (an id or `{"id": ...}`).
    pub conversation: Option<String>,
    /// Ids of `{"type": "item_reference"}` input items, in order.
    pub item_references: Vec<String>,
}

impl StatefulRefs {
    pub fn is_empty(&self) -> bool {
        self.previous_response_id.is_none()
            && self.conversation.is_none()
            && self.item_references.is_empty()
    }

    /// The request field that refers to stored state first, for the error's `param`.
    fn field(&self) -> &'static str {
        if self.previous_response_id.is_some() {
            "previous_response_id"
        } else if self.conversation.is_some() {
            "conversation"
        } else {
            "input"
        }
    }
}

/// The stored-state references of a client request (only Responses has them).
pub fn stateful_refs(api: Api, body: &Value) -> StatefulRefs {
    if api != Api::Responses {
        return StatefulRefs::default();
    }
    let conversation = match body.get("conversation") {
        Some(Value::String(id)) => Some(id.clone()),
        Some(v) => v.get("id").and_then(Value::as_str).map(str::to_string),
        None => None,
    };
    StatefulRefs {
        previous_response_id: body
            .get("previous_response_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        conversation,
        item_references: body
            .get("input")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("item_reference"))
            .map(|i| {
                i.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            })
            .collect(),
    }
}

/// Whether a call may carry the client's stored-state references: only to a
/// Responses provider that holds the state (`holds_state`: the call goes up
/// the client's own route/upstream), as a patch of the client's body.
/// Otherwise a 400 in the client's API naming the model.
pub fn check_stateful(
    refs: &StatefulRefs,
    provider_api: Api,
    holds_state: bool,
    model: &str,
) -> Result<(), ApiError> {
    if refs.is_empty() || (provider_api == Api::Responses && holds_state) {
        return Ok(());
    }
    let what = match (&refs.previous_response_id, &refs.conversation) {
        (Some(id), _) => format!("`previous_response_id` `{id}`"),
        (None, Some(id)) => format!("`conversation` `{id}`"),
        (None, None) => format!(
            "`item_reference` input items ({})",
            crate::text::join(&refs.item_references, ", ")
        ),
    };
    Err(ApiError::invalid(
        format!(
            "{what} refer to responses stored at the client's provider, which model `{model}` \
             (called by fusion) cannot read: send the whole conversation in `input` \
             instead, with `store: false`"
        ),
        Some(refs.field()),
    ))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_kind_of_reference() {
        let body = json!({
            "previous_response_id": "resp_1",
            "conversation": {"id": "conv_1"},
            "input": [{"type": "item_reference", "id": "msg_1"}, {"role": "user", "content": "hi"},
                      {"type": "item_reference", "id": "fc_2"}]
        });
        let refs = stateful_refs(Api::Responses, &body);
        assert_eq!(refs.previous_response_id.as_deref(), Some("resp_1"));
        assert_eq!(refs.conversation.as_deref(), Some("conv_1"));
        assert_eq!(refs.item_references, ["msg_1", "fc_2"]);
        assert!(stateful_refs(Api::Chat, &body).is_empty());
        assert!(stateful_refs(Api::Responses, &json!({"input": "hi"})).is_empty());
    }

    #[test]
    fn forwarded_only_to_the_provider_holding_the_state() {
        let refs = stateful_refs(
            Api::Responses,
            &json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
        );
        assert_eq!(check_stateful(&refs, Api::Responses, true, "m"), Ok(()));
        let err = check_stateful(&refs, Api::Responses, false, "other").unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.param.as_deref(), Some("input"));
        assert!(err.message.contains("`item_reference` input items (msg_1)"));
        assert!(err.message.contains("`other`"));
        assert!(err.message.contains("store: false"));
        let prev = stateful_refs(Api::Responses, &json!({"previous_response_id": "resp_9"}));
        let err = check_stateful(&prev, Api::Messages, true, "claude").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("previous_response_id"));
        assert!(err.message.contains("`resp_9`"));
        assert_eq!(
            check_stateful(&StatefulRefs::default(), Api::Chat, false, "m"),
            Ok(())
        );
    }
}
