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

/// A [`WireOp`] borrowing its key and value from the frame it was decoded from (the
/// replica's hot path: applied to the engine, which copies them once, without a copy per
/// op in between). Encodes as a `WireOp` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bincode::BorrowDecode)]
pub(crate) enum WireOpRef<'a> {
    /// See [`WireOp::Set`].
    Set(&'a [u8], &'a [u8], Option<u64>),
    /// See [`WireOp::Del`].
    Del(&'a [u8]),
    /// See [`WireOp::DropSlot`].
    DropSlot(u16),
}

impl WireOpRef<'_> {
    /// The owned op with the same effect.
    pub(crate) fn to_owned_op(self) -> WireOp {
        match self {
            WireOpRef::Set(key, value, deadline) => {
                WireOp::Set(key.to_vec(), value.to_vec(), deadline)
            }
            WireOpRef::Del(key) => WireOp::Del(key.to_vec()),
            WireOpRef::DropSlot(slot) => WireOp::DropSlot(slot),
        }
    }
}

impl WireOp {
    /// This op as a [`WireOpRef`] of its own bytes.
    pub(crate) fn as_ref(&self) -> WireOpRef<'_> {
        match self {
            WireOp::Set(key, value, deadline) => WireOpRef::Set(key, value, *deadline),
            WireOp::Del(key) => WireOpRef::Del(key),
            WireOp::DropSlot(slot) => WireOpRef::DropSlot(*slot),
        }
    }
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
            StreamFrame::Ops { first_offset, ops } => {
                validate_ops(*first_offset, ops.iter().map(WireOp::as_ref))
            }
            _ => Ok(()),
        }
    }
}

/// Encodes a frame, behind the replication stream tag of the bulk channel.
pub(crate) fn encode_frame(frame: &StreamFrame) -> Vec<u8> {
    FORMAT.encode_after(&[StreamKind::Replication.tag()], frame)
}

/// Index of [`StreamFrame::Ops`] among the frame's variants (bincode writes it first).
const OPS_VARIANT: u32 = 6;

/// A [`StreamFrame::Ops`] encoded straight from the write log's ops, byte for byte what
/// encoding the owned frame writes, without first copying every key and value into a
/// [`WireOp`] (the master's hot path: one frame per batch of writes).
struct OpsFrameRef<'a> {
    first_offset: u64,
    ops: &'a [Op],
}

impl bincode::Encode for OpsFrameRef<'_> {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        OPS_VARIANT.encode(encoder)?;
        self.first_offset.encode(encoder)?;
        self.ops.len().encode(encoder)?;
        for op in self.ops {
            // The variant indices of `WireOp`: Set 0, Del 1, DropSlot 2.
            match op {
                Op::Set {
                    key,
                    value,
                    expire_at_ms,
                } => {
                    0u32.encode(encoder)?;
                    key.as_ref().encode(encoder)?;
                    value.as_ref().encode(encoder)?;
                    expire_at_ms.encode(encoder)?;
                }
                Op::Del { key } => {
                    1u32.encode(encoder)?;
                    key.as_ref().encode(encoder)?;
                }
                Op::DropSlot { slot } => {
                    2u32.encode(encoder)?;
                    slot.encode(encoder)?;
                }
            }
        }
        Ok(())
    }
}

/// Encodes `StreamFrame::Ops { first_offset, ops }` from the log's `ops` (see
/// [`OpsFrameRef`]), behind the replication stream tag.
pub(crate) fn encode_ops_frame(first_offset: u64, ops: &[Op]) -> Vec<u8> {
    let frame = OpsFrameRef { first_offset, ops };
    FORMAT.encode_after(&[StreamKind::Replication.tag()], &frame)
}

/// [`StreamFrame::Ops`] decoded borrowing every key and value from the frame, validated
/// as the owned frame is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OpsFrame<'a> {
    /// Offset of the first op.
    pub(crate) first_offset: u64,
    /// The ops.
    pub(crate) ops: Vec<WireOpRef<'a>>,
}

impl<'de> bincode::BorrowDecode<'de, ()> for OpsFrame<'de> {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = ()>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let variant = u32::borrow_decode(decoder)?;
        if variant != OPS_VARIANT {
            return Err(bincode::error::DecodeError::Other("not an ops frame"));
        }
        Ok(OpsFrame {
            first_offset: u64::borrow_decode(decoder)?,
            ops: Vec::borrow_decode(decoder)?,
        })
    }
}

impl Validate for OpsFrame<'_> {
    fn validate(&self) -> Result<(), &'static str> {
        validate_ops(self.first_offset, self.ops.iter().copied())
    }
}

/// The rules of an ops batch, owned or borrowed: offsets start at 1 (an op at offset 0
/// would wrap the replica's position) and do not overflow; slots exist.
fn validate_ops<'a>(
    first_offset: u64,
    mut ops: impl ExactSizeIterator<Item = WireOpRef<'a>>,
) -> Result<(), &'static str> {
    if first_offset == 0 {
        return Err("ops start at offset 0");
    }
    if first_offset.checked_add(ops.len() as u64).is_none() {
        return Err("op offsets overflow");
    }
    if ops.any(|op| matches!(op, WireOpRef::DropSlot(slot) if usize::from(slot) >= SLOT_COUNT)) {
        return Err("slot out of range");
    }
    Ok(())
}

