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
//! Cost: in the shipped module (wasm SIMD), one pass over the body for the
//! configurations that ship (needles of five bytes or more sharing their first
//! and fifth byte, escape beginnings `\uXXX`): [`Pairs`] looks, 64 positions per
//! block, for the needles' first byte with their fifth byte four bytes later, or
//! for a backslash with the fifth byte of an escape beginning (`\u006`: `6`)
//! four bytes later; each such rare candidate is then checked in full. Native
//! builds (memchr's memmem runs with AVX2 there) and other configurations take
//! one memmem pass per needle for the literal
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
        let pairs = escape_starts.as_ref().and_then(|starts| {
            ONE_PASS
                .then(|| Pairs::fitting(texts.iter().map(|t| t.as_bytes()), starts))
                .flatten()
        });
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

    /// The scan in one pass over the body (see [`Pairs`]): 64 positions per
    /// block tested at once with [`vector::Lanes::skip_blocks`]; a block that may hold a
    /// candidate (rare) is looked at again 16 positions at a time with the exact
    /// candidates, and each candidate checked in full.
    fn one_pass(&self, pairs: &Pairs, body: &[u8]) -> bool {
        let lanes = pairs.lanes();
        // Where the whole blocks end (each needs GAP bytes past it).
        let whole = body.len().saturating_sub(GAP) / BLOCK * BLOCK;
        let mut pos = 0;
        loop {
            pos = lanes.skip_blocks(body, pos, whole);
            if pos >= whole {
                break;
            }
            if self.any_holds(pairs, body, pos, lanes.exact_block(body, pos)) {
                return true;
            }
            pos += BLOCK;
        }
        // The last positions (a candidate needs its fifth byte): 16 at a time, the
        // last step moved back to end at the body's end, its positions already
        // looked at shifted out.
        let end = body.len().saturating_sub(GAP);
        let Some(last) = body.len().checked_sub(STEP + GAP) else {
            return (pos..end)
                .any(|at| pairs.is_candidate(body, at) && self.candidate_holds(body, at));
        };
        while pos < end {
            let at = pos.min(last);
            let candidates = u64::from(lanes.step(body, at) >> (pos - at));
            if self.any_holds(pairs, body, pos, candidates) {
                return true;
            }
            pos = at + STEP;
        }
        false
    }

    /// Whether a needle is spelled from some candidate of `candidates` (bit k:
    /// position `pos + k`). An escape candidate whose next three bytes are not
    /// the escape beginnings' (`u00`: most `\uXXXX` escapes of CJK text have a
    /// `6` or `7` where the pair looks) goes no further.
    ///
    /// Out of line: the rare path kept out of [`vector::Lanes::skip_blocks`]'s
    /// loop lets V8 compile that loop compact (offsets folded into the loads,
    /// its values in registers, 43 instructions per block against 49-53); with
    /// it inlined, the scan took ~0.5 us more per 64 KB body in Node's V8
    /// (bench/wasm_callbacks.mjs).
    #[inline(never)]
    fn any_holds(&self, pairs: &Pairs, body: &[u8], pos: usize, mut candidates: u64) -> bool {
        while candidates != 0 {
            let at = pos + candidates.trailing_zeros() as usize;
            let head = body.get(at..at + GAP);
            if (head.and_then(<[u8]>::first) != Some(&b'\\')
                || head == Some(&pairs.escape_head[..]))
                && self.candidate_holds(body, at)
            {
                return true;
            }
            candidates &= candidates - 1;
        }
        false
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

/// Whether this build scans with the one pass. The shipped module (wasm SIMD)
/// does; a native build takes the memmem passes, which memchr runs with AVX2
/// there (32 bytes per step against the one pass's 16: 2 us against 7 us per
/// 64 KB body), and a wasm build without SIMD has no vector step. Both paths give
/// the same answer on every body (`one_pass_agrees_with_the_memmem_passes` runs
/// both, natively and in wasm).
const ONE_PASS: bool = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));
/// Positions the one-pass scan looks at per block: four vector steps, one test.
const BLOCK: usize = 64;
/// Positions one vector step looks at.
const STEP: usize = 16;
/// The distance between the two bytes of a candidate: a needle's first and fifth
/// byte, or the backslash and the fifth byte of a `\uXXX` escape beginning.
const GAP: usize = 4;

