//! The cheap pre-scan over a raw request body: can it ask for fusion at all?
//!
//! A body asks for fusion only through a JSON string equal to an alias (the
//! `model`) or to a fusion tool type (`fusion`, `openrouter:fusion`). Both tool
//! types contain `fusion`, so the needles are `fusion` plus every alias that does
//! not contain it. JSON can spell each character of a string in several ways:
//! literally, as `\uXXXX` (any hex case; a character outside the BMP as a
//! surrogate pair), or with a short escape (`\/`, `\"`, `\\`, `\n`, ...). The
//! scan answers `false` only when no spelling of any needle occurs anywhere in
//! the body (keys and values alike: it does not track where strings begin), so a
//! `false` is always safe; a `true` only means "parse it".
//!
//! Cost: one pass over the body for the configurations that ship (needles of five
//! bytes or more sharing their first and fifth byte, escape beginnings `\uXXX`):
//! [`Pairs`] looks, 32 positions per step (wasm SIMD in the shipped module, SSE2
//! natively), for the needles' first byte with their fifth byte four bytes later,
//! or for a backslash with the fifth byte of an escape beginning (`\u006`: `6`)
//! four bytes later; each such rare candidate is then checked in full.
//! Other configurations take one memmem pass per needle for the literal
//! spellings, then one memmem pass for `\u` (plus one for `\/` or `\"` when a
//! needle holds that character). Either way only an escape that decodes to a
//! character of some needle can be part of an escaped spelling, and `\n`, `\"` or
//! `\\` in ordinary text never can. Around those (rare) escapes the needle is
//! checked in both directions. No allocation per body.
//!
//! Only valid JSON can ask for fusion (the engine passes anything else through),
//! so the scan may rely on JSON's grammar: backslashes occur only inside strings,
//! where a backslash starts an escape exactly when an even number of backslashes
//! precede it.

use memchr::memmem::Finder;

/// Built once per configuration (from the alias list); asked once per body.
#[derive(Debug, Clone)]
pub struct Prescan {
    /// The needles as UTF-16 code units: the unit of a `\uXXXX` escape.
    needles: Vec<Vec<u16>>,
    /// The same needles as UTF-8 bytes, for the literal spelling.
    literal: Vec<Finder<'static>>,
    /// Bit `u` set: ASCII unit `u` occurs in some needle.
    ascii: u128,
    /// Non-ASCII units (surrogate halves included) that occur in some needle, sorted.
    other: Vec<u16>,
    /// An empty needle occurs in every body.
    always: bool,
    /// How every escape that can spell a needle character begins: `\u` and the
    /// first three hex digits of such a character (`\u006` for `f`, `\u007` for `u`,
    /// in either hex case), and `\/` or `\"` when a needle holds `/` or `"`.
    /// `None`: a needle holds a backslash or a control character; walk every
    /// escape instead.
    escape_starts: Option<Vec<Finder<'static>>>,
    /// The one-pass scan, when the needles and escape beginnings fit it.
    pairs: Option<Pairs>,
}

/// Every tool type that asks for fusion contains this; so does the default alias.
const FUSION: &str = "fusion";

impl Prescan {
    /// The scan for a configuration with these aliases.
    pub fn new<S: AsRef<str>>(aliases: &[S]) -> Prescan {
        let mut texts: Vec<&str> = vec![FUSION];
        for alias in aliases {
            let alias = alias.as_ref();
            // A body holding such an alias in any spelling holds `fusion` in that spelling too.
            if !alias.contains(FUSION) && !texts.contains(&alias) {
                texts.push(alias);
            }
        }
        let mut ascii = 0u128;
        let mut other = Vec::new();
        let mut needles = Vec::with_capacity(texts.len());
        for text in &texts {
            let units: Vec<u16> = text.encode_utf16().collect();
            for &u in &units {
                if u < 128 {
                    ascii |= 1u128 << u;
                } else {
                    crate::vec_map::insert_sorted(&mut other, u);
                }
            }
            needles.push(units);
        }
        let has = |c: u8| ascii & (1u128 << c) != 0;
        let escape_starts = if has(b'\\') || (0..0x20).any(has) {
            None
        } else {
            let mut starts: Vec<Finder<'static>> = unicode_escape_prefixes(ascii, &other)
                .iter()
                .map(|p| Finder::new(p).into_owned())
                .collect();
            for c in [b'/', b'"'] {
                if has(c) {
                    starts.push(Finder::new(&[b'\\', c]).into_owned());
                }
            }
            Some(starts)
        };
        let pairs = escape_starts
            .as_ref()
            .and_then(|starts| Pairs::new(&texts, starts));
        Prescan {
            pairs,
            escape_starts,
            always: texts.iter().any(|t| t.is_empty()),
            literal: texts
                .iter()
                .map(|t| Finder::new(t.as_bytes()).into_owned())
                .collect(),
            needles,
            ascii,
            other,
        }
    }

