//! The per-stream HTTP context: feeds the engine and carries out its commands.
//!
//! The stream's state lives in `Rc<RefCell<Stream>>` so the root's tick can
//! reach it too (a quorum's grace period ends there).

use crate::root::Shared;
use fusion_core::engine::{
    self, CallResult, Command, LocalReply, Refusal, RequestInfo, Resume, Start, Turn,
};
use fusion_core::wire::Api;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::{Duration, UNIX_EPOCH};

/// How the root reaches a stream without keeping it alive.
pub type StreamRef = Weak<RefCell<Stream>>;

pub struct Stream {
    context_id: u32,
    shared: Rc<Shared>,
    me: Weak<RefCell<Stream>>,
    /// Set when the request may be fusion: its body is buffered and inspected.
    candidate: Option<(Api, RequestInfo)>,
    turn: Option<Box<Turn>>,
    /// Host callout token -> engine call id.
    tokens: BTreeMap<u32, u32>,
    /// Size of the buffered request body, replaced when the request resumes.
    body_size: usize,
    /// This stream holds one of the worker's `max_concurrent_runs` slots.
    holds_slot: bool,
}

pub struct FusionFilter {
    stream: Rc<RefCell<Stream>>,
}

impl FusionFilter {
    pub fn new(context_id: u32, shared: Rc<Shared>) -> FusionFilter {
        let stream = Rc::new_cyclic(|me| {
            RefCell::new(Stream {
                context_id,
                shared,
                me: me.clone(),
                candidate: None,
                turn: None,
                tokens: BTreeMap::new(),
                body_size: 0,
                holds_slot: false,
            })
        });
        FusionFilter { stream }
    }

    /// The stream's state; `None` only on re-entrance, which the host does not do.
    fn with<R>(&self, default: R, f: impl FnOnce(&mut Stream) -> R) -> R {
        match self.stream.try_borrow_mut() {
            Ok(mut s) => f(&mut s),
            Err(_) => {
                log::error!("fusion: stream state re-entered; callback ignored");
                default
            }
        }
    }
}

pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

fn header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn send_reply(reply: &LocalReply) {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if let Err(status) =
        hostcalls::send_http_response(reply.status as u32, headers, Some(&reply.body))
    {
        log::error!("fusion: send_http_response failed: {status:?}");
    }
}

impl Stream {
    /// Carries out commands; a dispatch the host refuses is fed back as a failed call.
    /// `as_root`: running in the root's tick, so callout answers come to the root.
    fn run(&mut self, commands: Vec<Command>, as_root: bool) {
        let mut queue: VecDeque<Command> = commands.into();
        while let Some(command) = queue.pop_front() {
            match command {
                Command::Dispatch(c) => {
                    let headers: Vec<(&str, &str)> = c
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    match hostcalls::dispatch_http_call(
                        &c.cluster,
                        headers,
                        Some(&c.body),
                        Vec::new(),
                        Duration::from_millis(c.timeout_ms),
                    ) {
                        Ok(token) => {
                            self.tokens.insert(token, c.id);
                            if as_root {
                                self.shared.register_root_token(token, self.me.clone());
                            }
                        }
                        Err(status) => {
                            log::warn!(
                                "fusion: dispatch to cluster {} failed: {status:?}",
                                c.cluster
                            );
                            if let Some(turn) = self.turn.as_mut() {
                                queue.extend(turn.on_call_result(
                                    c.id,
                                    CallResult::default(),
                                    now_ms(),
                                ));
                            }
                        }
                    }
                }
                Command::Reply(reply) => {
                    self.release_slot();
                    send_reply(&reply);
                }
                Command::Resume(resume) => self.resume(&resume),
                Command::WakeAt(at) => {
                    self.shared.wake_at(at, self.context_id, self.me.clone());
                }
            }
        }
    }

