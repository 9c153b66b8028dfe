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

/// Version byte in front of every stream frame.
pub const STREAM_VERSION: u8 = 1;

/// Largest stream frame decoded, in bytes (the transport's bulk limit is the same by default).
pub const MAX_STREAM_FRAME_BYTES: usize = 64 << 20;

/// One replicated write effect.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum WireOp {
    /// The key now holds this value, expiring at the unix ms deadline (`None`: no TTL).
    Set(Vec<u8>, Vec<u8>, Option<u64>),
    /// The key no longer exists.
    Del(Vec<u8>),
}

/// A snapshot entry: key, value, remaining TTL in ms.
pub type SnapshotEntry = (Vec<u8>, Vec<u8>, Option<u64>);

/// A replication stream frame.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum StreamFrame {
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
}

/// Why a stream frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed replication frame: {0}")]
pub struct StreamDecodeError(String);

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_STREAM_FRAME_BYTES>()
}

/// Encodes a frame.
pub fn encode_frame(frame: &StreamFrame) -> Vec<u8> {
    let mut bytes = vec![STREAM_VERSION];
    // Encoding owned data into a Vec does not fail; an empty body would fail to decode.
    if let Ok(body) = bincode::encode_to_vec(frame, config()) {
        bytes.extend_from_slice(&body);
    }
    bytes
}

/// Decodes a frame.
pub fn decode_frame(bytes: &[u8]) -> Result<StreamFrame, StreamDecodeError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(StreamDecodeError("empty frame".to_string()));
    };
    if version != STREAM_VERSION {
        return Err(StreamDecodeError(format!("version {version}")));
    }
    let (frame, used) = bincode::decode_from_slice(body, config())
        .map_err(|error| StreamDecodeError(error.to_string()))?;
    if used != body.len() {
        return Err(StreamDecodeError("trailing bytes".to_string()));
    }
    Ok(frame)
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
            ],
        };
        assert_eq!(decode_frame(&encode_frame(&frame)), Ok(frame));
        assert!(decode_frame(&[]).is_err());
        assert!(decode_frame(&[STREAM_VERSION, 0xff, 0xff]).is_err());
    }
}
