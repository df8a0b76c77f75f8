//! Outer rounds and the end of the turn: the outer model decides (or writes
//! the answer), the final answer goes to the client locally or streams up the
//! request's own route, and failures answer in the client's API.

use super::call_body::CallBody;
use super::ledger::{CallRecord, CallStatus};
use super::{Budget, Command, Convo, Mode, NotSent, Phase, Role, Turn};
use crate::config::Auth;
use crate::engine::call::{self, CallResult, Failure};
use crate::engine::{fusion_tool, LocalReply, Resume};
use crate::wire::neutral::{
    Conversation, GenParams, Message, ModelRequest, Reply, ToolCall, ToolChoice,
};
use crate::wire::patch::{self, CallRole, PatchSpec};
use crate::wire::relay::{FinalCall, Relay};
use crate::wire::splice::Patched;
use crate::wire::{self, Api, ApiError, ResponseMeta, FUSION_TOOL};
use serde_json::{json, Value};
use std::rc::Rc;

impl Turn {
    pub(super) fn on_outer_answer(&mut self, result: &CallResult, now_ms: u64) -> Vec<Command> {
        let model = self.answering_model().to_string();
        let api = self.api_of(&model);
        let outcome = match self.ledger.outer.last_mut() {
            Some(rec) => {
                let o = rec.settle(api, result, now_ms);
                let usage = rec.usage;
                self.ledger.count(usage);
                o
            }
            None => match api {
                Some(api) => call::classify(api, result),
                None => Err(Failure::Unreachable),
            },
        };
        let mut reply = match outcome {
            Ok(r) => r,
            // The turn's own budget ran out under this call: end with what we have.
            Err(Failure::Timeout) if now_ms + 100 >= self.turn_deadline() => {
                return self.finish_truncated(Budget::Turn)
            }
            Err(f) => return self.refused_or_failed(&model, f, result),
        };
        let (fusion_calls, client_calls): (Vec<ToolCall>, Vec<ToolCall>) = reply
            .tool_calls
            .drain(..)
            .partition(|c| c.name == FUSION_TOOL);
        // Text, or a call of the client's own tools: the turn ends, as without the filter.
        if !client_calls.is_empty() || fusion_calls.is_empty() {
            reply.tool_calls = client_calls;
            return self.finish(reply, false);
        }
        self.last_text = reply.text;
        if api == Some(Api::Messages) {
            self.outer_thinking = thinking_blocks(&result.body);
        }
        if self.invocations == 0 {
            let mut calls = fusion_calls.into_iter();
            if let Some(first) = calls.next() {
                // Further fusion calls in the same message are answered by the cap.
                self.capped_with_call = calls.collect();
                return self.start_fusion(first, now_ms);
            }
            return self.finish_truncated(Budget::Turn);
        }
        // One invocation per turn: a further call is answered by the cap, and the
        // turn goes on for one round; a model that calls fusion again after that
        // would only loop (each round resends the whole conversation): the turn
        // ends there, truncated.
        if self.capped_rounds > 0 {
            return self.finish_truncated(Budget::Rounds);
        }
        self.capped_rounds += 1;
        self.cap_hits += fusion_calls.len() as u32;
        self.history.push(Message::Assistant {
            text: std::mem::take(&mut self.last_text),
            tool_calls: fusion_calls.clone(),
        });
        for c in fusion_calls {
            self.history.push(Message::ToolResult {
                call_id: c.id,
                content: crate::text::json(&fusion_tool::capped_result()),
            });
        }
        self.outer_round(now_ms)
    }

    /// The answering model's provider refused the request itself (the client's
    /// body, patched, or a part of it it cannot take): a 400 with the
    /// provider's words, since resending the same request cannot help. Any
    /// other failure is the gateway's ([`Self::fail_answering`]).
    fn refused_or_failed(&mut self, model: &str, f: Failure, result: &CallResult) -> Vec<Command> {
        let refused = matches!(
            f,
            Failure::HttpError(400 | 404 | 413 | 422)
                | Failure::UnsupportedParameter
                | Failure::ContextLengthExceeded
                | Failure::ContentFilter
        );
        if !refused {
            return self.fail_answering(model, f);
        }
        let said = provider_message(&result.body);
        self.fail(ApiError::invalid(
            format!(
                "the model `{model}` that writes the final answer refused the request ({}){}",
                f.reason(),
                said.map(|m| format!(": {m}")).unwrap_or_default()
            ),
            None,
        ))
    }

