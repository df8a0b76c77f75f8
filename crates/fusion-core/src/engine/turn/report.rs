//! What a turn tells the outside: the `fusion` object every response carries,
//! the debug headers, the run's log line and what its metrics count.

use super::super::call::FailureClass;
use super::ledger::{CallRecord, CallStatus};
use super::{Mode, Turn};
use serde_json::{json, Value};

/// How a run ended, as its metrics and log line name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Ok,
    /// A panel member or the judge gave no usable answer; the client got one anyway.
    Degraded,
    /// A budget ran out: the client got what the turn had.
    Truncated,
    Error,
    /// The client left before its answer was complete.
    ClientGone,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Degraded,
        Outcome::Truncated,
        Outcome::Error,
        Outcome::ClientGone,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Degraded => "degraded",
            Outcome::Truncated => "truncated",
            Outcome::Error => "error",
            Outcome::ClientGone => "client_gone",
        }
    }
}

/// The budget that cut a run short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Budget {
    /// `limits.max_rounds` outer rounds.
    Rounds,
    /// `limits.turn_timeout_ms`.
    Turn,
    /// `limits.max_upstream_calls` or `limits.max_upstream_bytes`.
    Upstream,
}

impl Budget {
    pub const ALL: [Budget; 3] = [Budget::Rounds, Budget::Turn, Budget::Upstream];

    pub fn name(self) -> &'static str {
        match self {
            Budget::Rounds => "rounds",
            Budget::Turn => "turn",
            Budget::Upstream => "upstream",
        }
    }
}

/// The run as access logs read it: Envoy filter state `wasm.fusion_<field>`
/// (e.g. `%FILTER_STATE(wasm.fusion_cost:PLAIN)%`).
#[derive(Debug, Clone, PartialEq)]
pub struct FilterState {
    pub run_id: String,
    pub mode: &'static str,
    pub outcome: &'static str,
    /// USD, or `null` when a model of the run has no price.
    pub cost: String,
    /// `ok=2,failed=1,late=0`.
    pub panel: String,
}

impl FilterState {
    /// (property name, value) pairs, in the order they are set.
    pub fn pairs(&self) -> [(&'static str, &str); 5] {
        [
            ("fusion_run_id", self.run_id.as_str()),
            ("fusion_mode", self.mode),
            ("fusion_outcome", self.outcome),
            ("fusion_cost", self.cost.as_str()),
            ("fusion_panel", self.panel.as_str()),
        ]
    }
}

/// What one run contributes to the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStats {
    pub mode: Mode,
    pub outcome: Outcome,
    pub panel_calls: usize,
    /// One failure class per member that gave no usable answer (late included).
    pub panel_failures: Vec<FailureClass>,
    pub judge_degraded: Option<FailureClass>,
    pub cap_hits: u32,
    /// Calls sent again without an optional parameter their provider refused.
    pub param_retries: u32,
    pub truncated_by: Option<Budget>,
    pub wall_ms: u64,
    pub panel_wait_ms: Option<u64>,
    pub cost: Option<f64>,
}

impl Turn {
    /// `x-fusion-run-id` and `x-fusion-panel` (member counts by outcome), for quick debugging.
    pub fn debug_headers(&self) -> Vec<(String, String)> {
        let (ok, failed, late) = self.ledger.panel_counts();
        vec![
            ("x-fusion-run-id".into(), self.run_id.clone()),
            (
                "x-fusion-panel".into(),
                format!("ok={ok}, failed={failed}, late={late}"),
            ),
        ]
    }

    /// The `fusion` object every response carries. `analysis` is whether the
    /// judge gave one, or (`x-fusion-include: analysis`) the analysis itself;
    /// `responses` (`x-fusion-include: responses`) is each usable member's answer.
    pub fn report(&self) -> Value {
        let config = &self.config;
        let ledger = &self.ledger;
        let include = self.info.include;
        let analysis = if include.analysis {
            self.analysis.clone().unwrap_or(Value::Null)
        } else {
            Value::Bool(self.analysis.is_some())
        };
        let outcome = self.stats(false).outcome;
        let mut report = json!({
            "run_id": self.run_id,
            "request_id": self.info.request_id,
            "mode": self.mode.name(),
            "outcome": outcome.name(),
            "truncated_by": self.truncated_by.map(Budget::name),
            "preset": self.plan.preset,
            "synthesizer": self.answering_model(),
            "rounds": self.rounds,
            "invocations": self.invocations,
            "wall_ms": self.wall_ms(),
            "panel_wait_ms": self.panel_wait_ms,
            "cost": ledger.cost(config),
            "unpriced_models": ledger.unpriced(config),
        });
        // The trees go in as built (`json!` would copy each through serde).
        let records = |records: &[CallRecord]| {
            Value::Array(records.iter().map(|r| r.report(config)).collect())
        };
        if let Some(obj) = report.as_object_mut() {
            obj.insert("panel".into(), records(&ledger.panel));
            let judge = ledger.judge.as_ref().map(|r| r.report(config));
            obj.insert("judge".into(), judge.unwrap_or_default());
            obj.insert("analysis".into(), analysis);
            obj.insert("final".into(), records(&ledger.outer));
            obj.insert("usage".into(), ledger.usage.report_json());
            if include.responses {
                obj.insert("responses".into(), Value::Array(self.responses()));
            }
        }
        report
    }

