//! Fuzz target `request`: see `slotkv_cluster::fuzzing::Target::Request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotkv_cluster::fuzzing::Target::Request.run(data));