    /// The model that writes the answer failed: a native error with the report.
    fn fail_answering(&mut self, model: &str, f: Failure) -> Vec<Command> {
        let status = match f {
            Failure::RateLimited => 429,
            Failure::InsufficientCredits => 402,
            Failure::Timeout => 504,
            _ => 502,
        };
        self.fail(ApiError::upstream(
            status,
            format!(
                "the model `{model}` that writes the final answer failed: {}",
                f.reason()
            ),
        ))
    }

    /// The model of the next outer round: the synthesizer once fusion ran, if one is set.
    pub(super) fn answering_model(&self) -> &str {
        match (&self.plan.synthesizer, self.invocations) {
            (Some(s), n) if n > 0 => s,
            _ => &self.outer_model,
        }
    }

    pub(super) fn outer_round(&mut self, now_ms: u64) -> Vec<Command> {
        self.phase = Phase::Outer;
        if self.rounds >= self.config.limits.max_rounds {
            return self.finish_truncated(Budget::Rounds);
        }
        self.rounds += 1;
        let model = self.answering_model().to_string();
        let params = self.req.params.clone();
        self.ledger.outer.push(CallRecord::new(&model, now_ms));
        if let Some(resume) = self.route_final(&model, &params) {
            return vec![resume];
        }
        let deadline = self.turn_deadline();
        match self.dispatch(
            Role::Outer,
            &model,
            Convo::Outer,
            true,
            &params,
            deadline,
            now_ms,
        ) {
            Ok(c) => vec![c],
            Err(NotSent::NoTime) => self.finish_truncated(Budget::Turn),
            Err(NotSent::OverBudget) => self.finish_truncated(Budget::Upstream),
            Err(NotSent::Unserved) => {
                if let Some(rec) = self.ledger.outer.last_mut() {
                    rec.status = CallStatus::Failed(Failure::Unreachable);
                }
                self.fail_answering(&model, Failure::Unreachable)
            }
        }
    }

    /// After fusion ran, a streaming client's final answer goes up the request's own
    /// route when that route's cluster serves the answering model in the client's
    /// API: the client then gets the provider's stream as it is produced, client
    /// tool calls included, and Envoy's retries and timeouts apply.
    ///
    /// The request keeps its `:path` and `:authority`, so Envoy's route (picked
    /// again once headers change) stays the one whose cluster was compared here:
    /// only the body, the auth header configured for that cluster, the depth and
    /// the timeout change. See docs/deployment.md, "Streaming the final answer".
    /// The body is a callout's: the same exchange (with the outer model's thinking
    /// blocks), the same `unsupported_params` removed, the same upstream budget.
    fn route_final(&mut self, model: &str, params: &GenParams) -> Option<Command> {
        if self.invocations == 0 || !self.req.stream {
            return None;
        }
        let config = Rc::clone(&self.config);
        let target = config.resolve(model)?;
        if self.info.route_cluster.as_deref() != Some(target.upstream.cluster.as_str())
            || target.upstream.api != self.api
        {
            return None;
        }
        let mut body = match self.final_patch(target.model) {
            Some(patched) => CallBody::Patched(patched),
            // Merge mode, or more than the one fusion exchange: rebuilt, and only
            // without client tools (a rebuilt call cannot carry them all).
            None if self.req.tools.is_empty() => {
                let conversation = self.outer_conversation();
                CallBody::Rebuilt(self.final_rebuilt(target.model, &conversation, params))
            }
            None => return None,
        };
        let clamped = body.fit(config.unsupported_params(model), target.upstream.api);
        let body = body.write(&self.client);
        // A call like a callout's: over the amplification bound, the callout
        // path decides (and refuses it too, unless its own body fits).
        if !self.take_upstream_budget(body.len()) {
            return None;
        }
        if let (false, Some(rec)) = (clamped.is_empty(), self.ledger.outer.last_mut()) {
            rec.clamped = clamped;
        }
        let mut headers = vec![(
            self.config.depth_header.clone(),
            self.depth_header().1.to_string(),
        )];
        let mut remove = Vec::new();
        match &target.upstream.auth {
            Auth::Header { name, value } => {
                headers.push((name.clone(), value.clone()));
                // The client's own key does not go along with the operator's.
                remove.extend(
                    self.info
                        .client_auth
                        .iter()
                        .map(|(k, _)| k.clone())
                        .filter(|k| !k.eq_ignore_ascii_case(name)),
                );
            }
            // As on a pass-through request: the route's own headers.
            Auth::Forward | Auth::None => {}
        }
        // The relay rewrites the stream: it must arrive uncompressed.
        headers.push(("accept-encoding".into(), "identity".into()));
        // The route's own timeout would apply otherwise: hold it to the turn's budget.
        let remaining = self.turn_deadline().saturating_sub(self.clock_ms).max(1);
        headers.push((
            "x-envoy-upstream-rq-timeout-ms".into(),
            remaining.to_string(),
        ));
        self.phase = Phase::Done;
        let final_call = FinalCall {
            prior_cost: self.ledger.cost(&self.config),
            price: self.config.price(model),
            client_wants_usage: self.req.include_usage,
        };
        self.relay = Some(Relay::new(
            self.api,
            self.ledger.usage,
            self.report(),
            final_call,
        ));
        Some(Command::Resume(Resume {
            headers,
            remove,
            body,
        }))
    }

