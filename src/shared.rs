//! What the root context and every stream of one VM (one Envoy worker) share:
//! the configuration, the metrics, the host, the run slots, and the root's
//! registries for timers and for callouts dispatched from its tick.

use crate::host::Host;
use crate::metrics::Metrics;
use fusion_core::config::Config;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
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
    /// Fusion runs in flight on this worker, counting runs whose client left
    /// while their callouts still run (see `leases`).
    pub active_runs: Cell<usize>,
    /// Request bytes sent and answer bytes buffered by those runs
    /// (`limits.max_bytes_in_flight`).
    pub bytes_in_flight: Cell<u64>,
    /// Slots (and bytes) of runs whose stream ended with callouts in flight:
    /// held until the latest of those callouts' timeouts, when the call has
    /// ended for sure (proxy-wasm cannot cancel a callout, and its answer no
    /// longer reaches a deleted stream). (until ms, bytes).
    pub leases: RefCell<Vec<(u64, u64)>>,
    /// (deadline ms, stream context id) -> the stream waiting for it.
    pub timers: RefCell<BTreeMap<(u64, u32), StreamRef>>,
    /// Callouts dispatched from the tick (the root's context): token -> stream.
    pub root_tokens: RefCell<BTreeMap<u32, StreamRef>>,
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
            leases: RefCell::new(Vec::new()),
            timers: RefCell::new(BTreeMap::new()),
            root_tokens: RefCell::new(BTreeMap::new()),
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

    /// A callout dispatched while running as the root: its answer comes to the root.
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

    /// A run's stream ended with callouts in flight: its slot and bytes stay
    /// taken until `until_ms`, the latest of those callouts' timeouts.
    pub fn lease_slot(&self, until_ms: u64, bytes: u64) {
        match self.leases.try_borrow_mut() {
            Ok(mut leases) => leases.push((until_ms, bytes)),
            Err(_) => self.release_slot(bytes),
        }
    }

    /// Releases the leases whose callouts have ended by `now_ms` (asked before
    /// every admission decision, so a freed slot is seen when it matters).
    pub fn expire_leases(&self, now_ms: u64) {
        let expired: Vec<(u64, u64)> = match self.leases.try_borrow_mut() {
            Ok(mut leases) => {
                let (done, kept): (Vec<_>, Vec<_>) =
                    leases.drain(..).partition(|(until, _)| *until <= now_ms);
                *leases = kept;
                done
            }
            Err(_) => Vec::new(),
        };
        for (_, bytes) in expired {
            self.release_slot(bytes);
        }
    }
}
