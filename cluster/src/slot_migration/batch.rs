//! The migration stream's frames and batches: one home for their encoding (a version byte,
//! then bincode 2, decode bounded by [`MIGRATION_FRAME_BYTES_MAX`]), the source's split of
//! a batch into frames ([`frames_of_batch`]) and the target's pure reassembly
//! ([`Assembly`]). No IO: the tasks in `source.rs` and `target.rs` move the frames.
//!
//! Source → target, per batch `b`: [`MigrationFrame::Entries`] with whole keys, and for a
//! value larger than [`FRAME_PAYLOAD_BYTES`] a [`MigrationFrame::ValueStart`] followed by
//! [`MigrationFrame::ValueChunk`]s; the keys it deletes at the target (an atomic
//! migration's tail: keys removed at the source since the snapshot) in
//! [`MigrationFrame::Deletes`]; then [`MigrationFrame::Commit`] with both counts.
//! An atomic migration also sends [`MigrationFrame::Slots`] requests (begin, flip,
//! cancel; see `super::atomic_target`). Target → source: one [`MigrationFrame::Ack`] per
//! committed batch or slots request. A batch's entries carry
//! the key, its value and its remaining TTL in ms (as Redis's DUMP/RESTORE: no synchronised
//! clocks needed). A source sends one batch's frames to a target at a time (several
//! batches may await their acks, and several migrations or MIGRATE calls may share a
//! target: they take turns, see `super::MigrationHub::send_turn`), and a frame of another
//! batch discards an unfinished one.

use bincode::{Decode, Encode};
use bytes::Bytes;
use slotkv_engine::{ExportedEntry, Slot, SLOT_COUNT};

use crate::codec::{DecodeError, Format, Validate};
use crate::node_state::bulk::StreamKind;

/// Version byte in front of every migration frame (strict: a node speaks one version).
/// Version 3: slots requests name their migration, refusals a superseded frame
/// ([`ImportRefusal::Superseded`]).
pub(crate) const MIGRATION_VERSION: u8 = 3;

/// Largest migration frame decoded, in bytes: a sixteenth of the transport's default bulk
/// frame limit (64 MiB), so a batch never needs one frame near the transport's bound.
pub(crate) const MIGRATION_FRAME_BYTES_MAX: usize = 4 << 20;

/// Key and value bytes packed into one Entries frame, and the size of one value chunk.
pub(crate) const FRAME_PAYLOAD_BYTES: usize = 1 << 20;

/// Longest key a migration carries (a key always travels whole, in one frame).
pub(crate) const KEY_BYTES_MAX: usize = 1 << 20;

/// Longest value a migration carries, in chunks (the engine's default value limit).
pub(crate) const VALUE_BYTES_MAX: u64 = 512 << 20;

/// Most keys in one batch (and so in one frame, or named by one ack).
pub(crate) const BATCH_KEYS_MAX: usize = 10_000;

/// Most key and value bytes of whole (unchunked) entries in one batch, at the target.
pub(crate) const BATCH_BYTES_MAX: usize = 64 << 20;

/// Longest error text in an ack.
pub(crate) const ERROR_TEXT_BYTES_MAX: usize = 256;

/// Most slot ranges one slots request names.
pub(crate) const REQUEST_RANGES_MAX: usize = SLOT_COUNT;

// One frame holds a whole key plus a full payload of value bytes with room for headers.
const _: () = assert!(KEY_BYTES_MAX + FRAME_PAYLOAD_BYTES + 4096 <= MIGRATION_FRAME_BYTES_MAX);
const _: () = assert!(FRAME_PAYLOAD_BYTES <= BATCH_BYTES_MAX);

/// The migration frame format.
const FORMAT: Format<MIGRATION_FRAME_BYTES_MAX> =
    Format::new("slot migration frame", MIGRATION_VERSION);

/// One key of a batch as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct WireEntry {
    /// The key.
    pub(crate) key: Vec<u8>,
    /// Its value.
    pub(crate) value: Vec<u8>,
    /// Remaining TTL in ms when read at the source; `None`: no TTL.
    pub(crate) ttl_ms: Option<u64>,
}

