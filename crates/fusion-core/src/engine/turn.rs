//! One fusion turn: outer rounds, the panel fan-out, the judge, the final answer.

use super::call::{self, CallResult, Failure};
use super::fusion_tool::{self, MemberOutcome, TOOL_NAME};
use super::judge;
use super::{Command, LocalReply, RequestInfo};
use crate::api::{self, Api, ApiError, ClientRequest, ResponseMeta};
use crate::config::Config;
use crate::conversation::{
    Conversation, GenParams, Message, ModelRequest, Reply, ToolCall, ToolChoice, Usage,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::rc::Rc;

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

    fn report(&self) -> Value {
        let mut v = json!({
            "model": self.model,
            "status": match self.status {
                Status::Pending => "pending",
                Status::Ok(_) => "ok",
                Status::Failed(_) => "failed",
            },
            "latency_ms": self.latency_ms,
            "usage": {"input_tokens": self.usage.input_tokens, "output_tokens": self.usage.output_tokens},
        });
        if let (Status::Failed(f), Some(obj)) = (&self.status, v.as_object_mut()) {
            obj.insert("failure_reason".into(), json!(f.reason()));
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
    mode: &'static str,
    started_ms: u64,
    /// Assistant tool calls and tool results appended to the client's conversation.
    history: Vec<Message>,
    phase: Phase,
    rounds: u32,
    invocations: u32,
    /// The fusion tool call being answered by the running panel.
    fusion_call: Option<ToolCall>,
    panel: Vec<CallRecord>,
    judge: Option<CallRecord>,
    analysis: bool,
    outer: Vec<CallRecord>,
    next_id: u32,
    pending: BTreeMap<u32, Role>,
    usage: Usage,
}

impl Turn {
    /// Alias mode: fusion is forced, so the panel starts at once; no outer
    /// round is spent deciding a call whose answer is known.
    pub fn start_forced(
        config: Rc<Config>,
        api: Api,
        info: RequestInfo,
        req: ClientRequest,
        now_ms: u64,
    ) -> (Turn, Vec<Command>) {
        let mut turn = Turn {
            config,
            api,
            info,
            req,
            mode: "alias",
            started_ms: now_ms,
            history: Vec::new(),
            phase: Phase::Outer,
            rounds: 0,
            invocations: 0,
            fusion_call: None,
            panel: Vec::new(),
            judge: None,
            analysis: false,
            outer: Vec::new(),
            next_id: 0,
            pending: BTreeMap::new(),
            usage: Usage::default(),
        };
        let call = ToolCall {
            id: format!("call_fusion_{}", short_id(&turn.info.request_id)),
            name: TOOL_NAME.to_string(),
            arguments: json!({"question": turn.req.conversation.last_user_text()}).to_string(),
        };
        let commands = turn.start_fusion(call, now_ms);
        (turn, commands)
    }

    /// Calls dispatched and not yet answered.
    pub fn pending_calls(&self) -> usize {
        self.pending.len()
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// A callout answered (or failed). Unknown ids (answers after the turn ended) are ignored.
    pub fn on_call_result(&mut self, id: u32, result: CallResult, now_ms: u64) -> Vec<Command> {
        let Some(role) = self.pending.remove(&id) else {
            return Vec::new();
        };
        match role {
            Role::Panel(i) => self.on_panel_answer(i, &result, now_ms),
            Role::Judge => self.on_judge_answer(&result, now_ms),
            Role::Outer => self.on_outer_answer(&result, now_ms),
        }
    }

    fn start_fusion(&mut self, call: ToolCall, now_ms: u64) -> Vec<Command> {
        self.invocations += 1;
        self.fusion_call = Some(call);
        self.phase = Phase::Panel;
        let members: Vec<String> = self.config.panel.iter().map(|m| m.model.clone()).collect();
        let params = GenParams::default();
        let mut commands = Vec::with_capacity(members.len());
        for (i, model) in members.iter().enumerate() {
            self.panel.push(CallRecord::new(model, now_ms));
            let conversation = self.req.conversation.clone();
            match self.dispatch(
                Role::Panel(i),
                model,
                &conversation,
                false,
                &params,
                self.tool_deadline(now_ms),
                now_ms,
            ) {
                Some(c) => commands.push(c),
                None => {
                    if let Some(rec) = self.panel.get_mut(i) {
                        rec.status = Status::Failed(Failure::Unreachable);
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
        let outcome = call::classify(
            self.config_api_of(self.panel.get(i).map(|r| r.model.as_str())),
            result,
        );
        let usage = match &outcome {
            Ok(reply) => reply.usage,
            Err(_) => call::failed_usage(
                self.config_api_of(self.panel.get(i).map(|r| r.model.as_str())),
                result,
            ),
        };
        self.usage.add(usage);
        if let Some(rec) = self.panel.get_mut(i) {
            rec.latency_ms = now_ms.saturating_sub(rec.started_ms);
            rec.usage = usage;
            rec.status = match outcome {
                Ok(reply) if reply.text.trim().is_empty() => Status::Failed(Failure::Empty),
                Ok(reply) => Status::Ok(reply.text),
                Err(f) => Status::Failed(f),
            };
        }
        if self.phase != Phase::Panel || self.pending.values().any(|r| matches!(r, Role::Panel(_)))
        {
            return Vec::new();
        }
        self.after_panel(now_ms)
    }

    /// Every member answered or failed: judge the answers, or report the failure.
    fn after_panel(&mut self, now_ms: u64) -> Vec<Command> {
        let answers: Vec<String> = self
            .panel
            .iter()
            .filter_map(|r| match &r.status {
                Status::Ok(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        if answers.is_empty() {
            return self.finish_fusion(None, now_ms);
        }
        self.phase = Phase::Judge;
        let model = self.config.judge.clone();
        let refs: Vec<&str> = answers.iter().map(String::as_str).collect();
        let conversation = judge::judge_conversation(&self.req.conversation, &refs);
        let params = GenParams {
            temperature: Some(0.0),
            ..GenParams::default()
        };
        self.judge = Some(CallRecord::new(&model, now_ms));
        match self.dispatch(
            Role::Judge,
            &model,
            &conversation,
            false,
            &params,
            self.tool_deadline(now_ms),
            now_ms,
        ) {
            Some(c) => vec![c],
            None => self.finish_fusion(None, now_ms),
        }
    }

    fn on_judge_answer(&mut self, result: &CallResult, now_ms: u64) -> Vec<Command> {
        let api = self.config_api_of(Some(self.config.judge.as_str()));
        let outcome = call::classify(api, result);
        let usage = match &outcome {
            Ok(r) => r.usage,
            Err(_) => call::failed_usage(api, result),
        };
        self.usage.add(usage);
        let analysis = outcome
            .as_ref()
            .ok()
            .and_then(|r| judge::parse_analysis(&r.text));
        if let Some(rec) = self.judge.as_mut() {
            rec.latency_ms = now_ms.saturating_sub(rec.started_ms);
            rec.usage = usage;
            rec.status = match (&outcome, &analysis) {
                (Ok(r), Some(_)) => Status::Ok(r.text.clone()),
                (Ok(_), None) => Status::Failed(Failure::Unusable),
                (Err(f), _) => Status::Failed(*f),
            };
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
                    Status::Pending => Err("late".to_string()),
                },
            })
            .collect();
        let result = fusion_tool::tool_result(&outcomes, analysis.as_ref());
        let Some(call) = self.fusion_call.take() else {
            return self.fail(ApiError::upstream(500, "fusion finished without a call"));
        };
        self.history.push(Message::Assistant {
            text: String::new(),
            tool_calls: vec![call.clone()],
        });
        self.history.push(Message::ToolResult {
            call_id: call.id,
            content: result.to_string(),
        });
        self.outer_round(now_ms)
    }

    fn outer_round(&mut self, now_ms: u64) -> Vec<Command> {
        self.phase = Phase::Outer;
        self.rounds += 1;
        let model = self.outer_model().to_string();
        let mut conversation = self.req.conversation.clone();
        conversation.messages.extend(self.history.iter().cloned());
        let params = self.req.params.clone();
        self.outer.push(CallRecord::new(&model, now_ms));
        match self.dispatch(
            Role::Outer,
            &model,
            &conversation,
            true,
            &params,
            self.turn_deadline(),
            now_ms,
        ) {
            Some(c) => vec![c],
            None => self.fail(ApiError::upstream(504, "the turn's time budget ran out")),
        }
    }

    fn on_outer_answer(&mut self, result: &CallResult, now_ms: u64) -> Vec<Command> {
        let model = self.outer_model().to_string();
        let api = self.config_api_of(Some(&model));
        let outcome = call::classify(api, result);
        let usage = match &outcome {
            Ok(r) => r.usage,
            Err(_) => call::failed_usage(api, result),
        };
        self.usage.add(usage);
        if let Some(rec) = self.outer.last_mut() {
            rec.latency_ms = now_ms.saturating_sub(rec.started_ms);
            rec.usage = usage;
            rec.status = match &outcome {
                Ok(r) => Status::Ok(r.text.clone()),
                Err(f) => Status::Failed(*f),
            };
        }
        let mut reply = match outcome {
            Ok(r) => r,
            Err(f) => {
                let status = match f {
                    Failure::RateLimited => 429,
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
        if !client_calls.is_empty() || fusion_calls.is_empty() {
            reply.tool_calls = client_calls;
            return self.finish(reply, false);
        }
        // The model asked for fusion again: the cap answers it, and the turn goes on.
        self.history.push(Message::Assistant {
            text: reply.text.clone(),
            tool_calls: fusion_calls.clone(),
        });
        for c in fusion_calls {
            self.history.push(Message::ToolResult {
                call_id: c.id,
                content: fusion_tool::capped_result().to_string(),
            });
        }
        if self.rounds >= self.config.limits.max_rounds {
            reply.tool_calls.clear();
            return self.finish(reply, true);
        }
        self.outer_round(now_ms)
    }

    fn outer_model(&self) -> &str {
        self.config
            .synthesizer
            .as_deref()
            .unwrap_or(&self.config.outer_model)
    }

    fn config_api_of(&self, model: Option<&str>) -> Api {
        model
            .and_then(|m| self.config.resolve(m))
            .map_or(Api::Chat, |t| t.upstream.api)
    }

    /// Absolute deadline for calls inside the fusion tool: the tool budget from the
    /// invocation's start, never past the turn's.
    fn tool_deadline(&self, now_ms: u64) -> u64 {
        let tool_start = self.panel.first().map_or(now_ms, |r| r.started_ms);
        (tool_start + self.config.limits.tool_timeout_ms).min(self.turn_deadline())
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
        let timeout_ms = deadline_ms.saturating_sub(now_ms);
        if timeout_ms == 0 {
            return None;
        }
        let config = Rc::clone(&self.config);
        let target = config.resolve(model)?;
        let mut tools = Vec::new();
        let mut choice = ToolChoice::Auto;
        if with_tools {
            tools = self.req.tools.clone();
            tools.push(fusion_tool::tool_def());
            // The one invocation is spent: with no client tools, ask for text.
            if self.invocations > 0 && self.req.tools.is_empty() {
                choice = ToolChoice::None;
            } else if !matches!(&self.req.tool_choice, ToolChoice::Named(n) if n == TOOL_NAME) {
                choice = self.req.tool_choice.clone();
            }
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
        let depth = (self.config.depth_header.as_str(), self.info.depth + 1);
        Some(Command::Dispatch(call::build(
            id,
            target,
            &request,
            depth,
            &self.info.client_auth,
            timeout_ms,
        )))
    }

    fn finish(&mut self, reply: Reply, truncated: bool) -> Vec<Command> {
        self.phase = Phase::Done;
        let meta = ResponseMeta {
            id: format!("fusion-{}", self.info.request_id),
            created_s: self.started_ms / 1000,
            usage: self.usage,
            fusion: self.report(),
            truncated,
        };
        let mut reply = reply;
        reply.model = self.outer_model().to_string();
        let body = api::write_response(self.api, &reply, &meta);
        vec![Command::Reply(LocalReply::json(200, &body))]
    }

    fn fail(&mut self, err: ApiError) -> Vec<Command> {
        self.phase = Phase::Done;
        let mut body = api::error_body(self.api, &err);
        if let Some(obj) = body.as_object_mut() {
            obj.insert("fusion".into(), self.report());
        }
        vec![Command::Reply(LocalReply::json(err.status, &body))]
    }

    /// The `fusion` object every response carries.
    pub fn report(&self) -> Value {
        json!({
            "run_id": self.info.request_id,
            "mode": self.mode,
            "panel": self.panel.iter().map(CallRecord::report).collect::<Vec<_>>(),
            "judge": self.judge.as_ref().map(CallRecord::report),
            "analysis": self.analysis,
            "synthesizer": self.outer_model(),
            "rounds": self.rounds,
            "invocations": self.invocations,
        })
    }
}

fn short_id(request_id: &str) -> String {
    let id: String = request_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    if id.is_empty() {
        "0".to_string()
    } else {
        id
    }
}
