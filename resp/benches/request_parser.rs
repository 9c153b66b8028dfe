//! The gateway's request parser (`RequestParser`, hand-written) against the `redis-protocol`
//! crate's RESP2 decoder on the same input in the same run: a pipeline of 1,000 requests
//! (`SET key:<n> <64-byte value>` and `GET key:<n>`, as redis-benchmark sends them), parsed
//! out of one buffer into each request's arguments as `Bytes` handles of the buffer (what
//! the gateway hands to a command). Both decoders split the arguments off without copying.
//!
//! Run: `cargo bench -p slotkv-resp --bench request_parser -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;
use slotkv_resp::frame::encode_request;
use slotkv_resp::{RequestLimits, RequestParser};

/// Requests in the pipeline.
const REQUESTS: usize = 1_000;

fn pipeline(command: &str) -> BytesMut {
    let value = vec![b'x'; 64];
    let mut out = Vec::new();
    for index in 0..REQUESTS {
        let key = format!("key:{index:012}");
        match command {
            "set" => encode_request(&[b"SET", key.as_bytes(), &value], &mut out),
            _ => encode_request(&[b"GET", key.as_bytes()], &mut out),
        }
    }
    BytesMut::from(&out[..])
}

/// The arguments of every request, by the gateway's parser.
fn parse_slotkv(input: &BytesMut) -> usize {
    let mut buffer = input.clone();
    let mut parser = RequestParser::new(RequestLimits::default());
    let mut arguments = 0;
    while let Ok(Some(request)) = parser.next_request(&mut buffer) {
        arguments += black_box(request).len();
    }
    arguments
}

/// The arguments of every request, by `redis-protocol` (its frames turned into the same
/// `Vec<Bytes>` the gateway's commands take).
fn parse_redis_protocol(input: &BytesMut) -> usize {
    let mut buffer = input.clone();
    let mut arguments = 0;
    while let Ok(Some((frame, _, _))) = decode_bytes_mut(&mut buffer) {
        let BytesFrame::Array(items) = frame else {
            break;
        };
        let request: Vec<Bytes> = items
            .into_iter()
            .filter_map(|item| match item {
                BytesFrame::BulkString(bytes) => Some(bytes),
                _ => None,
            })
            .collect();
        arguments += black_box(request).len();
    }
    arguments
}

fn bench_parsers(c: &mut Criterion) {
    for command in ["set", "get"] {
        let input = pipeline(command);
        let expected = if command == "set" { 3 } else { 2 } * REQUESTS;
        assert_eq!(parse_slotkv(&input), expected);
        assert_eq!(parse_redis_protocol(&input), expected);
        let mut group = c.benchmark_group(format!("parse_{command}_pipeline"));
        group.throughput(Throughput::Elements(REQUESTS as u64));
        group.bench_function("slotkv", |b| b.iter(|| parse_slotkv(&input)));
        group.bench_function("redis_protocol", |b| {
            b.iter(|| parse_redis_protocol(&input))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_parsers);
criterion_main!(benches);
