//! Text written without `core::fmt`'s generic paths, which cost Wasm code for
//! little: JSON values as compact text, costs as decimals.
//!
//! `f64`'s `Display` is grisu and dragon (~8 KB of Wasm) for a few numbers with
//! few decimals: the run's cost in the `fusion_cost` filter state (rounded to
//! 10 places), the bounds of `temperature` and `top_p` in their errors;
//! [`decimal`] writes the same text from a whole count of ten-billionths.
//!
//! `Value`'s `Display` (`to_string()`, `{}`) writes through a `fmt::Write`
//! adapter and instantiates serde_json's serializer a second and a third time
//! (compact and `{:#}` pretty) beside the `Vec<u8>` one every body is written
//! with; [`json`] uses that one.

use serde_json::Value;

/// `value` as compact JSON text: what `value.to_string()` writes.
pub fn json(value: &Value) -> String {
    // A `Value` always serializes (its keys are strings): the empty text is unreachable.
    serde_json::to_string(value).unwrap_or_default()
}

/// The `count` characters of `s` from its character `skip` on (fewer where
/// `s` ends): what `s.chars().skip(skip).take(count).collect()` holds, as a
/// slice, so previews share one loop instead of one `Extend<char>` each.
pub fn char_span(s: &str, skip: usize, count: usize) -> &str {
    let rest = s.get(char_boundary(s, skip)..).unwrap_or_default();
    rest.get(..char_boundary(rest, count)).unwrap_or_default()
}

/// The byte offset of `s`'s character `n` (its length when it has fewer).
fn char_boundary(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

/// `parts` joined by `sep`: what `parts.join(sep)` writes, with one copy of
/// the loop for `[String]` and `[&str]` (std's `join` is instantiated for each).
pub fn join<S: AsRef<str>>(parts: &[S], sep: &str) -> String {
    join_with(
        parts.len(),
        &|i| parts.get(i).map_or("", AsRef::as_ref),
        sep,
    )
}

fn join_with<'a>(count: usize, part: &dyn Fn(usize) -> &'a str, sep: &str) -> String {
    let mut len = sep.len().saturating_mul(count.saturating_sub(1));
    for i in 0..count {
        len = len.saturating_add(part(i).len());
    }
    let mut out = String::with_capacity(len);
    for i in 0..count {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(part(i));
    }
    out
}

/// A number with at most 10 decimal places (a cost as
/// [`round_cost`](crate::wire::neutral::round_cost) leaves it, a sampling
/// bound) written as `format!("{x}")` writes it: `0.004048`, `0`, `12.5`,
/// `0.0000000001`; no exponent, no trailing zero.
pub fn decimal(x: f64) -> String {
    /// Below 500,000 two f64s are closer than 1e-10 apart, so the number's
    /// 10-place decimal is the shortest text that reads back as it, which is
    /// what `Display` writes.
    const EXACT: f64 = 5e15;
    let units = (x.abs() * 1e10).round();
    if units.is_nan() || units >= EXACT {
        return large(x);
    }
    let units = units as u64;
    let mut out = String::with_capacity(24);
    if x.is_sign_negative() {
        out.push('-');
    }
    out.push_str(&(units / 10_000_000_000).to_string());
    let mut fraction = units % 10_000_000_000;
    if fraction > 0 {
        let mut digits = [b'0'; 10];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        let zeros = digits.iter().rev().take_while(|&&d| d == b'0').count();
        out.push('.');
        out.extend(digits.iter().take(10 - zeros).map(|&d| char::from(d)));
    }
    out
}

/// A number past 500,000 (or not finite): serde_json's shortest float
/// text, which has `Display`'s digits, written out as `Display` does (no `.0`,
/// no exponent, its own spelling of the non-finite values).
fn large(x: f64) -> String {
    let Some(n) = serde_json::Number::from_f64(x) else {
        return if x.is_nan() {
            "NaN"
        } else if x > 0.0 {
            "inf"
        } else {
            "-inf"
        }
        .to_string();
    };
    let text = n.to_string();
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m, e.trim_start_matches('+').parse::<usize>().unwrap_or(0)),
        None => (text.as_str(), 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let fraction = fraction.trim_end_matches('0');
    let mut out = whole.to_string();
    if exponent >= fraction.len() {
        out.push_str(fraction);
        out.push_str(&"0".repeat(exponent - fraction.len()));
    } else {
        let (more, rest) = fraction.split_at(exponent);
        out.push_str(more);
        out.push('.');
        out.push_str(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use crate::wire::neutral::round_cost;
    use serde_json::json;

    #[test]
    fn json_text_is_what_display_writes() {
        let v = json!({"b": [1, 2.5, null, "x\"y\u{1}"], "a": {"c": true}, "d": -0.0, "e": 1e300});
        assert_eq!(super::json(&v), v.to_string());
    }

    #[test]
    fn decimals_read_as_display_writes_them() {
        let mut samples = vec![
            0.0,
            -0.0,
            1e-10,
            4e-10,
            0.004048,
            0.0040479999999999995,
            1.0,
            12.5,
            0.1 + 0.2,
            123.456789,
            99999.9999999999,
            499_999.123_456_789_1,
            899_999.123_456_789,
            1e6,
            1_234_567.891,
            1e15,
            3e20,
            1.5e17,
            1.2345678e300,
            -2e16,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.25,
        ];
        // Prices per million tokens times token counts, as the ledger computes them.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let tokens = (seed % 2_000_000) as f64;
            let price = (seed >> 21) % 100_000;
            samples.push(tokens * (price as f64 / 1000.0) / 1_000_000.0);
        }
        for c in samples {
            let c = if c.is_finite() { round_cost(c) } else { c };
            assert_eq!(super::decimal(c), format!("{c}"), "{c:e}");
        }
        assert_eq!(super::decimal(f64::NAN), "NaN");
    }
}