    /// `false`: no JSON spelling of an alias or of `fusion` occurs in `body`, so it
    /// cannot ask for fusion. `true`: it may; parse it to decide.
    pub fn may_ask_for_fusion(&self, body: &[u8]) -> bool {
        if self.always {
            return true;
        }
        match &self.pairs {
            Some(pairs) => self.one_pass(pairs, body),
            None => {
                self.literal.iter().any(|f| f.find(body).is_some()) || self.escaped_spelling(body)
            }
        }
    }

    /// The scan in one pass over the body (see [`Pairs`]).
    fn one_pass(&self, pairs: &Pairs, body: &[u8]) -> bool {
        let lanes = pairs.lanes();
        let mut pos = 0;
        while pos + BLOCK + GAP <= body.len() {
            let mut candidates = lanes.block(body, pos);
            while candidates != 0 {
                let at = pos + candidates.trailing_zeros() as usize;
                if self.candidate_holds(body, at) {
                    return true;
                }
                candidates &= candidates - 1;
            }
            pos += BLOCK;
        }
        // The last positions, one at a time (a candidate needs its fifth byte).
        (pos..body.len().saturating_sub(GAP))
            .any(|at| pairs.is_candidate(body, at) && self.candidate_holds(body, at))
    }

    /// Whether a needle is spelled from `at`, a candidate of [`Pairs`]: a needle
    /// literally, or an escape beginning whose escape spells a needle character
    /// with the characters around it.
    fn candidate_holds(&self, body: &[u8], at: usize) -> bool {
        let Some(rest) = body.get(at..) else {
            return false;
        };
        if rest.first() == Some(&b'\\') {
            self.escape_starts.as_ref().is_some_and(|starts| {
                starts.iter().any(|f| rest.starts_with(f.needle()))
                    && starts_escape(body, at)
                    && self.escape_spells_needle(body, at)
            })
        } else {
            self.literal.iter().any(|f| rest.starts_with(f.needle()))
        }
    }

    /// A needle spelled with at least one escape.
    fn escaped_spelling(&self, body: &[u8]) -> bool {
        // No backslash, no escape: one memchr pass instead of one pass per
        // escape beginning; with one, the passes start from it.
        let Some(first) = memchr::memchr(b'\\', body) else {
            return false;
        };
        let Some(starts) = &self.escape_starts else {
            return self.walk_every_escape(body);
        };
        let rest = body.get(first..).unwrap_or_default();
        starts.iter().any(|finder| {
            finder.find_iter(rest).any(|off| {
                let at = first + off;
                starts_escape(body, at) && self.escape_spells_needle(body, at)
            })
        })
    }

    /// Whether the escape at `at` is part of a spelled needle (or is no JSON escape:
    /// never rule out what we cannot read; the parser will say what it is).
    fn escape_spells_needle(&self, body: &[u8], at: usize) -> bool {
        match escape_at(body, at) {
            None => true,
            Some((unit, len)) => self.in_alphabet(unit) && self.needle_around(body, at, len, unit),
        }
    }

    /// For needles with a backslash or a control character: every escape, left to
    /// right (every backslash the walk lands on starts an escape).
    fn walk_every_escape(&self, body: &[u8]) -> bool {
        let mut pos = 0;
        while let Some(off) = body.get(pos..).and_then(|rest| memchr::memchr(b'\\', rest)) {
            let at = pos + off;
            let Some((unit, len)) = escape_at(body, at) else {
                // Not valid JSON; the parser will say so. Never rule out what we cannot read.
                return true;
            };
            if self.in_alphabet(unit) && self.needle_around(body, at, len, unit) {
                return true;
            }
            pos = at + len;
        }
        false
    }

    fn in_alphabet(&self, unit: u16) -> bool {
        if unit < 128 {
            self.ascii & (1u128 << unit) != 0
        } else {
            self.other.binary_search(&unit).is_ok()
        }
    }

    /// Whether some needle occurs with its unit `unit` spelled by the escape at `at..at + len`.
    fn needle_around(&self, body: &[u8], at: usize, len: usize, unit: u16) -> bool {
        self.needles.iter().any(|needle| {
            needle.iter().enumerate().any(|(k, &u)| {
                u == unit
                    && needle.split_at_checked(k).is_some_and(|(before, rest)| {
                        ends_with(body, at, before)
                            && rest
                                .get(1..)
                                .is_some_and(|after| starts_with(body, at + len, after))
                    })
            })
        })
    }
}

