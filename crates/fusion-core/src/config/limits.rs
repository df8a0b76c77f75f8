//! The documented range of every numeric setting, and the check that refuses a
//! configuration with a value outside it. Values are compared as they were
//! parsed (`u64`/`usize`), never cast: `turn_timeout_ms: 18446744073709551615`
//! is refused here instead of wrapping where a deadline is computed, and every
//! timeout fits the host's `u32` milliseconds. docs/configuration.md lists the
//! same ranges (the `RANGES` table is the source of truth).

use super::{err, ConfigError, Limits};

/// Inclusive bounds of one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub field: &'static str,
    pub min: u64,
    pub max: u64,
}

const HOUR_MS: u64 = 3_600_000;
const MIB: u64 = 1 << 20;

/// Every bounded setting, by the name the configuration spells it.
pub const RANGES: &[Range] = &[
    Range {
        field: "limits.max_panel",
        min: 1,
        max: 32,
    },
    Range {
        field: "limits.max_rounds",
        min: 1,
        max: 100,
    },
    Range {
        field: "limits.tool_timeout_ms",
        min: 1,
        max: HOUR_MS,
    },
    Range {
        field: "limits.turn_timeout_ms",
        min: 1,
        max: 4 * HOUR_MS,
    },
    Range {
        field: "limits.max_request_bytes",
        min: 1,
        max: 256 * MIB,
    },
    Range {
        field: "limits.max_response_bytes",
        min: 1,
        max: 256 * MIB,
    },
    Range {
        field: "limits.max_concurrent_runs",
        min: 1,
        max: 65_536,
    },
    Range {
        field: "limits.max_completion_tokens",
        min: 1,
        max: 10_000_000,
    },
    Range {
        field: "limits.max_tool_calls",
        min: 1,
        max: 1_024,
    },
    Range {
        field: "limits.max_upstream_calls",
        min: 1,
        max: 10_000,
    },
    Range {
        field: "limits.max_upstream_bytes",
        min: 1,
        max: 64 * 1024 * MIB,
    },
    Range {
        field: "limits.max_bytes_in_flight",
        min: MIB,
        max: 1024 * 1024 * MIB,
    },
    Range {
        field: "max_depth",
        min: 1,
        max: 16,
    },
    Range {
        field: "panel_grace_ms",
        min: 0,
        max: HOUR_MS,
    },
];

/// The range of `field` (a name from [`RANGES`]).
pub fn range(field: &str) -> Option<Range> {
    RANGES.iter().copied().find(|r| r.field == field)
}

/// Refuse `value` when it lies outside the documented range of `field`.
/// `shown` is the name the error reports (a preset's own field, for example).
pub fn check(field: &str, shown: &str, value: u64) -> Result<(), ConfigError> {
    let Some(r) = range(field) else {
        return Ok(());
    };
    if (r.min..=r.max).contains(&value) {
        return Ok(());
    }
    Err(err(
        shown,
        format!("is {value}; must be from {} to {}", r.min, r.max),
    ))
}

/// A `usize` setting: one that does not fit `u64` is out of range too.
fn check_size(field: &str, value: usize) -> Result<(), ConfigError> {
    check(field, field, u64::try_from(value).unwrap_or(u64::MAX))
}

