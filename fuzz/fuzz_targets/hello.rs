//! Fuzz target `hello`: see `slotkv_transport::fuzzing::Target::Hello`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotkv_transport::fuzzing::Target::Hello.run(data));