/// Positions the one-pass scan looks at per step.
const BLOCK: usize = 32;
/// The distance between the two bytes of a candidate: a needle's first and fifth
/// byte, or the backslash and the fifth byte of a `\uXXX` escape beginning.
const GAP: usize = 4;

/// The one-pass scan's candidates: a position that holds the needles' first byte
/// with their fifth byte [`GAP`] later, or a backslash with the fifth byte of an
/// escape beginning `GAP` later. Every spelling of a needle has one: literally, at
/// its start; with an escape, at the backslash of its first escape that can spell
/// a needle character (an escape beginning). With the default alias: `f` then
/// `o`, or `\` then `6` or `7` (`\u006`, `\u007`).
///
/// Sizes fixed at what the shipped configurations need, so the step is five
/// comparisons per 16 positions: one (first, fifth) pair shared by every needle
/// (aliases that contain `fusion` add none), two escape beginnings' fifth bytes.
/// Another configuration (an alias beginning otherwise, one shorter than five
/// bytes, escape beginnings other than `\uXXX`) takes the memmem passes.
#[derive(Debug, Clone)]
struct Pairs {
    literal: [u8; 2],
    escape_fifths: [u8; 2],
}

impl Pairs {
    fn new(texts: &[&str], escape_starts: &[Finder<'static>]) -> Option<Pairs> {
        if !vector::AVAILABLE {
            return None;
        }
        let mut literal = None;
        for text in texts {
            let bytes = text.as_bytes();
            let pair = [*bytes.first()?, *bytes.get(GAP)?];
            if *literal.get_or_insert(pair) != pair {
                return None;
            }
        }
        let mut escape_fifths = Vec::with_capacity(2);
        for start in escape_starts {
            let bytes = start.needle();
            if bytes.len() != GAP + 1 || !bytes.starts_with(b"\\u") {
                return None;
            }
            let fifth = *bytes.get(GAP)?;
            if !escape_fifths.contains(&fifth) {
                escape_fifths.push(fifth);
            }
        }
        // Padded with a repeat: a repeated comparison changes nothing.
        if let [one] = escape_fifths[..] {
            escape_fifths.push(one);
        }
        Some(Pairs {
            literal: literal?,
            escape_fifths: escape_fifths.try_into().ok()?,
        })
    }

    fn is_candidate(&self, body: &[u8], at: usize) -> bool {
        let (Some(&first), Some(fifth)) = (body.get(at), body.get(at + GAP)) else {
            return false;
        };
        [first, *fifth] == self.literal || (first == b'\\' && self.escape_fifths.contains(fifth))
    }

    fn lanes(&self) -> vector::Lanes {
        vector::Lanes::new(self)
    }
}

/// [`Pairs`]' step in SIMD: two 16-byte halves, the first bytes and the bytes
/// [`GAP`] later compared at once, 16 positions per comparison. The same code in
/// wasm SIMD (`simd128`, the shipped module) and in x86-64's SSE2 (native builds:
/// tests, benches); elsewhere (a wasm build without SIMD) the memmem passes run.
mod vector {
    use super::{Pairs, BLOCK, GAP};
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    use core::arch::wasm32::{
        u8x16_bitmask as bitmask, u8x16_eq as eq, u8x16_splat as splat, v128 as V, v128_and as and,
        v128_any_true as any, v128_load, v128_or as or,
    };
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    use core::arch::x86_64::{
        __m128i as V, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8,
    };

    /// Whether this build has the one-pass step.
    pub(super) const AVAILABLE: bool = cfg!(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        all(target_arch = "x86_64", target_feature = "sse2")
    ));

