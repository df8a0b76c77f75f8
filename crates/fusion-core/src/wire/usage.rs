//! Usage objects in each API's spelling: read from a provider's answer into
//! the neutral [`Usage`], written back into a client's response, and
//! rewritten in place in a relayed provider stream.
//!
//! The neutral counts are inclusive: `input_tokens` holds cache reads and
//! cache writes, `output_tokens` holds reasoning tokens.

use super::Api;
use crate::wire::neutral::Usage;
use serde_json::{json, Map, Value};

/// A provider's `usage` object. Missing counts are 0; anything not an object is no usage.
pub fn read(api: Api, u: &Value) -> Usage {
    match api {
        Api::Chat => Usage {
            input_tokens: count(u, &["prompt_tokens"]),
            output_tokens: count(u, &["completion_tokens"]),
            cached_input_tokens: count(u, &["prompt_tokens_details", "cached_tokens"]),
            cache_write_tokens: count(u, &["prompt_tokens_details", "cache_write_tokens"]),
            reasoning_tokens: count(u, &["completion_tokens_details", "reasoning_tokens"]),
        },
        Api::Responses => Usage {
            input_tokens: count(u, &["input_tokens"]),
            output_tokens: count(u, &["output_tokens"]),
            cached_input_tokens: count(u, &["input_tokens_details", "cached_tokens"]),
            cache_write_tokens: count(u, &["input_tokens_details", "cache_write_tokens"]),
            reasoning_tokens: count(u, &["output_tokens_details", "reasoning_tokens"]),
        },
        // `input_tokens` counts only the uncached rest: cache reads and writes add to it.
        Api::Messages => {
            let cached = count(u, &["cache_read_input_tokens"]);
            let written = count(u, &["cache_creation_input_tokens"]);
            Usage {
                input_tokens: count(u, &["input_tokens"])
                    .saturating_add(cached)
                    .saturating_add(written),
                output_tokens: count(u, &["output_tokens"]),
                cached_input_tokens: cached,
                cache_write_tokens: written,
                reasoning_tokens: count(u, &["output_tokens_details", "thinking_tokens"]),
            }
        }
    }
}