/// Whether a frame (stream tag removed) is a [`StreamFrame::Ops`], which
/// [`decode_ops_frame`] decodes without copying; `false` for anything else, garbage
/// included (the owned decoder then refuses it with a reason).
pub(crate) fn is_ops_frame(bytes: &[u8]) -> bool {
    // The version byte, then the variant index, one byte as a bincode varint below 251.
    bytes.len() >= 2 && bytes[0] == STREAM_VERSION && u32::from(bytes[1]) == OPS_VARIANT
}

/// Decodes a [`StreamFrame::Ops`] frame (its stream tag removed) borrowing from `bytes`.
pub(crate) fn decode_ops_frame(bytes: &[u8]) -> Result<OpsFrame<'_>, DecodeError> {
    FORMAT.borrow_decode(bytes)
}

/// Decodes a frame (its stream tag already removed by the demultiplexer).
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<StreamFrame, DecodeError> {
    FORMAT.decode(bytes)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    fn op() -> impl Strategy<Value = Op> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
        prop_oneof![
            (bytes(), bytes(), proptest::option::of(any::<u64>())).prop_map(
                |(key, value, expire_at_ms)| Op::Set {
                    key,
                    value,
                    expire_at_ms
                }
            ),
            bytes().prop_map(|key| Op::Del { key }),
            (0..SLOT_COUNT as u16).prop_map(|slot| Op::DropSlot { slot }),
        ]
    }

    proptest! {
        /// The borrowed encoder writes exactly the owned frame's bytes, which decode back
        /// to the ops.
        #[test]
        fn ops_encoded_from_the_log_match_the_owned_frame(
            first_offset in 1..u64::MAX / 2,
            ops in proptest::collection::vec(op(), 0..70),
        ) {
            let owned = StreamFrame::Ops {
                first_offset,
                ops: ops.iter().map(WireOp::from).collect(),
            };
            let borrowed = encode_ops_frame(first_offset, &ops);
            prop_assert_eq!(&borrowed, &encode_frame(&owned));
            prop_assert!(is_ops_frame(&borrowed[1..]));
            let decoded = decode_ops_frame(&borrowed[1..]).map(|frame| {
                (frame.first_offset, frame.ops.iter().map(|op| op.to_owned_op()).collect::<Vec<_>>())
            });
            let StreamFrame::Ops { ops: owned_ops, .. } = &owned else { unreachable!() };
            prop_assert_eq!(decoded, Ok((first_offset, owned_ops.clone())));
            prop_assert_eq!(decode_frame(&borrowed[1..]), Ok(owned));
        }
    }

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
            assert!(matches!(
                decode_ops_frame(&encoded[1..]),
                Err(DecodeError::Invalid { .. })
            ));
        }
        // Every other frame is left to the owned decoder.
        assert!(!is_ops_frame(&encode_frame(&StreamFrame::GetAck)[1..]));
        assert!(!is_ops_frame(&[STREAM_VERSION]));
    }
}
/// Instruction-count probes of the stream's hot path, each beside its owned baseline: run one
/// under `valgrind --tool=callgrind <the crate's test binary> --ignored --exact
/// replication::stream::callgrind_probe::<name>` (100 frames of 4,096 ops each; see the
/// README's replication figures). Ignored in ordinary test runs.
#[cfg(test)]
mod callgrind_probe {
    use bytes::Bytes;

    use super::*;

    const FRAMES: usize = 100;

    fn ops() -> Vec<Op> {
        (0..4096u32)
            .map(|index| Op::Set {
                key: Bytes::from(format!("key:{index:012}")),
                value: Bytes::from(vec![b'x'; 16]),
                expire_at_ms: None,
            })
            .collect()
    }

    #[test]
    #[ignore]
    fn encode_owned_baseline() {
        let ops = ops();
        let mut total = 0;
        for _ in 0..FRAMES {
            let ops = ops.iter().map(WireOp::from).collect();
            total += encode_frame(&StreamFrame::Ops {
                first_offset: 1,
                ops,
            })
            .len();
        }
        assert!(total > 0);
    }

    #[test]
    #[ignore]
    fn encode_from_the_log() {
        let ops = ops();
        let total: usize = (0..FRAMES).map(|_| encode_ops_frame(1, &ops).len()).sum();
        assert!(total > 0);
    }

    #[test]
    #[ignore]
    fn decode_owned_baseline() {
        let frame = encode_ops_frame(1, &ops());
        let decoded = (0..FRAMES)
            .filter(|_| matches!(decode_frame(&frame[1..]), Ok(StreamFrame::Ops { .. })))
            .count();
        assert_eq!(decoded, FRAMES);
    }

    #[test]
    #[ignore]
    fn decode_borrowed() {
        let frame = encode_ops_frame(1, &ops());
        let decoded = (0..FRAMES)
            .filter(|_| decode_ops_frame(&frame[1..]).is_ok())
            .count();
        assert_eq!(decoded, FRAMES);
    }
}
