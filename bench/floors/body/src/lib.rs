//! Floor (b): the least a filter that must see whole LLM request bodies costs.
//! The same header test as the fusion filter (POST, an LLM API path, JSON), the
//! headers held (allow_on_headers_stop_iteration), the body buffered until the
//! end of the stream, read once, and the request continued unchanged.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { held: false }))
    }
}

struct Stream {
    held: bool,
}

impl Context for Stream {}

fn header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn llm_path(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    ["/chat/completions", "/responses", "/messages"]
        .iter()
        .any(|p| path.ends_with(p))
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream
            || header(":method").as_deref() != Some("POST")
            || !header(":path").is_some_and(|p| llm_path(&p))
            || !header("content-type")
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"))
        {
            return Action::Continue;
        }
        self.held = true;
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.held {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.held = false;
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        std::hint::black_box(body);
        Action::Continue
    }
}
