//! Logical channels and their frame-size bounds.
//!
//! Every peer pair carries three independent channels so that bulk traffic never delays the
//! gossip bus. Each channel travels on its own flow-controlled link (a TCP connection, a QUIC
//! stream, a simulated pipe), and each has its own maximum frame length.

use std::fmt;

/// Default maximum frame on [`Channel::Bus`]: 1 MiB.
pub const BUS_FRAME_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// Default maximum frame on [`Channel::Bulk`]: 64 MiB.
pub const BULK_FRAME_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// Default maximum frame on [`Channel::Request`]: 64 MiB (request header included).
pub const REQUEST_FRAME_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// The largest limit any channel may be configured with: the wire length prefix is a `u32`.
pub const FRAME_BYTES_MAX_LIMIT: usize = u32::MAX as usize;

/// A logical channel between two nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Small control messages (ping, pong, fail, votes). Sending never blocks: frames are
    /// dropped and counted when the per-peer queue is full.
    Bus,
    /// Slot migration and replication streams. Sending awaits queue space (backpressure).
    Bulk,
    /// Client operations forwarded to the owning node; each request gets one matching response.
    Request,
}

impl Channel {
    /// All channels, in tag order.
    pub const ALL: [Channel; 3] = [Channel::Bus, Channel::Bulk, Channel::Request];

    /// The one-byte tag that identifies the channel on the wire.
    pub fn tag(self) -> u8 {
        match self {
            Channel::Bus => 0,
            Channel::Bulk => 1,
            Channel::Request => 2,
        }
    }

    /// The channel for a wire tag, or `None` for an unknown tag.
    pub fn from_tag(tag: u8) -> Option<Channel> {
        Channel::ALL
            .into_iter()
            .find(|channel| channel.tag() == tag)
    }

    /// The channel's position in per-channel tables (`0..3`).
    pub(crate) fn index(self) -> usize {
        usize::from(self.tag())
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Channel::Bus => "bus",
            Channel::Bulk => "bulk",
            Channel::Request => "request",
        })
    }
}

/// The maximum frame length accepted on each channel, in bytes.
///
/// A frame announcing a larger length closes the link with
/// [`LinkError::FrameTooLarge`](crate::LinkError::FrameTooLarge) before anything of the announced
/// size is allocated; a local send of a larger frame fails without touching the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest [`Channel::Bus`] frame (default [`BUS_FRAME_BYTES_MAX_DEFAULT`]).
    pub bus_frame_bytes_max: usize,
    /// Largest [`Channel::Bulk`] frame (default [`BULK_FRAME_BYTES_MAX_DEFAULT`]).
    pub bulk_frame_bytes_max: usize,
    /// Largest [`Channel::Request`] frame including the 9-byte request header (default
    /// [`REQUEST_FRAME_BYTES_MAX_DEFAULT`]).
    pub request_frame_bytes_max: usize,
}

impl FrameLimits {
    /// The limit for `channel`.
    pub fn for_channel(&self, channel: Channel) -> usize {
        match channel {
            Channel::Bus => self.bus_frame_bytes_max,
            Channel::Bulk => self.bulk_frame_bytes_max,
            Channel::Request => self.request_frame_bytes_max,
        }
    }
}

impl Default for FrameLimits {
    fn default() -> FrameLimits {
        FrameLimits {
            bus_frame_bytes_max: BUS_FRAME_BYTES_MAX_DEFAULT,
            bulk_frame_bytes_max: BULK_FRAME_BYTES_MAX_DEFAULT,
            request_frame_bytes_max: REQUEST_FRAME_BYTES_MAX_DEFAULT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_unknown_tags_are_rejected() {
        for channel in Channel::ALL {
            assert_eq!(Channel::from_tag(channel.tag()), Some(channel));
        }
        assert_eq!(Channel::from_tag(3), None);
    }
}
