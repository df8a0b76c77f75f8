//! The host as the glue sees it: every call that can fail at run time returns
//! its status as a `Result` (never a panic). [`AbiHost`] is Envoy through the
//! checked ABI layer; tests use [`fake::FakeHost`].

mod abi;
#[cfg(test)]
pub mod fake;

pub use proxy_wasm::types::{BufferType, MapType, MetricType, Status};
use std::time::Duration;

pub trait Host {
    /// Milliseconds since the epoch (0 when the host cannot tell).
    fn now_ms(&self) -> u64;
    fn get_map_value(&self, map: MapType, key: &str) -> Result<Option<String>, Status>;
    /// Every header of a map in one call (one host call instead of one per name).
    fn get_map_pairs(&self, map: MapType) -> Result<HeaderPairs, Status>;
    /// Sets (`Some`) or removes (`None`) one header.
    fn set_map_value(&self, map: MapType, key: &str, value: Option<&str>) -> Result<(), Status>;
    fn get_buffer(
        &self,
        kind: BufferType,
        start: usize,
        max: usize,
    ) -> Result<Option<Vec<u8>>, Status>;
    fn set_buffer(
        &self,
        kind: BufferType,
        start: usize,
        size: usize,
        value: &[u8],
    ) -> Result<(), Status>;
    fn get_property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status>;
    /// Sets a stream property (Envoy: filter state `wasm.<path>`).
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), Status>;
    fn send_http_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Status>;
    fn resume_http_request(&self) -> Result<(), Status>;
    /// Dispatches a callout; returns its token.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<u32, Status>;
    /// Makes the root the owner of the callouts dispatched next in the current
    /// stream callback: their answers (and timeouts) reach the root's
    /// `on_http_call_response` even after the stream is gone. Never called
    /// from a root callback.
    fn route_answers_to_root(&self, root_context_id: u32);
    fn set_effective_context(&self, context_id: u32) -> Result<(), Status>;
    fn set_tick_period(&self, period: Duration) -> Result<(), Status>;
    fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status>;
    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status>;
}

/// A header map as read in one call: lookups answer as
/// [`Host::get_map_value`] would for the same map.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HeaderPairs(Vec<(Vec<u8>, Vec<u8>)>);

impl HeaderPairs {
    pub fn new(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> HeaderPairs {
        HeaderPairs(pairs)
    }

    /// The first value of header `name` (matched as Envoy does: its names are
    /// lower case, the name asked for is lowered); a value that is not UTF-8
    /// fails as `get_map_value`'s does.
    pub fn get(&self, name: &str) -> Result<Option<String>, Status> {
        let Some((_, value)) = self
            .0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
        else {
            return Ok(None);
        };
        String::from_utf8(value.clone())
            .map(Some)
            .map_err(|_| Status::ParseFailure)
    }
}

/// Envoy, through [`abi`].
#[derive(Debug, Default, Clone, Copy)]
pub struct AbiHost;

fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Host for AbiHost {
    fn now_ms(&self) -> u64 {
        abi::current_time_ns().map_or(0, |ns| ns / 1_000_000)
    }
    fn get_map_value(&self, map: MapType, key: &str) -> Result<Option<String>, Status> {
        abi::get_map_value(map, key)
    }
    fn get_map_pairs(&self, map: MapType) -> Result<HeaderPairs, Status> {
        abi::get_map_pairs(map).map(HeaderPairs::new)
    }
    fn set_map_value(&self, map: MapType, key: &str, value: Option<&str>) -> Result<(), Status> {
        abi::set_map_value(map, key, value)
    }
    fn get_buffer(
        &self,
        kind: BufferType,
        start: usize,
        max: usize,
    ) -> Result<Option<Vec<u8>>, Status> {
        abi::get_buffer(kind, start, max)
    }
    fn set_buffer(
        &self,
        kind: BufferType,
        start: usize,
        size: usize,
        value: &[u8],
    ) -> Result<(), Status> {
        abi::set_buffer(kind, start, size, value)
    }
    fn get_property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        abi::get_property(path)
    }
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), Status> {
        abi::set_property(path, value)
    }
    fn send_http_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Status> {
        abi::send_http_response(status, headers, body)
    }
    fn resume_http_request(&self) -> Result<(), Status> {
        abi::resume_http_request()
    }
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<u32, Status> {
        // Through the SDK: its dispatcher routes the answer by the token it registers.
        proxy_wasm::hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            Some(body),
            Vec::new(),
            Duration::from_millis(u64::from(millis_u32(timeout))),
        )
    }
    fn route_answers_to_root(&self, root_context_id: u32) {
        abi::enter_root_dispatcher(root_context_id);
    }
    fn set_effective_context(&self, context_id: u32) -> Result<(), Status> {
        abi::set_effective_context(context_id)
    }
    fn set_tick_period(&self, period: Duration) -> Result<(), Status> {
        abi::set_tick_period_ms(millis_u32(period))
    }
    fn define_metric(&self, kind: MetricType, name: &str) -> Result<u32, Status> {
        abi::define_metric(kind, name)
    }
    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
        abi::increment_metric(id, offset)
    }
}
