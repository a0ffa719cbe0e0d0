#![no_main]
//! See `spin_operator::fuzzing::http` for what the target drives and its oracles.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spin_operator::fuzzing::http(data));
