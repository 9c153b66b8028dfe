//! Fuzz target `bulk_frame`: see `slotkv_cluster::fuzzing::Target::BulkFrame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotkv_cluster::fuzzing::Target::BulkFrame.run(data));
