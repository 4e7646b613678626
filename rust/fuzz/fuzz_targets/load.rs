//! Feeds arbitrary bytes to the model loader; whatever loads is streamed.
//!
//! Run (nightly): `cd rust/fuzz && cargo +nightly fuzz run load corpus/load seeds`.
//! Any outcome but a panic, an abort, a hang or an allocation above
//! libFuzzer's `-rss_limit_mb` is fine: a file is either refused with an
//! error or loads into an engine that streams.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../exercise.rs"]
mod exercise;

fuzz_target!(|data: &[u8]| {
    exercise::exercise(data);
});
