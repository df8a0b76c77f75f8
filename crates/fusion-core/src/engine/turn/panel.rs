//! The fusion call: the panel fan-out, the quorum's grace period, the judge,
//! and (merge mode) the synthesis conversation.

use super::ledger::{CallRecord, CallStatus};
use super::{Command, Convo, Mode, Phase, Role, Turn};
use crate::engine::call::{CallResult, Failure};
use crate::engine::fusion_tool::{self, MemberOutcome};
use crate::engine::slots::Slots;
use crate::engine::{judge, merge};
use crate::wire::neutral::{GenParams, Message, ToolCall};
use crate::wire::ApiError;
use serde_json::Value;

impl Turn {
    pub(super) fn start_fusion(&mut self, call: ToolCall, now_ms: u64) -> Vec<Command> {
        self.invocations += 1;
        self.fusion_call = Some(call);
        self.phase = Phase::Panel;
        self.tool_started_ms = now_ms;
        let members = self.plan.panel.clone();
        // Lent to the calls, not copied (a call writes it only when rebuilt).
        let conversation = std::mem::take(&mut self.req.conversation);
        // `"model": "fusion"` requests forward their own parameters to the panel;
        // a tool declaration's overrides apply in every mode.
        let base = match self.mode {
            Mode::Alias | Mode::Merge => GenParams {
                provider_tools: Vec::new(),
                ..self.req.params.clone()
            },
            Mode::Forced | Mode::Auto => GenParams::default(),
        };
        let shared = base.overlay(&self.plan.panel_params);
        let deadline = self.tool_deadline();
        let mut commands = Vec::with_capacity(members.len());
        for (i, member) in members.iter().enumerate() {
            self.ledger
                .panel
                .push(CallRecord::new(&member.model, now_ms));
            let params = GenParams {
                provider_tools: member.tools.clone(),
                ..shared.clone()
            };
            match self.dispatch(
                Role::Panel(i),
                &member.model,
                Convo::Of(&conversation),
                false,
                &params,
                deadline,
                now_ms,
            ) {
                Ok(c) => commands.push(c),
                Err(why) => {
                    if let Some(rec) = self.ledger.panel.get_mut(i) {
                        rec.status = CallStatus::Failed(why.failure());
                    }
                }
            }
        }
        self.req.conversation = conversation;
        if commands.is_empty() {
            return self.after_panel(now_ms);
        }
        commands
    }

    /// Settles panel member `i`'s call in the ledger; returns whether it gave a usable answer.
    fn settle_member(&mut self, i: usize, result: &CallResult, now_ms: u64) {
        let api = self.ledger.panel.get(i).and_then(|r| self.api_of(&r.model));
        if let Some(rec) = self.ledger.panel.get_mut(i) {
            let _ = rec.settle(api, result, now_ms);
            let usage = rec.usage;
            // The answer as recorded (not a copy of it made to look at it).
            if matches!(&rec.status, CallStatus::Ok(t) if t.trim().is_empty()) {
                rec.status = CallStatus::Failed(Failure::Empty);
            }
            self.ledger.count(usage);
        }
    }

    pub(super) fn on_panel_answer(
        &mut self,
        i: usize,
        result: &CallResult,
        now_ms: u64,
    ) -> Vec<Command> {
        if self.phase != Phase::Panel {
            self.on_late_answer(i, result, now_ms);
            return Vec::new();
        }
        self.settle_member(i, result, now_ms);
        if !self.pending.values().any(|r| matches!(r, Role::Panel(_))) {
            return self.after_panel(now_ms);
        }
        let quorum = self.plan.quorum;
        let usable = self
            .ledger
            .panel
            .iter()
            .filter(|r| matches!(r.status, CallStatus::Ok(_)))
            .count();
        if quorum.min_answers == 0 || usable < quorum.min_answers {
            return Vec::new();
        }
        if quorum.grace_ms == 0 {
            return self.after_panel(now_ms);
        }
        if self.grace_deadline_ms.is_some() {
            return Vec::new();
        }
        let deadline = (now_ms + quorum.grace_ms).min(self.tool_deadline());
        self.grace_deadline_ms = Some(deadline);
        vec![Command::WakeAt(deadline)]
    }

    /// A member the run stopped waiting for answered after all: count its usage.
    pub(super) fn on_late_answer(&mut self, i: usize, result: &CallResult, now_ms: u64) {
        let api = self.ledger.panel.get(i).and_then(|r| self.api_of(&r.model));
        if let Some(rec) = self.ledger.panel.get_mut(i) {
            let _ = rec.settle(api, result, now_ms);
            let usage = rec.usage;
            self.ledger.count(usage);
        }
    }

