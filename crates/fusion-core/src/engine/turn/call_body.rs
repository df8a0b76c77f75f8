//! A call's body before it is written: the client's own, patched (written by
//! splicing the client's bytes, `wire::splice`), or rebuilt from the neutral
//! model (serialized). Which writer applies is the variant, never a flag beside it.

use crate::engine::call::{self, Clamped};
use crate::wire::splice::{ClientBody, Patched};
use crate::wire::Api;
use serde_json::Value;

#[derive(Debug)]
pub(super) enum CallBody {
    Patched(Patched),
    Rebuilt(Value),
}

impl CallBody {
    /// Drops a parameter the operator says the model does not take
    /// (`models.<m>.unsupported_params`).
    pub(super) fn remove(&mut self, param: &str) {
        match self {
            CallBody::Patched(p) => p.remove(param),
            CallBody::Rebuilt(v) => {
                if let Some(obj) = v.as_object_mut() {
                    obj.remove(param);
                }
            }
        }
    }

    /// The edits every call gets, by callout or up the client's route: the
    /// parameters the operator says the model does not take removed, then the
    /// API's range applied ([`Self::clamp_to_api`]).
    pub(super) fn fit(&mut self, unsupported: &[String], api: Api) -> Vec<Clamped> {
        for p in unsupported {
            self.remove(p);
        }
        self.clamp_to_api(api)
    }

    /// The call's bytes: a patched body spliced into the client's own bytes, a
    /// rebuilt one serialized.
    pub(super) fn write(&self, client: &ClientBody) -> Vec<u8> {
        match self {
            CallBody::Patched(p) => client.write(p),
            CallBody::Rebuilt(v) => call::json_bytes(v),
        }
    }

    /// Each API's own range: a Chat client's temperature 1.5 reaches a Messages
    /// upstream as 1 ([`call::clamp_to_api`]).
    pub(super) fn clamp_to_api(&mut self, api: Api) -> Vec<Clamped> {
        match self {
            CallBody::Patched(p) => p.edit_numbers(|numbers| call::clamp_to_api(api, numbers)),
            CallBody::Rebuilt(v) => call::clamp_to_api(api, v),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::wire::patch::{self, CallRole, PatchSpec};
    use serde_json::json;

    /// A patched body's edits (an operator's `unsupported_params`, the API's
    /// range) give, through the splice writer, what they give on the whole tree.
    #[test]
    fn a_patched_bodys_edits_are_the_tree_edits() {
        let long = "Be brief, \"exact\" and kind. ".repeat(8);
        for api in [Api::Chat, Api::Responses, Api::Messages] {
            let key = if api == Api::Responses {
                "input"
            } else {
                "messages"
            };
            let value = json!({
                "model": "fusion", "system": long, "metadata": {"note": long},
                "seed": 7, "max_tokens": 100, "top_p": 0.9,
                key: [{"role": "user", "content": long}],
            });
            let text = serde_json::to_string_pretty(&value).unwrap();
            let client = ClientBody::new(api, text.as_bytes(), value.clone());
            assert!(client.is_spliced(), "{api:?}");
            let set = [("temperature", json!(1.5))];
            let spec = PatchSpec {
                role: CallRole::Panel,
                model: "m",
                stream: false,
                extra_tools: &[],
                set: &set,
                exchange: None,
            };
            let mut tree = patch::patch_request(api, &value, &spec).unwrap();
            let mut body = CallBody::Patched(client.patch(api, &spec).unwrap());
            for param in ["seed", "metadata", "absent"] {
                tree.as_object_mut().unwrap().remove(param);
                body.remove(param);
            }
            let clamped = call::clamp_to_api(api, &mut tree);
            assert_eq!(body.clamp_to_api(api), clamped, "{api:?}");
            let written: Value = serde_json::from_slice(&body.write(&client)).unwrap();
            assert_eq!(written, tree, "{api:?}");
            assert_eq!(
                written["temperature"],
                json!(if api == Api::Messages { 1.0 } else { 1.5 })
            );
            assert_eq!(written["max_tokens"], json!(100), "{api:?}");
            assert!(written.get("metadata").is_none() && written.get("seed").is_none());
        }
    }
}
