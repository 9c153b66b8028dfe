//! Fuzz target `envelope`: see `slotkv_transport::fuzzing::Target::Envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotkv_transport::fuzzing::Target::Envelope.run(data));
