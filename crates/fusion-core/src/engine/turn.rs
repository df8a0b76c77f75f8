//! One fusion turn: outer rounds, the panel fan-out, the judge, the final answer.

use super::call::{self, CallResult, Failure};
use super::fusion_tool::{self, MemberOutcome, TOOL_NAME};
use super::judge;
use super::merge;
use super::plan::{self, Plan};
use super::{Command, LocalReply, RequestInfo, Resume};
use crate::config::Config;
use crate::wire::neutral::{
    Conversation, GenParams, Message, ModelRequest, Reply, ToolCall, ToolChoice, Usage,
};
use crate::wire::relay::{FinalCall, Relay};
use crate::wire::{self, Api, ApiError, ClientRequest, FusionCallView, ResponseMeta};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::rc::Rc;

/// How the request asked for fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `"model": "fusion"`: forced once, answered by the configured outer model.
    Alias,
    /// The fusion tool is declared and `tool_choice` forces it: no decision round.
    Forced,
    /// The fusion tool is declared; the outer model decides whether to call it.
    Auto,
    /// `"model": "fusion"` with a `fusion` block: the panel answers, the
    /// synthesis model merges the answers; no judge, no tool loop.
    Merge,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Alias, Mode::Forced, Mode::Auto, Mode::Merge];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Alias => "alias",
            Mode::Forced => "forced",
            Mode::Auto => "auto",
            Mode::Merge => "merge",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Outer,
    Panel(usize),
    Judge,
}

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Pending,
    Ok(String),
    Failed(Failure),
    /// The run went on without this member (quorum); its usage still counts.
    Late,
}

/// One model call of the turn, for the `fusion` report and usage.
#[derive(Debug, Clone, PartialEq)]
struct CallRecord {
    model: String,
    status: Status,
    started_ms: u64,
    latency_ms: u64,
    usage: Usage,
}

impl CallRecord {
    fn new(model: &str, now_ms: u64) -> CallRecord {
        CallRecord {
            model: model.to_string(),
            status: Status::Pending,
            started_ms: now_ms,
            latency_ms: 0,
            usage: Usage::default(),
        }
    }

    /// Records a call's outcome; returns the parsed reply when it is usable.
    fn settle(&mut self, api: Api, result: &CallResult, now_ms: u64) -> Result<Reply, Failure> {
        let outcome = call::classify(api, result);
        self.latency_ms = now_ms.saturating_sub(self.started_ms);
        self.usage = match &outcome {
            Ok(reply) => reply.usage,
            Err(_) => call::failed_usage(api, result),
        };
        if self.status != Status::Late {
            self.status = match &outcome {
                Ok(reply) => Status::Ok(reply.text.clone()),
                Err(f) => Status::Failed(*f),
            };
        }
        outcome
    }

    fn cost(&self, config: &Config) -> Option<f64> {
        config.price(&self.model).map(|p| p.cost(&self.usage))
    }