    // SSE2 is part of every x86-64 CPU (the cfg says this build targets one), so
    // these calls are sound wherever they compile.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn splat(b: u8) -> V {
        // SAFETY: SSE2 (above).
        unsafe { _mm_set1_epi8(i8::from_ne_bytes([b])) }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn eq(a: V, b: V) -> V {
        // SAFETY: SSE2 (above).
        unsafe { _mm_cmpeq_epi8(a, b) }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn or(a: V, b: V) -> V {
        // SAFETY: SSE2 (above).
        unsafe { _mm_or_si128(a, b) }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn and(a: V, b: V) -> V {
        // SAFETY: SSE2 (above).
        unsafe { _mm_and_si128(a, b) }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn bitmask(v: V) -> u16 {
        // SAFETY: SSE2 (above). Only the low 16 bits can be set: one per byte.
        unsafe { _mm_movemask_epi8(v) as u16 }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn any(v: V) -> bool {
        bitmask(v) != 0
    }

    /// 16 bytes from `at`; the caller keeps them within one slice.
    ///
    /// # Safety
    /// `at..at + 16` must be readable.
    #[cfg(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        all(target_arch = "x86_64", target_feature = "sse2")
    ))]
    #[inline(always)]
    unsafe fn load(at: *const u8) -> V {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        // SAFETY: the caller's contract; `v128_load` needs no alignment.
        return unsafe { v128_load(at.cast::<V>()) };
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        // SAFETY: the caller's contract; `_mm_loadu_si128` needs no alignment.
        return unsafe { _mm_loadu_si128(at.cast::<V>()) };
    }

    /// The candidate bytes, each in all 16 lanes.
    #[cfg(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        all(target_arch = "x86_64", target_feature = "sse2")
    ))]
    pub(super) struct Lanes {
        literal: [V; 2],
        backslash: V,
        escape_fifths: [V; 2],
    }

    #[cfg(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        all(target_arch = "x86_64", target_feature = "sse2")
    ))]
    impl Lanes {
        pub(super) fn new(pairs: &Pairs) -> Lanes {
            let [l0, l4] = pairs.literal;
            let [e0, e1] = pairs.escape_fifths;
            Lanes {
                literal: [splat(l0), splat(l4)],
                backslash: splat(b'\\'),
                escape_fifths: [splat(e0), splat(e1)],
            }
        }

        #[inline(always)]
        fn candidates(&self, first: V, fifth: V) -> V {
            let [l0, l4] = self.literal;
            let [e0, e1] = self.escape_fifths;
            or(
                and(eq(first, l0), eq(fifth, l4)),
                and(eq(first, self.backslash), or(eq(fifth, e0), eq(fifth, e1))),
            )
        }

        /// The candidates among positions `pos..pos + BLOCK` as a bit mask (bit k:
        /// position `pos + k`); needs `pos + BLOCK + GAP <= body.len()`.
        #[inline(always)]
        pub(super) fn block(&self, body: &[u8], pos: usize) -> u32 {
            let Some(bytes) = body.get(pos..pos + BLOCK + GAP) else {
                return 0;
            };
            let at = bytes.as_ptr();
            // SAFETY: `bytes` holds BLOCK + GAP = 36 bytes; the four loads read 16
            // bytes each from offsets 0, 16, GAP and 16 + GAP, all within it.
            let (a0, a1, b0, b1) = unsafe {
                (
                    load(at),
                    load(at.add(16)),
                    load(at.add(GAP)),
                    load(at.add(16 + GAP)),
                )
            };
            let c0 = self.candidates(a0, b0);
            let c1 = self.candidates(a1, b1);
            if !any(or(c0, c1)) {
                return 0;
            }
            u32::from(bitmask(c0)) | (u32::from(bitmask(c1)) << 16)
        }
    }

    /// Without a vector step [`Pairs`] is never built (`AVAILABLE` is false): this
    /// stub only keeps the one-pass code compiling.
    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        all(target_arch = "x86_64", target_feature = "sse2")
    )))]
    pub(super) struct Lanes;

    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        all(target_arch = "x86_64", target_feature = "sse2")
    )))]
    impl Lanes {
        pub(super) fn new(_: &Pairs) -> Lanes {
            Lanes
        }

        /// Every position a candidate: the full check decides each.
        pub(super) fn block(&self, _: &[u8], _: usize) -> u32 {
            let _ = (BLOCK, GAP);
            u32::MAX
        }
    }
}

/// The beginnings (`\u` and three hex digits, each hex case) of the `\uXXXX`
/// escapes of the needle alphabet: an escape of any other character, however
/// frequent (`\u00e9` in French, `\u043f` in Russian text), is never looked at.
/// Past 8 beginnings, one pass for `\u` costs less than a pass for each.
fn unicode_escape_prefixes(ascii: u128, other: &[u16]) -> Vec<Vec<u8>> {
    let units = (0u16..128)
        .filter(|&u| ascii & (1u128 << u) != 0)
        .chain(other.iter().copied());
    let mut prefixes: Vec<Vec<u8>> = vec![b"\\u".to_vec()];
    for unit in units {
        let hex = format!("{:03x}", unit >> 4);
        let mut spelled: Vec<Vec<u8>> = vec![b"\\u".to_vec()];
        for h in hex.bytes() {
            let cases = if h.is_ascii_alphabetic() {
                vec![h, h.to_ascii_uppercase()]
            } else {
                vec![h]
            };
            spelled = spelled
                .iter()
                .flat_map(|p| cases.iter().map(move |&c| [p.as_slice(), &[c]].concat()))
                .collect();
        }
        for p in spelled {
            if !prefixes.contains(&p) {
                prefixes.push(p);
            }
        }
    }
    if prefixes.len() > 9 {
        prefixes.truncate(1);
    } else {
        prefixes.remove(0);
    }
    prefixes
}