/// The one-pass scan's candidates: a position that holds the needles' first byte
/// with their fifth byte [`GAP`] later, or a backslash with the fifth byte of an
/// escape beginning `GAP` later. Every spelling of a needle has one: literally, at
/// its start; with an escape, at the backslash of its first escape that can spell
/// a needle character (an escape beginning). With the default alias: `f` then
/// `o`, or `\` then `6` or `7` (`\u006`, `\u007`). `\n`, `\"` or `\\` in
/// ordinary text are no candidates (no `6` or `7` four bytes on), so they cost
/// the scan nothing.
///
/// Sizes fixed at what the shipped configurations need: one (first, fifth) pair
/// shared by every needle (aliases that contain `fusion` add none), its first
/// byte within 16 above the backslash (`f`: 10), and escape beginnings' fifth
/// bytes that differ in at most one bit (`6` and `7`: one comparison once that
/// bit is set). Another configuration (an alias beginning otherwise, one shorter
/// than five bytes, escape beginnings other than `\uXXX`) takes the memmem passes.
#[derive(Debug, Clone)]
struct Pairs {
    /// The needles' first and fifth byte.
    literal: [u8; 2],
    /// The escape beginnings' first four bytes (`\u00`): all the same.
    escape_head: [u8; GAP],
    /// A byte `b` is an escape beginning's fifth byte when `b | fifth_bit == fifth`.
    fifth_bit: u8,
    fifth: u8,
}

impl Pairs {
    /// The pairs, when the needles and escape beginnings fit them.
    fn fitting<'a>(
        needles: impl Iterator<Item = &'a [u8]>,
        escape_starts: &[Finder<'static>],
    ) -> Option<Pairs> {
        let mut literal = None;
        for bytes in needles {
            let pair = [*bytes.first()?, *bytes.get(GAP)?];
            if *literal.get_or_insert(pair) != pair {
                return None;
            }
        }
        let (mut all, mut any) = (u8::MAX, 0u8);
        let mut escape_head = None;
        for start in escape_starts {
            let (head, fifth) = start.needle().split_last_chunk::<1>()?;
            let head: [u8; GAP] = head.try_into().ok()?;
            if !head.starts_with(b"\\u") || *escape_head.get_or_insert(head) != head {
                return None;
            }
            all &= fifth[0];
            any |= fifth[0];
        }
        // The bits where the fifth bytes differ; at most one, or the one
        // comparison would let others in.
        let fifth_bit = all ^ any;
        if escape_starts.is_empty() || fifth_bit.count_ones() > 1 {
            return None;
        }
        let literal: [u8; 2] = literal?;
        // The block's table is indexed by a first byte's distance from the backslash.
        if !(1..16).contains(&literal[0].wrapping_sub(b'\\')) {
            return None;
        }
        Some(Pairs {
            literal,
            escape_head: escape_head?,
            fifth_bit,
            fifth: any,
        })
    }

    fn is_candidate(&self, body: &[u8], at: usize) -> bool {
        let (Some(&first), Some(fifth)) = (body.get(at), body.get(at + GAP)) else {
            return false;
        };
        [first, *fifth] == self.literal || (first == b'\\' && *fifth | self.fifth_bit == self.fifth)
    }

    fn lanes(&self) -> vector::Lanes {
        vector::Lanes::new(self)
    }
}

