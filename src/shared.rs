//! What the root context and every stream of one VM (one Envoy worker) share:
//! the configuration, the metrics, the host, the run slots, and the root's
//! registries for timers and for callouts dispatched from its tick.

use crate::host::Host;
use crate::metrics::Metrics;
use fusion_core::config::Config;
use fusion_core::vec_map::VecMap;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

/// How often the root ticks while a stream waits on a timer.
pub const TICK: Duration = Duration::from_millis(5);

/// What the root can do to a stream it holds weakly.
pub trait StreamHandle {
    /// The root's tick reached a time the stream asked for.
    fn on_timer(&self, now_ms: u64);
    /// A callout the stream dispatched from the root's tick answered.
    fn on_root_call_response(&self, token: u32, num_headers: usize, body_size: usize);
}

pub type StreamRef = Weak<dyn StreamHandle>;

pub struct Shared {
    pub config: Rc<Config>,
    pub metrics: Metrics,
    pub host: Rc<dyn Host>,
    pub root_context_id: u32,
    /// Fusion runs holding a slot on this worker: a run holds it from its
    /// start until its answer is out and its last callout has ended, so runs
    /// whose client left while their callouts still run count (`gone`).
    pub active_runs: Cell<usize>,
    /// Request bytes sent and answer bytes buffered by those runs
    /// (`limits.max_bytes_in_flight`).
    pub bytes_in_flight: Cell<u64>,
    /// Callouts whose answers come to the root (all of them under Envoy):
    /// token -> the stream that dispatched it.
    pub root_tokens: RefCell<VecMap<u32, StreamRef>>,
    /// Runs whose stream is gone while callouts still run: Envoy cannot
    /// cancel a callout (the root owns them all), so the run keeps its slot
    /// and bytes until the root has seen the last one end.
    pub gone: RefCell<GoneRuns>,
    /// (deadline ms, stream context id) -> the stream waiting for it.
    pub timers: RefCell<VecMap<(u64, u32), StreamRef>>,
    pub ticking: Cell<bool>,
}

impl Shared {
    pub fn new(config: Rc<Config>, metrics: Metrics, host: Rc<dyn Host>, root: u32) -> Shared {
        Shared {
            config,
            metrics,
            host,
            root_context_id: root,
            active_runs: Cell::new(0),
            bytes_in_flight: Cell::new(0),
            root_tokens: RefCell::new(VecMap::new()),
            gone: RefCell::new(GoneRuns::default()),
            timers: RefCell::new(VecMap::new()),
            ticking: Cell::new(false),
        }
    }

    /// Wakes `stream` at `at_ms` through the root's tick.
    pub fn wake_at(&self, at_ms: u64, context_id: u32, stream: StreamRef) {
        if let Ok(mut timers) = self.timers.try_borrow_mut() {
            timers.insert((at_ms, context_id), stream);
        }
        if !self.ticking.replace(true) {
            // The tick period belongs to the root context: set it as the root.
            let host = &self.host;
            let set = host
                .set_effective_context(self.root_context_id)
                .and_then(|()| host.set_tick_period(TICK));
            if let Err(status) = set {
                log::error!("fusion: starting the root's tick failed: {status:?}");
                self.ticking.set(false);
            }
            if let Err(status) = host.set_effective_context(context_id) {
                log::error!("fusion: returning to stream {context_id} failed: {status:?}");
            }
        }
    }

    /// A callout whose answer comes to the root (dispatched as the root, or
    /// after `Host::route_answers_to_root`).
    pub fn register_root_token(&self, token: u32, stream: StreamRef) {
        if let Ok(mut tokens) = self.root_tokens.try_borrow_mut() {
            tokens.insert(token, stream);
        }
    }

    /// Takes a run slot.
    pub fn take_slot(&self) {
        self.active_runs
            .set(self.active_runs.get().saturating_add(1));
        self.metrics.active_runs(&*self.host, 1);
    }

