//! One fusion turn: outer rounds, the panel fan-out, the judge, the final answer.
//!
//! - this file: the turn's state, how it starts, event dispatch, callouts and deadlines;
//! - [`panel`]: the fusion call (panel fan-out, quorum, judge, merge synthesis);
//! - [`outer`]: outer rounds, the final answer (local or up the route), failures;
//! - [`ledger`]: call records, usage and the one cost rule;
//! - [`report`]: the `fusion` object, debug headers, log line and metrics outcome;
//! - [`call_body`]: a call's body, patched from the client's or rebuilt, until written.

mod call_body;
mod ledger;
mod outer;
mod panel;
mod report;

pub use ledger::call_cost;
pub use report::{Budget, FilterState, Outcome, RunStats};

use super::call::{self, CallResult, Failure};
use super::fusion_tool;
use super::plan::{self, Plan};
use super::slots::Slots;
use super::{Command, RequestInfo};
use crate::config::Config;
use crate::vec_map::VecMap;
use crate::wire::neutral::{Conversation, GenParams, Message, ModelRequest, ToolCall, ToolChoice};
use crate::wire::patch::{self, CallRole, FusionExchange, PatchSpec};
use crate::wire::relay::Relay;
use crate::wire::splice::{ClientBody, Patched};
use crate::wire::state::{self, StatefulRefs};
use crate::wire::{self, Api, ApiError, ClientRequest, FUSION_TOOL};
use call_body::CallBody;
use ledger::Ledger;
use serde_json::Value;
use std::rc::Rc;

/// How the request asked for fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// What a dispatched call answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Outer,
    Panel(usize),
    Judge,
}

/// The conversation a call rebuilt from the neutral model carries (a patched
/// call carries the client's own body instead, and needs none).
#[derive(Debug, Clone, Copy)]
enum Convo<'a> {
    Of(&'a Conversation),
    /// An outer round's: the client's conversation and the turn's history
    /// (merge mode: the synthesis conversation), made only when needed.
    Outer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Outer,
    Panel,
    Judge,
    Done,
}

/// Why a call was not dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotSent {
    /// Its deadline has passed.
    NoTime,
    /// No upstream serves the model (the plan validates its models, so this
    /// is a bug guard, reported as `unreachable`).
    Unserved,
    /// The turn's `limits.max_upstream_calls` / `max_upstream_bytes` would be passed.
    OverBudget,
}

impl NotSent {
    fn failure(self) -> Failure {
        match self {
            NotSent::NoTime => Failure::Timeout,
            NotSent::Unserved => Failure::Unreachable,
            NotSent::OverBudget => Failure::OverBudget,
        }
    }
}

#[derive(Debug)]
pub struct Turn {
    config: Rc<Config>,
    api: Api,
    info: RequestInfo,
    /// Unique per run (the client's `x-request-id` is reported beside it).
    run_id: String,
    req: ClientRequest,
    /// The client's JSON body: same-API calls are patches of it, written
    /// from its bytes (`wire::splice`).
    client: ClientBody,
    mode: Mode,
    plan: Plan,
    /// The model that decides and, without a synthesizer, writes the answer.
    outer_model: String,
    phase: Phase,
    rounds: u32,
    invocations: u32,
    /// Assistant tool calls and tool results appended to the client's conversation.
    history: Vec<Message>,
    /// The latest outer answer's text: what a truncated turn still returns.
    last_text: String,
    /// The fusion tool call being answered by the running panel.
    fusion_call: Option<ToolCall>,
    /// Messages: the outer model's thinking blocks (with signatures) before its
    /// fusion call; they must precede that `tool_use` when the history is sent back.
    outer_thinking: Vec<Value>,
    /// Further fusion calls in the message that started the run: capped.
    capped_with_call: Vec<ToolCall>,
    /// The id of the fusion call that ran; its result is the history's tool result of that id.
    fusion_call_id: Option<String>,
    /// The panel's answers escaped once, for the judge's prompt and the tool result.
    slots: Option<Slots>,
    /// The client's parameters in its API's spelling (`patch::settings`), for patches.
    client_settings: std::cell::OnceCell<serde_json::Map<String, Value>>,
    tool_started_ms: u64,
    /// Set once the quorum answered: the judge starts then, at the latest.
    grace_deadline_ms: Option<u64>,
    /// The judge's analysis (the five keys), once the judge answered with one.
    analysis: Option<serde_json::Value>,
    /// Merge mode: the synthesis model's conversation, once the panel answered.
    merge_conversation: Option<Conversation>,
    next_id: u32,
    pending: VecMap<u32, Role>,
    /// Callouts sent and their request bytes, against the per-turn caps.
    upstream_calls: u32,
    upstream_bytes: u64,
    /// What each pending call sent: a call refused for an optional parameter
    /// is sent again once without it.
    sent: VecMap<u32, SentCall>,
    /// Calls sent again without a parameter their provider refused.
    param_retries: u32,
    ledger: Ledger,
    /// Set when the final answer streams up the route.
    relay: Option<Relay>,
    /// The route's answer is not a stream to relay (an error, Envoy's own
    /// reply): it is read whole and answered in the client's API.
    relay_buffered: bool,
    /// The route's answer came from another cluster than the one compared:
    /// a route matched on a header the filter set.
    relay_misrouted: Option<String>,
    started_ms: u64,
    /// The latest time the turn was told; the wall clock of reports.
    clock_ms: u64,
    /// When the client got (or started getting) its answer.
    ended_ms: Option<u64>,
    panel_wait_ms: Option<u64>,
    truncated_by: Option<Budget>,
    /// The error status and message a failed turn answered with.
    error: Option<(u16, String)>,
    cap_hits: u32,
    /// Outer rounds that answered a fusion call with the cap (at most one).
    capped_rounds: u32,
    /// The final answer's text, kept only for a log that includes text.
    answer_text: Option<String>,
    /// The `fusion` report the local reply carried, kept for the run's log
    /// line (`take_log_line`) while nothing it shows can have changed: every
    /// event after the answer drops it.
    answered_report: Option<Value>,
}

