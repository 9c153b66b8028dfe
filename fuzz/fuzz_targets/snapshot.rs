//! Fuzz target `snapshot`: see `slotkv_cluster::fuzzing::Target::Snapshot`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotkv_cluster::fuzzing::Target::Snapshot.run(data));
