//! fusion-wasm: the proxy-wasm host glue. It translates proxy-wasm callbacks into
//! engine events and engine commands into host calls; all logic lives in fusion-core.

mod filter;
mod host;
mod metrics;
mod root;
mod shared;
#[cfg(test)]
mod tests;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::FusionRoot::new(context_id))
    });
}}