    fn report(&self, config: &Config) -> Value {
        let mut v = json!({
            "model": self.model,
            "status": match self.status {
                Status::Pending => "pending",
                Status::Ok(_) => "ok",
                Status::Failed(_) => "failed",
                Status::Late => "late",
            },
            "latency_ms": self.latency_ms,
            "usage": self.usage.report_json(),
            "cost": self.cost(config),
        });
        let reason = match &self.status {
            Status::Failed(f) => Some(f.reason()),
            Status::Late => Some("late".to_string()),
            _ => None,
        };
        if let (Some(reason), Some(obj)) = (reason, v.as_object_mut()) {
            obj.insert("failure_reason".into(), json!(reason));
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Outer,
    Panel,
    Judge,
    Done,
}

#[derive(Debug)]
pub struct Turn {
    config: Rc<Config>,
    api: Api,
    info: RequestInfo,
    req: ClientRequest,
    mode: Mode,
    plan: Plan,
    /// The model that decides and, without a synthesizer, writes the answer.
    outer_model: String,
    started_ms: u64,
    /// Assistant tool calls and tool results appended to the client's conversation.
    history: Vec<Message>,
    phase: Phase,
    rounds: u32,
    invocations: u32,
    /// The fusion tool call being answered by the running panel.
    fusion_call: Option<ToolCall>,
    /// Further fusion calls in the message that started the run: capped.
    capped_with_call: Vec<ToolCall>,
    fusion_view: Option<FusionCallView>,
    tool_started_ms: u64,
    /// Set once the quorum answered: the judge starts then, at the latest.
    grace_deadline_ms: Option<u64>,
    panel: Vec<CallRecord>,
    judge: Option<CallRecord>,
    analysis: bool,
    outer: Vec<CallRecord>,
    /// The latest outer answer's text: what a truncated turn still returns.
    last_text: String,
    /// Merge mode: the synthesis model's conversation, once the panel answered.
    merge_conversation: Option<Conversation>,
    next_id: u32,
    pending: BTreeMap<u32, Role>,
    usage: Usage,
    /// Set when the final answer streams up the route.
    relay: Option<Relay>,
    /// The latest time the turn was told; the wall clock of reports.
    clock_ms: u64,
    /// When the client got (or started getting) its answer.
    ended_ms: Option<u64>,
    panel_wait_ms: Option<u64>,
    truncated_by: Option<&'static str>,
    /// The error status and message a failed turn answered with.
    error: Option<(u16, String)>,
    cap_hits: u32,
    /// The final answer's text, kept only for a log that includes text.
    answer_text: Option<String>,
}

impl Turn {
    /// Starts a turn. Forced fusion (alias, or `tool_choice` naming fusion) starts
    /// the panel at once: no outer round is spent deciding a call whose answer is known.
    pub fn start(
        config: Rc<Config>,
        api: Api,
        info: RequestInfo,
        req: ClientRequest,
        alias: bool,
        now_ms: u64,
    ) -> Result<(Turn, Vec<Command>), ApiError> {
        if req.conversation.messages.is_empty() {
            let param = match api {
                Api::Responses => "input",
                Api::Chat | Api::Messages => "messages",
            };
            return Err(ApiError::invalid(
                format!("`{param}` must contain at least one message"),
                Some(param),
            ));
        }
        let merge = alias && req.fusion_block.is_some();
        let plan = match req.fusion_tools.as_slice() {
            [] if merge => plan::from_merge_block(&config, req.fusion_block.as_ref())?,
            [] => Plan::defaults(&config),
            [decl] => plan::from_declaration(&config, decl)?,
            _ => {
                return Err(ApiError::invalid(
                    "declare the fusion tool at most once in `tools`",
                    Some("tools"),
                ))
            }
        };
        if plan.panel.is_empty() {
            return Err(ApiError::invalid(
                "no fusion panel: the request names none and the operator configured no default",
                Some("model"),
            ));
        }
        let outer_model = if alias {
            config.outer_model.clone()
        } else if config.resolve(&req.model).is_some() {
            req.model.clone()
        } else {
            return Err(ApiError::invalid(
                format!(
                    "model `{}` is not served by any upstream of the fusion filter",
                    req.model
                ),
                Some("model"),
            ));
        };
        let forces_fusion = match &req.tool_choice {
            ToolChoice::Named(n) => n == TOOL_NAME,
            ToolChoice::Required => req.tools.is_empty(),
            _ => false,
        };
        let mode = if merge {
            Mode::Merge
        } else if alias {
            Mode::Alias
        } else if forces_fusion {
            Mode::Forced
        } else {
            Mode::Auto
        };
        let mut turn = Turn {
            config,
            api,
            info,
            req,
            mode,
            plan,
            outer_model,
            started_ms: now_ms,
            history: Vec::new(),
            phase: Phase::Outer,
            rounds: 0,
            invocations: 0,
            fusion_call: None,
            capped_with_call: Vec::new(),
            fusion_view: None,
            tool_started_ms: now_ms,
            grace_deadline_ms: None,
            panel: Vec::new(),
            judge: None,
            analysis: false,
            outer: Vec::new(),
            last_text: String::new(),
            merge_conversation: None,
            next_id: 0,
            pending: BTreeMap::new(),
            usage: Usage::default(),
            relay: None,
            clock_ms: now_ms,
            ended_ms: None,
            panel_wait_ms: None,
            truncated_by: None,
            error: None,
            cap_hits: 0,
            answer_text: None,
        };
        let commands = if mode == Mode::Auto {
            turn.outer_round(now_ms)
        } else {
            let call = ToolCall {
                id: format!("call_fusion_{}", short_id(&turn.info.request_id)),
                name: TOOL_NAME.to_string(),
                arguments: json!({"question": turn.req.conversation.last_user_text()}).to_string(),
            };
            turn.start_fusion(call, now_ms)
        };
        Ok((turn, commands))
    }

    /// Calls dispatched and not yet answered.
    pub fn pending_calls(&self) -> usize {
        self.pending.len()
    }

    pub fn run_id(&self) -> &str {
        &self.info.request_id
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A callout answered (or failed). Unknown ids (answers after the turn ended) are ignored.
    pub fn on_call_result(&mut self, id: u32, result: CallResult, now_ms: u64) -> Vec<Command> {
        self.clock_ms = self.clock_ms.max(now_ms);
        let Some(role) = self.pending.remove(&id) else {
            return Vec::new();
        };
        if self.phase == Phase::Done {
            // A straggler still counts toward usage (and the run's log line).
            if let Role::Panel(i) = role {
                self.on_late_answer(i, &result, now_ms);
            }
            return Vec::new();
        }
        match role {
            Role::Panel(i) => {
                let result = self.timed_out_at_deadline(result, now_ms);
                self.on_panel_answer(i, &result, now_ms)
            }
            Role::Judge => {
                let result = self.timed_out_at_deadline(result, now_ms);
                self.on_judge_answer(&result, now_ms)
            }
            Role::Outer => self.on_outer_answer(&result, now_ms),
        }
    }

    fn start_fusion(&mut self, call: ToolCall, now_ms: u64) -> Vec<Command> {
        self.invocations += 1;
        self.fusion_call = Some(call);
        self.phase = Phase::Panel;
        self.tool_started_ms = now_ms;
        let members = self.plan.panel.clone();
        let conversation = self.req.conversation.clone();
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
            self.panel.push(CallRecord::new(&member.model, now_ms));
            let params = GenParams {
                provider_tools: member.tools.clone(),
                ..shared.clone()
            };
            match self.dispatch(
                Role::Panel(i),
                &member.model,
                &conversation,
                false,
                &params,
                deadline,
                now_ms,
            ) {
                Some(c) => commands.push(c),
                None => {
                    if let Some(rec) = self.panel.get_mut(i) {
                        rec.status = Status::Failed(Failure::Timeout);
                    }
                }
            }
        }
        if commands.is_empty() {
            return self.after_panel(now_ms);
        }
        commands
    }

    fn on_panel_answer(&mut self, i: usize, result: &CallResult, now_ms: u64) -> Vec<Command> {
        if self.phase != Phase::Panel {
            self.on_late_answer(i, result, now_ms);
            return Vec::new();
        }
        let api = self.api_of(self.panel.get(i).map(|r| r.model.as_str()));
        if let Some(rec) = self.panel.get_mut(i) {
            let outcome = rec.settle(api, result, now_ms);
            self.usage.add(rec.usage);
            if matches!(&outcome, Ok(r) if r.text.trim().is_empty()) {
                rec.status = Status::Failed(Failure::Empty);
            }
        }
        if !self.pending.values().any(|r| matches!(r, Role::Panel(_))) {
            return self.after_panel(now_ms);
        }
        let quorum = self.plan.quorum;
        let usable = self
            .panel
            .iter()
            .filter(|r| matches!(r.status, Status::Ok(_)))
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

    /// A transport failure that arrives when the tool budget is spent is the
    /// callout's timeout (Envoy gives no headers when it cuts a dripping body).
    fn timed_out_at_deadline(&self, result: CallResult, now_ms: u64) -> CallResult {
        if result.status.is_none() && now_ms + 50 >= self.tool_deadline() {
            return CallResult {
                status: Some(504),
                ..result
            };
        }
        result
    }

    /// A member the run stopped waiting for answered after all: count its usage.
    fn on_late_answer(&mut self, i: usize, result: &CallResult, now_ms: u64) {
        let api = self.api_of(self.panel.get(i).map(|r| r.model.as_str()));
        if let Some(rec) = self.panel.get_mut(i) {
            let _ = rec.settle(api, result, now_ms);
            self.usage.add(rec.usage);
        }
    }

    /// The time asked for with [`Command::WakeAt`] came: the grace period is over.
    pub fn on_timer(&mut self, now_ms: u64) -> Vec<Command> {
        self.clock_ms = self.clock_ms.max(now_ms);
        match self.grace_deadline_ms {
            Some(d) if self.phase == Phase::Panel && now_ms >= d => self.after_panel(now_ms),
            Some(d) if self.phase == Phase::Panel => vec![Command::WakeAt(d)],
            _ => Vec::new(),
        }
    }

    /// Every member answered or failed, or the quorum and its grace period are
    /// done: judge the answers (merge mode: synthesize), or report the failure.
    fn after_panel(&mut self, now_ms: u64) -> Vec<Command> {
        self.grace_deadline_ms = None;
        self.panel_wait_ms = Some(now_ms.saturating_sub(self.tool_started_ms));
        for rec in &mut self.panel {
            if rec.status == Status::Pending {
                rec.status = Status::Late;
                rec.latency_ms = now_ms.saturating_sub(rec.started_ms);
            }
        }
        if self.mode == Mode::Merge {
            return self.merge_round(now_ms);
        }
        let answers = self.usable_answers();
        if answers.is_empty() {
            return self.finish_fusion(None, now_ms);
        }
        self.phase = Phase::Judge;
        let model = self.plan.judge.clone();
        let refs: Vec<&str> = answers.iter().map(String::as_str).collect();
        let conversation = judge::judge_conversation(&self.req.conversation, &refs);
        let params = GenParams {
            temperature: Some(0.0),
            ..GenParams::default()
        };
        self.judge = Some(CallRecord::new(&model, now_ms));
        // A member that ran into the tool budget must not starve the judge: it
        // gets at least half the tool budget, within the turn's.
        let deadline = self
            .tool_deadline()
            .max(now_ms + self.config.limits.tool_timeout_ms / 2)
            .min(self.turn_deadline());
        match self.dispatch(
            Role::Judge,
            &model,
            &conversation,
            false,
            &params,
            deadline,
            now_ms,
        ) {
            Some(c) => vec![c],
            None => {
                if let Some(rec) = self.judge.as_mut() {
                    rec.status = Status::Failed(Failure::Timeout);
                }
                self.finish_fusion(None, now_ms)
            }
        }
    }

    fn on_judge_answer(&mut self, result: &CallResult, now_ms: u64) -> Vec<Command> {
        let api = self.api_of(Some(self.plan.judge.as_str()));
        let mut analysis = None;
        if let Some(rec) = self.judge.as_mut() {
            let outcome = rec.settle(api, result, now_ms);
            self.usage.add(rec.usage);
            analysis = outcome
                .as_ref()
                .ok()
                .and_then(|r| judge::parse_analysis(&r.text));
            if outcome.is_ok() && analysis.is_none() {
                rec.status = Status::Failed(Failure::Unusable);
            }
        }
        self.finish_fusion(analysis, now_ms)
    }

    /// The fusion call has its result: append it and run the next outer round.
    fn finish_fusion(&mut self, analysis: Option<Value>, now_ms: u64) -> Vec<Command> {
        self.analysis = analysis.is_some();
        let outcomes: Vec<MemberOutcome<'_>> = self
            .panel
            .iter()
            .map(|r| MemberOutcome {
                model: &r.model,
                answer: match &r.status {
                    Status::Ok(t) => Ok(t.as_str()),
                    Status::Failed(f) => Err(f.reason()),
                    Status::Pending | Status::Late => Err("late".to_string()),
                },
            })
            .collect();
        let result = fusion_tool::tool_result(&outcomes, analysis.as_ref());
        let Some(call) = self.fusion_call.take() else {
            return self.fail(ApiError::upstream(500, "fusion finished without a call"));
        };
        self.fusion_view = Some(FusionCallView {
            id: call.id.clone(),
            arguments: call.arguments.clone(),
            result: result.clone(),
        });
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
            content: result.to_string(),
        });
        for c in capped {
            self.history.push(Message::ToolResult {
                call_id: c.id,
                content: fusion_tool::capped_result().to_string(),
            });
        }
        self.outer_round(now_ms)
    }

    /// The panel's usable answers, in panel order.
    fn usable_answers(&self) -> Vec<String> {
        self.panel
            .iter()
            .filter_map(|r| match &r.status {
                Status::Ok(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    /// Merge mode: the synthesis model writes the answer from the surviving
    /// answers; with none, the request fails naming each member's failure.
    fn merge_round(&mut self, now_ms: u64) -> Vec<Command> {
        let answers = self.usable_answers();
        if answers.is_empty() {
            let failures: Vec<String> = self
                .panel
                .iter()
                .map(|r| {
                    let reason = match &r.status {
                        Status::Failed(f) => f.reason(),
                        _ => "late".to_string(),
                    };
                    format!("{}: {reason}", r.model)
                })
                .collect();
            return self.fail(ApiError::upstream(
                502,
                format!("every fusion panel member failed ({})", failures.join("; ")),
            ));
        }
        let refs: Vec<&str> = answers.iter().map(String::as_str).collect();
        let conversation = merge::synthesis_conversation(&self.req.conversation, &refs);
        self.merge_conversation = Some(conversation);
        self.outer_round(now_ms)
    }

    fn outer_round(&mut self, now_ms: u64) -> Vec<Command> {
        self.phase = Phase::Outer;
        if self.rounds >= self.config.limits.max_rounds {
            return self.finish_truncated("rounds");
        }
        self.rounds += 1;
        let model = self.answering_model().to_string();
        let conversation = match &self.merge_conversation {
            Some(c) => c.clone(),
            None => {
                let mut c = self.req.conversation.clone();
                c.messages.extend(self.history.iter().cloned());
                c
            }
        };
        let params = self.req.params.clone();
        self.outer.push(CallRecord::new(&model, now_ms));
        if let Some(resume) = self.route_final(&model, &conversation, &params) {
            return vec![resume];
        }
        let deadline = self.turn_deadline();
        match self.dispatch(
            Role::Outer,
            &model,
            &conversation,
            true,
            &params,
            deadline,
            now_ms,
        ) {
            Some(c) => vec![c],
            None => self.finish_truncated("turn"),
        }
    }

    /// After fusion ran, a streaming client's final answer goes up the request's own
    /// route when the route serves the answering model in the client's API and no
    /// client tool can be called: the client then gets the provider's stream as it
    /// is produced, and Envoy's retries and timeouts apply.
    fn route_final(
        &mut self,
        model: &str,
        conversation: &Conversation,
        params: &GenParams,
    ) -> Option<Command> {
        if self.invocations == 0 || !self.req.stream || !self.req.tools.is_empty() {
            return None;
        }
        let config = Rc::clone(&self.config);
        let target = config.resolve(model)?;
        if self.info.route_cluster.as_deref() != Some(target.upstream.cluster.as_str())
            || target.upstream.api != self.api
        {
            return None;
        }
        // The history holds fusion tool calls: some providers need the tool declared.
        let tools = if self.mode == Mode::Merge {
            Vec::new()
        } else {
            vec![fusion_tool::tool_def()]
        };
        let request = ModelRequest {
            model: target.model,
            conversation,
            tools: &tools,
            tool_choice: &ToolChoice::None,
            params,
        };
        let depth = (
            self.config.depth_header.as_str(),
            self.info.depth.saturating_add(1),
        );
        let callout = call::build(0, target, &request, depth, &self.info.client_auth, 1);
        let mut body = wire::build_request(self.api, &request);
        if let Some(obj) = body.as_object_mut() {
            obj.insert("stream".into(), json!(true));
            // Always asked for: the report needs it; the relay drops the usage
            // chunk when the client did not ask for it.
            if self.api == Api::Chat {
                obj.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        let mut headers: Vec<(String, String)> = callout
            .headers
            .into_iter()
            .filter(|(k, _)| k != ":method")
            .collect();
        // The route's own timeout would apply otherwise: hold it to the turn's budget.
        let remaining = self.turn_deadline().saturating_sub(self.clock_ms).max(1);
        headers.push((
            "x-envoy-upstream-rq-timeout-ms".into(),
            remaining.to_string(),
        ));
        self.phase = Phase::Done;
        let final_call = FinalCall {
            prior_cost: run_cost(&self.config, &self.calls()),
            price: self.config.price(model),
            client_wants_usage: self.req.include_usage,
        };
        self.relay = Some(Relay::new(self.api, self.usage, self.report(), final_call));
        Some(Command::Resume(Resume {
            headers,
            body: body.to_string().into_bytes(),
        }))
    }

    /// The final answer streams up the route and its end was not seen.
    pub fn relay_incomplete(&self) -> bool {
        self.relay.is_some() && self.ended_ms.is_none()
    }

    /// Whether the response comes from the route and must pass through [`Self::on_response_body`].
    pub fn relays_response(&self) -> bool {
        self.relay.is_some()
    }

    /// One chunk of the route's response body; returns what to send the client now.
    pub fn on_response_body(&mut self, chunk: &[u8], end: bool, now_ms: u64) -> Vec<u8> {
        self.clock_ms = self.clock_ms.max(now_ms);
        match self.relay.as_mut() {
            Some(relay) => {
                let out = relay.chunk(chunk, end);
                if end {
                    self.ended_ms = Some(self.clock_ms);
                    let usage = relay.relayed_usage;
                    if let Some(rec) = self.outer.last_mut() {
                        rec.usage = usage;
                        rec.status = Status::Ok(String::new());
                    }
                    self.usage.add(usage);
                }
                out
            }
            None => chunk.to_vec(),
        }
    }

    fn on_outer_answer(&mut self, result: &CallResult, now_ms: u64) -> Vec<Command> {
        let model = self.answering_model().to_string();
        let api = self.api_of(Some(&model));
        let outcome = match self.outer.last_mut() {
            Some(rec) => {
                let o = rec.settle(api, result, now_ms);
                self.usage.add(rec.usage);
                o
            }
            None => call::classify(api, result),
        };
        let mut reply = match outcome {
            Ok(r) => r,
            // The turn's own budget ran out under this call: end with what we have.
            Err(Failure::Timeout) if now_ms + 100 >= self.turn_deadline() => {
                return self.finish_truncated("turn")
            }
            Err(f) => {
                let status = match f {
                    Failure::RateLimited => 429,
                    Failure::InsufficientCredits => 402,
                    Failure::Timeout => 504,
                    _ => 502,
                };
                return self.fail(ApiError::upstream(
                    status,
                    format!(
                        "the model `{model}` that writes the final answer failed: {}",
                        f.reason()
                    ),
                ));
            }
        };
        let (fusion_calls, client_calls): (Vec<ToolCall>, Vec<ToolCall>) = reply
            .tool_calls
            .drain(..)
            .partition(|c| c.name == TOOL_NAME);
        // Text, or a call of the client's own tools: the turn ends, as without the filter.
        if !client_calls.is_empty() || fusion_calls.is_empty() {
            reply.tool_calls = client_calls;
            return self.finish(reply, false);
        }
        self.last_text = reply.text;
        if self.invocations == 0 {
            let mut calls = fusion_calls.into_iter();
            if let Some(first) = calls.next() {
                // Further fusion calls in the same message are answered by the cap.
                self.capped_with_call = calls.collect();
                return self.start_fusion(first, now_ms);
            }
            return self.finish_truncated("turn");
        }
        // One invocation per turn: a further call is answered by the cap, and the turn goes on.
        self.cap_hits += fusion_calls.len() as u32;
        self.history.push(Message::Assistant {
            text: std::mem::take(&mut self.last_text),
            tool_calls: fusion_calls.clone(),
        });
        for c in fusion_calls {
            self.history.push(Message::ToolResult {
                call_id: c.id,
                content: fusion_tool::capped_result().to_string(),
            });
        }
        self.outer_round(now_ms)
    }

    /// The model of the next outer round: the synthesizer once fusion ran, if one is set.
    fn answering_model(&self) -> &str {
        match (&self.plan.synthesizer, self.invocations) {
            (Some(s), n) if n > 0 => s,
            _ => &self.outer_model,
        }
    }

    fn api_of(&self, model: Option<&str>) -> Api {
        model
            .and_then(|m| self.config.resolve(m))
            .map_or(Api::Chat, |t| t.upstream.api)
    }

    /// Deadline of calls inside the fusion tool: the tool budget, never past the turn's.
    fn tool_deadline(&self) -> u64 {
        (self.tool_started_ms + self.config.limits.tool_timeout_ms).min(self.turn_deadline())
    }

    fn turn_deadline(&self) -> u64 {
        self.started_ms + self.config.limits.turn_timeout_ms
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        role: Role,
        model: &str,
        conversation: &Conversation,
        with_tools: bool,
        params: &GenParams,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Option<Command> {
        // Never 0: Envoy reads a zero timeout as "no timeout".
        let timeout_ms = deadline_ms.saturating_sub(now_ms);
        if timeout_ms == 0 {
            return None;
        }
        let config = Rc::clone(&self.config);
        let target = config.resolve(model)?;
        let mut tools = Vec::new();
        let mut choice = ToolChoice::Auto;
        if with_tools && self.mode != Mode::Merge {
            tools = self.req.tools.clone();
            tools.push(fusion_tool::tool_def());
            choice = self.outer_tool_choice();
        }
        let request = ModelRequest {
            model: target.model,
            conversation,
            tools: &tools,
            tool_choice: &choice,
            params,
        };
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, role);
        let depth = (
            self.config.depth_header.as_str(),
            self.info.depth.saturating_add(1),
        );
        Some(Command::Dispatch(call::build(
            id,
            target,
            &request,
            depth,
            &self.info.client_auth,
            timeout_ms,
        )))
    }

    fn outer_tool_choice(&self) -> ToolChoice {
        if self.invocations == 0 {
            return self.req.tool_choice.clone();
        }
        // The one invocation is spent: with no client tools, ask for text.
        if self.req.tools.is_empty() {
            return ToolChoice::None;
        }
        match &self.req.tool_choice {
            ToolChoice::Named(n) if n == TOOL_NAME => ToolChoice::Auto,
            other => other.clone(),
        }
    }

    fn finish_truncated(&mut self, budget: &'static str) -> Vec<Command> {
        self.truncated_by = Some(budget);
        let reply = Reply {
            text: std::mem::take(&mut self.last_text),
            ..Reply::default()
        };
        self.finish(reply, true)
    }

    fn finish(&mut self, mut reply: Reply, truncated: bool) -> Vec<Command> {
        self.phase = Phase::Done;
        self.ended_ms = Some(self.clock_ms);
        if self.config.log.include_text {
            self.answer_text = Some(reply.text.clone());
        }
        let meta = ResponseMeta {
            id: format!("fusion-{}", short_id(&self.info.request_id)),
            created_s: self.started_ms / 1000,
            usage: self.usage,
            fusion: self.report(),
            truncated,
            fusion_call: self.fusion_view.clone(),
        };
        reply.model = self.answering_model().to_string();
        let mut response = if self.req.stream {
            LocalReply {
                status: 200,
                headers: vec![
                    ("content-type".into(), "text/event-stream".into()),
                    ("cache-control".into(), "no-cache".into()),
                ],
                body: wire::write_stream(self.api, &reply, &meta, self.req.include_usage)
                    .into_bytes(),
            }
        } else {
            LocalReply::json(200, &wire::write_response(self.api, &reply, &meta))
        };
        response.headers.extend(self.debug_headers());
        vec![Command::Reply(response)]
    }

    fn fail(&mut self, err: ApiError) -> Vec<Command> {
        self.phase = Phase::Done;
        self.ended_ms = Some(self.clock_ms);
        self.error = Some((err.status, err.message.clone()));
        let mut body = wire::error_body(self.api, &err);
        if let Some(obj) = body.as_object_mut() {
            obj.insert("fusion".into(), self.report());
        }
        let mut reply = LocalReply::json(err.status, &body);
        reply.headers.extend(self.debug_headers());
        vec![Command::Reply(reply)]
    }

    /// `x-fusion-run-id` and `x-fusion-panel` (member counts by outcome), for quick debugging.
    pub fn debug_headers(&self) -> Vec<(String, String)> {
        let count = |f: fn(&Status) -> bool| self.panel.iter().filter(|r| f(&r.status)).count();
        let ok = count(|s| matches!(s, Status::Ok(_)));
        let failed = count(|s| matches!(s, Status::Failed(_)));
        let late = count(|s| matches!(s, Status::Late | Status::Pending));
        vec![
            ("x-fusion-run-id".into(), self.info.request_id.clone()),
            (
                "x-fusion-panel".into(),
                format!("ok={ok}, failed={failed}, late={late}"),
            ),
        ]
    }

    /// The `fusion` object every response carries.
    pub fn report(&self) -> Value {
        let config = &self.config;
        let calls = self.calls();
        json!({
            "run_id": self.info.request_id,
            "mode": self.mode.name(),
            "preset": self.plan.preset,
            "panel": self.panel.iter().map(|r| r.report(config)).collect::<Vec<_>>(),
            "judge": self.judge.as_ref().map(|r| r.report(config)),
            "analysis": self.analysis,
            "synthesizer": self.answering_model(),
            "final": self.outer.iter().map(|r| r.report(config)).collect::<Vec<_>>(),
            "rounds": self.rounds,
            "invocations": self.invocations,
            "wall_ms": self.ended_ms.unwrap_or(self.clock_ms).saturating_sub(self.started_ms),
            "panel_wait_ms": self.panel_wait_ms,
            "usage": self.usage.report_json(),
            "cost": run_cost(config, &calls),
            "unpriced_models": unpriced(config, &calls),
        })
    }

    fn calls(&self) -> Vec<&CallRecord> {
        self.panel
            .iter()
            .chain(self.judge.iter())
            .chain(self.outer.iter())
            .collect()
    }

    /// The time is now at least `now_ms` (the host calls it before a report
    /// made outside an event, e.g. when the client left).
    pub fn observe_time(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
    }

    /// What the run's metrics count: outcome, failures, budgets, timings.
    pub fn stats(&self, client_gone: bool) -> RunStats {
        let failure_class = |r: &CallRecord| match &r.status {
            Status::Failed(f) => Some(f.class()),
            Status::Late => Some("late"),
            _ => None,
        };
        let panel_failures: Vec<&'static str> =
            self.panel.iter().filter_map(failure_class).collect();
        let judge_degraded = self.judge.as_ref().and_then(failure_class);
        let outcome = if client_gone && self.ended_ms.is_none() {
            "client_gone"
        } else if self.error.is_some() {
            "error"
        } else if self.truncated_by.is_some() {
            "truncated"
        } else if !panel_failures.is_empty() || judge_degraded.is_some() {
            "degraded"
        } else {
            "ok"
        };
        let calls = self.calls();
        RunStats {
            mode: self.mode,
            outcome,
            panel_calls: self.panel.len(),
            panel_failures,
            judge_degraded,
            cap_hits: self.cap_hits,
            truncated_by: self.truncated_by,
            wall_ms: self
                .ended_ms
                .unwrap_or(self.clock_ms)
                .saturating_sub(self.started_ms),
            panel_wait_ms: self.panel_wait_ms,
            cost: run_cost(&self.config, &calls),
        }
    }

    /// The run's one structured log line: the whole chain, no user text unless
    /// the operator turned `log.include_text` on.
    pub fn log_line(&self, client_gone: bool) -> Value {
        let stats = self.stats(client_gone);
        let mut line = self.report();
        if let Some(obj) = line.as_object_mut() {
            obj.insert("event".into(), json!("fusion_run"));
            obj.insert("api".into(), json!(self.api.name()));
            obj.insert("outcome".into(), json!(stats.outcome));
            obj.insert("truncated_by".into(), json!(self.truncated_by));
            obj.insert("cap_hits".into(), json!(self.cap_hits));
            obj.insert(
                "error".into(),
                json!(self
                    .error
                    .as_ref()
                    .map(|(status, message)| json!({"status": status, "message": message}))),
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

/// What one run contributes to the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStats {
    pub mode: Mode,
    /// `ok`, `degraded`, `truncated`, `error` or `client_gone`.
    pub outcome: &'static str,
    pub panel_calls: usize,
    /// One failure class per member that gave no usable answer (`late` included).
    pub panel_failures: Vec<&'static str>,
    pub judge_degraded: Option<&'static str>,
    pub cap_hits: u32,
    /// `rounds` or `turn`.
    pub truncated_by: Option<&'static str>,
    pub wall_ms: u64,
    pub panel_wait_ms: Option<u64>,
    pub cost: Option<f64>,
}

pub const OUTCOMES: [&str; 5] = ["ok", "degraded", "truncated", "error", "client_gone"];

/// The run's cost: the sum over its calls, or `None` when a call that used
/// tokens has no price (an unknown price is never shown as 0).
fn run_cost(config: &Config, calls: &[&CallRecord]) -> Option<f64> {
    let sum: Option<f64> = calls
        .iter()
        .filter(|r| r.usage.total() > 0)
        .map(|r| r.cost(config))
        .sum();
    // An empty float sum is -0.0.
    sum.map(|c| c + 0.0)
}

fn unpriced(config: &Config, calls: &[&CallRecord]) -> Vec<String> {
    let mut models: Vec<String> = calls
        .iter()
        .filter(|r| r.usage.total() > 0 && r.cost(config).is_none())
        .map(|r| r.model.clone())
        .collect();
    models.sort();
    models.dedup();
    models
}

fn short_id(request_id: &str) -> String {
    let id: String = request_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    if id.is_empty() {
        "0".to_string()
    } else {
        id
    }
}