/// Why a target did not import a batch. Nothing of the batch was deleted at the source.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum ImportRefusal {
    /// The target neither owns nor imports this slot (Redis's MOVED to a RESTORE).
    NotImporting {
        /// The slot.
        slot: u16,
    },
    /// The target is not a master.
    NotMaster,
    /// The target's writes are paused (a failover or a shutdown hand-over): retry.
    WritesPaused,
    /// The engine refused a key (OOM, too large); the keys before it may be imported.
    Engine(String),
    /// Imported, but fewer of the other members of the target's shard acknowledged it
    /// (its replicas, failing ones included, and a former master it replaced that is away)
    /// than it needs within its bound; the source keeps its copy.
    NotReplicated {
        /// Replicas that acknowledged.
        acknowledged: u32,
        /// Members whose acknowledgement it waited for.
        wanted: u32,
    },
    /// The frames of the batch did not add up (see [`AssemblyError`]).
    Incomplete,
    /// An atomic migration cannot begin on this slot here: the target owns it or already
    /// imports it (one migration per slot at a time).
    SlotBusy {
        /// The slot.
        slot: u16,
    },
    /// The target's core refused the slots request (its error text).
    Admin(String),
    /// The frame belongs to an earlier migration of this slot, or to another source's: an
    /// import of the slot opened here after the frame was sent (see
    /// `atomic_target::ImportLeases`). Nothing changed.
    Superseded {
        /// The slot.
        slot: u16,
    },
    /// The target's `cluster_state` is fail (it started less than the writable delay ago,
    /// or sees itself in a minority): Redis's CLUSTERDOWN to a RESTORE-ASKING. Retry.
    ClusterDown,
}

/// The target's answer to one batch.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum AckOutcome {
    /// Every key but the `busy` ones (indices in batch order: the key existed and the batch
    /// did not ask to replace) is imported and held by the target's replicas.
    Imported {
        /// Keys imported.
        keys: u32,
        /// Indices of keys left alone because they exist at the target (BUSYKEY).
        busy: Vec<u32>,
    },
    /// Not imported (see the refusal).
    Refused(ImportRefusal),
    /// [`SlotsRequest::Begin`] done: the slots are importing here and empty.
    Ready,
    /// [`SlotsRequest::Flip`] done (or done before): this node owns the slots with
    /// configEpoch `epoch`.
    Owned {
        /// The target's configEpoch after the flip.
        epoch: u64,
    },
    /// [`SlotsRequest::Cancel`] done: the slots are no longer importing here, their partial
    /// copy is dropped, and a later flip of them is refused.
    Abandoned,
}

/// A slot range on the wire (both ends included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct WireRange {
    /// First slot.
    pub(crate) start: u16,
    /// Last slot.
    pub(crate) end: u16,
}

/// What an atomic migration's source asks of the target for its slots. Each names its
/// migration: a number the source takes from the sequence it numbers its frames with
/// before it sends the Begin, so it is below every frame of the migration and differs
/// from every other migration's (see `atomic_target::ImportLeases`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum SlotsRequest {
    /// Import these slots from me: drop any stale copy, mark them importing.
    Begin {
        /// The migration.
        migration: u64,
        /// The slots.
        ranges: Vec<WireRange>,
    },
    /// Every key is sent and my writes to them are paused: take the slots, with one
    /// configEpoch bump for all of them.
    Flip {
        /// The migration.
        migration: u64,
        /// The slots.
        ranges: Vec<WireRange>,
    },
    /// The migration is abandoned: drop the partial copy and never flip these slots.
    Cancel {
        /// The migration.
        migration: u64,
        /// The slots.
        ranges: Vec<WireRange>,
    },
}

impl SlotsRequest {
    /// The ranges the request names.
    pub(crate) fn ranges(&self) -> &[WireRange] {
        match self {
            SlotsRequest::Begin { ranges, .. }
            | SlotsRequest::Flip { ranges, .. }
            | SlotsRequest::Cancel { ranges, .. } => ranges,
        }
    }

