//! A host for native unit tests: maps and buffers in memory, a settable
//! clock, recorded calls, and refusals on demand.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{BufferType, HeaderPairs, Host, MapType, MetricType, Status};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One callout the filter dispatched.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatched {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The context that was effective when it was dispatched.
    pub context: u32,
    /// The context the answer goes to (the SDK's active one): the root after
    /// `route_answers_to_root`, else the effective context.
    pub owner: u32,
}

/// One local reply the filter sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Host calls a test can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Dispatch,
    SendResponse,
    SetHeader,
    SetBuffer,
    Resume,
    SetProperty,
}

#[derive(Default)]
pub struct FakeHost {
    pub now: Cell<u64>,
    pub maps: RefCell<BTreeMap<(u32, String), String>>,
    pub buffers: RefCell<BTreeMap<u32, Vec<u8>>>,
    pub properties: RefCell<BTreeMap<String, Vec<u8>>>,
    pub dispatched: RefCell<Vec<Dispatched>>,
    pub sent: RefCell<Vec<Sent>>,
    pub resumed: Cell<u32>,
    pub effective: Cell<u32>,
    /// Set by `route_answers_to_root` (the SDK's active context).
    pub active_root: Cell<Option<u32>>,
    pub tick_period: Cell<Option<Duration>>,
    pub metrics: RefCell<BTreeMap<String, u32>>,
    pub metric_values: RefCell<BTreeMap<u32, i64>>,
    /// Calls that answer `BadArgument` (what Envoy says to a late header write).
    pub refuse: RefCell<BTreeSet<Op>>,
    /// Every refused call, in order.
    pub refused: RefCell<Vec<Op>>,
    /// Every request header and property read, in order (`xds.cluster_name` for a
    /// property, `*` for the whole request header map).
    pub reads: RefCell<Vec<String>>,
    /// How often the clock was read.
    pub clock_reads: Cell<u32>,
    /// Every host call, in order: the method's name, and for header and buffer
    /// reads the header name or buffer kind (`get_map_value :method`).
    pub calls: RefCell<Vec<String>>,
    next_token: Cell<u32>,
}

fn map_key(map: MapType) -> u32 {
    map as u32
}

fn buffer_key(kind: BufferType) -> u32 {
    kind as u32
}

impl FakeHost {
    pub fn set_header(&self, map: MapType, k: &str, v: &str) {
        self.maps
            .borrow_mut()
            .insert((map_key(map), k.to_string()), v.to_string());
    }

    pub fn header(&self, map: MapType, k: &str) -> Option<String> {
        self.maps
            .borrow()
            .get(&(map_key(map), k.to_string()))
            .cloned()
    }

    pub fn set_body(&self, kind: BufferType, data: &[u8]) {
        self.buffers
            .borrow_mut()
            .insert(buffer_key(kind), data.to_vec());
    }

    pub fn body(&self, kind: BufferType) -> Vec<u8> {
        self.buffers
            .borrow()
            .get(&buffer_key(kind))
            .cloned()
            .unwrap_or_default()
    }

    pub fn refuse(&self, op: Op) {
        self.refuse.borrow_mut().insert(op);
    }

    /// The value of a metric by name.
    pub fn metric(&self, name: &str) -> i64 {
        let id = self.metrics.borrow().get(name).copied();
        id.and_then(|id| self.metric_values.borrow().get(&id).copied())
            .unwrap_or(0)
    }

    fn log(&self, call: String) {
        self.calls.borrow_mut().push(call);
    }

