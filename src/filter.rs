//! The per-stream HTTP context: translates callbacks into engine events and
//! engine commands into host calls. Policy (eligibility, depth, capacity,
//! size, client gone) is the engine's; every host refusal is logged and
//! handled, never a panic.
//!
//! The stream's state lives in `Rc<RefCell<Stream>>` so the root's tick can
//! reach it too (a quorum's grace period ends there).

use crate::host::{BufferType, HeaderPairs, Host, MapType, Status};
use crate::shared::{Shared, StreamHandle, StreamRef};
use fusion_core::engine::admit;
use fusion_core::engine::route::RoutePolicy;
use fusion_core::engine::{
    self, CallResult, Command, Include, LocalReply, Refusal, RequestInfo, Resume, Start, Turn,
};
use fusion_core::vec_map::VecMap;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;

pub struct Stream {
    context_id: u32,
    shared: Rc<Shared>,
    me: Weak<RefCell<Stream>>,
    /// Why a request that asked for fusion went on without it (`x-fusion-skipped`).
    skipped: Option<Refusal>,
    turn: Option<Box<Turn>>,
    /// The filter state values last set (`publish_state`): an unchanged one is not set again.
    published: Vec<String>,
    /// Callouts in flight: host token -> engine call id. A token leaves when
    /// its call has ended (answered, failed or timed out).
    tokens: VecMap<u32, u32>,
    /// Size of the buffered request body, replaced when the request resumes.
    body_size: usize,
    /// This stream holds one of the worker's `max_concurrent_runs` slots: from
    /// the run's start until its answer is out and `tokens` is empty.
    holds_slot: bool,
    /// The stream is over (client answered or gone): callout answers are only
    /// counted; nothing new starts for it.
    over: bool,
    /// Size of the route's response body buffered so far (a non-stream final answer).
    response_size: usize,
    /// Bytes this run sent upstream and buffered from answers (released with the slot).
    held_bytes: u64,
    /// When the latest callout dispatched has ended for sure (its timeout):
    /// bounds how long a gone run waits for an answer a host would lose.
    calls_end_ms: u64,
}

pub struct FusionFilter {
    context_id: u32,
    shared: Rc<Shared>,
    /// A request whose headers make it a candidate for fusion, held until its
    /// body is complete (plain fields, no allocation).
    held: Option<Held>,
    /// The stream's state, made once the body may ask for fusion: any other
    /// request (a GET, a POST elsewhere, a body naming no fusion) allocates
    /// nothing and every later callback returns at once.
    stream: Option<Rc<RefCell<Stream>>>,
}

/// A candidate request whose body is being buffered.
#[derive(Clone, Copy)]
struct Held {
    candidate: admit::Candidate,
    /// Size of the body buffered so far.
    body_size: usize,
}

impl FusionFilter {
    pub fn new(context_id: u32, shared: Rc<Shared>) -> FusionFilter {
        FusionFilter {
            context_id,
            shared,
            held: None,
            stream: None,
        }
    }

    /// Whether the stream's state was made (tests: a plain request makes none).
    #[cfg(test)]
    pub fn has_state(&self) -> bool {
        self.stream.is_some()
    }

    /// The stream's state; `None` (the default comes back) for a request that is
    /// no candidate, and on re-entrance, which the host does not do.
    fn with<R>(&self, default: R, f: impl FnOnce(&mut Stream) -> R) -> R {
        let Some(stream) = &self.stream else {
            return default;
        };
        match stream.try_borrow_mut() {
            Ok(mut s) => f(&mut s),
            Err(_) => {
                log::error!("fusion: stream state re-entered; callback ignored");
                default
            }
        }
    }