    /// The migration the request belongs to.
    pub(crate) fn migration(&self) -> u64 {
        match self {
            SlotsRequest::Begin { migration, .. }
            | SlotsRequest::Flip { migration, .. }
            | SlotsRequest::Cancel { migration, .. } => *migration,
        }
    }
}

/// A frame of the migration stream.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum MigrationFrame {
    /// Source: whole keys of batch `batch`.
    Entries {
        /// The batch.
        batch: u64,
        /// The keys, in batch order.
        entries: Vec<WireEntry>,
    },
    /// Source: the next key of the batch, whose `value_len`-byte value follows in chunks.
    ValueStart {
        /// The batch.
        batch: u64,
        /// The key.
        key: Vec<u8>,
        /// Remaining TTL in ms; `None`: no TTL.
        ttl_ms: Option<u64>,
        /// Bytes of the value.
        value_len: u64,
    },
    /// Source: the next bytes of the value announced by `ValueStart`.
    ValueChunk {
        /// The batch.
        batch: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Source: keys batch `batch` deletes at the target.
    Deletes {
        /// The batch.
        batch: u64,
        /// The keys.
        keys: Vec<Vec<u8>>,
    },
    /// Source: batch `batch` is complete with `keys` keys and `deletes` deletions; import
    /// it (replacing existing keys when `replace`) and acknowledge.
    Commit {
        /// The batch.
        batch: u64,
        /// MIGRATE's REPLACE.
        replace: bool,
        /// Keys in the batch.
        keys: u32,
        /// Keys deleted by the batch.
        deletes: u32,
    },
    /// Source: a request about an atomic migration's slots, answered by one ack.
    Slots {
        /// The request's id (acks share the batch ids).
        batch: u64,
        /// The request.
        request: SlotsRequest,
    },
    /// Target: what became of batch `batch`.
    Ack {
        /// The batch.
        batch: u64,
        /// The outcome.
        outcome: AckOutcome,
    },
}

impl MigrationFrame {
    /// The batch the frame belongs to.
    pub(crate) fn batch(&self) -> u64 {
        match self {
            MigrationFrame::Entries { batch, .. }
            | MigrationFrame::ValueStart { batch, .. }
            | MigrationFrame::ValueChunk { batch, .. }
            | MigrationFrame::Deletes { batch, .. }
            | MigrationFrame::Commit { batch, .. }
            | MigrationFrame::Slots { batch, .. }
            | MigrationFrame::Ack { batch, .. } => *batch,
        }
    }
}

impl Validate for MigrationFrame {
    fn validate(&self) -> Result<(), &'static str> {
        match self {
            MigrationFrame::Entries { entries, .. } => {
                if entries.len() > BATCH_KEYS_MAX {
                    return Err("more keys than a batch holds");
                }
                if entries.iter().any(|entry| entry.key.len() > KEY_BYTES_MAX) {
                    return Err("key longer than the migration's limit");
                }
                Ok(())
            }
            MigrationFrame::ValueStart { key, value_len, .. } => {
                if key.len() > KEY_BYTES_MAX {
                    return Err("key longer than the migration's limit");
                }
                if *value_len > VALUE_BYTES_MAX {
                    return Err("value longer than the migration's limit");
                }
                Ok(())
            }
            MigrationFrame::ValueChunk { bytes, .. } => {
                if bytes.is_empty() || bytes.len() > FRAME_PAYLOAD_BYTES {
                    return Err("value chunk empty or over the chunk size");
                }
                Ok(())
            }
            MigrationFrame::Deletes { keys, .. } => {
                if keys.len() > BATCH_KEYS_MAX {
                    return Err("more keys than a batch holds");
                }
                if keys.iter().any(|key| key.len() > KEY_BYTES_MAX) {
                    return Err("key longer than the migration's limit");
                }
                Ok(())
            }
            MigrationFrame::Commit { keys, deletes, .. }
                if *keys as usize > BATCH_KEYS_MAX || *deletes as usize > BATCH_KEYS_MAX =>
            {
                Err("more keys than a batch holds")
            }
            MigrationFrame::Commit { .. } => Ok(()),
            MigrationFrame::Slots { request, .. } => validate_ranges(request.ranges()),
            MigrationFrame::Ack { outcome, .. } => validate_outcome(outcome),
        }
    }
}