    /// An outer round's conversation when the call is rebuilt: the client's
    /// and the turn's history (merge mode: the synthesis conversation).
    pub(super) fn outer_conversation(&self) -> Conversation {
        match &self.merge_conversation {
            Some(c) => c.clone(),
            None => {
                let mut c = self.req.conversation.clone();
                c.messages.extend(self.history.iter().cloned());
                c
            }
        }
    }

    /// The final call as a patch of the client's own body (everything the client
    /// sent goes along: images, `cache_control`, `response_format`, its tools),
    /// with the one fusion exchange appended. `None` when the history is not
    /// exactly that exchange (merge mode, capped extra calls).
    fn final_patch(&self, model: &str) -> Option<Patched> {
        if self.mode == Mode::Merge {
            return None;
        }
        let exchange = self.fusion_exchange()?;
        // The history holds the fusion call: Anthropic wants the tool declared;
        // OpenAI's APIs take the history without it (see `offers_fusion`).
        // Without client tools it stays, with `tool_choice: none`.
        let extra_tools: Vec<Value> = if self.offers_fusion(self.api) {
            vec![patch::tool_entry(self.api, &fusion_tool::tool_def())]
        } else {
            Vec::new()
        };
        // The one invocation is spent: without client tools, text only; with
        // them, the client's own choice (one naming fusion is dropped by the patch).
        let mut set = Vec::new();
        if self.req.tools.is_empty() && !extra_tools.is_empty() {
            let none = match self.api {
                Api::Messages => wire::messages::tool_choice_none(),
                Api::Chat | Api::Responses => json!("none"),
            };
            set.push(("tool_choice", none));
        }
        set.extend(super::thinking_off(self.api, Some(&exchange)));
        let spec = PatchSpec {
            role: CallRole::Final,
            model,
            stream: true,
            extra_tools: &extra_tools,
            set: &set,
            exchange: Some(&exchange),
        };
        self.client.patch(self.api, &spec).ok()
    }

    /// The final call rebuilt from the neutral conversation.
    fn final_rebuilt(&self, model: &str, conversation: &Conversation, params: &GenParams) -> Value {
        // The history holds fusion tool calls: Anthropic needs the tool declared.
        let tools = if self.mode == Mode::Merge || !self.offers_fusion(self.api) {
            Vec::new()
        } else {
            vec![fusion_tool::tool_def()]
        };
        let params = self.rebuilt_params(self.api, params);
        let request = ModelRequest {
            model,
            conversation,
            tools: &tools,
            tool_choice: &ToolChoice::None,
            params: &params,
        };
        let mut body = wire::build_request(self.api, &request);
        if let Some(obj) = body.as_object_mut() {
            obj.insert("stream".into(), json!(true));
            // Always asked for: the report needs it; the relay drops the usage
            // chunk when the client did not ask for it.
            if self.api == Api::Chat {
                obj.insert("stream_options".into(), json!({"include_usage": true}));
            }
        }
        body
    }

    /// The final answer streams up the route and its end was not seen.
    pub fn relay_incomplete(&self) -> bool {
        self.relay.is_some() && self.ended_ms.is_none()
    }

    /// Whether the response comes from the route and must pass through [`Self::on_response_body`].
    pub fn relays_response(&self) -> bool {
        self.relay.is_some()
    }