    /// Each panel member that gave a usable answer: its model and text.
    fn responses(&self) -> Vec<Value> {
        self.ledger
            .panel
            .iter()
            .filter_map(|r| match &r.status {
                CallStatus::Ok(text) => Some(json!({"model": r.model, "text": text})),
                _ => None,
            })
            .collect()
    }

    /// What the filter publishes as filter state for access logs.
    pub fn filter_state(&self, stream_over: bool) -> FilterState {
        let stats = self.stats(stream_over);
        let (ok, failed, late) = self.ledger.panel_counts();
        FilterState {
            run_id: self.run_id.clone(),
            mode: self.mode.name(),
            outcome: stats.outcome.name(),
            cost: stats
                .cost
                .map_or_else(|| "null".to_string(), crate::text::decimal),
            panel: format!("ok={ok},failed={failed},late={late}"),
        }
    }

    fn wall_ms(&self) -> u64 {
        self.ended_ms
            .unwrap_or(self.clock_ms)
            .saturating_sub(self.started_ms)
    }

    /// The time is now at least `now_ms` (the host calls it before a report
    /// made outside an event, e.g. when the client left).
    pub fn observe_time(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
    }

    /// Whether the client left before its answer was complete: the turn had
    /// not answered, or the relayed answer's end never came.
    pub fn client_gone(&self) -> bool {
        self.ended_ms.is_none()
    }

    /// What the run's metrics count: outcome, failures, budgets, timings.
    /// `stream_over`: the host saw the stream end (`on_log`); a turn that had
    /// not answered by then lost its client.
    pub fn stats(&self, stream_over: bool) -> RunStats {
        let panel_failures: Vec<FailureClass> = self
            .ledger
            .panel
            .iter()
            .filter_map(|r| r.status.failure_class())
            .collect();
        let judge_degraded = self
            .ledger
            .judge
            .as_ref()
            .and_then(|r| r.status.failure_class());
        let outcome = if stream_over && self.client_gone() {
            Outcome::ClientGone
        } else if self.error.is_some() {
            Outcome::Error
        } else if self.truncated_by.is_some() {
            Outcome::Truncated
        } else if !panel_failures.is_empty() || judge_degraded.is_some() {
            Outcome::Degraded
        } else {
            Outcome::Ok
        };
        RunStats {
            mode: self.mode,
            outcome,
            panel_calls: self.ledger.panel.len(),
            param_retries: self.param_retries,
            panel_failures,
            judge_degraded,
            cap_hits: self.cap_hits,
            truncated_by: self.truncated_by,
            wall_ms: self.wall_ms(),
            panel_wait_ms: self.panel_wait_ms,
            cost: self.ledger.cost(&self.config),
        }
    }

    /// The run's one structured log line: the whole chain, no user text unless
    /// the operator turned `log.include_text` on.
    pub fn log_line(&self, stream_over: bool) -> Value {
        self.log_line_of(self.report(), stream_over)
    }

    /// [`Self::log_line`], with the report the local reply carried when no
    /// event came since (the same tree, not built a second time).
    pub fn take_log_line(&mut self, stream_over: bool) -> Value {
        let report = self.answered_report.take();
        self.log_line_of(report.unwrap_or_else(|| self.report()), stream_over)
    }

    fn log_line_of(&self, mut line: Value, stream_over: bool) -> Value {
        let stats = self.stats(stream_over);
        if let Some(obj) = line.as_object_mut() {
            obj.insert("event".into(), json!("fusion_run"));
            obj.insert("api".into(), json!(self.api.name()));
            obj.insert("outcome".into(), json!(stats.outcome.name()));
            obj.insert(
                "truncated_by".into(),
                json!(self.truncated_by.map(Budget::name)),
            );
            obj.insert("cap_hits".into(), json!(self.cap_hits));
            obj.insert(
                "error".into(),
                self.error.as_ref().map_or(
                    Value::Null,
                    |(status, message)| json!({"status": status, "message": message}),
                ),
            );
            if self.config.log.include_text {
                obj.insert(
                    "prompt".into(),
                    json!(self.req.conversation.last_user_text()),
                );
                obj.insert("answer".into(), json!(self.answer_text));
            }
        }
        line
    }
}