impl Turn {
    /// Starts a turn. Forced fusion (alias, or `tool_choice` naming fusion) starts
    /// the panel at once: no outer round is spent deciding a call whose answer is known.
    /// `raw` is the client's body parsed from `body`, its bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        config: Rc<Config>,
        api: Api,
        info: RequestInfo,
        req: ClientRequest,
        raw: Value,
        body: &[u8],
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
        let refs = state::stateful_refs(api, &raw);
        let mut called: Vec<&str> = plan.panel.iter().map(|m| m.model.as_str()).collect();
        called.push(&outer_model);
        called.extend(plan.synthesizer.as_deref());
        for model in called {
            check_rebuilt_call(&config, api, &req, &refs, model, merge)?;
        }
        let forces_fusion = match &req.tool_choice {
            ToolChoice::Named(n) => n == FUSION_TOOL,
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
            run_id: new_run_id(&info.request_id, now_ms),
            info,
            req,
            client: ClientBody::new(api, body, raw),
            mode,
            plan,
            outer_model,
            phase: Phase::Outer,
            rounds: 0,
            invocations: 0,
            history: Vec::new(),
            last_text: String::new(),
            fusion_call: None,
            outer_thinking: Vec::new(),
            capped_with_call: Vec::new(),
            fusion_call_id: None,
            slots: None,
            client_settings: std::cell::OnceCell::new(),
            tool_started_ms: now_ms,
            grace_deadline_ms: None,
            analysis: None,
            merge_conversation: None,
            next_id: 0,
            pending: VecMap::new(),
            upstream_calls: 0,
            upstream_bytes: 0,
            sent: VecMap::new(),
            param_retries: 0,
            ledger: Ledger::default(),
            relay: None,
            relay_buffered: false,
            relay_misrouted: None,
            started_ms: now_ms,
            clock_ms: now_ms,
            ended_ms: None,
            panel_wait_ms: None,
            truncated_by: None,
            error: None,
            cap_hits: 0,
            capped_rounds: 0,
            answer_text: None,
            answered_report: None,
        };
        let commands = if mode == Mode::Auto {
            turn.outer_round(now_ms)
        } else {
            let call = ToolCall {
                id: format!("call_fusion_{}", short_id(&turn.run_id)),
                name: FUSION_TOOL.to_string(),
                arguments: fusion_tool::forced_arguments(&turn.req.conversation.last_user_text()),
            };
            turn.start_fusion(call, now_ms)
        };
        Ok((turn, commands))
    }

    /// Whether an outer round to an `api` upstream declares the fusion tool.
    /// Once fusion ran, the tool is spent. Without client tools the round asks
    /// for text (`tool_choice: none`) and the declaration stays, which keeps the
    /// client's tool-only fields (`parallel_tool_calls`) valid. With client
    /// tools the model may call tools: OpenAI's APIs take the fusion call in the
    /// history without its declaration, so there it is no longer offered and the
    /// model cannot loop on it; Anthropic refuses `tool_use` history without its
    /// tools and has no `tool_choice` that excludes one, so there it stays (one
    /// capped round at most, see `on_outer_answer`).
    fn offers_fusion(&self, api: Api) -> bool {
        self.invocations == 0 || api == Api::Messages || self.req.tools.is_empty()
    }

    /// Calls dispatched and not yet answered.
    pub fn pending_calls(&self) -> usize {
        self.pending.len()
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A callout answered (or failed). Unknown ids (answers after the turn ended) are ignored.
    pub fn on_call_result(&mut self, id: u32, result: CallResult, now_ms: u64) -> Vec<Command> {
        self.answered_report = None;
        self.clock_ms = self.clock_ms.max(now_ms);
        let Some(role) = self.pending.remove(&id) else {
            return Vec::new();
        };
        let sent = self.sent.remove(&id);
        if self.phase != Phase::Done {
            if let Some(retry) =
                sent.and_then(|s| self.retry_without_param(role, s, &result, now_ms))
            {
                return vec![retry];
            }
        }
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
            Role::Outer => {
                let result = timed_out_at(result, now_ms, self.turn_deadline());
                self.on_outer_answer(&result, now_ms)
            }
        }
    }

    /// The time asked for with [`Command::WakeAt`] came: the grace period is over.
    pub fn on_timer(&mut self, now_ms: u64) -> Vec<Command> {
        self.answered_report = None;
        self.clock_ms = self.clock_ms.max(now_ms);
        match self.grace_deadline_ms {
            Some(d) if self.phase == Phase::Panel && now_ms >= d => self.after_panel(now_ms),
            Some(d) if self.phase == Phase::Panel => vec![Command::WakeAt(d)],
            _ => Vec::new(),
        }
    }

    /// A panel or judge call's transport failure at the tool budget's end is its timeout.
    fn timed_out_at_deadline(&self, result: CallResult, now_ms: u64) -> CallResult {
        timed_out_at(result, now_ms, self.tool_deadline())
    }

    /// The API the model's upstream speaks; `None` when no upstream serves the
    /// model, which the caller must treat as a failed call, never as Chat.
    fn api_of(&self, model: &str) -> Option<Api> {
        self.config.resolve(model).map(|t| t.upstream.api)
    }

    /// Deadline of calls inside the fusion tool: the tool budget, never past the turn's.
    fn tool_deadline(&self) -> u64 {
        (self.tool_started_ms + self.config.limits.tool_timeout_ms).min(self.turn_deadline())
    }

    fn turn_deadline(&self) -> u64 {
        self.started_ms + self.config.limits.turn_timeout_ms
    }

    /// The depth header every inner call carries: this request's depth plus one.
    fn depth_header(&self) -> (&str, u32) {
        (
            self.config.depth_header.as_str(),
            self.info.depth.saturating_add(1),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        role: Role,
        model: &str,
        conversation: Convo<'_>,
        with_tools: bool,
        params: &GenParams,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Result<Command, NotSent> {
        // Never 0: Envoy reads a zero timeout as "no timeout".
        let timeout_ms = deadline_ms.saturating_sub(now_ms);
        if timeout_ms == 0 {
            return Err(NotSent::NoTime);
        }
        let config = Rc::clone(&self.config);
        let target = config.resolve(model).ok_or(NotSent::Unserved)?;
        let mut tools = Vec::new();
        let mut choice = ToolChoice::Auto;
        if with_tools && self.mode != Mode::Merge {
            tools = self.req.tools.clone();
            if self.offers_fusion(target.upstream.api) {
                tools.push(fusion_tool::tool_def());
            }
            choice = self.outer_tool_choice();
        }
        let patched = self.patched_body(
            role,
            target.upstream.api,
            target.model,
            with_tools,
            &choice,
            params,
        );
        let mut body = match patched {
            Some(patched) => CallBody::Patched(patched),
            None => {
                let params = self.rebuilt_params(target.upstream.api, params);
                let outer;
                let conversation = match conversation {
                    Convo::Of(c) => c,
                    Convo::Outer => {
                        outer = self.outer_conversation();
                        &outer
                    }
                };
                let request = ModelRequest {
                    model: target.model,
                    conversation,
                    tools: &tools,
                    tool_choice: &choice,
                    params: &params,
                };
                CallBody::Rebuilt(wire::build_request(target.upstream.api, &request))
            }
        };
        let clamped = body.fit(config.unsupported_params(model), target.upstream.api);
        let id = self.next_id;
        let bytes = match (&body, role, &self.slots) {
            (CallBody::Rebuilt(v), Role::Judge, Some(slots)) => slots.fill(call::json_bytes(v)),
            _ => body.write(&self.client),
        };
        let mut callout = call::build_body(
            id,
            target,
            bytes,
            self.depth_header(),
            &self.info.client_auth,
            &self.info.trace,
            timeout_ms,
        );
        if !self.take_upstream_budget(callout.body.len()) {
            return Err(NotSent::OverBudget);
        }
        if let (false, Some(rec)) = (clamped.is_empty(), self.record_mut(role)) {
            rec.clamped = clamped;
        }
        self.next_id += 1;
        self.pending.insert(id, role);
        if matches!(body, CallBody::Patched(_)) {
            callout
                .headers
                .extend(self.info.api_headers.iter().cloned());
        }
        self.sent.insert(
            id,
            SentCall {
                callout: callout.clone(),
                deadline_ms,
                retried: false,
            },
        );
        Ok(Command::Dispatch(callout))
    }

    /// The amplification bound: calls and request bytes one turn may send,
    /// by callout or up the client's route. Counts a call of `len` bytes;
    /// false (nothing counted) when it would pass the bound.
    fn take_upstream_budget(&mut self, len: usize) -> bool {
        let limits = &self.config.limits;
        let bytes = self
            .upstream_bytes
            .saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
        if self.upstream_calls >= limits.max_upstream_calls || bytes > limits.max_upstream_bytes {
            return false;
        }
        self.upstream_calls += 1;
        self.upstream_bytes = bytes;
        true
    }

    /// The parameters of a call rebuilt from the neutral model for `api`.
    /// Anthropic refuses a `tool_use` without its signed thinking block when
    /// thinking is on, and a rebuilt history has none: thinking is off there.
    fn rebuilt_params(&self, api: Api, params: &GenParams) -> GenParams {
        let mut params = params.clone();
        if api == Api::Messages && history_has_tool_call(&self.history) {
            params.reasoning = None;
        }
        params
    }

    /// The turn's one fusion exchange (the outer model's call and its result),
    /// with the outer model's signed thinking blocks (Messages). `None` when
    /// the history is not exactly that exchange (capped extra calls).
    fn fusion_exchange(&self) -> Option<FusionExchange> {
        match self.history.as_slice() {
            [Message::Assistant { text, tool_calls }, Message::ToolResult { call_id, content }] => {
                match tool_calls.as_slice() {
                    [call] if &call.id == call_id => Some(FusionExchange {
                        text: text.clone(),
                        call: call.clone(),
                        result: content.clone(),
                        thinking: self.outer_thinking.clone(),
                    }),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// A call its provider refused naming an optional parameter the model does
    /// not take (e.g. `temperature` on a reasoning model) is sent again once
    /// without it; the call's record says so (`retried_without`).
    fn retry_without_param(
        &mut self,
        role: Role,
        sent: SentCall,
        result: &CallResult,
        now_ms: u64,
    ) -> Option<Command> {
        if sent.retried {
            return None;
        }
        let param = call::unsupported_parameter(result)?;
        if !crate::config::is_optional(&param) {
            return None;
        }
        let mut body: Value = serde_json::from_slice(&sent.callout.body).ok()?;
        body.as_object_mut()?.remove(&param)?;
        let timeout_ms = sent.deadline_ms.saturating_sub(now_ms);
        if timeout_ms == 0 {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let callout = call::Callout {
            id,
            body: call::json_bytes(&body),
            timeout_ms,
            ..sent.callout
        };
        if let Some(rec) = self.record_mut(role) {
            rec.retried_without.push(param);
        }
        self.param_retries += 1;
        self.pending.insert(id, role);
        self.sent.insert(
            id,
            SentCall {
                callout: callout.clone(),
                deadline_ms: sent.deadline_ms,
                retried: true,
            },
        );
        Some(Command::Dispatch(callout))
    }

    /// The ledger record of the call answering for `role`.
    fn record_mut(&mut self, role: Role) -> Option<&mut ledger::CallRecord> {
        match role {
            Role::Panel(i) => self.ledger.panel.get_mut(i),
            Role::Judge => self.ledger.judge.as_mut(),
            Role::Outer => self.ledger.outer.last_mut(),
        }
    }

    /// A same-API panel member or outer round: the client's own body, patched
    /// (docs/wire-roles.md). `None`: the call is rebuilt from the neutral model
    /// (another API, the judge, merge synthesis, or a history the patch cannot write).
    fn patched_body(
        &self,
        role: Role,
        api: Api,
        model: &str,
        with_tools: bool,
        choice: &ToolChoice,
        params: &GenParams,
    ) -> Option<Patched> {
        if api != self.api {
            return None;
        }
        // The client's own settings, written once per turn (they do not change).
        let client_settings = self
            .client_settings
            .get_or_init(|| patch::settings(api, &self.req.params, None));
        let mut settings = patch::settings(api, params, None);
        let (call_role, extra_tools, exchange) = match role {
            Role::Judge => return None,
            Role::Panel(_) => (CallRole::Panel, params.provider_tools.clone(), None),
            Role::Outer => {
                if self.merge_conversation.is_some() {
                    return None;
                }
                let exchange = if self.history.is_empty() {
                    None
                } else {
                    Some(self.fusion_exchange()?)
                };
                let mut extra = Vec::new();
                if with_tools && self.mode != Mode::Merge {
                    if self.offers_fusion(api) {
                        extra.push(patch::tool_entry(api, &fusion_tool::tool_def()));
                    }
                    let has_tools = !self.req.tools.is_empty() || !extra.is_empty();
                    if has_tools {
                        let written = patch::settings(api, params, Some(choice));
                        let value = match choice {
                            ToolChoice::Auto => Value::Null,
                            _ => written.get("tool_choice").cloned().unwrap_or(Value::Null),
                        };
                        settings.insert("tool_choice".into(), value);
                    }
                }
                (CallRole::OuterRound, extra, exchange)
            }
        };
        let mut set: Vec<(&str, Value)> = Vec::new();
        for (key, value) in &settings {
            if client_settings.get(key) != Some(value) {
                set.push((key.as_str(), value.clone()));
            }
        }
        for key in client_settings.keys() {
            if !settings.contains_key(key) {
                set.push((key.as_str(), Value::Null));
            }
        }
        set.extend(thinking_off(api, exchange.as_ref()));
        let spec = PatchSpec {
            role: call_role,
            model,
            stream: false,
            extra_tools: &extra_tools,
            set: &set,
            exchange: exchange.as_ref(),
        };
        self.client.patch(api, &spec).ok()
    }
}

/// A dispatched call, kept until it is answered.
#[derive(Debug)]
struct SentCall {
    callout: call::Callout,
    deadline_ms: u64,
    /// Already sent again once without a parameter.
    retried: bool,
}

/// Anthropic refuses a `tool_use` without its signed thinking block when
/// thinking is on: a fusion call without one (the filter's own, or one whose
/// blocks did not come) goes with thinking off (a setting of the patch).
fn thinking_off(api: Api, exchange: Option<&FusionExchange>) -> Option<(&'static str, Value)> {
    (api == Api::Messages && exchange.is_some_and(|e| e.thinking.is_empty()))
        .then_some(("thinking", Value::Null))
}

/// Whether the turn's own history holds a tool call (the fusion call).
fn history_has_tool_call(history: &[Message]) -> bool {
    history
        .iter()
        .any(|m| matches!(m, Message::Assistant { tool_calls, .. } if !tool_calls.is_empty()))
}

/// A call to `model` in another API than the client's is rebuilt from the
/// neutral model: a content part that API cannot take, or stored state only the
/// client's provider holds, is a 400 naming it before any call is made.
fn check_rebuilt_call(
    config: &Config,
    api: Api,
    req: &ClientRequest,
    refs: &StatefulRefs,
    model: &str,
    merge: bool,
) -> Result<(), ApiError> {
    let Some(target) = config.resolve(model) else {
        return Ok(());
    };
    let provider = target.upstream.api;
    if provider != api {
        wire::check_client_parts(api, provider, &req.conversation, model)?;
    }
    state::check_stateful(refs, provider, provider == api && !merge, model)
}

/// A transport failure that arrives when the call's budget is spent is the
/// callout's timeout (Envoy gives no headers when it cuts a dripping body).
fn timed_out_at(result: CallResult, now_ms: u64, deadline_ms: u64) -> CallResult {
    if result.status.is_none() && now_ms + 50 >= deadline_ms {
        return CallResult {
            status: Some(504),
            ..result
        };
    }
    result
}

/// Runs started by this worker (Wasm VM): with the start time and a hash of the
/// request id, it makes run ids unique per run even when clients reuse an
/// `x-request-id` or send none.
static RUNS_STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn new_run_id(request_id: &str, now_ms: u64) -> String {
    use std::hash::{Hash, Hasher};
    let seq = RUNS_STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    request_id.hash(&mut h);
    format!("fr-{now_ms:x}-{seq:x}-{:016x}", h.finish())
}

fn short_id(request_id: &str) -> String {
    // ASCII letters and digits are single bytes: the bytes filter as the chars would.
    let mut id = String::with_capacity(32);
    for b in request_id
        .bytes()
        .filter(u8::is_ascii_alphanumeric)
        .take(32)
    {
        id.push(char::from(b));
    }
    if id.is_empty() {
        "0".to_string()
    } else {
        id
    }
}
