//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) and for the corpus replay test
//! (`cluster/tests/fuzz_corpus.rs`), which runs every stored input through them on stable.
//!
//! Each takes arbitrary bytes from the wire (or disk) and must never panic. Where a decoder
//! has an encoder, an accepted input must round-trip: `decode(encode(decode(x)))` equals
//! `decode(x)`, so nothing accepted is misread or re-sent differently. Not part of the
//! library's API: hidden, and may change with the decoders.

use slotkv_engine::{Clock, ManualClock, SetOptions, Store, StoreConfig};

use crate::command::{get, set, BorrowedCommand, OwnedCommand, Value};
use crate::core::node::{NodeId, NODE_ID_BYTES};
use crate::core::slots::SlotRange;
use crate::core::{nodes_conf, wire, AdminCommand, Config, Core, Output};
use crate::node_state::bulk;
use crate::node_state::store_cell::export_batches;
use crate::replication::stream::{
    decode_frame, decode_ops_frame, encode_frame, is_ops_frame, StreamFrame, WireOp,
};
use crate::routing::protocol::{
    CommandRequest, DownReason, Request, Response, REQUEST_FORMAT, RESPONSE_FORMAT,
};
use crate::runtime::snapshot::{load_snapshot_bytes, snapshot_bytes, SNAPSHOT_MAGIC};
use crate::slot_migration::batch::{
    self as migration, AckOutcome, Assembly, ImportRefusal, MigrationFrame, SlotsRequest,
    WireEntry, WireRange,
};

/// Most seed inputs a target yields.
const SEEDS_PER_TARGET_MAX: usize = 64;

/// Which decoder an input is for: one fuzz target each, and one corpus folder each
/// (`fuzz/corpus/<name>`, named by [`Target::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A bus message ([`wire::decode`]); a decodable one is then fed to a core.
    BusMessage,
    /// A frame of the bulk channel: stream tag, then a replication stream frame.
    BulkFrame,
    /// A data-path request frame.
    Request,
    /// A data-path response frame.
    Response,
    /// nodes.conf text.
    NodesConf,
    /// A data snapshot file without its last 4 bytes: the target appends the right CRC-32,
    /// so mutations reach the parser instead of stopping at the checksum.
    Snapshot,
    /// A frame of the bulk channel: stream tag, then a slot-migration frame; a decodable
    /// one is then fed to a target's batch reassembly.
    MigrationFrame,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 7] = [
        Target::BusMessage,
        Target::BulkFrame,
        Target::Request,
        Target::Response,
        Target::NodesConf,
        Target::Snapshot,
        Target::MigrationFrame,
    ];

    /// The target's name: its fuzz target's and its corpus folder's.
    pub fn name(self) -> &'static str {
        match self {
            Target::BusMessage => "bus_message",
            Target::BulkFrame => "bulk_frame",
            Target::Request => "request",
            Target::Response => "response",
            Target::NodesConf => "nodes_conf",
            Target::Snapshot => "snapshot",
            Target::MigrationFrame => "migration_frame",
        }
    }

    /// Valid inputs to start fuzzing from (what `fuzz/seed-corpus` writes into the corpus):
    /// real encodings of each kind of frame, at most [`SEEDS_PER_TARGET_MAX`].
    pub fn seeds(self) -> Vec<Vec<u8>> {
        let mut seeds = match self {
            Target::BusMessage => exchanged_bus_messages(),
            Target::BulkFrame => stream_frames().iter().map(encode_frame).collect(),
            Target::Request => requests(),
            Target::Response => responses(),
            Target::NodesConf => formed_pair()
                .iter()
                .map(|core| nodes_conf::render_nodes_conf(&core.snapshot()).into_bytes())
                .collect(),
            Target::Snapshot => snapshot_seeds(),
            Target::MigrationFrame => migration_frames()
                .iter()
                .map(migration::encode_frame)
                .collect(),
        };
        seeds.truncate(SEEDS_PER_TARGET_MAX);
        seeds
    }

    /// Runs one input; panics only on a defect (a round trip that changes what was read).
    pub fn run(self, data: &[u8]) {
        match self {
            Target::BusMessage => bus_message(data),
            Target::BulkFrame => bulk_frame(data),
            Target::Request => request(data),
            Target::Response => response(data),
            Target::NodesConf => nodes_conf_text(data),
            Target::Snapshot => snapshot(data),
            Target::MigrationFrame => migration_frame(data),
        }
    }
}