    fn check(&self, op: Op) -> Result<(), Status> {
        if self.refuse.borrow().contains(&op) {
            self.refused.borrow_mut().push(op);
            return Err(Status::BadArgument);
        }
        Ok(())
    }
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.log("now_ms".into());
        self.clock_reads.set(self.clock_reads.get() + 1);
        self.now.get()
    }
    fn get_map_value(&self, map: MapType, key: &str) -> Result<Option<String>, Status> {
        self.log(format!("get_map_value {key}"));
        if map_key(map) == map_key(MapType::HttpRequestHeaders) {
            self.reads.borrow_mut().push(key.to_string());
        }
        Ok(self.header(map, key))
    }
    fn get_map_pairs(&self, map: MapType) -> Result<HeaderPairs, Status> {
        self.log(format!("get_map_pairs {map:?}"));
        if map_key(map) == map_key(MapType::HttpRequestHeaders) {
            self.reads.borrow_mut().push("*".to_string());
        }
        let m = map_key(map);
        Ok(HeaderPairs::new(
            self.maps
                .borrow()
                .iter()
                .filter(|((k, _), _)| *k == m)
                .map(|((_, name), v)| (name.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        ))
    }
    fn set_map_value(&self, map: MapType, key: &str, value: Option<&str>) -> Result<(), Status> {
        self.log(format!("set_map_value {key}"));
        self.check(Op::SetHeader)?;
        let k = (map_key(map), key.to_string());
        match value {
            Some(v) => self.maps.borrow_mut().insert(k, v.to_string()),
            None => self.maps.borrow_mut().remove(&k),
        };
        Ok(())
    }
    fn get_buffer(
        &self,
        kind: BufferType,
        start: usize,
        max: usize,
    ) -> Result<Option<Vec<u8>>, Status> {
        self.log(format!("get_buffer {kind:?}"));
        let b = self.body(kind);
        let end = start.saturating_add(max).min(b.len());
        Ok(b.get(start.min(end)..end).map(<[u8]>::to_vec))
    }
    fn set_buffer(
        &self,
        kind: BufferType,
        start: usize,
        size: usize,
        value: &[u8],
    ) -> Result<(), Status> {
        self.log(format!("set_buffer {kind:?}"));
        self.check(Op::SetBuffer)?;
        let mut b = self.body(kind);
        let start = start.min(b.len());
        let end = start.saturating_add(size).min(b.len());
        b.splice(start..end, value.iter().copied());
        self.set_body(kind, &b);
        Ok(())
    }
    fn get_property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        self.log(format!("get_property {}", path.join(".")));
        self.reads.borrow_mut().push(path.join("."));
        Ok(self.properties.borrow().get(&path.join(".")).cloned())
    }
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), Status> {
        self.log(format!("set_property {}", path.join(".")));
        self.check(Op::SetProperty)?;
        self.properties
            .borrow_mut()
            .insert(path.join("."), value.to_vec());
        Ok(())
    }
    fn send_http_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), Status> {
        self.log("send_http_response".into());
        self.check(Op::SendResponse)?;
        self.sent.borrow_mut().push(Sent {
            status,
            headers: owned(headers),
            body: body.to_vec(),
        });
        Ok(())
    }
    fn resume_http_request(&self) -> Result<(), Status> {
        self.log("resume_http_request".into());
        self.check(Op::Resume)?;
        self.resumed.set(self.resumed.get() + 1);
        Ok(())
    }
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        _timeout: Duration,
    ) -> Result<u32, Status> {
        self.log("dispatch_http_call".into());
        self.check(Op::Dispatch)?;
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        self.dispatched.borrow_mut().push(Dispatched {
            token,
            cluster: cluster.to_string(),
            headers: owned(headers),
            body: body.to_vec(),
            context: self.effective.get(),
            owner: self.active_root.get().unwrap_or(self.effective.get()),
        });
        Ok(token)
    }
    fn route_answers_to_root(&self, root_context_id: u32) {
        self.log("route_answers_to_root".into());
        self.active_root.set(Some(root_context_id));
    }
    fn set_effective_context(&self, context_id: u32) -> Result<(), Status> {
        self.log("set_effective_context".into());
        self.effective.set(context_id);
        Ok(())
    }
    fn set_tick_period(&self, period: Duration) -> Result<(), Status> {
        self.log("set_tick_period".into());
        self.tick_period.set(Some(period));
        Ok(())
    }
    fn define_metric(&self, _kind: MetricType, name: &str) -> Result<u32, Status> {
        self.log(format!("define_metric {name}"));
        let mut metrics = self.metrics.borrow_mut();
        let id = metrics.len() as u32 + 1;
        Ok(*metrics.entry(name.to_string()).or_insert(id))
    }
    fn increment_metric(&self, id: u32, offset: i64) -> Result<(), Status> {
        self.log("increment_metric".into());
        *self.metric_values.borrow_mut().entry(id).or_insert(0) += offset;
        Ok(())
    }
}