fn validate_outcome(outcome: &AckOutcome) -> Result<(), &'static str> {
    match outcome {
        AckOutcome::Imported { keys, busy } => {
            if *keys as usize > BATCH_KEYS_MAX || busy.len() > BATCH_KEYS_MAX {
                return Err("more keys than a batch holds");
            }
            if busy.iter().any(|index| *index as usize >= BATCH_KEYS_MAX) {
                return Err("busy key index beyond a batch");
            }
            Ok(())
        }
        AckOutcome::Refused(ImportRefusal::NotImporting { slot })
            if usize::from(*slot) >= SLOT_COUNT =>
        {
            Err("slot out of range")
        }
        AckOutcome::Refused(ImportRefusal::SlotBusy { slot })
            if usize::from(*slot) >= SLOT_COUNT =>
        {
            Err("slot out of range")
        }
        AckOutcome::Refused(ImportRefusal::Engine(text) | ImportRefusal::Admin(text))
            if text.len() > ERROR_TEXT_BYTES_MAX =>
        {
            Err("error text too long")
        }
        AckOutcome::Refused(_)
        | AckOutcome::Ready
        | AckOutcome::Owned { .. }
        | AckOutcome::Abandoned => Ok(()),
    }
}

fn validate_ranges(ranges: &[WireRange]) -> Result<(), &'static str> {
    if ranges.is_empty() || ranges.len() > REQUEST_RANGES_MAX {
        return Err("no slot range, or more than a request holds");
    }
    let valid = |range: &WireRange| range.start <= range.end && usize::from(range.end) < SLOT_COUNT;
    if !ranges.iter().all(valid) {
        return Err("slot range out of order or out of range");
    }
    Ok(())
}

/// Encodes a frame, behind the slot-migration stream tag of the bulk channel.
pub(crate) fn encode_frame(frame: &MigrationFrame) -> Vec<u8> {
    FORMAT.encode_after(&[StreamKind::SlotMigration.tag()], frame)
}

/// Decodes a frame (its stream tag already removed by the demultiplexer).
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<MigrationFrame, DecodeError> {
    FORMAT.decode(bytes)
}

