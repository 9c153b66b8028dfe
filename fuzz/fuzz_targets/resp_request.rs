//! Fuzz target `resp_request`: see `slotkv_resp::fuzzing::run_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotkv_resp::fuzzing::run_request(data));