/// [`Pairs`] in SIMD, 16 positions per vector. A block (64 positions) asks one
/// question, with five operations per 16 positions: a table, indexed by the first
/// byte's distance from the backslash, gives the fifth byte a candidate starting
/// with that first byte needs (`\`: the escape beginnings' fifth byte, `f`:
/// `o`), compared with the fifth byte once [`Pairs`]' `fifth_bit` is set in it.
/// That question lets a few non-candidates in (the needles' first byte with
/// the fifth byte's `fifth_bit` neighbour: `f` then `n`), never a candidate out;
/// the rare block it lets through is looked at again 16 positions at a time with
/// the exact pairs (eight operations). V8 (wasm SIMD) keeps a block's loads in
/// order and its comparisons next to their use, so only the or of the four
/// answers stays live: four masks kept for later spilled to the stack.
///
/// The same code in wasm SIMD (`simd128`, the shipped module) and in x86-64's
/// SSE2 (native builds, which scan with memmem: the tests run it against the
/// memmem passes); a wasm build without SIMD takes the memmem passes.
#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(target_arch = "x86_64", target_feature = "sse2")
))]
mod vector {
    use super::{Pairs, BLOCK, GAP, STEP};
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    use core::arch::wasm32::{
        u8x16_bitmask as bitmask, u8x16_eq as eq, u8x16_splat as splat, u8x16_sub as sub,
        u8x16_swizzle as swizzle, v128 as V, v128_and as and, v128_load, v128_or as or,
    };
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    use core::arch::x86_64::{
        __m128i as V, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8, _mm_sub_epi8,
    };

    /// Whether this build has the vector step.
    #[cfg(test)]
    pub(super) const AVAILABLE: bool = true;