fn bus_message(data: &[u8]) {
    let Ok(message) = wire::decode(data) else {
        return;
    };
    let again = wire::decode(&wire::encode(&message));
    assert_eq!(
        again.as_ref(),
        Ok(&message),
        "a bus message changed in a round trip"
    );
    // A core that knows nobody takes any decodable datagram without panicking (the rest
    // is refused by the decoder above, which is what the core runs first).
    let mut core = Core::new(
        Config {
            rng_seed: 1,
            ..Config::default()
        },
        0,
    );
    let _ = core.handle_datagram(1, "fuzz:17000", data);
    while core.poll_output().is_some() {}
}

fn bulk_frame(data: &[u8]) {
    let frame = bytes::Bytes::copy_from_slice(data);
    let Some((bulk::StreamKind::Replication, payload)) = bulk::split(&frame) else {
        return;
    };
    if is_ops_frame(&payload) {
        // The replica's borrowed decoder agrees with the owned one, refusals included.
        let borrowed = decode_ops_frame(&payload).map(|frame| {
            let ops: Vec<WireOp> = frame.ops.iter().map(|op| op.to_owned_op()).collect();
            StreamFrame::Ops {
                first_offset: frame.first_offset,
                ops,
            }
        });
        assert_eq!(
            borrowed.is_ok(),
            decode_frame(&payload).is_ok(),
            "the borrowed and owned decoders disagree"
        );
        if let (Ok(borrowed), Ok(owned)) = (borrowed, decode_frame(&payload)) {
            assert_eq!(borrowed, owned, "the borrowed decoder read other ops");
        }
    }
    if let Ok(decoded) = decode_frame(&payload) {
        let encoded = encode_frame(&decoded);
        let again = bulk::split(&bytes::Bytes::from(encoded))
            .map(|(kind, payload)| (kind, decode_frame(&payload)));
        assert_eq!(
            again,
            Some((bulk::StreamKind::Replication, Ok(decoded))),
            "a stream frame changed in a round trip"
        );
    }
}

fn migration_frame(data: &[u8]) {
    let frame = bytes::Bytes::copy_from_slice(data);
    let Some((bulk::StreamKind::SlotMigration, payload)) = bulk::split(&frame) else {
        return;
    };
    let Ok(decoded) = migration::decode_frame(&payload) else {
        return;
    };
    let encoded = bytes::Bytes::from(migration::encode_frame(&decoded));
    let again =
        bulk::split(&encoded).map(|(kind, payload)| (kind, migration::decode_frame(&payload)));
    assert_eq!(
        again,
        Some((bulk::StreamKind::SlotMigration, Ok(decoded.clone()))),
        "a migration frame changed in a round trip"
    );
    // A target's reassembly takes any decodable frame, fresh or after an announced value.
    let _ = Assembly::default().handle_frame(decoded.clone());
    let mut primed = Assembly::default();
    let start = MigrationFrame::ValueStart {
        batch: decoded.batch(),
        key: b"k".to_vec(),
        ttl_ms: None,
        value_len: 4,
    };
    let _ = primed.handle_frame(start);
    let _ = primed.handle_frame(decoded);
}