/// The API's own `usage` object for a client response.
pub fn write(api: Api, u: &Usage) -> Value {
    match api {
        Api::Chat => {
            let mut prompt = json!({"cached_tokens": u.cached_input_tokens});
            // Chat's cache_write_tokens is optional and rare: only when there were writes.
            if u.cache_write_tokens > 0 {
                insert(
                    &mut prompt,
                    "cache_write_tokens",
                    json!(u.cache_write_tokens),
                );
            }
            let mut v = json!({
                "prompt_tokens": u.input_tokens,
                "completion_tokens": u.output_tokens,
                "total_tokens": u.total(),
                "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            });
            // Inserted as built: `json!` would copy it through serde.
            insert(&mut v, "prompt_tokens_details", prompt);
            v
        }
        Api::Responses => json!({
            "input_tokens": u.input_tokens,
            "input_tokens_details": {
                "cached_tokens": u.cached_input_tokens,
                "cache_write_tokens": u.cache_write_tokens,
            },
            "output_tokens": u.output_tokens,
            "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.total(),
        }),
        // `input_tokens` is the rest after cache reads and writes; thinking
        // tokens are broken out only when there were some.
        Api::Messages => {
            let mut v = json!({
                "input_tokens": u
                    .input_tokens
                    .saturating_sub(u.cached_input_tokens)
                    .saturating_sub(u.cache_write_tokens),
                "cache_creation_input_tokens": u.cache_write_tokens,
                "cache_read_input_tokens": u.cached_input_tokens,
                "output_tokens": u.output_tokens,
            });
            if u.reasoning_tokens > 0 {
                insert(
                    &mut v,
                    "output_tokens_details",
                    json!({"thinking_tokens": u.reasoning_tokens}),
                );
            }
            v
        }
    }
}

/// Rewrites a provider's `usage` object in place to say `u`. Chat's object is
/// replaced whole; the others keep fields this module does not count
/// (`server_tool_use`, `service_tier`, ...). Anything not an object is left alone.
pub fn rewrite(api: Api, obj: &mut Value, u: &Usage) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    let Value::Object(counts) = write(api, u) else {
        return;
    };
    if api == Api::Chat {
        *o = counts;
    } else {
        o.extend(counts);
    }
}

/// Messages stream usage is cumulative: each count an event carries replaces
/// the last one seen. Folds one event's `usage` into the running object `acc`;
/// [`read`] of `acc` is the call's usage so far.
pub fn fold_running(acc: &mut Map<String, Value>, u: &Value) {
    if let Some(o) = u.as_object() {
        for (k, v) in o.iter().filter(|(_, v)| v.is_u64() || v.is_object()) {
            acc.insert(k.clone(), v.clone());
        }
    }
}

fn insert(obj: &mut Value, key: &str, v: Value) {
    if let Some(o) = obj.as_object_mut() {
        o.insert(key.to_string(), v);
    }
}

/// The count at `path` inside `u`, or 0.
fn count(u: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(u, |v, key| v.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// 100 input of which 60 cache reads and 5 cache writes, 40 output of which 25 reasoning.
    fn detailed() -> Usage {
        Usage {
            input_tokens: 100,
            output_tokens: 40,
            cached_input_tokens: 60,
            cache_write_tokens: 5,
            reasoning_tokens: 25,
        }
    }

    #[test]
    fn chat_both_ways() {
        let wire = json!({
            "prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
            "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 5, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 25, "audio_tokens": 0},
        });
        assert_eq!(read(Api::Chat, &wire), detailed());
        assert_eq!(
            write(Api::Chat, &detailed()),
            json!({
                "prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
                "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 5},
                "completion_tokens_details": {"reasoning_tokens": 25},
            })
        );
        assert_eq!(read(Api::Chat, &write(Api::Chat, &detailed())), detailed());
        assert_eq!(
            write(Api::Chat, &plain()),
            json!({
                "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            }),
            "cache writes only when there were some"
        );
    }

    #[test]
    fn responses_both_ways() {
        let wire = json!({
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 5},
            "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 25},
            "total_tokens": 140,
        });
        assert_eq!(read(Api::Responses, &wire), detailed());
        assert_eq!(write(Api::Responses, &detailed()), wire);
    }

    fn plain() -> Usage {
        Usage {
            input_tokens: 7,
            output_tokens: 3,
            ..Usage::default()
        }
    }

    #[test]
    fn messages_both_ways() {
        // Anthropic's input_tokens is the rest: 35 + 60 read + 5 written = 100.
        let wire = json!({
            "input_tokens": 35, "cache_read_input_tokens": 60,
            "cache_creation_input_tokens": 5, "output_tokens": 40,
            "output_tokens_details": {"thinking_tokens": 25},
        });
        assert_eq!(read(Api::Messages, &wire), detailed());
        assert_eq!(write(Api::Messages, &detailed()), wire);
        assert_eq!(
            write(Api::Messages, &plain()),
            json!({"input_tokens": 7, "cache_creation_input_tokens": 0,
                   "cache_read_input_tokens": 0, "output_tokens": 3}),
            "no thinking details without reasoning"
        );
        // No reasoning split reported: none counted.
        let old = json!({"input_tokens": 7, "output_tokens": 3});
        assert_eq!(read(Api::Messages, &old), plain());
    }

    #[test]
    fn missing_and_odd_values_count_zero() {
        for api in [Api::Chat, Api::Responses, Api::Messages] {
            assert_eq!(read(api, &Value::Null), Usage::default());
            assert_eq!(read(api, &json!("x")), Usage::default());
        }
        let odd = json!({"prompt_tokens": -1, "completion_tokens": "3",
                         "prompt_tokens_details": null, "completion_tokens_details": 4});
        assert_eq!(read(Api::Chat, &odd), Usage::default());
        let huge = json!({"input_tokens": u64::MAX, "cache_read_input_tokens": 9});
        assert_eq!(read(Api::Messages, &huge).input_tokens, u64::MAX);
        let inconsistent = Usage {
            input_tokens: 1,
            cached_input_tokens: 5,
            ..Usage::default()
        };
        assert_eq!(write(Api::Messages, &inconsistent)["input_tokens"], 0);
    }

    #[test]
    fn rewrite_in_place() {
        let mut chat = json!({"prompt_tokens": 1, "completion_tokens": 1, "cost": 0.5});
        rewrite(Api::Chat, &mut chat, &detailed());
        assert_eq!(
            chat,
            write(Api::Chat, &detailed()),
            "Chat's usage replaced whole"
        );

        let mut resp = json!({"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
                              "input_tokens_details": {"cached_tokens": 1, "cache_write_tokens": 3}});
        rewrite(Api::Responses, &mut resp, &detailed());
        assert_eq!(resp, write(Api::Responses, &detailed()));

        let mut msg = json!({"input_tokens": 1, "cache_creation_input_tokens": 9,
                             "output_tokens": 1, "service_tier": "standard"});
        rewrite(Api::Messages, &mut msg, &detailed());
        assert_eq!(msg["service_tier"], "standard");
        assert_eq!(read(Api::Messages, &msg), detailed());

        let mut null = Value::Null;
        rewrite(Api::Chat, &mut null, &detailed());
        assert_eq!(null, Value::Null);
    }

    #[test]
    fn running_counts_replace_earlier_ones() {
        let mut acc = Map::new();
        fold_running(
            &mut acc,
            &json!({"input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 1}),
        );
        fold_running(
            &mut acc,
            &json!({"output_tokens": 40, "input_tokens": null,
                    "cache_read_input_tokens": "x", "cache_creation_input_tokens": 7}),
        );
        fold_running(&mut acc, &json!("not usage"));
        assert_eq!(
            read(Api::Messages, &Value::Object(acc)),
            Usage {
                input_tokens: 112,
                output_tokens: 40,
                cached_input_tokens: 100,
                cache_write_tokens: 7,
                reasoning_tokens: 0,
            }
        );
    }
}