    // SSE2 is part of every x86-64 CPU (the cfg says this build targets one), so
    // these calls are sound wherever they compile.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn splat(b: u8) -> V {
        // SAFETY: SSE2 (above).
        unsafe { _mm_set1_epi8(i8::from_ne_bytes([b])) }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn eq(a: V, b: V) -> V {
        // SAFETY: SSE2 (above).
        unsafe { _mm_cmpeq_epi8(a, b) }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn or(a: V, b: V) -> V {
        // SAFETY: SSE2 (above).
        unsafe { _mm_or_si128(a, b) }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn and(a: V, b: V) -> V {
        // SAFETY: SSE2 (above).
        unsafe { _mm_and_si128(a, b) }
    }

    /// Lane-wise wrapping `a - b`.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn sub(a: V, b: V) -> V {
        // SAFETY: SSE2 (above).
        unsafe { _mm_sub_epi8(a, b) }
    }

    /// wasm's `i8x16.swizzle`: lane k is `table[index[k]]`, 0 when that index is
    /// 16 or more. SSE2 has no byte shuffle: lane by lane (native builds only run
    /// it in tests).
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn swizzle(table: V, index: V) -> V {
        // SAFETY: a 16-byte vector and [u8; 16] have the same size, and every bit
        // pattern is valid for both.
        let (table, index) = unsafe {
            (
                core::mem::transmute::<V, [u8; 16]>(table),
                core::mem::transmute::<V, [u8; 16]>(index),
            )
        };
        let lanes = index.map(|i| table.get(usize::from(i)).copied().unwrap_or(0));
        // SAFETY: as above.
        unsafe { core::mem::transmute::<[u8; 16], V>(lanes) }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn bitmask(v: V) -> u16 {
        // SAFETY: SSE2 (above). Only the low 16 bits can be set: one per byte.
        unsafe { _mm_movemask_epi8(v) as u16 }
    }

    /// 16 bytes from `at`; the caller keeps them within one slice.
    ///
    /// # Safety
    /// `at..at + 16` must be readable.
    #[inline(always)]
    unsafe fn load(at: *const u8) -> V {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        // SAFETY: the caller's contract; `v128_load` needs no alignment.
        return unsafe { v128_load(at.cast::<V>()) };
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        // SAFETY: the caller's contract; `_mm_loadu_si128` needs no alignment.
        return unsafe { _mm_loadu_si128(at.cast::<V>()) };
    }

    /// The candidate bytes, each in all 16 lanes, and the block's table.
    pub(super) struct Lanes {
        first: V,
        fifth: V,
        backslash: V,
        fifth_bit: V,
        escape_fifth: V,
        /// At `first - \`: the fifth byte (with `fifth_bit` set) a candidate
        /// starting with `first` needs; 0 (never a fifth byte with `fifth_bit`
        /// set) elsewhere.
        table: V,
    }

    impl Lanes {
        pub(super) fn new(pairs: &Pairs) -> Lanes {
            let [first, fifth] = pairs.literal;
            let mut table = [0u8; 16];
            for (i, need) in [
                (0, pairs.fifth),
                (first.wrapping_sub(b'\\'), fifth | pairs.fifth_bit),
            ] {
                if let Some(slot) = table.get_mut(usize::from(i)) {
                    *slot = need;
                }
            }
            Lanes {
                first: splat(first),
                fifth: splat(fifth),
                backslash: splat(b'\\'),
                fifth_bit: splat(pairs.fifth_bit),
                escape_fifth: splat(pairs.fifth),
                // SAFETY: `table` holds 16 bytes.
                table: unsafe { load(table.as_ptr()) },
            }
        }

        /// Positions from `at` (16) that may be candidates, a superset of
        /// [`Lanes::exact`]'s: five operations.
        ///
        /// # Safety
        /// `at..at + STEP + GAP` must be readable.
        #[inline(always)]
        unsafe fn likely(&self, at: *const u8) -> V {
            // SAFETY: the caller's contract: 16 bytes from `at` and from `at + GAP`.
            let (first, fifth) = unsafe { (load(at), load(at.add(GAP))) };
            eq(
                swizzle(self.table, sub(first, self.backslash)),
                or(fifth, self.fifth_bit),
            )
        }

        /// The candidates among the 16 positions from `at`: eight operations.
        ///
        /// # Safety
        /// `at..at + STEP + GAP` must be readable.
        #[inline(always)]
        unsafe fn exact(&self, at: *const u8) -> V {
            // SAFETY: the caller's contract: 16 bytes from `at` and from `at + GAP`.
            let (first, fifth) = unsafe { (load(at), load(at.add(GAP))) };
            or(
                and(eq(first, self.first), eq(fifth, self.fifth)),
                and(
                    eq(first, self.backslash),
                    eq(or(fifth, self.fifth_bit), self.escape_fifth),
                ),
            )
        }

        /// Whether any of the BLOCK positions from `at` may be a candidate.
        ///
        /// # Safety
        /// `at..at + BLOCK + GAP` must be readable.
        #[inline(always)]
        unsafe fn block_at(&self, at: *const u8) -> bool {
            // SAFETY: the caller's contract; the step from k * STEP (k < 4)
            // reads STEP + GAP of the bytes.
            let seen = unsafe {
                or(
                    or(self.likely(at), self.likely(at.add(STEP))),
                    or(self.likely(at.add(2 * STEP)), self.likely(at.add(3 * STEP))),
                )
            };
            bitmask(seen) != 0
        }

        /// The first block from `pos` on that may hold a candidate, or `whole`
        /// when none before `whole` does (`pos` and `whole`: multiples of BLOCK,
        /// `whole + GAP` within the body): the hot loop, one question per block.
        #[inline(always)]
        pub(super) fn skip_blocks(&self, body: &[u8], mut pos: usize, whole: usize) -> usize {
            let (Some(bytes), true) = (body.get(..whole + GAP), pos <= whole) else {
                return whole;
            };
            let start = bytes.as_ptr();
            while pos < whole {
                // SAFETY: `pos` and `whole` are multiples of BLOCK and `pos < whole`,
                // so `pos + BLOCK + GAP <= whole + GAP = bytes.len()`.
                if unsafe { self.block_at(start.add(pos)) } {
                    return pos;
                }
                pos += BLOCK;
            }
            whole
        }

        /// The candidates among positions `pos..pos + BLOCK` as a bit mask (bit k:
        /// position `pos + k`); none when `pos + BLOCK + GAP` passes the body's end.
        pub(super) fn exact_block(&self, body: &[u8], pos: usize) -> u64 {
            let Some(bytes) = body.get(pos..pos + BLOCK + GAP) else {
                return 0;
            };
            let at = bytes.as_ptr();
            (0..BLOCK / STEP).fold(0, |mask, k| {
                // SAFETY: `bytes` holds BLOCK + GAP bytes; the step from k * STEP
                // (k < 4) reads STEP + GAP of them.
                let step = bitmask(unsafe { self.exact(at.add(k * STEP)) });
                mask | u64::from(step) << (k * STEP)
            })
        }

        /// The candidates among positions `pos..pos + STEP` as a bit mask (bit k:
        /// position `pos + k`); none when `pos + STEP + GAP` passes the body's end.
        #[inline(always)]
        pub(super) fn step(&self, body: &[u8], pos: usize) -> u16 {
            let Some(bytes) = body.get(pos..pos + STEP + GAP) else {
                return 0;
            };
            // SAFETY: `bytes` holds STEP + GAP bytes.
            bitmask(unsafe { self.exact(bytes.as_ptr()) })
        }
    }
}

/// Without a vector step [`Pairs`] is never built: this stub only keeps the
/// one-pass code compiling.
#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(target_arch = "x86_64", target_feature = "sse2")
)))]
mod vector {
    use super::Pairs;