    /// The route's response headers came. A 2xx event stream is relayed as it
    /// comes; anything else (a provider error, Envoy's own 503/504 reply, a
    /// whole JSON answer, an answer from another cluster than the one compared)
    /// is read whole and answered by [`Self::on_buffered_response`]. `served_by`:
    /// the cluster of the route Envoy finally used. Returns whether the body
    /// must be buffered.
    pub fn on_response_head(
        &mut self,
        status: Option<u16>,
        content_type: Option<&str>,
        served_by: Option<&str>,
    ) -> bool {
        self.answered_report = None;
        if self.relay.is_none() {
            return false;
        }
        let expected = self
            .config
            .resolve(self.answering_model())
            .map(|t| t.upstream.cluster.clone());
        if let (Some(got), Some(want)) = (served_by, expected) {
            if got != want {
                self.relay_misrouted = Some(got.to_string());
            }
        }
        let streams = status.is_some_and(|s| (200..300).contains(&s))
            && content_type
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/event-stream"));
        self.relay_buffered = !streams || self.relay_misrouted.is_some();
        self.relay_buffered
    }

    /// Whether the route's response is read whole (see [`Self::on_response_head`]).
    pub fn buffers_response(&self) -> bool {
        self.relay_buffered
    }

    /// The whole route response that was not a stream: the answer (a JSON answer
    /// written as the client's stream) or the failure in the client's API with
    /// the report, counted as the final call's failure.
    pub fn on_buffered_response(
        &mut self,
        status: Option<u16>,
        body: &[u8],
        now_ms: u64,
    ) -> LocalReply {
        self.answered_report = None;
        self.clock_ms = self.clock_ms.max(now_ms);
        self.relay_buffered = false;
        let model = self.answering_model().to_string();
        let result = CallResult {
            status,
            body: body.to_vec(),
            oversize: false,
        };
        let api = Some(self.api);
        let outcome = match self.ledger.outer.last_mut() {
            Some(rec) => {
                let o = rec.settle(api, &result, now_ms);
                let usage = rec.usage;
                self.ledger.count(usage);
                o
            }
            None => call::classify(self.api, &result),
        };
        if let Some(got) = self.relay_misrouted.clone() {
            // Not the configured provider's answer: never passed on as one.
            if let Some(rec) = self.ledger.outer.last_mut() {
                rec.status = CallStatus::Failed(Failure::Unreachable);
            }
            // The run's log line carries this message: the operator sees the cluster.
            return self.fail_reply(ApiError::upstream(
                502,
                format!(
                    "the final request for `{model}` was served by cluster `{got}`: a route matches on a header the filter sets (docs/deployment.md)"
                ),
            ));
        }
        let commands = match outcome {
            Ok(reply) => self.finish(reply, false),
            // The provider's own status tells the client most.
            Err(Failure::HttpError(code)) => {
                let mut c = self.fail_answering(&model, Failure::HttpError(code));
                if let Some(Command::Reply(r)) = c.first_mut() {
                    r.status = code;
                }
                c
            }
            Err(f) => self.fail_answering(&model, f),
        };
        Self::reply_of(self.api, commands)
    }

    fn fail_reply(&mut self, err: ApiError) -> LocalReply {
        let commands = self.fail(err);
        Self::reply_of(self.api, commands)
    }

    fn reply_of(api: Api, commands: Vec<Command>) -> LocalReply {
        match commands.into_iter().next() {
            Some(Command::Reply(r)) => r,
            _ => LocalReply::error(
                api,
                &ApiError::upstream(502, "the final answer could not be read"),
            ),
        }
    }

    /// One chunk of the route's response body; returns what to send the client now.
    /// `end`: the response is complete (its last body chunk, or its trailers came).
    pub fn on_response_body(&mut self, chunk: &[u8], end: bool, now_ms: u64) -> Vec<u8> {
        self.answered_report = None;
        self.clock_ms = self.clock_ms.max(now_ms);
        match self.relay.as_mut() {
            Some(relay) => {
                if self.ended_ms.is_some() {
                    // Already complete (trailers after a final chunk): nothing more to rewrite.
                    return chunk.to_vec();
                }
                let out = relay.chunk(chunk, end);
                if end {
                    self.ended_ms = Some(self.clock_ms);
                    let usage = relay.relayed_usage;
                    if let Some(rec) = self.ledger.outer.last_mut() {
                        rec.usage = usage;
                        rec.latency_ms = self.clock_ms.saturating_sub(rec.started_ms);
                        rec.status = CallStatus::Ok(String::new());
                    }
                    self.ledger.count(usage);
                }
                out
            }
            None => chunk.to_vec(),
        }
    }

