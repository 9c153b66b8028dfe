//! Fuzz target `response`: see `slotkv_cluster::fuzzing::Target::Response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotkv_cluster::fuzzing::Target::Response.run(data));