    #[cfg(test)]
    pub(super) const AVAILABLE: bool = false;

    pub(super) struct Lanes;

    impl Lanes {
        pub(super) fn new(_: &Pairs) -> Lanes {
            Lanes
        }

        /// Every block may hold a candidate: the first from `pos`.
        pub(super) fn skip_blocks(&self, _: &[u8], pos: usize, _: usize) -> usize {
            pos
        }

        /// Every position a candidate: the full check decides each.
        pub(super) fn exact_block(&self, _: &[u8], _: usize) -> u64 {
            u64::MAX
        }

        /// Every position a candidate: the full check decides each.
        pub(super) fn step(&self, _: &[u8], _: usize) -> u16 {
            u16::MAX
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

    /// The one pass's pairs for `scan` (built whether or not this build scans
    /// with the one pass), and the memmem passes' verdict.
    fn both_paths(scan: &Prescan) -> (Pairs, impl Fn(&[u8]) -> bool + '_) {
        let Some(pairs) = scan
            .escape_starts
            .as_ref()
            .and_then(|starts| Pairs::fitting(scan.literal.iter().map(|f| f.needle()), starts))
        else {
            panic!("{:?} takes the memmem passes", scan.needles);
        };
        let passes = |body: &[u8]| {
            scan.literal.iter().any(|f| f.find(body).is_some()) || scan.escaped_spelling(body)
        };
        (pairs, passes)
    }

    /// Asserts that the one pass and the memmem passes agree on `body`, and
    /// returns their verdict.
    fn agree(scan: &Prescan, body: &[u8]) -> bool {
        let (pairs, passes) = both_paths(scan);
        let verdict = passes(body);
        assert_eq!(
            scan.one_pass(&pairs, body),
            verdict,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(scan.may_ask_for_fusion(body), verdict);
        verdict
    }

    /// The one-pass scan says what the memmem passes say, wherever a spelling
    /// falls against its 16-position steps, 64-position blocks and the body's end.
    #[test]
    fn one_pass_agrees_with_the_memmem_passes() {
        if !vector::AVAILABLE {
            return;
        }
        for aliases in [vec!["fusion"], vec!["fusion", "my-fusion", "fasto"]] {
            let scan = Prescan::new(&aliases);
            assert_eq!(scan.pairs.is_some(), ONE_PASS, "{aliases:?}");
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
                "n",
                "\\",
                "\\\\",
                "\\n",
                "\\\"",
                "\\u0066",
                "\\u0075",
                "\\u006F",
                "\\u006e",
                "\\u0073",
                "\\u00e9",
                "\\u4e6d",
                "\\u007",
                "6",
                "7",
                "fox of ",
                " ",
                "fasto",
                "left.\\n",
                "\\u0061",
                "the quick brown ",
            ];
            let (mut yes, mut no) = (0, 0);
            for _ in 0..20_000 {
                let mut body = String::new();
                for _ in 0..next(48) {
                    body.push_str(pieces[next(pieces.len())]);
                }
                if agree(&scan, body.as_bytes()) {
                    yes += 1;
                } else {
                    no += 1;
                }
            }
            assert!(yes > 1000 && no > 1000, "{yes} / {no}");
            // A needle at every offset of bodies around the step and block sizes:
            // inside a step, across two steps or blocks, in the tail, at the very
            // start and end.
            for len in [
                5, 6, 11, 19, 20, 21, 36, 37, 63, 64, 67, 68, 69, 84, 100, 131, 132, 133, 200,
            ] {
                for needle in [
                    "fusion",
                    "\\u0066usion",
                    "fusi\\u006fn",
                    "fu\\u0073ion",
                    "\\u0066\\u0075\\u0073\\u0069\\u006f\\u006e",
                ] {
                    for at in 0..len {
                        let mut body = vec![b'a'; len];
                        let end = (at + needle.len()).min(len);
                        body.splice(at..end, needle.bytes().take(end - at));
                        // A cut escape (`\u006`) is unreadable: never ruled out.
                        let found = agree(&scan, &body);
                        if end - at == needle.len() {
                            assert!(found, "{}", String::from_utf8_lossy(&body));
                        }
                    }
                }
            }
        }
        // Past what the one pass holds: the memmem passes.
        assert!(Prescan::new(&["fusion", "openrouter/auto"]).pairs.is_none());
        assert!(Prescan::new(&["fusion", "ai"]).pairs.is_none());
        assert!(Prescan::new(&["fusion", "délibération"]).pairs.is_none());
    }

    /// Long message text full of the escapes real bodies hold (`\n`, `\"`, `\\`,
    /// `\t`, `\/`), JSON-escaped non-ASCII text (CJK escapes often have a `6` or
    /// `7` where the escape pair looks), and the block question's near misses
    /// (`f` then `n` four bytes on): nothing to find, and a needle spelled
    /// anywhere in such text is found.
    #[test]
    fn long_text_with_escapes_is_ruled_out_and_needles_in_it_found() {
        let scan = Prescan::new(&["fusion"]);
        let prose =
            r#"He said \"wait\".\nThen\tshe wrote C:\\path\\to and left.\nIf an \/ of one:\r\n"#;
        let cjk: String = (0..400u32)
            .filter_map(|i| char::from_u32(0x4e00 + i * 37))
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        for filler in [prose.to_string(), cjk, "\\\\".repeat(40), "\\n".repeat(40)] {
            for size in [100, 2048, 65536] {
                let mut text = String::new();
                while text.len() < size {
                    text.push_str(&filler);
                }
                let body = format!(
                    r#"{{"model": "gpt", "messages": [{{"role": "user", "content": "{text}"}}]}}"#
                );
                assert_eq!(oracle(&["fusion"], body.as_bytes()), Some(false));
                assert!(!agree(&scan, body.as_bytes()), "{size} {filler}");
                // One needle, each spelling, at a few places in the text.
                for needle in [
                    "fusion",
                    "\\u0066usion",
                    "fusio\\u006e",
                    "f\\u0075\\u0073ion",
                ] {
                    for at in [
                        0,
                        1,
                        15,
                        16,
                        63,
                        64,
                        65,
                        text.len() / 2,
                        text.len() - 1,
                        text.len(),
                    ] {
                        // Only between two of the filler's characters, not inside an escape.
                        if !text.is_char_boundary(at)
                            || text
                                .get(..at)
                                .is_some_and(|head| head.ends_with('\\') && !head.ends_with("\\\\"))
                        {
                            continue;
                        }
                        let mut with = text.clone();
                        with.insert_str(at, needle);
                        let body =
                            format!(r#"{{"model": "gpt", "messages": [{{"content": "{with}"}}]}}"#);
                        if oracle(&["fusion"], body.as_bytes()) == Some(true) {
                            assert!(agree(&scan, body.as_bytes()), "{size} {at} {needle}");
                        }
                    }
                }
            }
        }
    }

    /// Every needle byte pair's near misses: the block question lets them in, the
    /// exact pairs and the full check rule them out.
    #[test]
    fn near_misses_of_the_block_question_are_ruled_out() {
        let scan = Prescan::new(&["fusion"]);
        for near in [
            "f   n",
            "left.\\n",
            "\\u0060",
            "\\u4e6d",
            "\\u0076",
            "fusian",
            "\\u006",
            "\\n\\u0065",
        ] {
            for pad in [0, 3, 16, 60, 61, 62, 63, 64, 65] {
                let body = format!(
                    "{{\"x\": \"{}{}{}\"}}",
                    "a".repeat(pad),
                    near.repeat(20),
                    "b".repeat(pad)
                );
                if oracle(&["fusion"], body.as_bytes()) == Some(false) {
                    assert!(!agree(&scan, body.as_bytes()), "{body}");
                }
            }
        }
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
