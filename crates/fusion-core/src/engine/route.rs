//! Per-route policy: what the operator's route (or virtual host) metadata
//! says about fusion, under `filter_metadata.fusion` (Envoy merges the
//! virtual host's and the route's into `xds.route_metadata`):
//! `disabled: true` turns fusion off on the route; `preset`, `panel` (model
//! names, comma-separated), `judge` and `synthesizer` replace the operator's
//! defaults there. Requests may still override within the limits, as they
//! do the defaults.

use crate::config::{Config, PanelMember, Preset};
use crate::wire::ApiError;
use std::rc::Rc;

/// The fusion keys of a route's metadata, as the host read them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoutePolicy {
    pub disabled: bool,
    pub preset: Option<String>,
    pub panel: Option<Vec<String>>,
    pub judge: Option<String>,
    pub synthesizer: Option<String>,
}

impl RoutePolicy {
    /// Builds the policy from each key's raw property value (`None`: absent).
    /// Envoy hands a string as its bytes and a bool as one byte.
    pub fn from_values(mut value: impl FnMut(&str) -> Option<Vec<u8>>) -> RoutePolicy {
        let mut text = |key: &str| {
            value(key)
                .and_then(|b| String::from_utf8(b).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let disabled = matches!(text("disabled").as_deref(), Some("true" | "\u{1}"));
        RoutePolicy {
            disabled,
            preset: text("preset"),
            panel: text("panel").map(|p| {
                p.split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect()
            }),
            judge: text("judge"),
            synthesizer: text("synthesizer"),
        }
    }

    fn is_empty(&self) -> bool {
        self.preset.is_none()
            && self.panel.is_none()
            && self.judge.is_none()
            && self.synthesizer.is_none()
    }

    /// The configuration a run on this route uses: the operator's, with the
    /// route's choices as its defaults. A route naming an unknown preset or
    /// a model no upstream serves is the operator's error: a 500 naming it.
    pub fn apply(&self, config: &Rc<Config>) -> Result<Rc<Config>, ApiError> {
        if self.is_empty() {
            return Ok(Rc::clone(config));
        }
        let broken = |what: String| ApiError {
            status: 500,
            message: format!("this route's fusion policy (route metadata `fusion`) {what}"),
            param: None,
        };
        let mut defaults: Preset = match &self.preset {
            None => config.defaults.clone(),
            Some(name) => config
                .presets
                .get(name)
                .cloned()
                .ok_or_else(|| broken(format!("names the unknown preset `{name}`")))?,
        };
        let served = |model: &str| {
            if config.resolve(model).is_some() {
                Ok(model.to_string())
            } else {
                Err(broken(format!(
                    "names the model `{model}`, which no upstream serves"
                )))
            }
        };
        if let Some(panel) = &self.panel {
            if panel.is_empty() || panel.len() > config.limits.max_panel {
                return Err(broken(format!(
                    "has a panel of {} models; 1 to {} are allowed",
                    panel.len(),
                    config.limits.max_panel
                )));
            }
            defaults.panel = panel
                .iter()
                .map(|m| {
                    Ok(PanelMember {
                        model: served(m)?,
                        tools: Vec::new(),
                    })
                })
                .collect::<Result<_, ApiError>>()?;
        }
        if let Some(judge) = &self.judge {
            defaults.judge = served(judge)?;
        }
        if let Some(s) = &self.synthesizer {
            defaults.synthesizer = Some(served(s)?);
        }
        let mut routed = Config::clone(config);
        routed.defaults = defaults;
        Ok(Rc::new(routed))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn values(pairs: &[(&str, &[u8])]) -> RoutePolicy {
        RoutePolicy::from_values(|k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_vec())
        })
    }

    #[test]
    fn reads_strings_lists_and_both_bool_spellings() {
        let p = values(&[("panel", b"mock-a, mock-b"), ("judge", b"mock-judge")]);
        assert_eq!(p.panel, Some(vec!["mock-a".into(), "mock-b".into()]));
        assert_eq!(p.judge.as_deref(), Some("mock-judge"));
        assert!(!p.disabled);
        assert!(values(&[("disabled", &[1])]).disabled);
        assert!(values(&[("disabled", b"true")]).disabled);
        assert!(!values(&[("disabled", &[0])]).disabled);
    }

    #[test]
    fn the_route_panel_becomes_the_default_and_bad_models_are_named() {
        let config = Rc::new(Config::default_mock().unwrap());
        let p = values(&[("panel", b"mock-a")]);
        let routed = p.apply(&config).unwrap();
        assert_eq!(routed.defaults.panel.len(), 1);
        assert_eq!(routed.defaults.panel[0].model, "mock-a");
        // The mock default serves every model; the panel size is still bounded.
        let many = vec!["mock-a"; config.limits.max_panel + 1].join(",");
        let p = values(&[("panel", many.as_bytes())]);
        let err = p.apply(&config).unwrap_err();
        assert_eq!(err.status, 500);
        assert!(err.message.contains("1 to"));
        let p = values(&[("preset", b"missing")]);
        assert!(p.apply(&config).unwrap_err().message.contains("`missing`"));
        assert!(Rc::ptr_eq(
            &RoutePolicy::default().apply(&config).unwrap(),
            &config
        ));
    }
}