    /// Sends the rewritten request up its own route (the final answer streams back).
    fn resume(&self, resume: &Resume) {
        let set = |k: &str, v: Option<&str>| {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, k, v);
        };
        if let Err(status) =
            hostcalls::set_buffer(BufferType::HttpRequestBody, 0, self.body_size, &resume.body)
        {
            log::error!("fusion: replacing the request body failed: {status:?}");
        }
        for (k, v) in &resume.headers {
            set(k, Some(v));
        }
        set("content-length", Some(&resume.body.len().to_string()));
        // The relayed stream is rewritten on the way back: it must arrive uncompressed.
        set("accept-encoding", None);
        if let Err(status) = hostcalls::resume_http_request() {
            log::error!("fusion: resume_http_request failed: {status:?}");
        }
    }

    fn release_slot(&mut self) {
        if self.holds_slot {
            self.holds_slot = false;
            let active = &self.shared.active_runs;
            active.set(active.get().saturating_sub(1));
            self.shared.metrics.active_runs(-1);
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
        let status = if num_headers == 0 {
            None
        } else {
            hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|s| s.parse::<u16>().ok())
        };
        // An answer past the limit is not read: it counts as a failed call.
        let oversize = body_size > self.shared.config.limits.max_response_bytes;
        let body = if oversize {
            Vec::new()
        } else {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let commands = turn.on_call_result(
            id,
            CallResult {
                status,
                body,
                oversize,
            },
            now_ms(),
        );
        self.run(commands, as_root);
    }

    /// A callout dispatched from the root's tick answered.
    pub fn deliver_from_root(
        stream: &Rc<RefCell<Stream>>,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        if let Ok(mut s) = stream.try_borrow_mut() {
            let _ = hostcalls::set_effective_context(s.context_id);
            s.on_call_response(token, num_headers, body_size, true);
        }
    }

    /// The root's tick reached a time this stream asked for.
    pub fn on_timer(stream: &Rc<RefCell<Stream>>, now: u64) {
        if let Ok(mut s) = stream.try_borrow_mut() {
            let commands = s.turn.as_mut().map(|t| t.on_timer(now)).unwrap_or_default();
            s.run(commands, true);
        }
    }

    fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        if end_of_stream || header(":method").as_deref() != Some("POST") {
            return Action::Continue;
        }
        let Some(api) = header(":path").as_deref().and_then(Api::from_path) else {
            return Action::Continue;
        };
        let json = header("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
        if !json {
            return Action::Continue;
        }
        let depth = match header(&self.shared.config.depth_header) {
            None => 0,
            // An unreadable depth is treated as deep: never recurse on doubt.
            Some(v) => v.trim().parse::<u32>().unwrap_or(u32::MAX),
        };
        let client_auth = ["authorization", "x-api-key"]
            .iter()
            .filter_map(|h| header(h).map(|v| (h.to_string(), v)))
            .collect();
        let route_cluster = hostcalls::get_property(vec!["xds", "cluster_name"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok());
        let info = RequestInfo {
            request_id: header("x-request-id").unwrap_or_default(),
            depth,
            client_auth,
            route_cluster,
        };
        self.candidate = Some((api, info));
        // Hold the headers until the body decides (allow_on_headers_stop_iteration).
        Action::Pause
    }

    fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return if self.candidate.is_some() {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        let Some((api, info)) = self.candidate.take() else {
            return Action::Continue;
        };
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.body_size = body_size;
        let shared = Rc::clone(&self.shared);
        let at_capacity = shared.active_runs.get() >= shared.config.limits.max_concurrent_runs;
        match engine::start(&shared.config, api, info, &body, now_ms(), at_capacity) {
            Start::PassThrough => Action::Continue,
            Start::Rewrite(new_body, why) => {
                match why {
                    Refusal::Depth => shared.metrics.depth_refused(),
                    Refusal::Overload => shared.metrics.overloaded(),
                }
                if hostcalls::set_buffer(BufferType::HttpRequestBody, 0, body_size, &new_body)
                    .is_ok()
                {
                    let len = new_body.len().to_string();
                    let _ = hostcalls::set_map_value(
                        MapType::HttpRequestHeaders,
                        "content-length",
                        Some(&len),
                    );
                }
                Action::Continue
            }
            Start::Reply(reply) => {
                send_reply(&reply);
                Action::Pause
            }
            Start::Overloaded(reply) => {
                shared.metrics.overloaded();
                send_reply(&reply);
                Action::Pause
            }
            Start::Run(turn, commands) => {
                self.turn = Some(turn);
                self.holds_slot = true;
                shared.active_runs.set(shared.active_runs.get() + 1);
                shared.metrics.active_runs(1);
                self.run(commands, false);
                Action::Pause
            }
        }
    }

    fn on_response_headers(&mut self) -> Action {
        let Some(turn) = self.turn.as_ref().filter(|t| t.relays_response()) else {
            return Action::Continue;
        };
        // The relayed body changes size on the way.
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", None);
        for (k, v) in turn.debug_headers() {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, &k, Some(&v));
        }
        Action::Continue
    }

    fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(turn) = self.turn.as_mut().filter(|t| t.relays_response()) else {
            return Action::Continue;
        };
        let chunk = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let out = turn.on_response_body(&chunk, end_of_stream, now_ms());
        if out != chunk {
            let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out);
        }
        Action::Continue
    }

    /// The stream is over: count and log the run once, with what it came to.
    fn on_log(&mut self) {
        self.release_slot();
        let Some(mut turn) = self.turn.take() else {
            return;
        };
        turn.observe_time(now_ms());
        let client_gone = !turn.is_done() || turn.relay_incomplete();
        let stats = turn.stats(client_gone);
        self.shared.metrics.run_ended(&stats);
        if self.shared.config.log.runs {
            log::info!("{}", turn.log_line(client_gone));
        }
        if turn.pending_calls() > 0 {
            log::info!(
                "fusion: run {} ended with {} callouts in flight; their answers are dropped",
                turn.run_id(),
                turn.pending_calls()
            );
        }
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
}

impl HttpContext for FusionFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.with(Action::Continue, |s| s.on_request_headers(end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.with(Action::Continue, |s| {
            s.on_request_body(body_size, end_of_stream)
        })
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.with(Action::Continue, Stream::on_response_headers)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.with(Action::Continue, |s| {
            s.on_response_body(body_size, end_of_stream)
        })
    }

    fn on_log(&mut self) {
        self.with((), Stream::on_log);
    }
}