/// Cuts an error text to [`ERROR_TEXT_BYTES_MAX`] bytes on a character boundary.
pub(crate) fn bounded_text(text: &str) -> String {
    let mut end = text.len().min(ERROR_TEXT_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The frames of one batch, in sending order: whole keys packed up to
/// [`FRAME_PAYLOAD_BYTES`] per frame, a larger value in chunks of that size, then the
/// deletions (packed the same way), then the commit. The caller keeps `entries` and
/// `deletes` each within [`BATCH_KEYS_MAX`] and keys within [`KEY_BYTES_MAX`].
pub(crate) fn frames_of_batch(
    batch: u64,
    replace: bool,
    entries: &[ExportedEntry],
    deletes: &[Bytes],
) -> Vec<MigrationFrame> {
    debug_assert!(entries.len() <= BATCH_KEYS_MAX && deletes.len() <= BATCH_KEYS_MAX);
    let mut frames = Vec::new();
    let mut packed: Vec<WireEntry> = Vec::new();
    let mut packed_bytes = 0;
    for entry in entries {
        debug_assert!(entry.key.len() <= KEY_BYTES_MAX);
        let size = entry.key.len() + entry.value.len();
        if entry.value.len() > FRAME_PAYLOAD_BYTES {
            flush(&mut frames, batch, &mut packed, &mut packed_bytes);
            frames.push(MigrationFrame::ValueStart {
                batch,
                key: entry.key.to_vec(),
                ttl_ms: entry.ttl_ms,
                value_len: entry.value.len() as u64,
            });
            for chunk in entry.value.chunks(FRAME_PAYLOAD_BYTES) {
                frames.push(MigrationFrame::ValueChunk {
                    batch,
                    bytes: chunk.to_vec(),
                });
            }
            continue;
        }
        if packed_bytes + size > FRAME_PAYLOAD_BYTES {
            flush(&mut frames, batch, &mut packed, &mut packed_bytes);
        }
        packed_bytes += size;
        packed.push(WireEntry {
            key: entry.key.to_vec(),
            value: entry.value.to_vec(),
            ttl_ms: entry.ttl_ms,
        });
    }
    flush(&mut frames, batch, &mut packed, &mut packed_bytes);
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut keys_bytes = 0;
    for key in deletes {
        debug_assert!(key.len() <= KEY_BYTES_MAX);
        if !keys.is_empty() && keys_bytes + key.len() > FRAME_PAYLOAD_BYTES {
            let keys = std::mem::take(&mut keys);
            frames.push(MigrationFrame::Deletes { batch, keys });
            keys_bytes = 0;
        }
        keys_bytes += key.len();
        keys.push(key.to_vec());
    }
    if !keys.is_empty() {
        frames.push(MigrationFrame::Deletes { batch, keys });
    }
    frames.push(MigrationFrame::Commit {
        batch,
        replace,
        keys: entries.len() as u32,
        deletes: deletes.len() as u32,
    });
    frames
}

fn flush(
    frames: &mut Vec<MigrationFrame>,
    batch: u64,
    packed: &mut Vec<WireEntry>,
    packed_bytes: &mut usize,
) {
    if packed.is_empty() {
        return;
    }
    frames.push(MigrationFrame::Entries {
        batch,
        entries: std::mem::take(packed),
    });
    *packed_bytes = 0;
}

/// A batch the target has received whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompleteBatch {
    /// The batch.
    pub(crate) batch: u64,
    /// MIGRATE's REPLACE.
    pub(crate) replace: bool,
    /// The keys, in batch order.
    pub(crate) entries: Vec<ExportedEntry>,
    /// The keys it deletes (an atomic migration's tail).
    pub(crate) deletes: Vec<Bytes>,
}

impl CompleteBatch {
    /// The distinct slots of the batch's keys, ascending.
    pub(crate) fn slots(&self) -> Vec<Slot> {
        let mut slots: Vec<Slot> = self
            .entries
            .iter()
            .map(|entry| &entry.key)
            .chain(&self.deletes)
            .map(|key| slotkv_engine::key_slot(key))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        slots
    }
}

/// Why the frames of a batch did not add up. The batch is dropped; the target refuses it
/// ([`ImportRefusal::Incomplete`]) and the source keeps its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AssemblyError {
    /// Whole keys or a commit arrived while a chunked value was incomplete.
    #[error("a chunked value was interrupted")]
    ValueInterrupted,
    /// A chunk arrived with no value announced, or beyond the announced length.
    #[error("a value chunk arrived unannounced or beyond its value's length")]
    StrayChunk,
    /// The commit's key count differs from the keys received.
    #[error("the commit names {committed} keys, {received} arrived")]
    CountMismatch {
        /// Keys the commit names.
        committed: u32,
        /// Keys received.
        received: usize,
    },
    /// The batch grew beyond [`BATCH_KEYS_MAX`] keys or [`BATCH_BYTES_MAX`] bytes of whole
    /// keys.
    #[error("the batch exceeds the migration's bounds")]
    TooLarge,
    /// An ack or a slots request is not part of a batch.
    #[error("an ack or a slots request is not a batch frame")]
    NotABatchFrame,
}

/// A value arriving in chunks.
#[derive(Debug)]
struct PendingValue {
    key: Vec<u8>,
    ttl_ms: Option<u64>,
    value_len: usize,
    value: Vec<u8>,
}

/// The target's reassembly of one source's current batch: a pure state machine fed the
/// decoded frames in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Assembly {
    batch: Option<u64>,
    entries: Vec<ExportedEntry>,
    deletes: Vec<Bytes>,
    whole_bytes: usize,
    pending: Option<PendingValue>,
}

