//! Stream tags of the transport's bulk channel: the one byte in front of every bulk frame
//! that says which stream it belongs to. The runtime's demultiplexer
//! (`runtime/bulk_demux.rs`) routes each frame by its tag to the task that consumes that
//! kind, so replication never sees a migration frame and neither knows of the other.

use bytes::Bytes;

/// The kinds of stream carried on the bulk channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum StreamKind {
    /// Master ⇄ replica replication (`crate::replication::stream`).
    Replication,
    /// Source ⇄ target slot migration (reserved for the slot-migration streams).
    SlotMigration,
}

impl StreamKind {
    /// Every kind, for tables indexed by kind.
    pub(crate) const ALL: [StreamKind; 2] = [StreamKind::Replication, StreamKind::SlotMigration];

    /// The tag byte on the wire.
    pub(crate) const fn tag(self) -> u8 {
        match self {
            StreamKind::Replication => 1,
            StreamKind::SlotMigration => 2,
        }
    }

    /// The kind of a tag byte; `None` for an unknown tag (the frame is dropped and counted,
    /// never given to a default consumer).
    pub(crate) fn from_tag(tag: u8) -> Option<StreamKind> {
        StreamKind::ALL.into_iter().find(|kind| kind.tag() == tag)
    }
}

/// Splits a received bulk frame into its stream kind and body (zero copy). `None` for an
/// empty frame or an unknown tag.
pub(crate) fn split(frame: &Bytes) -> Option<(StreamKind, Bytes)> {
    let kind = StreamKind::from_tag(*frame.first()?)?;
    Some((kind, frame.slice(1..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_unknown_tags_are_refused() {
        for kind in StreamKind::ALL {
            let frame = Bytes::from(vec![kind.tag(), 7, 8]);
            assert_eq!(split(&frame), Some((kind, Bytes::from_static(&[7, 8]))));
        }
        assert_eq!(split(&Bytes::new()), None);
        assert_eq!(split(&Bytes::from_static(&[0, 1])), None);
        assert_eq!(split(&Bytes::from_static(&[200])), None);
    }
}
