//! The root context: compiles the configuration once, defines the metrics,
//! creates one filter per stream, and runs the timers streams ask for (a
//! quorum's grace period) from its tick.

use crate::filter::FusionFilter;
use crate::host::{AbiHost, BufferType, Host};
use crate::metrics::Metrics;
use crate::shared::{Shared, StreamRef};
use fusion_core::config::Config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;
use std::time::Duration;

pub struct FusionRoot {
    context_id: u32,
    host: Rc<dyn Host>,
    shared: Option<Rc<Shared>>,
}

impl FusionRoot {
    pub fn new(context_id: u32) -> FusionRoot {
        FusionRoot::with_host(context_id, Rc::new(AbiHost))
    }

    pub fn with_host(context_id: u32, host: Rc<dyn Host>) -> FusionRoot {
        FusionRoot {
            context_id,
            host,
            shared: None,
        }
    }

    /// The stream context for `context_id` (what `create_http_context` boxes).
    pub fn filter(&self, context_id: u32) -> Option<FusionFilter> {
        let shared = self.shared.clone()?;
        Some(FusionFilter::new(context_id, shared))
    }

    /// What the root shares with its streams (tests read the slot accounting).
    #[cfg(test)]
    pub fn shared(&self) -> Option<Rc<Shared>> {
        self.shared.clone()
    }

    fn enter(&self, context_id: u32) {
        if let Err(status) = self.host.set_effective_context(context_id) {
            log::warn!("fusion: entering context {context_id} failed: {status:?}");
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
        match stream {
            Some(stream) => stream.on_root_call_response(token, num_headers, body_size),
            // The stream is gone: this callout's end may free its run's slot.
            // Its answer starts nothing (the run's turn went with the stream).
            None => shared.gone_call_ended(token),
        }
    }
}

impl RootContext for FusionRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = match self
            .host
            .get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        {
            Ok(b) => b.unwrap_or_default(),
            Err(status) => {
                log::error!("fusion: reading the plugin configuration failed: {status:?}");
                return false;
            }
        };
        // Credentials come only from the environment Envoy passes to the VM.
        match Config::parse(&text, &|name| std::env::var(name).ok()) {
            Ok(config) => {
                log::info!(
                    "fusion: configured aliases={} outer_model={} panel={} judge={} presets={}",
                    quoted_list(config.aliases.iter()),
                    config.outer_model,
                    config.defaults.panel.len(),
                    config.defaults.judge,
                    quoted_list(config.presets.keys()),
                );
                // Metrics are defined once per root; a reconfigure keeps their ids.
                let metrics = match self.shared.take() {
                    Some(old) => Rc::try_unwrap(old)
                        .map(|s| s.metrics)
                        .unwrap_or_else(|_| Metrics::define(&*self.host)),
                    None => Metrics::define(&*self.host),
                };
                self.shared = Some(Rc::new(Shared::new(
                    Rc::new(config),
                    metrics,
                    Rc::clone(&self.host),
                    self.context_id,
                )));
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
        let now = self.host.now_ms();
        let due: Vec<(u32, StreamRef)> = match shared.timers.try_borrow_mut() {
            Ok(mut timers) => {
                let later = timers.split_off(&(now.saturating_add(1), 0));
                let due = std::mem::replace(&mut *timers, later);
                due.into_iter().map(|((_, id), w)| (id, w)).collect()
            }
            Err(_) => Vec::new(),
        };
        for (context_id, stream) in due {
            if let Some(stream) = stream.upgrade() {
                self.enter(context_id);
                stream.on_timer(now);
            }
        }
        self.enter(self.context_id);
        if shared.timers.try_borrow().is_ok_and(|t| t.is_empty()) {
            shared.ticking.set(false);
            if let Err(status) = self.host.set_tick_period(Duration::ZERO) {
                log::warn!("fusion: stopping the tick failed: {status:?}");
            }
        }
    }

    /// `Host::route_answers_to_root` enters here with a reserved queue id; the
    /// filter uses no shared queue.
    fn on_queue_ready(&mut self, _queue_id: u32) {}

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(self.filter(context_id)?))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Names as `["a", "b"]` for the log, as `{:?}` of a list of strings writes
/// them, without pulling in `str`'s Debug escaping (its Unicode tables cost
/// kilobytes of Wasm: docs/benchmarks.md, "Module size").
fn quoted_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let mut out = String::from("[");
    for (i, name) in names.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('"');
        out.push_str(name);
        out.push('"');
    }
    out.push(']');
    out
}
