//! Envoy metrics, defined once per root context. Labels are encoded in the
//! name in Istio's tag convention (`mode=.=alias;.;outcome=.=ok;.;fusion_runs_total`):
//! the `stats_tags` shipped in envoy/demo.yaml, and Istio's own for the tags
//! listed in `extraStatTags`, turn them into Prometheus labels.
//!
//! Durations are not Wasm histograms: proxy-wasm records whole numbers into a
//! histogram Envoy creates with no unit, and Envoy writes such values out as
//! they are, so a histogram could be in milliseconds (not Prometheus' base
//! unit) or in whole seconds (everything under a second lost). Instead the
//! filter publishes each run's durations as filter state in decimal seconds
//! (`wasm.fusion_run_seconds`, `wasm.fusion_panel_wait_seconds`), and Envoy's
//! stats access logger, configured in the shipped configs, records them into
//! `Percent` histograms: Envoy stores those as millionths and divides by a
//! million when it writes them out, so `/stats/prometheus` shows
//! `fusion_run_duration_seconds` in seconds, to the microsecond
//! (docs/observability.md).

use crate::host::{Host, MetricType};
use fusion_core::engine::{Budget, FailureClass, Mode, Outcome, RunStats};
use fusion_core::vec_map::VecMap;

#[derive(Debug, Default)]
pub struct Metrics {
    runs: VecMap<(Mode, Outcome), u32>,
    panel_calls: Option<u32>,
    panel_failures: VecMap<FailureClass, u32>,
    judge_degraded: VecMap<FailureClass, u32>,
    cap_hits: Option<u32>,
    param_retries: Option<u32>,
    depth_refusals: Option<u32>,
    truncations: VecMap<Budget, u32>,
    client_disconnects: Option<u32>,
    overloaded: Option<u32>,
    active_runs: Option<u32>,
    cost_micros: Option<u32>,
}

/// Filter state (`wasm.<name>`) the shipped stats access logger records into
/// the duration histograms: the run's wall time and the wait for its panel.
pub const RUN_SECONDS: &str = "fusion_run_seconds";
pub const PANEL_WAIT_SECONDS: &str = "fusion_panel_wait_seconds";

/// Milliseconds as decimal seconds: 1234 -> "1.234", 7 -> "0.007".
pub fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn define(host: &dyn Host, kind: MetricType, name: &str) -> Option<u32> {
    match host.define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("fusion: defining metric {name} failed: {status:?}");
            None
        }
    }
}

fn counter(host: &dyn Host, name: &str) -> Option<u32> {
    define(host, MetricType::Counter, name)
}

/// A metric name with its labels in Istio's tag convention:
/// `label=.=value;.;` for each label, then the name.
fn tagged(name: &str, labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (label, value) in labels {
        out.push_str(label);
        out.push_str("=.=");
        out.push_str(value);
        out.push_str(";.;");
    }
    out.push_str(name);
    out
}

/// One counter per value of a label.
fn labelled<T: Copy + Ord>(
    host: &dyn Host,
    name: &str,
    label: &str,
    values: &[T],
    value_name: fn(T) -> &'static str,
) -> VecMap<T, u32> {
    values
        .iter()
        .filter_map(|v| {
            let id = counter(host, &tagged(name, &[(label, value_name(*v))]))?;
            Some((*v, id))
        })
        .collect()
}

/// A metric update the host refuses is lost; the request goes on.
fn add(host: &dyn Host, id: Option<u32>, n: i64) {
    if let Some(id) = id {
        if let Err(status) = host.increment_metric(id, n) {
            log::debug!("fusion: metric {id} not incremented: {status:?}");
        }
    }
}

/// A filter state write the host refuses loses that duration; the request goes on.
fn publish(host: &dyn Host, name: &str, ms: u64) {
    if let Err(status) = host.set_property(&[name], seconds(ms).as_bytes()) {
        log::debug!("fusion: setting filter state {name} refused: {status:?}");
    }
}

impl Metrics {
    pub fn define(host: &dyn Host) -> Metrics {
        let mut runs = VecMap::new();
        for mode in Mode::ALL {
            for outcome in Outcome::ALL {
                let name = tagged(
                    "fusion_runs_total",
                    &[("mode", mode.name()), ("outcome", outcome.name())],
                );
                if let Some(id) = counter(host, &name) {
                    runs.insert((mode, outcome), id);
                }
            }
        }
        Metrics {
            runs,
            panel_calls: counter(host, "fusion_panel_calls_total"),
            panel_failures: labelled(
                host,
                "fusion_panel_failures_total",
                "reason",
                &FailureClass::ALL,
                FailureClass::name,
            ),
            judge_degraded: labelled(
                host,
                "fusion_judge_degraded_total",
                "reason",
                &FailureClass::ALL,
                FailureClass::name,
            ),
            cap_hits: counter(host, "fusion_cap_hits_total"),
            param_retries: counter(host, "fusion_param_retries_total"),
            depth_refusals: counter(host, "fusion_depth_refusals_total"),
            truncations: labelled(
                host,
                "fusion_truncations_total",
                "budget",
                &Budget::ALL,
                Budget::name,
            ),
            client_disconnects: counter(host, "fusion_client_disconnects_total"),
            overloaded: counter(host, "fusion_overloaded_total"),
            active_runs: define(host, MetricType::Gauge, "fusion_active_runs"),
            cost_micros: counter(host, "fusion_cost_micros_total"),
        }
    }

    /// Counts one finished run, and publishes its durations for the
    /// stats access logger (called from `on_log`, before Envoy's access logs).
    pub fn run_ended(&self, host: &dyn Host, s: &RunStats) {
        add(host, self.runs.get(&(s.mode, s.outcome)).copied(), 1);
        add(host, self.panel_calls, s.panel_calls as i64);
        for reason in &s.panel_failures {
            add(host, self.panel_failures.get(reason).copied(), 1);
        }
        if let Some(reason) = s.judge_degraded {
            add(host, self.judge_degraded.get(&reason).copied(), 1);
        }
        add(host, self.cap_hits, i64::from(s.cap_hits));
        add(host, self.param_retries, i64::from(s.param_retries));
        if let Some(budget) = s.truncated_by {
            add(host, self.truncations.get(&budget).copied(), 1);
        }
        if s.outcome == Outcome::ClientGone {
            add(host, self.client_disconnects, 1);
        }
        if let Some(cost) = s.cost {
            add(host, self.cost_micros, (cost * 1_000_000.0).round() as i64);
        }
        publish(host, RUN_SECONDS, s.wall_ms);
        if let Some(wait) = s.panel_wait_ms {
            publish(host, PANEL_WAIT_SECONDS, wait);
        }
    }

    pub fn depth_refused(&self, host: &dyn Host) {
        add(host, self.depth_refusals, 1);
    }

    pub fn overloaded(&self, host: &dyn Host) {
        add(host, self.overloaded, 1);
    }

    pub fn active_runs(&self, host: &dyn Host, delta: i64) {
        add(host, self.active_runs, delta);
    }
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn milliseconds_become_decimal_seconds() {
        assert_eq!(seconds(0), "0.000");
        assert_eq!(seconds(7), "0.007");
        assert_eq!(seconds(1234), "1.234");
        assert_eq!(seconds(120_000), "120.000");
        assert_eq!(seconds(u64::MAX), "18446744073709551.615");
    }
}
