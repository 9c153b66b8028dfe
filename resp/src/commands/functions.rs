//! FUNCTION, answered as a Redis server with no function libraries answers it (slotkv serves
//! strings, no scripts): LIST is empty, STATS counts nothing, FLUSH has nothing to do, DUMP
//! is the payload of no library, and RESTORE accepts such a payload (checked as Redis checks
//! one: its RDB version and CRC-64 footer) and refuses one that holds libraries, since none
//! can run here. `redis-cli --cluster add-node` dumps the functions of a node of the cluster
//! and restores them on the new one; with these answers that step succeeds and moves nothing.

use bytes::Bytes;

use crate::commands::{is, unknown_subcommand, wrong_arity};
use crate::reply::{Reply, OK};

/// The RDB version written in a FUNCTION DUMP payload: Redis 7.2's, the release whose
/// commands the gateway follows. A payload of a later version is refused, as Redis refuses it.
pub(crate) const RDB_VERSION: u16 = 11;

/// Bytes of a payload's footer: the RDB version (2, little-endian) and the CRC-64 of all
/// that precedes it (8, little-endian).
const FOOTER_BYTES: usize = 10;

/// Runs `FUNCTION <subcommand> ...` (see the module docs).
pub(crate) fn function(rest: &[&[u8]]) -> Reply {
    let Some((subcommand, args)) = rest.split_first() else {
        return wrong_arity("function");
    };
    if is(subcommand, "LIST") {
        Reply::Array(Vec::new())
    } else if is(subcommand, "DUMP") && args.is_empty() {
        Reply::Bulk(Bytes::from(empty_payload()))
    } else if is(subcommand, "RESTORE") {
        restore(args)
    } else if is(subcommand, "FLUSH") && args.len() <= 1 {
        match args.first() {
            Some(mode) if !is(mode, "ASYNC") && !is(mode, "SYNC") => {
                crate::commands::syntax_error()
            }
            _ => OK,
        }
    } else if is(subcommand, "STATS") && args.is_empty() {
        stats()
    } else if is(subcommand, "KILL") && args.is_empty() {
        Reply::error("NOTBUSY No scripts in execution right now.")
    } else if is(subcommand, "DELETE") && args.len() == 1 {
        Reply::error("ERR Library not found")
    } else if is(subcommand, "LOAD") {
        Reply::error("ERR this server runs no functions: slotkv serves strings only")
    } else if ["DUMP", "FLUSH", "STATS", "KILL", "DELETE"]
        .iter()
        .any(|name| is(subcommand, name))
    {
        wrong_arity(&format!(
            "function|{}",
            String::from_utf8_lossy(subcommand).to_ascii_lowercase()
        ))
    } else {
        unknown_subcommand("function", subcommand)
    }
}

/// FUNCTION RESTORE payload [FLUSH | APPEND | REPLACE].
fn restore(args: &[&[u8]]) -> Reply {
    let (payload, policy) = match args {
        [payload] => (payload, None),
        [payload, policy] => (payload, Some(policy)),
        _ => return wrong_arity("function|restore"),
    };
    if let Some(policy) = policy {
        if !["FLUSH", "APPEND", "REPLACE"]
            .iter()
            .any(|name| is(policy, name))
        {
            return Reply::error(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            );
        }
    }
    match libraries_of(payload) {
        Some([]) => OK,
        Some(_) => Reply::error(
            "ERR this server runs no functions: the payload holds libraries it cannot load",
        ),
        None => Reply::error("ERR payload version or checksum are wrong"),
    }
}

/// FUNCTION STATS of a server with no library and no script running.
fn stats() -> Reply {
    let counts = Reply::Map(vec![
        (Reply::text("libraries_count"), Reply::Integer(0)),
        (Reply::text("functions_count"), Reply::Integer(0)),
    ]);
    Reply::Map(vec![
        (Reply::text("running_script"), Reply::Nil),
        (
            Reply::text("engines"),
            Reply::Map(vec![(Reply::text("LUA"), counts)]),
        ),
    ])
}

/// The payload of no library: the footer alone.
fn empty_payload() -> Vec<u8> {
    let mut payload = RDB_VERSION.to_le_bytes().to_vec();
    let checksum = crc64(&payload);
    payload.extend_from_slice(&checksum.to_le_bytes());
    payload
}

/// The library part of a dump payload, `None` when its footer is short, of a later RDB
/// version or its checksum wrong.
fn libraries_of(payload: &[u8]) -> Option<&[u8]> {
    let body_end = payload.len().checked_sub(FOOTER_BYTES)?;
    let (checked, checksum) = payload.split_at(payload.len() - 8);
    let version = u16::from_le_bytes([payload[body_end], payload[body_end + 1]]);
    let checksum = u64::from_le_bytes(checksum.try_into().ok()?);
    (version <= RDB_VERSION && crc64(checked) == checksum).then_some(&payload[..body_end])
}

/// Redis's CRC-64 (the Jones polynomial, reflected, initial value 0, no final xor), over
/// the few bytes of a dump payload, bit by bit.
fn crc64(bytes: &[u8]) -> u64 {
    /// 0xad93d23594c935a9, bit-reversed.
    const POLYNOMIAL_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;
    let mut crc = 0u64;
    for &byte in bytes {
        crc ^= u64::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL_REFLECTED
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_redis_crc64() {
        // The check value Redis's own crc64 test asserts.
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        // FUNCTION DUMP of a Redis 7.0.15 server without functions (RDB version 10).
        let redis_7_0 = b"\x0a\x00\x5d\x9b\x5c\x40\x0f\x7f\xa2\xda";
        assert_eq!(libraries_of(redis_7_0), Some(&[][..]));
    }

    #[test]
    fn a_dump_restores_and_damaged_or_later_payloads_are_refused() {
        let payload = empty_payload();
        assert_eq!(payload.len(), FOOTER_BYTES);
        assert_eq!(restore(&[&payload]), OK);
        assert_eq!(restore(&[&payload, b"replace"]), OK);
        let mut damaged = payload.clone();
        damaged[3] ^= 1;
        assert!(matches!(restore(&[&damaged]), Reply::Error(text) if text.contains("checksum")));
        assert!(matches!(restore(&[b"short"]), Reply::Error(text) if text.contains("checksum")));
        let mut later = (RDB_VERSION + 1).to_le_bytes().to_vec();
        later.extend_from_slice(&crc64(&later).to_le_bytes());
        assert!(matches!(restore(&[&later]), Reply::Error(text) if text.contains("version")));
        let mut library = b"\xf5\x00".to_vec();
        library.extend_from_slice(&RDB_VERSION.to_le_bytes());
        library.extend_from_slice(&crc64(&library).to_le_bytes());
        assert!(matches!(restore(&[&library]), Reply::Error(text) if text.contains("libraries")));
        assert!(
            matches!(restore(&[&payload, b"merge"]), Reply::Error(text) if text.contains("policy"))
        );
    }

    #[test]
    fn the_other_subcommands_answer_as_a_server_without_functions() {
        assert_eq!(function(&[b"list"]), Reply::Array(Vec::new()));
        assert_eq!(function(&[b"FLUSH", b"async"]), OK);
        assert!(matches!(function(&[b"kill"]), Reply::Error(text) if text.starts_with("NOTBUSY")));
        assert!(matches!(function(&[b"stats"]), Reply::Map(_)));
        assert!(
            matches!(function(&[b"dump", b"x"]), Reply::Error(text) if text.contains("arguments"))
        );
        assert!(
            matches!(function(&[b"nope"]), Reply::Error(text) if text.contains("unknown subcommand"))
        );
    }
}