/// Equal when they scan for the same needles (the finders follow from them).
impl PartialEq for Prescan {
    fn eq(&self, other: &Self) -> bool {
        self.needles == other.needles && self.always == other.always
    }
}

/// Up to two UTF-16 units of one spelled character, and how many bytes spell it.
struct Spelled {
    units: [u16; 2],
    count: usize,
    bytes: usize,
}

impl Spelled {
    fn units(&self) -> &[u16] {
        self.units.get(..self.count).unwrap_or(&[])
    }
}

/// The escape starting at `at` (a backslash): its unit and its length in bytes.
/// `None`: not a JSON escape.
fn escape_at(body: &[u8], at: usize) -> Option<(u16, usize)> {
    let unit = match *body.get(at + 1)? {
        b'"' => 0x22,
        b'\\' => 0x5C,
        b'/' => 0x2F,
        b'b' => 0x08,
        b'f' => 0x0C,
        b'n' => 0x0A,
        b'r' => 0x0D,
        b't' => 0x09,
        b'u' => {
            let hex = body.get(at + 2..at + 6)?;
            let mut v = 0u16;
            for &h in hex {
                let d = (h as char).to_digit(16)?;
                v = (v << 4) | d as u16;
            }
            return Some((v, 6));
        }
        _ => return None,
    };
    Some((unit, 2))
}

/// The character spelled at `pos` (a boundary between spelled characters).
fn spelled_at(body: &[u8], pos: usize) -> Option<Spelled> {
    let first = *body.get(pos)?;
    if first == b'\\' {
        let (unit, bytes) = escape_at(body, pos)?;
        return Some(Spelled {
            units: [unit, 0],
            count: 1,
            bytes,
        });
    }
    let width = match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return None,
    };
    literal(body.get(pos..pos + width)?)
}

/// The character spelled just before `end` (a boundary between spelled characters).
fn spelled_before(body: &[u8], end: usize) -> Option<Spelled> {
    let escape_starts = |at: usize| starts_escape(body, at);
    if end >= 2 && body.get(end - 1) != Some(&b'u') && escape_starts(end - 2) {
        let (unit, bytes) = escape_at(body, end - 2)?;
        return (bytes == 2).then_some(Spelled {
            units: [unit, 0],
            count: 1,
            bytes,
        });
    }
    if end >= 6 && body.get(end - 5) == Some(&b'u') && escape_starts(end - 6) {
        let (unit, bytes) = escape_at(body, end - 6)?;
        return Some(Spelled {
            units: [unit, 0],
            count: 1,
            bytes,
        });
    }
    // A literal character: back over at most three continuation bytes to its lead byte.
    let mut lead = end.checked_sub(1)?;
    while lead + 4 > end && lead > 0 && body.get(lead).is_some_and(|b| b & 0xC0 == 0x80) {
        lead -= 1;
    }
    literal(body.get(lead..end)?)
}

/// Whether the byte at `at` is a backslash that starts an escape: in valid JSON,
/// when an even number of backslashes precede it.
fn starts_escape(body: &[u8], at: usize) -> bool {
    body.get(at) == Some(&b'\\')
        && body
            .get(..at)
            .is_some_and(|head| head.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0)
}

/// One literal UTF-8 character as UTF-16 units.
fn literal(bytes: &[u8]) -> Option<Spelled> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut chars = text.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    let mut units = [0u16; 2];
    let count = c.encode_utf16(&mut units).len();
    Some(Spelled {
        units,
        count,
        bytes: bytes.len(),
    })
}

/// Whether the characters spelled from `pos` on begin with `units`.
fn starts_with(body: &[u8], mut pos: usize, mut units: &[u16]) -> bool {
    while !units.is_empty() {
        let Some(s) = spelled_at(body, pos) else {
            return false;
        };
        let Some(rest) = units.strip_prefix(s.units()) else {
            return false;
        };
        units = rest;
        pos += s.bytes;
    }
    true
}