    /// Only the headers that decide eligibility are read here, each only when
    /// the one before left the request in question (a GET with a body costs one
    /// read, one whose headers end the stream none): what the run needs besides
    /// is read once the body asks for fusion.
    fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        if end_of_stream || self.held.is_some() || self.stream.is_some() {
            return Action::Continue;
        }
        let host = &*self.shared.host;
        let Some(candidate) = admit::candidate(end_of_stream, |name| request_header(host, name))
        else {
            return Action::Continue;
        };
        self.held = Some(Held {
            candidate,
            body_size: 0,
        });
        // Hold the headers until the body decides (allow_on_headers_stop_iteration).
        Action::Pause
    }

    /// A held request's body chunk: buffered until its end (nothing read per chunk).
    fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(held) = self.held.as_mut() else {
            return Action::Continue;
        };
        if !end_of_stream {
            held.body_size = body_size;
            return Action::Pause;
        }
        self.request_complete(body_size)
    }

    /// The held request's whole body is buffered: read once and scanned. One
    /// that cannot ask for fusion goes on before any state, host call (clock,
    /// leases, headers, properties) or allocation besides the read: the
    /// pass-through floor. Otherwise the stream's state is made and the engine
    /// decides.
    fn request_complete(&mut self, body_size: usize) -> Action {
        let Some(held) = self.held.take() else {
            return Action::Continue;
        };
        let body = match self
            .shared
            .host
            .get_buffer(BufferType::HttpRequestBody, 0, body_size)
        {
            Ok(b) => b.unwrap_or_default(),
            Err(status) => {
                log::warn!("fusion: reading the request body failed: {status:?}");
                Vec::new()
            }
        };
        if !engine::may_be_fusion(&self.shared.config, &body) {
            return Action::Continue;
        }
        let stream = Stream::new(self.context_id, Rc::clone(&self.shared));
        let action = match stream.try_borrow_mut() {
            Ok(mut s) => s.request_complete(held.candidate, &body, body_size),
            Err(_) => Action::Continue,
        };
        self.stream = Some(stream);
        action
    }
}

/// A request header; a host refusal reads as absent.
fn request_header(host: &dyn Host, name: &str) -> Option<String> {
    absent_if_refused(name, host.get_map_value(MapType::HttpRequestHeaders, name))
}

/// A request header read the host refused reads as absent (with a warning).
fn absent_if_refused(name: &str, read: Result<Option<String>, Status>) -> Option<String> {
    read.unwrap_or_else(|status| {
        log::warn!("fusion: reading request header {name} failed: {status:?}");
        None
    })
}

impl StreamHandle for RefCell<Stream> {
    fn on_timer(&self, now_ms: u64) {
        if let Ok(mut s) = self.try_borrow_mut() {
            if s.over {
                return;
            }
            let commands = s
                .turn
                .as_mut()
                .map(|t| t.on_timer(now_ms))
                .unwrap_or_default();
            s.run(commands, true, now_ms);
        }
    }

    fn on_root_call_response(&self, token: u32, num_headers: usize, body_size: usize) {
        if let Ok(mut s) = self.try_borrow_mut() {
            if let Err(status) = s.host().set_effective_context(s.context_id) {
                log::warn!(
                    "fusion: entering stream {} failed: {status:?}",
                    s.context_id
                );
            }
            s.on_call_response(token, num_headers, body_size, true);
        }
    }
}

impl Stream {
    /// The state of a stream whose request body may ask for fusion.
    fn new(context_id: u32, shared: Rc<Shared>) -> Rc<RefCell<Stream>> {
        Rc::new_cyclic(|me| {
            RefCell::new(Stream {
                context_id,
                shared,
                me: me.clone(),
                skipped: None,
                turn: None,
                published: Vec::new(),
                tokens: VecMap::new(),
                body_size: 0,
                holds_slot: false,
                over: false,
                response_size: 0,
                held_bytes: 0,
                calls_end_ms: 0,
            })
        })
    }

    fn host(&self) -> &dyn Host {
        &*self.shared.host
    }

    fn now_ms(&self) -> u64 {
        self.host().now_ms()
    }

    fn me(&self) -> StreamRef {
        self.me.clone()
    }

    fn set_header(&self, map: MapType, name: &str, value: Option<&str>) {
        if let Err(status) = self.host().set_map_value(map, name, value) {
            log::warn!("fusion: setting header {name} ({map:?}) refused: {status:?}");
        }
    }

    fn buffer(&self, kind: BufferType, size: usize) -> Vec<u8> {
        match self.host().get_buffer(kind, 0, size) {
            Ok(b) => b.unwrap_or_default(),
            Err(status) => {
                log::warn!("fusion: reading {kind:?} failed: {status:?}");
                Vec::new()
            }
        }
    }

    /// Sends a local reply. Returns false when the host refused it.
    fn send_reply(&self, reply: &LocalReply) -> bool {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match self
            .host()
            .send_http_response(u32::from(reply.status), &headers, &reply.body)
        {
            Ok(()) => true,
            Err(status) => {
                log::error!("fusion: send_http_response failed: {status:?}");
                false
            }
        }
    }