    /// Every member answered or failed, or the quorum and its grace period are
    /// done: judge the answers (merge mode: synthesize), or report the failure.
    pub(super) fn after_panel(&mut self, now_ms: u64) -> Vec<Command> {
        self.grace_deadline_ms = None;
        self.panel_wait_ms = Some(now_ms.saturating_sub(self.tool_started_ms));
        for rec in &mut self.ledger.panel {
            if rec.status == CallStatus::Pending {
                rec.status = CallStatus::Late;
                rec.latency_ms = now_ms.saturating_sub(rec.started_ms);
            }
        }
        if self.mode == Mode::Merge {
            return self.merge_round(now_ms);
        }
        // Borrowed, not copied: each answer is escaped once (`Slots`), and the
        // judge's prompt holds markers in their place until its body is written.
        let answers: Vec<(usize, &str)> = self
            .ledger
            .panel
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.status {
                CallStatus::Ok(t) => Some((i, t.as_str())),
                _ => None,
            })
            .collect();
        if answers.is_empty() {
            return self.finish_fusion(None, now_ms);
        }
        let texts: Vec<&str> = answers.iter().map(|(_, t)| *t).collect();
        let nonce = judge::nonce(&texts);
        let slots = Slots::new(format!("{}-{nonce}", self.run_id), answers.iter().copied());
        let markers: Vec<String> = answers.iter().map(|(i, _)| slots.marker(*i)).collect();
        let markers: Vec<&str> = markers.iter().map(String::as_str).collect();
        let conversation = judge::judge_conversation_with(&self.req.conversation, &nonce, &markers);
        self.slots = Some(slots);
        self.phase = Phase::Judge;
        let model = self.plan.judge.clone();
        let params = GenParams {
            temperature: Some(0.0),
            ..GenParams::default()
        };
        self.ledger.judge = Some(CallRecord::new(&model, now_ms));
        // A member that ran into the tool budget must not starve the judge: it
        // gets at least half the tool budget, within the turn's.
        let deadline = self
            .tool_deadline()
            .max(now_ms + self.config.limits.tool_timeout_ms / 2)
            .min(self.turn_deadline());
        match self.dispatch(
            Role::Judge,
            &model,
            Convo::Of(&conversation),
            false,
            &params,
            deadline,
            now_ms,
        ) {
            Ok(c) => vec![c],
            Err(why) => {
                if let Some(rec) = self.ledger.judge.as_mut() {
                    rec.status = CallStatus::Failed(why.failure());
                }
                self.finish_fusion(None, now_ms)
            }
        }
    }

    pub(super) fn on_judge_answer(&mut self, result: &CallResult, now_ms: u64) -> Vec<Command> {
        let api = self.api_of(&self.plan.judge);
        let mut analysis = None;
        if let Some(rec) = self.ledger.judge.as_mut() {
            let outcome = rec.settle(api, result, now_ms);
            let usage = rec.usage;
            analysis = outcome
                .as_ref()
                .ok()
                .and_then(|r| judge::parse_analysis(&r.text));
            if outcome.is_ok() && analysis.is_none() {
                rec.status = CallStatus::Failed(Failure::Unusable);
            }
            self.ledger.count(usage);
        }
        self.finish_fusion(analysis, now_ms)
    }

    /// The fusion call has its result: append it and run the next outer round.
    fn finish_fusion(&mut self, analysis: Option<Value>, now_ms: u64) -> Vec<Command> {
        self.analysis.clone_from(&analysis);
        // Answers the judge's prompt carried are escaped already: markers here too.
        let slots = self.slots.take().unwrap_or_default();
        let markers: Vec<Option<String>> = (0..self.ledger.panel.len())
            .map(|i| slots.has(i).then(|| slots.marker(i)))
            .collect();
        let outcomes: Vec<MemberOutcome<'_>> = self
            .ledger
            .panel
            .iter()
            .zip(&markers)
            .map(|(r, marker)| MemberOutcome {
                model: &r.model,
                answer: match (&r.status, marker) {
                    (CallStatus::Ok(_), Some(m)) => Ok(m.as_str()),
                    (CallStatus::Ok(t), None) => Ok(t.as_str()),
                    (other, _) => Err(other.failure_reason().unwrap_or_default()),
                },
            })
            .collect();
        let result = fusion_tool::tool_result(&outcomes, analysis.as_ref());
        let content = slots.fill(serde_json::to_vec(&result).unwrap_or_default());
        let content = String::from_utf8(content)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let Some(call) = self.fusion_call.take() else {
            return self.fail(ApiError::upstream(500, "fusion finished without a call"));
        };
        self.fusion_call_id = Some(call.id.clone());
        let capped = std::mem::take(&mut self.capped_with_call);
        self.cap_hits += capped.len() as u32;
        let mut tool_calls = vec![call.clone()];
        tool_calls.extend(capped.iter().cloned());
        self.history.push(Message::Assistant {
            text: std::mem::take(&mut self.last_text),
            tool_calls,
        });
        self.history.push(Message::ToolResult {
            call_id: call.id,
            content,
        });
        for c in capped {
            self.history.push(Message::ToolResult {
                call_id: c.id,
                content: crate::text::json(&fusion_tool::capped_result()),
            });
        }
        self.outer_round(now_ms)
    }

    /// Merge mode: the synthesis model writes the answer from the surviving
    /// answers; with none, the request fails naming each member's failure.
    fn merge_round(&mut self, now_ms: u64) -> Vec<Command> {
        let answers = self.ledger.usable_answers();
        if answers.is_empty() {
            let failures: Vec<String> = self
                .ledger
                .panel
                .iter()
                .map(|r| {
                    let reason = r.status.failure_reason().unwrap_or_default();
                    format!("{}: {reason}", r.model)
                })
                .collect();
            return self.fail(ApiError::upstream(
                502,
                format!(
                    "every fusion panel member failed ({})",
                    crate::text::join(&failures, "; ")
                ),
            ));
        }
        let refs: Vec<&str> = answers.iter().map(String::as_str).collect();
        let conversation = merge::synthesis_conversation(&self.req.conversation, &refs);
        self.merge_conversation = Some(conversation);
        self.outer_round(now_ms)
    }
}
