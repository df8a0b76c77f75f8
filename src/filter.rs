//! The per-stream HTTP context: feeds the engine and carries out its commands.

use fusion_core::api::Api;
use fusion_core::config::Config;
use fusion_core::engine::{
    self, CallResult, Command, LocalReply, RequestInfo, Resume, Start, Turn,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

pub struct FusionFilter {
    config: Rc<Config>,
    /// Set when the request may be fusion: its body is buffered and inspected.
    candidate: Option<(Api, RequestInfo)>,
    turn: Option<Box<Turn>>,
    /// Host callout token -> engine call id.
    tokens: BTreeMap<u32, u32>,
    /// Size of the buffered request body, replaced when the request resumes.
    body_size: usize,
}

impl FusionFilter {
    pub fn new(config: Rc<Config>) -> FusionFilter {
        FusionFilter {
            config,
            candidate: None,
            turn: None,
            tokens: BTreeMap::new(),
            body_size: 0,
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    /// Carries out commands; a dispatch the host refuses is fed back as a failed call.
    fn run(&mut self, commands: Vec<Command>) {
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
                Command::Reply(reply) => send_reply(&reply),
                Command::Resume(resume) => self.resume(&resume),
            }
        }
    }
}

impl FusionFilter {
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
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
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

impl Context for FusionFilter {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
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
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let commands = turn.on_call_result(id, CallResult { status, body }, now_ms());
        self.run(commands);
    }
}

impl HttpContext for FusionFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream || self.header(":method").as_deref() != Some("POST") {
            return Action::Continue;
        }
        let Some(api) = self.header(":path").as_deref().and_then(Api::from_path) else {
            return Action::Continue;
        };
        let json = self
            .header("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
        if !json {
            return Action::Continue;
        }
        let depth = match self.header(&self.config.depth_header) {
            None => 0,
            // An unreadable depth is treated as deep: never recurse on doubt.
            Some(v) => v.trim().parse::<u32>().unwrap_or(u32::MAX),
        };
        let client_auth = ["authorization", "x-api-key"]
            .iter()
            .filter_map(|h| self.header(h).map(|v| (h.to_string(), v)))
            .collect();
        let route_cluster = hostcalls::get_property(vec!["xds", "cluster_name"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok());
        let info = RequestInfo {
            request_id: self.header("x-request-id").unwrap_or_default(),
            depth,
            client_auth,
            route_cluster,
        };
        self.candidate = Some((api, info));
        // Hold the headers until the body decides (allow_on_headers_stop_iteration).
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
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
        match engine::start(&self.config, api, info, &body, now_ms()) {
            Start::PassThrough => Action::Continue,
            Start::Rewrite(new_body) => {
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
            Start::Run(turn, commands) => {
                self.turn = Some(turn);
                self.run(commands);
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.turn.as_ref().is_some_and(|t| t.relays_response()) {
            // The relayed body changes size on the way.
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", None);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(turn) = self.turn.as_mut().filter(|t| t.relays_response()) else {
            return Action::Continue;
        };
        let chunk = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let out = turn.on_response_body(&chunk, end_of_stream);
        if out != chunk {
            let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(turn) = &self.turn {
            if turn.pending_calls() > 0 {
                log::info!(
                    "fusion: run {} ended before its callouts: {} in flight, their answers dropped (client gone)",
                    turn.run_id(),
                    turn.pending_calls()
                );
            }
        }
    }
}