    /// Carries out commands; a dispatch the host refuses is fed back as a failed call.
    /// `as_root`: running in the root's tick, so callout answers come to the root.
    /// `now`: the clock as the callback read it (one read per callback).
    fn run(&mut self, commands: Vec<Command>, as_root: bool, now: u64) {
        let mut queue: VecDeque<Command> = commands.into();
        while let Some(command) = queue.pop_front() {
            match command {
                Command::Dispatch(c) => {
                    if !as_root {
                        // The answer must reach the root even if this stream is
                        // gone by then (see `Host::route_answers_to_root`).
                        self.host()
                            .route_answers_to_root(self.shared.root_context_id);
                    }
                    let headers: Vec<(&str, &str)> = c
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    match self.host().dispatch_http_call(
                        &c.cluster,
                        &headers,
                        &c.body,
                        Duration::from_millis(c.timeout_ms),
                    ) {
                        Ok(token) => {
                            self.tokens.insert(token, c.id);
                            let sent = u64::try_from(c.body.len()).unwrap_or(u64::MAX);
                            self.held_bytes = self.held_bytes.saturating_add(sent);
                            self.shared.take_bytes(sent);
                            self.calls_end_ms =
                                self.calls_end_ms.max(now.saturating_add(c.timeout_ms));
                            self.shared.register_root_token(token, self.me());
                        }
                        Err(status) => {
                            log::warn!(
                                "fusion: dispatch to cluster {} failed: {status:?}",
                                c.cluster
                            );
                            if let Some(turn) = self.turn.as_mut() {
                                queue.extend(turn.on_call_result(c.id, CallResult::default(), now));
                            }
                        }
                    }
                }
                Command::Reply(reply) => {
                    // Stragglers still running keep the slot until they end.
                    if self.tokens.is_empty() {
                        self.release_slot();
                    }
                    self.publish_state(false);
                    if !self.send_reply(&reply) {
                        // The client cannot get this answer (e.g. it left): the
                        // run's log line and metrics tell what it came to.
                        log::warn!(
                            "fusion: the answer of run {} could not be sent",
                            self.turn.as_ref().map_or("?", |t| t.run_id())
                        );
                    }
                }
                Command::Resume(resume) => {
                    self.publish_state(false);
                    self.resume(&resume);
                }
                Command::WakeAt(at) => {
                    self.shared.wake_at(at, self.context_id, self.me());
                }
            }
        }
    }

    /// Sends the rewritten request up its own route (the final answer streams back).
    /// `:path` and `:authority` stay the client's (the engine never sets them):
    /// Envoy picks the route again once headers change, and it must be the same.
    fn resume(&self, resume: &Resume) {
        let req = MapType::HttpRequestHeaders;
        if let Err(status) =
            self.host()
                .set_buffer(BufferType::HttpRequestBody, 0, self.body_size, &resume.body)
        {
            log::error!("fusion: replacing the request body failed: {status:?}");
        }
        for name in &resume.remove {
            self.set_header(req, name, None);
        }
        for (k, v) in &resume.headers {
            self.set_header(req, k, Some(v));
        }
        self.set_header(req, "content-length", Some(&resume.body.len().to_string()));
        if let Err(status) = self.host().resume_http_request() {
            log::error!("fusion: resume_http_request failed: {status:?}");
        }
    }

    fn release_slot(&mut self) {
        if self.holds_slot {
            self.holds_slot = false;
            self.shared
                .release_slot(std::mem::take(&mut self.held_bytes));
        }
    }

    /// The stream is over: a run whose callouts still run keeps its slot and
    /// bytes until the root has seen the last one end (`Drop` hands them over),
    /// so a client that leaves does not free capacity the gateway still spends.
    fn end_run_slot(&mut self) {
        self.over = true;
        if self.tokens.is_empty() {
            self.release_slot();
        }
    }