impl Assembly {
    /// Feeds one frame; returns the batch once its commit arrived and everything adds up.
    /// On error the batch is dropped (a later frame of another batch starts afresh).
    pub(crate) fn handle_frame(
        &mut self,
        frame: MigrationFrame,
    ) -> Result<Option<CompleteBatch>, (u64, AssemblyError)> {
        let batch = frame.batch();
        if self.batch != Some(batch) {
            // A newer batch: the source gave the previous one up.
            *self = Assembly {
                batch: Some(batch),
                ..Assembly::default()
            };
        }
        let result = self.apply(frame);
        if result.is_err() {
            *self = Assembly::default();
        }
        result.map_err(|error| (batch, error))
    }

    fn apply(&mut self, frame: MigrationFrame) -> Result<Option<CompleteBatch>, AssemblyError> {
        match frame {
            MigrationFrame::Entries { entries, .. } => {
                if self.pending.is_some() {
                    return Err(AssemblyError::ValueInterrupted);
                }
                for entry in entries {
                    self.whole_bytes += entry.key.len() + entry.value.len();
                    self.push(entry.key, entry.value, entry.ttl_ms)?;
                }
                if self.whole_bytes > BATCH_BYTES_MAX {
                    return Err(AssemblyError::TooLarge);
                }
                Ok(None)
            }
            MigrationFrame::ValueStart {
                key,
                ttl_ms,
                value_len,
                ..
            } => {
                if self.pending.is_some() {
                    return Err(AssemblyError::ValueInterrupted);
                }
                // Bounded by the frame's validation (VALUE_BYTES_MAX); memory grows only
                // as chunks arrive.
                self.pending = Some(PendingValue {
                    key,
                    ttl_ms,
                    value_len: value_len as usize,
                    value: Vec::new(),
                });
                self.finish_value()?;
                Ok(None)
            }
            MigrationFrame::ValueChunk { bytes, .. } => {
                let pending = self.pending.as_mut().ok_or(AssemblyError::StrayChunk)?;
                if pending.value.len() + bytes.len() > pending.value_len {
                    return Err(AssemblyError::StrayChunk);
                }
                pending.value.extend_from_slice(&bytes);
                self.finish_value()?;
                Ok(None)
            }
            MigrationFrame::Deletes { keys, .. } => {
                if self.pending.is_some() {
                    return Err(AssemblyError::ValueInterrupted);
                }
                if self.deletes.len() + keys.len() > BATCH_KEYS_MAX {
                    return Err(AssemblyError::TooLarge);
                }
                for key in keys {
                    self.whole_bytes += key.len();
                    self.deletes.push(key.into());
                }
                if self.whole_bytes > BATCH_BYTES_MAX {
                    return Err(AssemblyError::TooLarge);
                }
                Ok(None)
            }
            MigrationFrame::Commit {
                batch,
                replace,
                keys,
                deletes,
            } => {
                if self.pending.is_some() {
                    return Err(AssemblyError::ValueInterrupted);
                }
                if keys as usize != self.entries.len() {
                    return Err(AssemblyError::CountMismatch {
                        committed: keys,
                        received: self.entries.len(),
                    });
                }
                if deletes as usize != self.deletes.len() {
                    return Err(AssemblyError::CountMismatch {
                        committed: deletes,
                        received: self.deletes.len(),
                    });
                }
                let entries = std::mem::take(&mut self.entries);
                let deletes = std::mem::take(&mut self.deletes);
                *self = Assembly::default();
                Ok(Some(CompleteBatch {
                    batch,
                    replace,
                    entries,
                    deletes,
                }))
            }
            MigrationFrame::Ack { .. } | MigrationFrame::Slots { .. } => {
                Err(AssemblyError::NotABatchFrame)
            }
        }
    }

    /// Moves a fully received chunked value into the batch.
    fn finish_value(&mut self) -> Result<(), AssemblyError> {
        let done = self
            .pending
            .as_ref()
            .is_some_and(|pending| pending.value.len() == pending.value_len);
        if !done {
            return Ok(());
        }
        match self.pending.take() {
            Some(pending) => self.push(pending.key, pending.value, pending.ttl_ms),
            None => Ok(()),
        }
    }

