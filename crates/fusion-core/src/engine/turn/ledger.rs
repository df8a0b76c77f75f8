//! The turn's ledger: one record per model call (status, latency, usage) and
//! the one cost rule every total uses.

use super::super::call::{self, CallResult, Failure, FailureClass};
use crate::config::Config;
use crate::wire::neutral::{Price, Reply, Usage};
use crate::wire::Api;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum CallStatus {
    Pending,
    Ok(String),
    Failed(Failure),
    /// The run went on without this member (quorum); its usage still counts.
    Late,
}

impl CallStatus {
    /// Why the call gave no usable answer, as a bounded class.
    pub(super) fn failure_class(&self) -> Option<FailureClass> {
        match self {
            CallStatus::Failed(f) => Some(f.class()),
            CallStatus::Late => Some(FailureClass::Late),
            CallStatus::Ok(_) | CallStatus::Pending => None,
        }
    }

    /// The documented `failure_reason`; a pending call reads as late (the run
    /// stopped waiting for it).
    pub(super) fn failure_reason(&self) -> Option<String> {
        match self {
            CallStatus::Failed(f) => Some(f.reason()),
            CallStatus::Late | CallStatus::Pending => Some(FailureClass::Late.name().to_string()),
            CallStatus::Ok(_) => None,
        }
    }
}

/// One model call of the turn, for the `fusion` report and usage.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CallRecord {
    pub(super) model: String,
    pub(super) status: CallStatus,
    pub(super) started_ms: u64,
    pub(super) latency_ms: u64,
    pub(super) usage: Usage,
    /// Optional parameters the provider refused; the call was sent again without them.
    pub(super) retried_without: Vec<String>,
    /// Parameters brought into the range of the model's API (e.g. a Chat
    /// client's `temperature: 1.5` sent to a Messages upstream as 1).
    pub(super) clamped: Vec<call::Clamped>,
}

impl CallRecord {
    pub(super) fn new(model: &str, now_ms: u64) -> CallRecord {
        CallRecord {
            model: model.to_string(),
            status: CallStatus::Pending,
            started_ms: now_ms,
            latency_ms: 0,
            usage: Usage::default(),
            retried_without: Vec::new(),
            clamped: Vec::new(),
        }
    }

    /// Records a call's outcome; returns the parsed reply when it is usable.
    /// `api`: the API the model's upstream speaks, `None` when no upstream serves it.
    pub(super) fn settle(
        &mut self,
        api: Option<Api>,
        result: &CallResult,
        now_ms: u64,
    ) -> Result<Reply, Failure> {
        let outcome = match api {
            Some(api) => call::classify(api, result),
            // A model no upstream serves was never dispatched; should an answer
            // arrive anyway, it cannot be read in any API.
            None => Err(Failure::Unreachable),
        };
        self.latency_ms = now_ms.saturating_sub(self.started_ms);
        self.usage = match (&outcome, api) {
            (Ok(reply), _) => reply.usage,
            (Err(_), Some(api)) => call::failed_usage(api, result),
            (Err(_), None) => Usage::default(),
        };
        if self.status != CallStatus::Late {
            self.status = match &outcome {
                // A refusal is the model's answer, marked as one (for the judge).
                Ok(reply) => CallStatus::Ok(reply.answer_text()),
                Err(f) => CallStatus::Failed(*f),
            };
        }
        outcome
    }

    /// The call's cost under the one rule, see [`call_cost`].
    pub(super) fn cost(&self, config: &Config) -> Option<f64> {
        call_cost(config, &self.model, &self.usage)
    }

    pub(super) fn report(&self, config: &Config) -> Value {
        let mut v = json!({
            "model": self.model,
            "status": match self.status {
                CallStatus::Pending => "pending",
                CallStatus::Ok(_) => "ok",
                CallStatus::Failed(_) => "failed",
                CallStatus::Late => FailureClass::Late.name(),
            },
            "latency_ms": self.latency_ms,
            "cost": self.cost(config),
        });
        if let Some(obj) = v.as_object_mut() {
            // Inserted as built: `json!` would copy the tree through serde.
            obj.insert("usage".into(), self.usage.report_json());
        }
        let reason = match &self.status {
            CallStatus::Pending => None,
            other => other.failure_reason(),
        };
        if let (Some(reason), Some(obj)) = (reason, v.as_object_mut()) {
            obj.insert("failure_reason".into(), json!(reason));
        }
        if let (false, Some(obj)) = (self.retried_without.is_empty(), v.as_object_mut()) {
            obj.insert("retried_without".into(), json!(self.retried_without));
        }
        if let (false, Some(obj)) = (self.clamped.is_empty(), v.as_object_mut()) {
            let clamped: Vec<Value> = self
                .clamped
                .iter()
                .map(|c| json!({"param": c.param, "asked": c.asked, "sent": c.sent}))
                .collect();
            obj.insert("clamped".into(), Value::Array(clamped));
        }
        v
    }
}

/// The one cost rule: a call that used no tokens costs 0 (even without a
/// price); otherwise its model's price applied to its usage, or `None` when
/// the model has no price (an unknown price is never shown as 0).
pub fn call_cost(config: &Config, model: &str, usage: &Usage) -> Option<f64> {
    Price::call_cost(config.price(model), usage)
}

/// Every call of the turn and the usage they add up to.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    pub(super) panel: Vec<CallRecord>,
    pub(super) judge: Option<CallRecord>,
    /// Outer rounds, the final answer's included.
    pub(super) outer: Vec<CallRecord>,
    pub(super) usage: Usage,
}

impl Ledger {
    pub(super) fn calls(&self) -> impl Iterator<Item = &CallRecord> {
        self.panel
            .iter()
            .chain(self.judge.iter())
            .chain(self.outer.iter())
    }

    /// The run's cost: the sum over its calls, `None` when one is unpriced.
    pub(super) fn cost(&self, config: &Config) -> Option<f64> {
        let sum: Option<f64> = self.calls().map(|r| r.cost(config)).sum();
        // Rounded as each call's cost is (an empty float sum is -0.0, which this makes 0).
        sum.map(crate::wire::neutral::round_cost)
    }

    /// Models whose calls used tokens and have no price.
    pub(super) fn unpriced(&self, config: &Config) -> Vec<String> {
        let mut models = Vec::new();
        for r in self.calls().filter(|r| r.cost(config).is_none()) {
            crate::vec_map::insert_sorted(&mut models, r.model.clone());
        }
        models
    }

    /// Counts a settled call's usage toward the run's.
    pub(super) fn count(&mut self, usage: Usage) {
        self.usage.add(usage);
    }

    /// Members by outcome: (ok, failed, late or pending).
    pub(super) fn panel_counts(&self) -> (usize, usize, usize) {
        let count = |f: fn(&CallStatus) -> bool| self.panel.iter().filter(|r| f(&r.status)).count();
        (
            count(|s| matches!(s, CallStatus::Ok(_))),
            count(|s| matches!(s, CallStatus::Failed(_))),
            count(|s| matches!(s, CallStatus::Late | CallStatus::Pending)),
        )
    }

    /// The panel's usable answers, in panel order.
    pub(super) fn usable_answers(&self) -> Vec<String> {
        self.panel
            .iter()
            .filter_map(|r| match &r.status {
                CallStatus::Ok(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }
}