fn migration_frames() -> Vec<MigrationFrame> {
    vec![
        MigrationFrame::Entries {
            batch: 1,
            entries: vec![
                WireEntry {
                    key: b"key".to_vec(),
                    value: b"value".to_vec(),
                    ttl_ms: None,
                },
                WireEntry {
                    key: b"{tag}k".to_vec(),
                    value: vec![7; 300],
                    ttl_ms: Some(1_000),
                },
            ],
        },
        MigrationFrame::ValueStart {
            batch: 1,
            key: b"big".to_vec(),
            ttl_ms: Some(5),
            value_len: 4,
        },
        MigrationFrame::ValueChunk {
            batch: 1,
            bytes: vec![1, 2, 3, 4],
        },
        MigrationFrame::Deletes {
            batch: 1,
            keys: vec![b"gone".to_vec()],
        },
        MigrationFrame::Commit {
            batch: 1,
            replace: true,
            keys: 3,
            deletes: 1,
        },
        MigrationFrame::Slots {
            batch: 4,
            request: SlotsRequest::Begin {
                migration: 3,
                ranges: vec![WireRange { start: 0, end: 99 }],
            },
        },
        MigrationFrame::Ack {
            batch: 4,
            outcome: AckOutcome::Owned { epoch: 9 },
        },
        MigrationFrame::Ack {
            batch: 1,
            outcome: AckOutcome::Imported {
                keys: 2,
                busy: vec![1],
            },
        },
        MigrationFrame::Ack {
            batch: 2,
            outcome: AckOutcome::Refused(ImportRefusal::NotImporting { slot: 866 }),
        },
        MigrationFrame::Ack {
            batch: 3,
            outcome: AckOutcome::Refused(ImportRefusal::NotReplicated {
                acknowledged: 0,
                wanted: 1,
            }),
        },
    ]
}

fn request(data: &[u8]) {
    if let Ok(decoded) = REQUEST_FORMAT.decode::<Request<OwnedCommand>>(data) {
        // Compared as encodings: a command may carry a NaN (INCRBYFLOAT's increment, which
        // the engine refuses), and NaN is not equal to itself.
        let encoded = REQUEST_FORMAT.encode(&decoded);
        let again = REQUEST_FORMAT.decode::<Request<OwnedCommand>>(&encoded);
        let reencoded = again.map(|again| REQUEST_FORMAT.encode(&again));
        assert_eq!(reencoded, Ok(encoded), "a request changed in a round trip");
    }
}

fn response(data: &[u8]) {
    if let Ok(decoded) = RESPONSE_FORMAT.decode::<Response>(data) {
        let encoded = RESPONSE_FORMAT.encode(&decoded);
        let again = RESPONSE_FORMAT.decode::<Response>(&encoded);
        let reencoded = again.map(|again| RESPONSE_FORMAT.encode(&again));
        assert_eq!(reencoded, Ok(encoded), "a response changed in a round trip");
    }
}

fn nodes_conf_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(conf) = nodes_conf::parse_nodes_conf(text) {
        let again = nodes_conf::parse_nodes_conf(&nodes_conf::render_nodes_conf(&conf));
        assert_eq!(
            again.as_ref(),
            Ok(&conf),
            "nodes.conf changed in a round trip"
        );
    }
}

/// The clock of the snapshot target: fixed, so expiries are the same on every run.
const SNAPSHOT_NOW_MS: u64 = 1_700_000_000_000;

fn snapshot_store() -> (Store, std::sync::Arc<ManualClock>) {
    let clock = std::sync::Arc::new(ManualClock::new(SNAPSHOT_NOW_MS));
    let store = Store::new(
        StoreConfig::default(),
        std::sync::Arc::clone(&clock) as std::sync::Arc<dyn Clock>,
    );
    (store, clock)
}

/// Every key of `store` with its value and remaining TTL, sorted.
fn dump(store: &Store) -> Vec<(Vec<u8>, Vec<u8>, Option<u64>)> {
    let mut entries: Vec<_> = export_batches(store)
        .flat_map(|batch| batch.unwrap_or_default())
        .map(|entry| (entry.key.to_vec(), entry.value.to_vec(), entry.ttl_ms))
        .collect();
    entries.sort();
    entries
}