    fn on_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        as_root: bool,
    ) {
        let Some(id) = self.tokens.remove(&token) else {
            return;
        };
        if !as_root {
            // Answered to the stream (a host that ignored the routing to the root).
            if let Ok(mut tokens) = self.shared.root_tokens.try_borrow_mut() {
                tokens.remove(&token);
            }
        }
        let status = if num_headers == 0 {
            None
        } else {
            self.host()
                .get_map_value(MapType::HttpCallResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|s| s.parse::<u16>().ok())
        };
        // An answer past the limit is not read: it counts as a failed call.
        let oversize = body_size > self.shared.config.limits.max_response_bytes;
        // Envoy buffered the answer whole either way: it counts until the run ends.
        let buffered = u64::try_from(body_size).unwrap_or(u64::MAX);
        if self.holds_slot {
            self.held_bytes = self.held_bytes.saturating_add(buffered);
            self.shared.take_bytes(buffered);
        }
        if self.over {
            // Nothing new starts for a stream that is over; this call's end
            // may free the slot.
            if self.tokens.is_empty() {
                self.release_slot();
            }
            return;
        }
        let body = if oversize {
            Vec::new()
        } else {
            self.buffer(BufferType::HttpCallResponseBody, body_size)
        };
        let now = self.now_ms();
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let result = CallResult {
            status,
            body,
            oversize,
        };
        let commands = turn.on_call_result(id, result, now);
        self.run(commands, as_root, now);
        // A run that answered keeps its slot until its last straggler ended.
        if self.tokens.is_empty()
            && self
                .turn
                .as_ref()
                .is_some_and(|t| t.is_done() && !t.relays_response())
        {
            self.release_slot();
        }
    }

    /// What the run needs from the request besides its body; read only for a
    /// request whose body asks for fusion. The request headers come in one
    /// host call (about 18 names are looked up), the route's in one call each.
    fn request_info(&self) -> RequestInfo {
        let config = &self.shared.config;
        let headers = match self.host().get_map_pairs(MapType::HttpRequestHeaders) {
            Ok(pairs) => pairs,
            Err(status) => {
                log::warn!("fusion: reading the request headers failed: {status:?}");
                HeaderPairs::default()
            }
        };
        let header = |name: &str| absent_if_refused(name, headers.get(name));
        let present = |names: &[&str]| -> Vec<(String, String)> {
            names
                .iter()
                .filter_map(|h| header(h).map(|v| (h.to_string(), v)))
                .collect()
        };
        let depth = admit::depth(header(&config.depth_header).as_deref());
        let client_auth = present(&["authorization", "x-api-key"]);
        let route_cluster = self.route_cluster();
        let trace = present(&engine::TRACE_HEADERS);
        let api_headers = present(&["anthropic-beta", "openai-beta"]);
        RequestInfo {
            request_id: header("x-request-id").unwrap_or_default(),
            depth,
            client_auth,
            api_headers,
            route_cluster,
            include: Include::parse(header(engine::INCLUDE_HEADER).as_deref()),
            trace,
            route: RoutePolicy::from_values(|key| {
                self.host()
                    .get_property(&["xds", "route_metadata", "filter_metadata", "fusion", key])
                    .ok()
                    .flatten()
            }),
        }
    }

    /// The request asked for fusion and goes on without it: the response
    /// header says why, and so does the filter state `wasm.fusion_skipped`.
    fn skip(&mut self, why: Refusal) {
        self.skipped = Some(why);
        if let Err(status) = self
            .host()
            .set_property(&["fusion_skipped"], why.name().as_bytes())
        {
            log::debug!("fusion: setting filter state fusion_skipped refused: {status:?}");
        }
    }

    /// Publishes the run for access logs (`%FILTER_STATE(wasm.fusion_cost:PLAIN)%`).
    fn publish_state(&mut self, stream_over: bool) {
        let Some(turn) = self.turn.as_ref() else {
            return;
        };
        let state = turn.filter_state(stream_over);
        let mut published = Vec::with_capacity(5);
        for (i, (name, value)) in state.pairs().into_iter().enumerate() {
            // Set at the answer already and unchanged at the log: no second host call.
            if self.published.get(i).map(String::as_str) != Some(value) {
                if let Err(status) = self.host().set_property(&[name], value.as_bytes()) {
                    log::debug!("fusion: setting filter state {name} refused: {status:?}");
                }
            }
            published.push(value.to_string());
        }
        self.published = published;
    }

    /// The whole request body (`body`, `body_size` bytes buffered by the host)
    /// may ask for fusion: the engine decides what happens.
    fn request_complete(
        &mut self,
        candidate: admit::Candidate,
        body: &[u8],
        body_size: usize,
    ) -> Action {
        let admit::Candidate { api, json } = candidate;
        self.body_size = body_size;
        let shared = Rc::clone(&self.shared);
        let host = &*shared.host;
        if !json {
            if engine::names_fusion(&shared.config, body) {
                self.skip(Refusal::ContentType);
            }
            return Action::Continue;
        }
        let now = self.now_ms();
        shared.expire_gone(now);
        let at_capacity = admit::at_capacity(&shared.config, shared.active_runs.get())
            || admit::over_bytes_in_flight(&shared.config, shared.bytes_in_flight.get());
        let started = engine::start_with(
            &shared.config,
            api,
            || self.request_info(),
            body,
            now,
            at_capacity,
        );
        match started {
            Start::PassThrough => Action::Continue,
            Start::Rewrite(new_body, why) => {
                self.skip(why);
                match why {
                    Refusal::Depth => shared.metrics.depth_refused(host),
                    Refusal::Overload => shared.metrics.overloaded(host),
                    Refusal::ContentType | Refusal::Route => {}
                }
                self.replace_request_body(body_size, &new_body);
                Action::Continue
            }
            Start::Clean(new_body) => {
                self.replace_request_body(body_size, &new_body);
                Action::Continue
            }
            Start::Reply(reply) => self.reply_or_continue(&reply),
            Start::Overloaded(reply) => {
                shared.metrics.overloaded(host);
                self.reply_or_continue(&reply)
            }
            Start::Run(turn, commands) => {
                self.turn = Some(turn);
                self.holds_slot = true;
                shared.take_slot();
                self.run(commands, false, now);
                Action::Pause
            }
        }
    }

    /// The request goes on with this body instead of the buffered one.
    fn replace_request_body(&self, body_size: usize, new_body: &[u8]) {
        match self
            .shared
            .host
            .set_buffer(BufferType::HttpRequestBody, 0, body_size, new_body)
        {
            Ok(()) => self.set_header(
                MapType::HttpRequestHeaders,
                "content-length",
                Some(&new_body.len().to_string()),
            ),
            Err(status) => {
                log::error!("fusion: rewriting the request body failed: {status:?}");
            }
        }
    }

    /// Answers the request locally; when the host refuses the reply, the request
    /// goes on unchanged (the upstream answers it) instead of hanging paused.
    fn reply_or_continue(&self, reply: &LocalReply) -> Action {
        if self.send_reply(reply) {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    /// The cluster of the request's route (`xds.cluster_name`).
    fn route_cluster(&self) -> Option<String> {
        self.host()
            .get_property(&["xds", "cluster_name"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
    }

    fn response_header(&self, name: &str) -> Option<String> {
        self.host()
            .get_map_value(MapType::HttpResponseHeaders, name)
            .ok()
            .flatten()
    }

    fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        if let Some(why) = self.skipped {
            self.set_header(
                MapType::HttpResponseHeaders,
                engine::SKIPPED_HEADER,
                Some(why.name()),
            );
        }
        if !self.turn.as_ref().is_some_and(|t| t.relays_response()) {
            return Action::Continue;
        }
        let status = self
            .response_header(":status")
            .and_then(|s| s.parse::<u16>().ok());
        let content_type = self.response_header("content-type");
        // The cluster that actually served the request: Envoy picked the route
        // again after the filter's header changes.
        let served_by = self.route_cluster();
        let now = self.now_ms();
        let Some(turn) = self.turn.as_mut() else {
            return Action::Continue;
        };
        if turn.on_response_head(status, content_type.as_deref(), served_by.as_deref()) {
            // Not a stream to relay: read it whole, answer in the client's API.
            if end_of_stream {
                let reply = turn.on_buffered_response(status, &[], now);
                return self.reply_or_continue(&reply);
            }
            return Action::Pause;
        }
        let debug = turn.debug_headers();
        let res = MapType::HttpResponseHeaders;
        // The relayed body changes size on the way.
        self.set_header(res, "content-length", None);
        for (k, v) in debug {
            self.set_header(res, &k, Some(&v));
        }
        Action::Continue
    }

    fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(turn) = self.turn.as_ref().filter(|t| t.relays_response()) else {
            return Action::Continue;
        };
        if turn.buffers_response() {
            if !end_of_stream {
                self.response_size = body_size;
                return Action::Pause;
            }
            let body = self.buffer(BufferType::HttpResponseBody, body_size);
            self.answer_buffered(&body, body_size);
            return Action::Continue;
        }
        let chunk = self.buffer(BufferType::HttpResponseBody, body_size);
        self.relay(&chunk, body_size, end_of_stream);
        Action::Continue
    }

    /// The route's whole non-stream answer becomes the engine's reply: status,
    /// headers and body are replaced (the response headers are still held).
    fn answer_buffered(&mut self, body: &[u8], body_size: usize) {
        let status = self
            .response_header(":status")
            .and_then(|s| s.parse::<u16>().ok());
        let now = self.now_ms();
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let reply = turn.on_buffered_response(status, body, now);
        let res = MapType::HttpResponseHeaders;
        self.set_header(res, ":status", Some(&reply.status.to_string()));
        self.set_header(res, "content-length", None);
        self.set_header(res, "content-encoding", None);
        for (k, v) in &reply.headers {
            self.set_header(res, k, Some(v));
        }
        if let Err(status) =
            self.shared
                .host
                .set_buffer(BufferType::HttpResponseBody, 0, body_size, &reply.body)
        {
            log::warn!("fusion: writing the final answer's error failed: {status:?}");
        }
    }

    /// Response trailers end the relayed answer as `end_of_stream` does.
    fn on_response_trailers(&mut self) -> Action {
        let Some(turn) = self.turn.as_ref().filter(|t| t.relays_response()) else {
            return Action::Continue;
        };
        if turn.buffers_response() {
            let body = self.buffer(BufferType::HttpResponseBody, self.response_size);
            let size = body.len();
            self.answer_buffered(&body, size);
            return Action::Continue;
        }
        // What the relay still held goes out after the last chunk, if the host
        // still takes body bytes at this point.
        self.relay(&[], 0, true);
        Action::Continue
    }

    fn relay(&mut self, chunk: &[u8], size: usize, end: bool) {
        let now = self.now_ms();
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let out = turn.on_response_body(chunk, end, now);
        if out != chunk {
            if let Err(status) =
                self.shared
                    .host
                    .set_buffer(BufferType::HttpResponseBody, 0, size, &out)
            {
                log::warn!("fusion: rewriting the relayed response failed: {status:?}");
            }
        }
    }

    /// The stream is over: count and log the run once, with what it came to.
    fn on_log(&mut self) {
        // A request that ran nothing has nothing to count: no host call.
        if self.turn.is_none() && !self.holds_slot {
            return;
        }
        self.end_run_slot();
        let now = self.now_ms();
        if let Some(turn) = self.turn.as_mut() {
            turn.observe_time(now);
        }
        self.publish_state(true);
        let Some(mut turn) = self.turn.take() else {
            return;
        };
        let stats = turn.stats(true);
        self.shared.metrics.run_ended(self.host(), &stats);
        if self.shared.config.log.runs {
            log::info!("{}", fusion_core::text::json(&turn.take_log_line(true)));
        }
        if !self.tokens.is_empty() {
            log::info!(
                "fusion: run {} ended with {} callouts in flight; it holds its slot until they end",
                turn.run_id(),
                self.tokens.len()
            );
        }
    }
}

/// How long past its callouts' timeout a gone run waits for the root to see
/// their end before its slot is freed anyway (only a host that loses an
/// answer gets there: Envoy delivers every end, timeouts included).
const LOST_ANSWER_MARGIN_MS: u64 = 10_000;

impl Drop for Stream {
    /// The host deleted the stream: callouts still in flight go on (Envoy
    /// cannot cancel them) and keep the run's slot until the root sees them end.
    fn drop(&mut self) {
        if !self.holds_slot {
            return;
        }
        self.holds_slot = false;
        let tokens: Vec<u32> = self.tokens.keys().copied().collect();
        self.shared.hand_over(
            self.context_id,
            &tokens,
            std::mem::take(&mut self.held_bytes),
            self.calls_end_ms.saturating_add(LOST_ANSWER_MARGIN_MS),
        );
    }
}

impl Context for FusionFilter {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.with((), |s| {
            s.on_call_response(token, num_headers, body_size, false)
        });
    }

    /// The host is done with the stream (the client may be gone): nothing new
    /// starts for it from here on.
    fn on_done(&mut self) -> bool {
        self.with((), |s| s.over = true);
        true
    }
}

impl HttpContext for FusionFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.on_request_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_request_body(body_size, end_of_stream)
    }

    /// Trailers end the request as `end_of_stream` does: the buffered body is complete.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let size = self.held.map_or(0, |h| h.body_size);
        self.request_complete(size)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.with(Action::Continue, |s| s.on_response_headers(end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.with(Action::Continue, |s| {
            s.on_response_body(body_size, end_of_stream)
        })
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.with(Action::Continue, Stream::on_response_trailers)
    }

    fn on_log(&mut self) {
        self.with((), Stream::on_log);
    }
}
