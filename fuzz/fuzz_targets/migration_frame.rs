//! Fuzz target `migration_frame`: see `slotkv_cluster::fuzzing::Target::MigrationFrame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotkv_cluster::fuzzing::Target::MigrationFrame.run(data));
