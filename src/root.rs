//! The root context: compiles the configuration once, defines the metrics,
//! creates one filter per stream, and runs the timers streams ask for (a
//! quorum's grace period) from its tick.

use crate::filter::{now_ms, FusionFilter, Stream, StreamRef};
use crate::metrics::Metrics;
use fusion_core::config::Config;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// How often the root ticks while a stream waits on a timer.
const TICK: Duration = Duration::from_millis(5);

/// What the root and every stream of one VM (one Envoy worker) share.
pub struct Shared {
    pub config: Rc<Config>,
    pub metrics: Metrics,
    pub root_context_id: u32,
    /// Fusion runs in flight on this worker.
    pub active_runs: Cell<usize>,
    /// (deadline ms, stream context id) -> the stream waiting for it.
    timers: RefCell<BTreeMap<(u64, u32), StreamRef>>,
    /// Callouts dispatched from the tick (the root's context): token -> stream.
    root_tokens: RefCell<BTreeMap<u32, StreamRef>>,
    ticking: Cell<bool>,
}

impl Shared {
    /// Wakes `stream` at `at_ms` through the root's tick.
    pub fn wake_at(&self, at_ms: u64, context_id: u32, stream: StreamRef) {
        if let Ok(mut timers) = self.timers.try_borrow_mut() {
            timers.insert((at_ms, context_id), stream);
        }
        if !self.ticking.replace(true) {
            // The tick period belongs to the root context: set it as the root.
            let _ = hostcalls::set_effective_context(self.root_context_id);
            let _ = hostcalls::set_tick_period(TICK);
            let _ = hostcalls::set_effective_context(context_id);
        }
    }

    /// A callout dispatched while running as the root: its answer comes to the root.
    pub fn register_root_token(&self, token: u32, stream: StreamRef) {
        if let Ok(mut tokens) = self.root_tokens.try_borrow_mut() {
            tokens.insert(token, stream);
        }
    }
}

pub struct FusionRoot {
    context_id: u32,
    shared: Option<Rc<Shared>>,
}

impl FusionRoot {
    pub fn new(context_id: u32) -> FusionRoot {
        FusionRoot {
            context_id,
            shared: None,
        }
    }
}

impl Context for FusionRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(shared) = &self.shared else { return };
        let stream = shared
            .root_tokens
            .try_borrow_mut()
            .ok()
            .and_then(|mut t| t.remove(&token))
            .and_then(|w| w.upgrade());
        if let Some(stream) = stream {
            Stream::deliver_from_root(&stream, token, num_headers, body_size);
        }
    }
}

impl RootContext for FusionRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        // Credentials come only from the environment Envoy passes to the VM.
        match Config::parse(&text, &|name| std::env::var(name).ok()) {
            Ok(config) => {
                log::info!(
                    "fusion: configured aliases={:?} outer_model={} panel={} judge={} presets={:?}",
                    config.aliases,
                    config.outer_model,
                    config.defaults.panel.len(),
                    config.defaults.judge,
                    config.presets.keys().collect::<Vec<_>>(),
                );
                // Metrics are defined once per root; a reconfigure keeps their ids.
                let metrics = match self.shared.take() {
                    Some(old) => Rc::try_unwrap(old)
                        .map(|s| s.metrics)
                        .unwrap_or_else(|_| Metrics::define()),
                    None => Metrics::define(),
                };
                self.shared = Some(Rc::new(Shared {
                    config: Rc::new(config),
                    metrics,
                    root_context_id: self.context_id,
                    active_runs: Cell::new(0),
                    timers: RefCell::new(BTreeMap::new()),
                    root_tokens: RefCell::new(BTreeMap::new()),
                    ticking: Cell::new(false),
                }));
                true
            }
            Err(e) => {
                // Envoy rejects the configuration; nothing half-applies.
                log::error!("{e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let now = now_ms();
        let due: Vec<(u32, StreamRef)> = match shared.timers.try_borrow_mut() {
            Ok(mut timers) => {
                let later = timers.split_off(&(now + 1, 0));
                let due = std::mem::replace(&mut *timers, later);
                due.into_iter().map(|((_, id), w)| (id, w)).collect()
            }
            Err(_) => Vec::new(),
        };
        for (context_id, stream) in due {
            if let Some(stream) = stream.upgrade() {
                let _ = hostcalls::set_effective_context(context_id);
                Stream::on_timer(&stream, now);
            }
        }
        let _ = hostcalls::set_effective_context(self.context_id);
        if shared.timers.try_borrow().is_ok_and(|t| t.is_empty()) {
            shared.ticking.set(false);
            let _ = hostcalls::set_tick_period(Duration::ZERO);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(FusionFilter::new(context_id, shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