/// The writer id a snapshot's header names (where the loader reads it), so a mutated input
/// is not refused as another node's before its records are read.
fn snapshot_writer(data: &[u8]) -> NodeId {
    let start = SNAPSHOT_MAGIC.len() + 4;
    let mut id = [0u8; NODE_ID_BYTES];
    if let Some(bytes) = data.get(start..start + NODE_ID_BYTES) {
        id.copy_from_slice(bytes);
    }
    NodeId(id)
}

fn snapshot(data: &[u8]) {
    // In memory, into two engines kept per thread (emptied before each use): building an
    // engine of 16,384 slot tables per input would be most of the work.
    thread_local! {
        static STORES: [(Store, std::sync::Arc<ManualClock>); 2] =
            [snapshot_store(), snapshot_store()];
    }
    STORES.with(|[(store, clock), (reloaded, _)]| {
        for engine in [store, reloaded] {
            empty(engine);
        }
        snapshot_round_trip(data, store, reloaded, clock.as_ref());
    });
}

/// Drops every key of `store`, visiting only the slots that hold some.
fn empty(store: &Store) {
    let mut left = store.dbsize();
    for slot in 0..slotkv_engine::SLOT_COUNT as u16 {
        if left == 0 {
            return;
        }
        if store.count_keys_in_slot(slot).unwrap_or(0) > 0 {
            left = left.saturating_sub(store.drop_slot(slot).unwrap_or(0));
        }
    }
}

/// Loads `data` (with its checksum appended) into `store`; if accepted, saves it and loads
/// the save into `reloaded`, which must then hold the same.
fn snapshot_round_trip(data: &[u8], store: &Store, reloaded: &Store, clock: &dyn Clock) {
    let path = std::path::Path::new("fuzz-input");
    let mut content = data.to_vec();
    content.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    let node = snapshot_writer(data);
    if load_snapshot_bytes(path, &content, store, clock, node).is_err() {
        return;
    }
    // Accepted: what was loaded saves and loads back the same.
    let saved = snapshot_bytes(store, clock, node);
    let Ok(saved) = saved else {
        panic!("a loaded snapshot did not save: {saved:?}");
    };
    let loaded = load_snapshot_bytes(path, &saved, reloaded, clock, node);
    assert!(loaded.is_ok(), "a saved snapshot did not load: {loaded:?}");
    assert_eq!(
        dump(reloaded),
        dump(store),
        "a snapshot changed in a round trip"
    );
}

/// Real snapshot files (their checksum cut off): empty, a few keys, keys with TTLs.
fn snapshot_seeds() -> Vec<Vec<u8>> {
    let node = NodeId([0x5a; NODE_ID_BYTES]);
    let mut seeds = Vec::new();
    for keys in [0usize, 1, 5] {
        let (store, clock) = snapshot_store();
        for index in 0..keys {
            let key = format!("{{k}}{index}");
            let value = vec![b'v'; index * 7];
            let mut options = SetOptions::default();
            if index % 2 == 1 {
                options.expiry = slotkv_engine::SetExpiry::Expire(
                    slotkv_engine::ExpireTime::Milliseconds(1_000 * index as i64),
                );
            }
            if store.set(key.as_bytes(), &value, options).is_err() {
                continue;
            }
        }
        if let Ok(mut content) = snapshot_bytes(&store, clock.as_ref(), node) {
            content.truncate(content.len().saturating_sub(4));
            seeds.push(content);
        }
    }
    seeds
}