    pub(super) fn outer_tool_choice(&self) -> ToolChoice {
        if self.invocations == 0 {
            return self.req.tool_choice.clone();
        }
        // The one invocation is spent: with no client tools, ask for text.
        if self.req.tools.is_empty() {
            return ToolChoice::None;
        }
        match &self.req.tool_choice {
            ToolChoice::Named(n) if n == FUSION_TOOL => ToolChoice::Auto,
            other => other.clone(),
        }
    }

    pub(super) fn finish_truncated(&mut self, budget: Budget) -> Vec<Command> {
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
        // The deliberation (the tool result the answering model got: responses,
        // analysis, failed_models) is in the `fusion` extension object only: the
        // content carries the answer alone, which every SDK and framework parses
        // (README, "How the client sees the fusion call").
        let mut fusion = self.report();
        // The tool result is JSON text already (the history's): the reply gets a
        // marker in its place, and the text is spliced in once the reply is
        // written, instead of a tree copied and escaped once more.
        let tool_result = self.fusion_tool_result();
        let marker = format!("\u{0}tool_result {}\u{0}", self.run_id);
        if let (Some((id, _)), Some(obj)) = (tool_result, fusion.as_object_mut()) {
            obj.insert("call_id".into(), json!(id));
            obj.insert("tool_result".into(), json!(marker));
        }
        let mut meta = ResponseMeta {
            id: format!("fusion-{}", super::short_id(&self.run_id)),
            created_s: self.started_ms / 1000,
            usage: self.ledger.usage,
            fusion,
            truncated,
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
            // Every API's response carries `fusion` at its top level: the
            // report goes in as it is and comes back out once the reply is
            // written (`json!` in the writers would copy it through serde).
            let fusion = std::mem::take(&mut meta.fusion);
            let mut written = wire::write_response(self.api, &reply, &meta);
            if let Some(obj) = written.as_object_mut() {
                obj.insert("fusion".into(), fusion);
            }
            let response = LocalReply::json(200, &written);
            if let Some(fusion) = written.get_mut("fusion") {
                meta.fusion = fusion.take();
            }
            response
        };
        if let Some((_, text)) = tool_result {
            splice_marker(
                &mut response.body,
                &call::json_bytes(&json!(marker)),
                text.as_bytes(),
            );
        }
        response.headers.extend(self.debug_headers());
        // The run's log line shows the same report: kept instead of built again.
        if let Some(obj) = meta.fusion.as_object_mut() {
            obj.remove("call_id");
            obj.remove("tool_result");
        }
        self.answered_report = Some(meta.fusion);
        vec![Command::Reply(response)]
    }

    /// The fusion call's id and its tool result (JSON text), once fusion ran.
    fn fusion_tool_result(&self) -> Option<(&str, &str)> {
        let id = self.fusion_call_id.as_deref()?;
        self.history.iter().find_map(|m| match m {
            Message::ToolResult { call_id, content } if call_id == id => {
                Some((id, content.as_str()))
            }
            _ => None,
        })
    }

    pub(super) fn fail(&mut self, err: ApiError) -> Vec<Command> {
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
}

/// Replaces every occurrence of `marker` in `body` with `text` (a stream may
/// carry the `fusion` object in more than one event). The marker holds the
/// run's id, which no model saw: no text a model wrote can spell it.
fn splice_marker(body: &mut Vec<u8>, marker: &[u8], text: &[u8]) {
    let mut out = Vec::with_capacity(body.len() + text.len());
    let mut from = 0;
    for at in memchr::memmem::find_iter(body, marker) {
        out.extend_from_slice(body.get(from..at).unwrap_or_default());
        out.extend_from_slice(text);
        from = at.saturating_add(marker.len());
    }
    if from == 0 {
        return;
    }
    out.extend_from_slice(body.get(from..).unwrap_or_default());
    *body = out;
}

/// The thinking blocks of a Messages answer, raw with their signatures.
fn thinking_blocks(body: &[u8]) -> Vec<serde_json::Value> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    v.get("content")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter(|b| {
            matches!(
                b.get("type").and_then(serde_json::Value::as_str),
                Some("thinking" | "redacted_thinking")
            )
        })
        .cloned()
        .collect()
}

/// The message of a provider's error body, in any of the three APIs' shapes.
fn provider_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = v
        .get("error")
        .and_then(|e| e.get("message"))
        .or_else(|| v.get("message"))?
        .as_str()?;
    Some(crate::text::char_span(message, 0, 500).to_string())
}