/// Every limit within its range.
pub fn check_limits(l: &Limits) -> Result<(), ConfigError> {
    check_size("limits.max_panel", l.max_panel)?;
    check(
        "limits.max_rounds",
        "limits.max_rounds",
        u64::from(l.max_rounds),
    )?;
    check(
        "limits.tool_timeout_ms",
        "limits.tool_timeout_ms",
        l.tool_timeout_ms,
    )?;
    check(
        "limits.turn_timeout_ms",
        "limits.turn_timeout_ms",
        l.turn_timeout_ms,
    )?;
    check_size("limits.max_request_bytes", l.max_request_bytes)?;
    check_size("limits.max_response_bytes", l.max_response_bytes)?;
    check_size("limits.max_concurrent_runs", l.max_concurrent_runs)?;
    check(
        "limits.max_completion_tokens",
        "limits.max_completion_tokens",
        l.max_completion_tokens,
    )?;
    check(
        "limits.max_tool_calls",
        "limits.max_tool_calls",
        l.max_tool_calls,
    )?;
    check(
        "limits.max_upstream_calls",
        "limits.max_upstream_calls",
        u64::from(l.max_upstream_calls),
    )?;
    check(
        "limits.max_upstream_bytes",
        "limits.max_upstream_bytes",
        l.max_upstream_bytes,
    )?;
    check(
        "limits.max_bytes_in_flight",
        "limits.max_bytes_in_flight",
        l.max_bytes_in_flight,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::super::{Config, DEFAULT_CONFIG};

    fn with_limits(limits: &str) -> String {
        DEFAULT_CONFIG.replacen('{', &format!("{{\"limits\": {{{limits}}},"), 1)
    }

    fn refused(limits: &str) -> (String, String) {
        match Config::parse(with_limits(limits).as_bytes(), &|_| None) {
            Ok(_) => panic!("accepted {limits}"),
            Err(e) => (e.field, e.reason),
        }
    }

    #[test]
    fn defaults_lie_within_their_ranges() {
        let c = Config::default_mock().unwrap();
        super::check_limits(&c.limits).unwrap();
    }

    #[test]
    fn values_outside_a_range_are_refused_not_wrapped() {
        let (field, reason) = refused(r#""turn_timeout_ms": 18446744073709551615"#);
        assert_eq!(field, "limits.turn_timeout_ms");
        assert!(reason.contains("from 1 to 14400000"), "{reason}");
        // 2^32 ms: a u32 cast would read it as no timeout at all.
        assert_eq!(
            refused(r#""tool_timeout_ms": 4294967296"#).0,
            "limits.tool_timeout_ms"
        );
        assert_eq!(
            refused(r#""tool_timeout_ms": 0"#).0,
            "limits.tool_timeout_ms"
        );
        assert_eq!(refused(r#""max_panel": 33"#).0, "limits.max_panel");
        assert_eq!(
            refused(r#""max_completion_tokens": 0"#).0,
            "limits.max_completion_tokens"
        );
        assert_eq!(
            refused(r#""max_upstream_calls": 0"#).0,
            "limits.max_upstream_calls"
        );
        assert_eq!(
            refused(r#""max_bytes_in_flight": 1024"#).0,
            "limits.max_bytes_in_flight"
        );
        // Negative and fractional values never parse as a limit.
        assert!(refused(r#""max_rounds": -1"#).1.contains("expected u32"));
        assert!(refused(r#""max_rounds": 2.5"#).1.contains("expected u32"));
    }

    #[test]
    fn top_level_and_preset_bounds() {
        let text = DEFAULT_CONFIG.replacen('{', r#"{"max_depth": 17,"#, 1);
        let e = Config::parse(text.as_bytes(), &|_| None).unwrap_err();
        assert_eq!(e.field, "max_depth");
        let text = DEFAULT_CONFIG.replacen('{', r#"{"panel_grace_ms": 3600001,"#, 1);
        let e = Config::parse(text.as_bytes(), &|_| None).unwrap_err();
        assert_eq!(e.field, "panel_grace_ms");
        let text = DEFAULT_CONFIG.replacen(
            '{',
            r#"{"presets": {"p": {"panel_grace_ms": 18446744073709551615}},"#,
            1,
        );
        let e = Config::parse(text.as_bytes(), &|_| None).unwrap_err();
        assert_eq!(e.field, "presets.p.panel_grace_ms");
    }

    #[test]
    fn the_edges_of_every_range_are_accepted() {
        for r in super::RANGES
            .iter()
            .filter(|r| r.field.starts_with("limits."))
        {
            let key = r.field.trim_start_matches("limits.");
            for v in [r.min, r.max] {
                let text = with_limits(&format!("\"{key}\": {v}"));
                if let Err(e) = Config::parse(text.as_bytes(), &|_| None) {
                    // max_panel below the default panel's size is a panel error, not a range one.
                    assert!(e.field.ends_with("panel"), "{key}={v}: {e}");
                }
            }
        }
    }
}