/// Two cores that met and exchanged pings for a few virtual seconds, with the bus messages
/// they sent (encoded), in order.
fn exchange() -> ([Core; 2], Vec<Vec<u8>>) {
    let names = ["a", "b"];
    let mut cores = names.map(|name| {
        Core::new(
            Config {
                ip: name.to_string(),
                bus_port: 17000,
                client_port: 7000,
                rng_seed: u64::from(name.as_bytes()[0]),
                writable_delay_ms: 0,
                ..Config::default()
            },
            0,
        )
    });
    let mut sent = Vec::new();
    let meet = AdminCommand::Meet {
        ip: "b".to_string(),
        client_port: 7000,
        bus_port: 17000,
    };
    let _ = cores[0].handle_command(0, meet);
    let _ = cores[0].handle_command(
        0,
        AdminCommand::AddSlots(vec![SlotRange {
            start: 0,
            end: 8191,
        }]),
    );
    let _ = cores[1].handle_command(
        0,
        AdminCommand::AddSlots(vec![SlotRange {
            start: 8192,
            end: 16383,
        }]),
    );
    for step in 1..=60u64 {
        let now_ms = step * 100;
        for index in 0..2 {
            cores[index].handle_tick(now_ms);
            while let Some(output) = cores[index].poll_output() {
                let Output::Transmit { message, .. } = output else {
                    continue;
                };
                let bytes = wire::encode(&message);
                let from = format!("{}:17000", names[index]);
                let _ = cores[1 - index].handle_datagram(now_ms, &from, &bytes);
                sent.push(bytes);
            }
        }
    }
    (cores, sent)
}

fn formed_pair() -> [Core; 2] {
    exchange().0
}

fn exchanged_bus_messages() -> Vec<Vec<u8>> {
    let mut messages = exchange().1;
    messages.sort();
    messages.dedup();
    messages
}

fn stream_frames() -> Vec<StreamFrame> {
    vec![
        StreamFrame::Psync {
            replid: 7,
            offset: 42,
        },
        StreamFrame::Ack {
            replid: 7,
            offset: 43,
        },
        StreamFrame::FullSyncStart {
            replid: 7,
            offset: 40,
        },
        StreamFrame::Snapshot(vec![
            (b"key".to_vec(), b"value".to_vec(), None),
            (b"{tag}k".to_vec(), vec![0; 300], Some(1_000)),
        ]),
        StreamFrame::FullSyncEnd,
        StreamFrame::Continue {
            replid: 7,
            offset: 43,
        },
        StreamFrame::Ops {
            first_offset: 44,
            ops: vec![
                WireOp::Set(b"k".to_vec(), b"v".to_vec(), Some(1_700_000_000_000)),
                WireOp::Del(b"k".to_vec()),
            ],
        },
    ]
}

fn requests() -> Vec<Vec<u8>> {
    let command = |command: BorrowedCommand<'_>, durability_replicas| {
        REQUEST_FORMAT.encode(&Request::Command(CommandRequest {
            command,
            asking: false,
            read_from_replica: durability_replicas == 0,
            durability_replicas,
            durability_timeout_ms: 100,
        }))
    };
    let set = set::Set {
        key: &b"key"[..],
        value: &b"value"[..],
        options: SetOptions::default().into(),
    };
    vec![
        command(get::Get { key: &b"key"[..] }.into(), 0),
        command(set.into(), 1),
        REQUEST_FORMAT.encode(&Request::<BorrowedCommand<'_>>::Wait {
            offset: 9,
            replicas: 1,
            timeout_ms: 50,
        }),
    ]
}

fn responses() -> Vec<Vec<u8>> {
    [
        Response::Done(Value::Bulk(Some(b"value".to_vec())), 12),
        Response::Done(Value::Integer(-3), 0),
        Response::TryAgain,
        Response::Down(DownReason::ClusterDown),
    ]
    .iter()
    .map(|response| RESPONSE_FORMAT.encode(response))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_seeds_that_it_accepts() {
        for target in Target::ALL {
            let seeds = target.seeds();
            assert!(!seeds.is_empty(), "{} has no seeds", target.name());
            for seed in &seeds {
                target.run(seed);
            }
        }
        // The bus seeds are real: the pair formed and both decoders accept them.
        let [a, b] = formed_pair();
        assert_eq!(a.nodes().count(), 2);
        assert_eq!(b.nodes().count(), 2);
        for seed in Target::BusMessage.seeds() {
            assert!(wire::decode(&seed).is_ok());
        }
    }
}