    fn push(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), AssemblyError> {
        if self.entries.len() >= BATCH_KEYS_MAX {
            return Err(AssemblyError::TooLarge);
        }
        self.entries.push(ExportedEntry {
            key: key.into(),
            value: value.into(),
            ttl_ms,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value_len: usize, ttl_ms: Option<u64>) -> ExportedEntry {
        ExportedEntry {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from((0..value_len).map(|byte| byte as u8).collect::<Vec<u8>>()),
            ttl_ms,
        }
    }

    fn reassemble(frames: Vec<MigrationFrame>) -> Result<Option<CompleteBatch>, AssemblyError> {
        let mut assembly = Assembly::default();
        let mut complete = None;
        for frame in frames {
            let encoded = encode_frame(&frame);
            assert!(
                encoded.len() <= MIGRATION_FRAME_BYTES_MAX + 1,
                "a frame over the bound"
            );
            let decoded = decode_frame(&encoded[1..]).expect("own frames decode");
            assert_eq!(decoded, frame);
            if let Some(batch) = assembly.handle_frame(decoded).map_err(|(_, error)| error)? {
                complete = Some(batch);
            }
        }
        Ok(complete)
    }

    #[test]
    fn a_batch_with_small_and_large_values_arrives_whole_in_bounded_frames() {
        let entries = vec![
            entry("a", 10, None),
            entry("big", 3 * FRAME_PAYLOAD_BYTES + 17, Some(5_000)),
            entry("b", 600 << 10, Some(1)),
            entry("c", 600 << 10, None),
            entry("exact", FRAME_PAYLOAD_BYTES, None),
        ];
        let frames = frames_of_batch(4, true, &entries, &[]);
        let chunks = frames
            .iter()
            .filter(|frame| matches!(frame, MigrationFrame::ValueChunk { .. }))
            .count();
        assert_eq!(chunks, 4, "the big value travels in four chunks");
        let complete = reassemble(frames)
            .unwrap()
            .expect("the commit completes it");
        assert_eq!(complete.batch, 4);
        assert!(complete.replace);
        assert_eq!(complete.entries, entries);
    }

    #[test]
    fn frames_that_do_not_add_up_are_refused_and_the_batch_dropped() {
        let entries = vec![
            entry("a", 1, None),
            entry("big", FRAME_PAYLOAD_BYTES + 1, None),
        ];
        let frames = frames_of_batch(1, false, &entries, &[]);
        // A commit while the chunked value is incomplete.
        let mut cut = frames.clone();
        cut.remove(cut.len() - 2);
        assert_eq!(reassemble(cut), Err(AssemblyError::ValueInterrupted));
        // A commit naming more keys than arrived.
        let mut short = frames.clone();
        short.remove(0);
        assert!(matches!(
            reassemble(short),
            Err(AssemblyError::CountMismatch {
                committed: 2,
                received: 1
            })
        ));
        // A chunk nobody announced.
        let stray = vec![MigrationFrame::ValueChunk {
            batch: 1,
            bytes: vec![1],
        }];
        assert_eq!(reassemble(stray), Err(AssemblyError::StrayChunk));
        // A newer batch discards an unfinished one.
        let mut assembly = Assembly::default();
        let first = frames_of_batch(1, false, &entries, &[]);
        assembly.handle_frame(first[0].clone()).unwrap();
        let second = frames_of_batch(2, false, &[entry("z", 3, None)], &[]);
        let mut last = None;
        for frame in second {
            last = assembly.handle_frame(frame).unwrap();
        }
        assert_eq!(last.map(|batch| batch.entries.len()), Some(1));
    }

    #[test]
    fn out_of_bound_frames_do_not_decode() {
        let long_key = MigrationFrame::ValueStart {
            batch: 1,
            key: vec![0; KEY_BYTES_MAX + 1],
            ttl_ms: None,
            value_len: 1,
        };
        let huge_value = MigrationFrame::ValueStart {
            batch: 1,
            key: b"k".to_vec(),
            ttl_ms: None,
            value_len: VALUE_BYTES_MAX + 1,
        };
        let empty_chunk = MigrationFrame::ValueChunk {
            batch: 1,
            bytes: Vec::new(),
        };
        let bad_slot = MigrationFrame::Ack {
            batch: 1,
            outcome: AckOutcome::Refused(ImportRefusal::NotImporting { slot: 16_384 }),
        };
        let many = MigrationFrame::Commit {
            batch: 1,
            replace: false,
            keys: BATCH_KEYS_MAX as u32 + 1,
            deletes: 0,
        };
        let many_deletes = MigrationFrame::Commit {
            batch: 1,
            replace: false,
            keys: 0,
            deletes: BATCH_KEYS_MAX as u32 + 1,
        };
        let range = |start, end| WireRange { start, end };
        let no_ranges = MigrationFrame::Slots {
            batch: 1,
            request: SlotsRequest::Begin {
                migration: 1,
                ranges: Vec::new(),
            },
        };
        let reversed = MigrationFrame::Slots {
            batch: 1,
            request: SlotsRequest::Flip {
                migration: 1,
                ranges: vec![range(9, 3)],
            },
        };
        let beyond = MigrationFrame::Slots {
            batch: 1,
            request: SlotsRequest::Cancel {
                migration: 1,
                ranges: vec![range(0, 16_384)],
            },
        };
        let busy_beyond = MigrationFrame::Ack {
            batch: 1,
            outcome: AckOutcome::Refused(ImportRefusal::SlotBusy { slot: 20_000 }),
        };
        for frame in [
            long_key,
            huge_value,
            empty_chunk,
            bad_slot,
            many,
            many_deletes,
            no_ranges,
            reversed,
            beyond,
            busy_beyond,
        ] {
            let encoded = encode_frame(&frame);
            assert!(
                matches!(
                    decode_frame(&encoded[1..]),
                    Err(DecodeError::Invalid { .. })
                ),
                "{frame:?}"
            );
        }
        assert!(decode_frame(&[]).is_err());
        assert!(decode_frame(&[MIGRATION_VERSION, 0xEE]).is_err());
        assert!(decode_frame(&[MIGRATION_VERSION + 1, 0]).is_err());
    }

    #[test]
    fn a_batch_carries_its_deletions_and_counts_them() {
        let entries = vec![entry("a", 3, None)];
        let long = Bytes::from(vec![b'k'; FRAME_PAYLOAD_BYTES / 2 + 1]);
        let deletes = vec![Bytes::from_static(b"gone"), long.clone(), long];
        let frames = frames_of_batch(9, true, &entries, &deletes);
        let delete_frames = frames
            .iter()
            .filter(|frame| matches!(frame, MigrationFrame::Deletes { .. }))
            .count();
        assert_eq!(
            delete_frames, 2,
            "deletions are packed within the frame payload"
        );
        let complete = reassemble(frames.clone()).unwrap().expect("complete");
        assert_eq!(complete.entries, entries);
        assert_eq!(complete.deletes, deletes);
        // A commit naming a deletion that did not arrive.
        let mut short = frames;
        short.retain(|frame| !matches!(frame, MigrationFrame::Deletes { .. }));
        assert!(matches!(
            reassemble(short),
            Err(AssemblyError::CountMismatch {
                committed: 3,
                received: 0
            })
        ));
        // Slots requests and their answers round-trip.
        let ranges = vec![WireRange { start: 0, end: 99 }];
        for frame in [
            MigrationFrame::Slots {
                batch: 3,
                request: SlotsRequest::Flip {
                    migration: 7,
                    ranges,
                },
            },
            MigrationFrame::Ack {
                batch: 3,
                outcome: AckOutcome::Owned { epoch: 12 },
            },
        ] {
            let encoded = encode_frame(&frame);
            assert_eq!(decode_frame(&encoded[1..]).unwrap(), frame);
        }
    }

    #[test]
    fn error_texts_are_cut_on_a_character_boundary() {
        let text = "é".repeat(ERROR_TEXT_BYTES_MAX);
        let cut = bounded_text(&text);
        assert!(cut.len() <= ERROR_TEXT_BYTES_MAX);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