    /// Gives a run slot back, with the bytes the run held.
    pub fn release_slot(&self, bytes: u64) {
        self.active_runs
            .set(self.active_runs.get().saturating_sub(1));
        self.give_bytes(bytes);
        self.metrics.active_runs(&*self.host, -1);
    }

    /// Bytes a run sent or buffered, counted until it ends.
    pub fn take_bytes(&self, bytes: u64) {
        self.bytes_in_flight
            .set(self.bytes_in_flight.get().saturating_add(bytes));
    }

    fn give_bytes(&self, bytes: u64) {
        self.bytes_in_flight
            .set(self.bytes_in_flight.get().saturating_sub(bytes));
    }

    /// A run's stream is gone while `tokens` (root-owned callouts) still
    /// run: its slot and `bytes` stay taken until the root saw them all end.
    /// `until_ms` bounds the wait (the callouts' timeout plus a margin) in
    /// case an answer never comes back (a host that drops it).
    pub fn hand_over(&self, run: u32, tokens: &[u32], bytes: u64, until_ms: u64) {
        if tokens.is_empty() {
            self.release_slot(bytes);
            return;
        }
        match self.gone.try_borrow_mut() {
            Ok(mut gone) => gone.add(run, tokens, bytes, until_ms),
            Err(_) => self.release_slot(bytes),
        }
    }

    /// A root-owned callout ended (answered, failed or timed out) after its
    /// stream was gone: the last one frees its run's slot and bytes.
    pub fn gone_call_ended(&self, token: u32) {
        let freed = match self.gone.try_borrow_mut() {
            Ok(mut gone) => gone.call_ended(token),
            Err(_) => None,
        };
        if let Some(bytes) = freed {
            self.release_slot(bytes);
        }
    }

    /// Frees the gone runs whose callouts should have ended long ago
    /// (`until_ms`): only a host that lost an answer gets here.
    pub fn expire_gone(&self, now_ms: u64) {
        let expired = match self.gone.try_borrow_mut() {
            Ok(mut gone) => gone.expire(now_ms),
            Err(_) => Vec::new(),
        };
        for (run, bytes) in expired {
            log::warn!("fusion: run of stream {run} never saw its last callouts end; slot freed at their deadline");
            self.release_slot(bytes);
        }
    }
}

/// Slots held for runs whose stream is gone, until their callouts end.
#[derive(Default)]
pub struct GoneRuns {
    /// token -> run (the stream's context id).
    calls: VecMap<u32, u32>,
    /// run -> what it holds.
    runs: VecMap<u32, GoneRun>,
}

struct GoneRun {
    calls: usize,
    bytes: u64,
    until_ms: u64,
}

impl GoneRuns {
    fn add(&mut self, run: u32, tokens: &[u32], bytes: u64, until_ms: u64) {
        for &token in tokens {
            self.calls.insert(token, run);
        }
        self.runs.insert(
            run,
            GoneRun {
                calls: tokens.len(),
                bytes,
                until_ms,
            },
        );
    }

    /// Counts the end of `token`; the bytes of its run when that was the last.
    fn call_ended(&mut self, token: u32) -> Option<u64> {
        let run = self.calls.remove(&token)?;
        let left = self.runs.get_mut(&run).map(|r| {
            r.calls = r.calls.saturating_sub(1);
            r.calls
        })?;
        if left > 0 {
            return None;
        }
        self.runs.remove(&run).map(|r| r.bytes)
    }

    fn expire(&mut self, now_ms: u64) -> Vec<(u32, u64)> {
        let due: Vec<u32> = self
            .runs
            .iter()
            .filter(|(_, r)| r.until_ms <= now_ms)
            .map(|(run, _)| *run)
            .collect();
        self.calls.retain(|_, run| !due.contains(run));
        due.into_iter()
            .filter_map(|run| self.runs.remove(&run).map(|r| (run, r.bytes)))
            .collect()
    }

    /// Runs waiting for their callouts.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.runs.len()
    }
}
