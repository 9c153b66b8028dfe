//! Fuzz target `tcp_handshake`: see `slotkv_transport::fuzzing::Target::TcpHandshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| slotkv_transport::fuzzing::Target::TcpHandshake.run(data)
);
