//! Fuzz target `nodes_conf`: see `slotkv_cluster::fuzzing::Target::NodesConf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotkv_cluster::fuzzing::Target::NodesConf.run(data));
