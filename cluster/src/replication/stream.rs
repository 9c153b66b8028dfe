//! Frames of the replication stream on the transport's bulk channel, one home for their
//! encoding (a version byte, then bincode 2, decode bounded by [`MAX_STREAM_FRAME_BYTES`]).
//!
//! Replica → master: [`StreamFrame::Psync`] (start or resume) and [`StreamFrame::Ack`].
//! Master → replica: [`StreamFrame::FullSyncStart`], [`StreamFrame::Snapshot`] batches,
//! [`StreamFrame::FullSyncEnd`], or [`StreamFrame::Continue`] for a partial resync; then
//! [`StreamFrame::Ops`] batches and [`StreamFrame::Heartbeat`]s.
//!
//! Offsets count operations: the op with offset `n` is the n-th write of the master's history
//! `replid`. Operations are absolute effects (a value with an absolute deadline, or a delete),
//! so replaying one twice is harmless.

use bincode::{Decode, Encode};

use slotkv_engine::SLOT_COUNT;

use crate::codec::{DecodeError, Format, Validate};
use crate::node_state::bulk::StreamKind;
use crate::node_state::write_log::Op;

/// Version byte in front of every stream frame.
pub(crate) const STREAM_VERSION: u8 = 1;

/// Largest stream frame decoded, in bytes (the transport's bulk limit is the same by default).
pub(crate) const MAX_STREAM_FRAME_BYTES: usize = 64 << 20;

/// The replication frame format.
const FORMAT: Format<MAX_STREAM_FRAME_BYTES> = Format::new("replication frame", STREAM_VERSION);

/// One replicated write effect.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum WireOp {
    /// The key now holds this value, expiring at the unix ms deadline (`None`: no TTL).
    Set(Vec<u8>, Vec<u8>, Option<u64>),
    /// The key no longer exists.
    Del(Vec<u8>),
    /// The slot holds no key any more (its master lost it to another node).
    DropSlot(u16),
}

/// A snapshot entry: key, value, remaining TTL in ms.
pub(crate) type SnapshotEntry = (Vec<u8>, Vec<u8>, Option<u64>);

/// A replication stream frame.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum StreamFrame {
    /// Replica: "replicate me; I hold history `replid` up to `offset`" (`replid` 0: nothing).
    Psync {
        /// The history the replica holds.
        replid: u64,
        /// The last offset it applied.
        offset: u64,
    },
    /// Replica: "I applied everything up to `offset` of history `replid`".
    Ack {
        /// The history.
        replid: u64,
        /// The last offset applied.
        offset: u64,
    },
    /// Master: a full sync of history `replid` starts; drop everything, the snapshot follows,
    /// then ops after `offset`.
    FullSyncStart {
        /// The master's history.
        replid: u64,
        /// The offset the snapshot starts at.
        offset: u64,
    },
    /// Master: a batch of snapshot entries.
    Snapshot(Vec<SnapshotEntry>),
    /// Master: the snapshot is complete.
    FullSyncEnd,
    /// Master: partial resync accepted; ops after `offset` follow.
    Continue {
        /// The history.
        replid: u64,
        /// The replica's offset the stream continues from.
        offset: u64,
    },
    /// Master: ops with offsets `first_offset`, `first_offset + 1`, ...
    Ops {
        /// Offset of the first op.
        first_offset: u64,
        /// The ops.
        ops: Vec<WireOp>,
    },
    /// Master: nothing new; my offset is `offset`.
    Heartbeat {
        /// The master's offset.
        offset: u64,
    },
    /// Master: acknowledge your offset now (someone waits for it: WAIT, a write with
    /// replica durability, an import). Sent after the ops the waiter needs; Redis's
    /// `REPLCONF GETACK`.
    GetAck,
}

impl From<&Op> for WireOp {
    fn from(op: &Op) -> WireOp {
        match op {
            Op::Set {
                key,
                value,
                expire_at_ms,
            } => WireOp::Set(key.to_vec(), value.to_vec(), *expire_at_ms),
            Op::Del { key } => WireOp::Del(key.to_vec()),
            Op::DropSlot { slot } => WireOp::DropSlot(*slot),
        }
    }
}

impl Validate for StreamFrame {
    fn validate(&self) -> Result<(), &'static str> {
        match self {
            // Offsets start at 1: an op at offset 0 would wrap the replica's position.
            StreamFrame::Ops {
                first_offset: 0, ..
            } => Err("ops start at offset 0"),
            StreamFrame::Ops { first_offset, ops }
                if first_offset.checked_add(ops.len() as u64).is_none() =>
            {
                Err("op offsets overflow")
            }
            StreamFrame::Ops { ops, .. }
                if ops.iter().any(
                    |op| matches!(op, WireOp::DropSlot(slot) if usize::from(*slot) >= SLOT_COUNT),
                ) =>
            {
                Err("slot out of range")
            }
            _ => Ok(()),
        }
    }
}

/// Encodes a frame, behind the replication stream tag of the bulk channel.
pub(crate) fn encode_frame(frame: &StreamFrame) -> Vec<u8> {
    FORMAT.encode_after(&[StreamKind::Replication.tag()], frame)
}

/// Decodes a frame (its stream tag already removed by the demultiplexer).
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<StreamFrame, DecodeError> {
    FORMAT.decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let frame = StreamFrame::Ops {
            first_offset: 9,
            ops: vec![
                WireOp::Set(b"k".to_vec(), b"v".to_vec(), Some(5)),
                WireOp::Del(b"x".to_vec()),
                WireOp::DropSlot(16_383),
            ],
        };
        let encoded = encode_frame(&frame);
        assert_eq!(encoded[0], StreamKind::Replication.tag());
        assert_eq!(decode_frame(&encoded[1..]), Ok(frame));
        assert!(decode_frame(&[]).is_err());
        assert!(decode_frame(&[STREAM_VERSION, 0xff, 0xff]).is_err());
    }

    #[test]
    fn ops_at_offset_zero_or_overflowing_are_refused() {
        let at_zero = StreamFrame::Ops {
            first_offset: 0,
            ops: vec![WireOp::Del(b"k".to_vec())],
        };
        let overflowing = StreamFrame::Ops {
            first_offset: u64::MAX,
            ops: vec![WireOp::Del(b"k".to_vec())],
        };
        let bad_slot = StreamFrame::Ops {
            first_offset: 1,
            ops: vec![WireOp::DropSlot(16_384)],
        };
        for frame in [at_zero, overflowing, bad_slot] {
            let encoded = encode_frame(&frame);
            assert!(matches!(
                decode_frame(&encoded[1..]),
                Err(DecodeError::Invalid { .. })
            ));
        }
    }
}
