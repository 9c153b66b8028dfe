//! Fuzz target `bus_message`: see `slotkv_cluster::fuzzing::Target::BusMessage`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotkv_cluster::fuzzing::Target::BusMessage.run(data));
