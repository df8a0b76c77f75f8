//! The root context: compiles the configuration once and creates one filter per stream.

use crate::filter::FusionFilter;
use fusion_core::config::Config;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::rc::Rc;

#[derive(Default)]
pub struct FusionRoot {
    config: Option<Rc<Config>>,
}

impl Context for FusionRoot {}

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
                    "fusion: configured aliases={:?} outer_model={} panel={} judge={}",
                    config.aliases,
                    config.outer_model,
                    config.panel.len(),
                    config.judge
                );
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                // Envoy rejects the configuration; nothing half-applies.
                log::error!("{e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(FusionFilter::new(config)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