/// Whether the characters spelled before `end` end with `units`.
fn ends_with(body: &[u8], mut end: usize, mut units: &[u16]) -> bool {
    while !units.is_empty() {
        let Some(s) = spelled_before(body, end) else {
            return false;
        };
        let Some(rest) = units.strip_suffix(s.units()) else {
            return false;
        };
        units = rest;
        end -= s.bytes;
    }
    true
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::Value;

    /// What a parser sees: whether any string (key or value) of the body contains a needle.
    fn oracle(aliases: &[&str], body: &[u8]) -> Option<bool> {
        fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::String(s) => out.push(s),
                Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
                Value::Object(o) => o.iter().for_each(|(k, x)| {
                    out.push(k);
                    strings(x, out)
                }),
                _ => {}
            }
        }
        let v: Value = serde_json::from_slice(body).ok()?;
        let mut all = Vec::new();
        strings(&v, &mut all);
        Some(
            all.iter()
                .any(|s| s.contains(FUSION) || aliases.iter().any(|a| s.contains(a))),
        )
    }

    fn scan(aliases: &[&str], body: &str) -> bool {
        Prescan::new(aliases).may_ask_for_fusion(body.as_bytes())
    }

    /// Every way JSON can spell one character.
    fn spellings(c: char) -> Vec<String> {
        let mut out = Vec::new();
        match c {
            '"' => out.push("\\\"".to_string()),
            '\\' => out.push("\\\\".to_string()),
            '/' => {
                out.push("/".into());
                out.push("\\/".into())
            }
            '\n' => out.push("\\n".into()),
            c if (c as u32) < 0x20 => {}
            c => out.push(c.to_string()),
        }
        let mut units = [0u16; 2];
        let enc = c.encode_utf16(&mut units);
        out.push(enc.iter().map(|u| format!("\\u{u:04x}")).collect());
        out.push(enc.iter().map(|u| format!("\\u{u:04X}")).collect());
        out
    }

    /// A few spellings of a whole string: all literal, all escaped, one escaped
    /// character at each position, and the mixed ones.
    fn spell_all(text: &str) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        for variant in 0..3 {
            out.push(
                chars
                    .iter()
                    .map(|&c| {
                        let s = spellings(c);
                        s[variant.min(s.len() - 1)].clone()
                    })
                    .collect::<String>(),
            );
        }
        for i in 0..chars.len() {
            for alt in spellings(chars[i]) {
                let mut s = String::new();
                for (j, &c) in chars.iter().enumerate() {
                    if i == j {
                        s.push_str(&alt);
                    } else {
                        s.push_str(&spellings(c)[0]);
                    }
                }
                out.push(s);
            }
        }
        out
    }

    fn check_all_spellings(aliases: &[&str], text: &str) {
        for spelled in spell_all(text) {
            for body in [
                format!(r#"{{"model": "{spelled}", "messages": []}}"#),
                format!(r#"{{"model": "x", "tools": [{{"type": "{spelled}"}}]}}"#),
                format!(
                    r#"{{"messages": [{{"content": "a\\\\{spelled}\n"}}], "model": "{spelled}"}}"#
                ),
                format!(r#"["\\\\", "\\\"{spelled}\\\\"]"#),
            ] {
                assert_eq!(oracle(aliases, body.as_bytes()), Some(true), "{body}");
                assert!(scan(aliases, &body), "missed {spelled:?} in {body}");
            }
        }
    }

    #[test]
    fn the_literal_spellings() {
        assert!(scan(&["fusion"], r#"{"model": "fusion"}"#));
        assert!(scan(
            &["fusion"],
            r#"{"tools": [{"type": "openrouter:fusion"}]}"#
        ));
        assert!(scan(&["bitrouter/auto"], r#"{"model": "bitrouter/auto"}"#));
        assert!(scan(
            &["bitrouter/auto"],
            r#"{"tools": [{"type": "fusion"}]}"#
        ));
    }

    #[test]
    fn bodies_without_any_needle_are_ruled_out() {
        let aliases = ["fusion", "openrouter/fusion", "deliberate"];
        for body in [
            r#"{"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}"#,
            r#"{"model": "gpt-4.1", "messages": [{"content": "line\nline \"quoted\" \\ back\/slash"}]}"#,
            r#"{"model": "gpt", "messages": [{"content": "\u043f\u0440\u0438\u0432\u0435\u0442 \ud83d\ude00"}]}"#,
            r#"{"model": "fu sion", "x": "fus\u0069 on", "y": "\\u0066usion"}"#,
            r#"{"model": "FUSION"}"#,
            "",
            "not json at all",
        ] {
            assert!(
                !oracle(&aliases, body.as_bytes()).unwrap_or(false),
                "{body}"
            );
            assert!(!scan(&aliases, body), "{body}");
        }
    }

    #[test]
    fn every_escape_form_of_fusion_is_found() {
        check_all_spellings(&["fusion"], "fusion");
        check_all_spellings(&["fusion"], "openrouter:fusion");
    }

    #[test]
    fn the_issue_example_is_found() {
        assert!(scan(&["fusion"], r#"{"model": "fu\u0073ion"}"#));
        assert!(!scan(&["fusion"], r#"{"model": "\u0046usion"}"#));
        assert!(scan(
            &["fusion"],
            r#"{"model": "\u0066\u0075\u0073\u0069\u006F\u006e"}"#
        ));
    }

    #[test]
    fn aliases_with_a_slash_in_every_spelling() {
        let aliases = ["openrouter/auto"];
        check_all_spellings(&aliases, "openrouter/auto");
        assert!(scan(&aliases, r#"{"model": "openrouter\/auto"}"#));
        assert!(scan(&aliases, r#"{"model": "openrouter\u002fauto"}"#));
        assert!(!scan(&aliases, r#"{"model": "openrouter\\/auto"}"#));
        assert!(!scan(&aliases, r#"{"model": "openrouter/autp"}"#));
    }

    #[test]
    fn non_ascii_aliases_in_every_spelling() {
        for alias in ["délibération", "融合", "panel-🤝-mix", "ü"] {
            let aliases = [alias];
            check_all_spellings(&aliases, alias);
            let escaped = serde_json::to_string(alias).unwrap();
            let ascii: String = alias
                .encode_utf16()
                .map(|u| {
                    if u < 128 {
                        (u as u8 as char).to_string()
                    } else {
                        format!("\\u{u:04x}")
                    }
                })
                .collect();
            for spelled in [escaped.trim_matches('"').to_string(), ascii] {
                let body = format!(r#"{{"model": "{spelled}"}}"#);
                assert!(scan(&aliases, &body), "{body}");
            }
            let near = r#"{"model": "gpt", "content": "d\u00e9lib\u00e8ration? \u878d panel-\ud83e\udd1d mix \u00fb"}"#;
            assert_eq!(oracle(&aliases, near.as_bytes()), Some(false));
            assert!(!scan(&aliases, near));
        }
    }

    #[test]
    fn aliases_with_quotes_and_backslashes() {
        check_all_spellings(&[r#"my"model"#], r#"my"model"#);
        check_all_spellings(&[r"a\b"], r"a\b");
        assert!(!scan(&[r"a\b"], r#"{"model": "a\\\\b"}"#));
    }

    #[test]
    fn words_that_contain_fusion_still_need_the_parse() {
        // "stable diffusion", "confusion" hold the bytes `fusion`: the scan cannot
        // rule them out; the parse of the model and tools does.
        assert!(scan(
            &["fusion"],
            r#"{"model": "gpt", "messages": [{"content": "stable diffusion"}]}"#
        ));
        assert!(scan(
            &["fusion"],
            r#"{"model": "gpt", "messages": [{"content": "confusion"}]}"#
        ));
        assert!(scan(
            &["fusion"],
            r#"{"model": "gpt", "messages": [{"content": "con\u0066usion"}]}"#
        ));
    }

    #[test]
    fn escapes_next_to_backslash_runs() {
        let a = ["fusion"];
        // `\\` then `u0073`: a backslash and the letters u0073, not an `s`.
        assert!(!scan(&a, r#"{"model": "fu\\u0073ion"}"#));
        assert!(!scan(&a, r#"{"model": "fu\\\u0073ion"}"#));
        assert!(scan(&a, r#"{"x": "\\\\", "model": "f\u0075sion"}"#));
        assert!(!scan(&a, r#"{"model": "\\fusio\\n"}"#));
        assert!(scan(&a, r#"{"model": "\\\\fu\u0073ion\\\\"}"#));
        // A literal `n` after an escaped backslash ends the needle.
        assert!(scan(&a, r#"{"model": "\u0066usio\u006e"}"#));
        assert!(scan(&a, r#"{"model": "\\\u0066usion"}"#));
    }

    #[test]
    fn unreadable_unicode_escapes_are_left_to_the_parser() {
        // Not JSON, so not fusion either way; but the scan does not guess.
        assert!(scan(&["fusion"], r#"{"model": "\u006"}"#));
        assert!(scan(&["fusion"], r#"{"model": "\u007g"}"#));
        assert!(scan(&[r"a\b"], r#"{"model": "\x"}"#));
    }

    #[test]
    fn only_the_needle_characters_escapes_are_looked_at() {
        let ascii = |text: &str| text.bytes().fold(0u128, |m, b| m | 1u128 << b);
        assert_eq!(
            unicode_escape_prefixes(ascii("fusion"), &[]),
            vec![b"\\u006".to_vec(), b"\\u007".to_vec()]
        );
        assert_eq!(
            unicode_escape_prefixes(0, &[0xE9]),
            vec![b"\\u00e".to_vec(), b"\\u00E".to_vec()]
        );
        // Many beginnings: one pass for `\u`.
        assert_eq!(
            unicode_escape_prefixes(0, &[0xDABC, 0xDDEF]),
            vec![b"\\u".to_vec()]
        );
    }

    #[test]
    fn empty_alias_rules_nothing_out() {
        assert!(scan(&[""], "{}"));
    }

    #[test]
    fn equality_follows_the_needles() {
        assert_eq!(
            Prescan::new(&["fusion"]),
            Prescan::new(&["fusion", "my-fusion"])
        );
        assert_ne!(Prescan::new(&["fusion"]), Prescan::new(&["fusion", "x"]));
    }

    /// Random bodies: whenever a parser would find a needle, the scan does too.
    #[test]
    fn never_rules_out_what_a_parser_finds() {
        let aliases = ["fusion", "open/rüter", "x\"y"];
        let scan = Prescan::new(&aliases);
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let pieces: Vec<String> = [
            "fusion",
            "open/rüter",
            "x\"y",
            "fus",
            "ion",
            "open",
            "rüter",
            "\\",
            "/",
            "u",
            "n",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (mut positives, mut negatives) = (0, 0);
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..next(5) + 1 {
                let p = &pieces[next(pieces.len())];
                for c in p.chars() {
                    let s = spellings(c);
                    text.push_str(&s[next(s.len())]);
                }
                if next(3) == 0 {
                    text.push_str(["\\\\", "\\n", " ", "\\u00e9", "\\\""][next(5)]);
                }
            }
            let body = format!(r#"{{"model": "{text}"}}"#);
            match oracle(&aliases, body.as_bytes()) {
                Some(true) => {
                    positives += 1;
                    assert!(scan.may_ask_for_fusion(body.as_bytes()), "missed: {body}");
                }
                Some(false) => {
                    negatives += 1;
                    // Not required, but the scan should rule most of these out.
                }
                None => {}
            }
        }
        assert!(
            positives > 1000 && negatives > 1000,
            "{positives} / {negatives}"
        );
    }

    /// The one-pass scan says what the memmem passes say, wherever a spelling
    /// falls against its 32-position blocks and the body's end.
    #[test]
    fn one_pass_agrees_with_the_memmem_passes() {
        if !vector::AVAILABLE {
            return;
        }
        for aliases in [vec!["fusion"], vec!["fusion", "my-fusion", "fasto"]] {
            let scan = Prescan::new(&aliases);
            let Some(pairs) = &scan.pairs else {
                panic!("{aliases:?} takes the memmem passes");
            };
            let passes = |body: &[u8]| {
                scan.literal.iter().any(|f| f.find(body).is_some()) || scan.escaped_spelling(body)
            };
            let mut seed = 0x2545_F491_4F6C_DD1Du64;
            let mut next = move |n: usize| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % n as u64) as usize
            };
            let pieces = [
                "fusion",
                "fusio",
                "usion",
                "f",
                "o",
                "\\",
                "\\\\",
                "\\n",
                "\\u0066",
                "\\u0075",
                "\\u006F",
                "\\u006e",
                "\\u0073",
                "\\u00e9",
                "\\u007",
                "6",
                "7",
                "fox of ",
                " ",
                "fasto",
                "\\u0061",
                "the quick brown ",
            ];
            let (mut yes, mut no) = (0, 0);
            for _ in 0..20_000 {
                let mut body = String::new();
                for _ in 0..next(24) {
                    body.push_str(pieces[next(pieces.len())]);
                }
                let verdict = passes(body.as_bytes());
                assert_eq!(scan.one_pass(pairs, body.as_bytes()), verdict, "{body:?}");
                if verdict {
                    yes += 1;
                } else {
                    no += 1;
                }
            }
            assert!(yes > 1000 && no > 1000, "{yes} / {no}");
            // A needle at every offset of a long body: inside a block, across two, in the tail.
            for len in [36, 37, 64, 100] {
                for at in 0..len - 6 {
                    for needle in ["fusion", "\\u0066usion", "fusi\\u006fn", "fu\\u0073ion"] {
                        let mut body = vec![b'a'; len];
                        let end = (at + needle.len()).min(len);
                        body.splice(at..end, needle.bytes());
                        assert_eq!(
                            scan.one_pass(pairs, &body),
                            passes(&body),
                            "{}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                }
            }
        }
        // Past what the one pass holds: the memmem passes.
        assert!(Prescan::new(&["fusion", "openrouter/auto"]).pairs.is_none());
        assert!(Prescan::new(&["fusion", "ai"]).pairs.is_none());
        assert!(Prescan::new(&["fusion", "délibération"]).pairs.is_none());
    }

    #[test]
    fn rules_out_most_random_bodies_without_a_needle() {
        let aliases = ["fusion", "open/rüter"];
        let scan = Prescan::new(&aliases);
        let bodies = [
            r#"{"model": "gpt", "content": "fu\u0073io\\n"}"#,
            r#"{"model": "open\/r\u00fcte"}"#,
            r#"{"model": "fu\nsion"}"#,
        ];
        for body in bodies {
            assert_eq!(oracle(&aliases, body.as_bytes()), Some(false), "{body}");
            assert!(!scan.may_ask_for_fusion(body.as_bytes()), "{body}");
        }
    }
}
