//! Fuzz target `frames`: see `slotkv_transport::fuzzing::Target::Frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotkv_transport::fuzzing::Target::Frames.run(data));
