//! Entry point of the fuzz target `resp_request` (`fuzz/`) and of the corpus replay test
//! (`resp/tests/fuzz_corpus.rs`): arbitrary client bytes through the request parser, which
//! must never panic, and every request it accepts must re-encode as a multibulk request
//! that parses back to the same arguments. Not part of the API: hidden.

use bytes::BytesMut;

use crate::frame::{encode_request, RequestParser};
use crate::limits::RequestLimits;

/// Limits small enough that inputs of a few kilobytes reach every bound.
const FUZZ_LIMITS: RequestLimits = RequestLimits {
    bulk_bytes_max: 1024,
    multibulk_args_max: 64,
    inline_bytes_max: 256,
    query_buffer_bytes_max: 4096,
};

/// The target's name: its fuzz target's and its corpus folder's.
pub const REQUEST_TARGET: &str = "resp_request";

/// Runs one input (see the module docs). The input is fed in two pieces (split at its first
/// byte's value) so the incremental path is exercised too.
pub fn run_request(data: &[u8]) {
    let split = data
        .first()
        .map_or(0, |first| usize::from(*first).min(data.len()));
    let mut parser = RequestParser::new(FUZZ_LIMITS);
    let mut buffer = BytesMut::from(&data[..split]);
    let mut pieces = [&data[split..]].into_iter();
    loop {
        match parser.next_request(&mut buffer) {
            Ok(Some(arguments)) => check_round_trip(&arguments),
            Ok(None) => match pieces.next() {
                Some(piece) => buffer.extend_from_slice(piece),
                None => return,
            },
            Err(_) => return,
        }
    }
}

fn check_round_trip(arguments: &[bytes::Bytes]) {
    let slices: Vec<&[u8]> = arguments.iter().map(|argument| &argument[..]).collect();
    let mut wire = Vec::new();
    encode_request(&slices, &mut wire);
    let mut buffer = BytesMut::from(&wire[..]);
    let again = RequestParser::new(RequestLimits::default()).next_request(&mut buffer);
    assert_eq!(
        again,
        Ok(Some(arguments.to_vec())),
        "a parsed request re-encodes differently"
    );
    assert!(buffer.is_empty());
}

/// Seed inputs: valid requests of each kind and one of each malformed kind.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = vec![
        b"\x00PING\r\n".to_vec(),
        b"\x05set a \"b\\x41c\" 'd\\'e'\r\n".to_vec(),
        b"\x03*1\r\n$4\r\nPING\r\n*0\r\n\r\n".to_vec(),
        b"\x00*2\r\n$3\r\nGET\r\n+1\r\n".to_vec(),
        b"\x00*99999999\r\n".to_vec(),
        b"\x00*1\r\n$99999999\r\n".to_vec(),
    ];
    let mut pipelined = vec![7u8];
    encode_request(&[b"SET", b"key", b"va\r\nlue"], &mut pipelined);
    encode_request(&[b"GET", b"key"], &mut pipelined);
    seeds.push(pipelined);
    seeds
}
