//! The judge's answer text: `engine::judge::parse_analysis` must either refuse
//! it or return exactly the five analysis keys, each an array.
#![no_main]

use fusion_core::engine::judge::{parse_analysis, ANALYSIS_KEYS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(v) = parse_analysis(&text) {
        let obj = v.as_object().expect("analysis is an object");
        assert_eq!(obj.len(), ANALYSIS_KEYS.len());
        for k in ANALYSIS_KEYS {
            assert!(
                obj.get(k).is_some_and(|x| x.is_array()),
                "{k} is not an array"
            );
        }
    }
});
