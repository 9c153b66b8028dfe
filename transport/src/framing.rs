//! Frames on byte streams, and the hello that opens every link.
//!
//! Wire format of a frame: a 4-byte big-endian length, then that many bytes
//! (`tokio_util::codec::LengthDelimitedCodec`). The reader refuses any length above the
//! channel's maximum before allocating. The first frame on every link is a hello:
//! `"SKV1"`, the channel tag (1 byte), the address length (1 byte), the dialer's listening
//! address (UTF-8). TCP and QUIC share this module; the simulated network carries frames
//! directly but runs the same hello.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec, LengthDelimitedCodecError};

use crate::{Channel, FrameLimits, FramedLink, LinkError, PeerAddr, PEER_ADDR_BYTES_MAX};

/// Magic and protocol version at the start of every hello frame.
const HELLO_MAGIC: &[u8; 4] = b"SKV1";
/// Largest hello frame: magic, channel tag, length byte, address.
const HELLO_BYTES_MAX: usize = HELLO_MAGIC.len() + 2 + PEER_ADDR_BYTES_MAX;
const _: () = assert!(PEER_ADDR_BYTES_MAX <= u8::MAX as usize);

/// Wraps a byte stream pair in length-delimited framing for `channel`.
///
/// Reads longer than `limits.for_channel(channel)` end the reader with
/// [`LinkError::FrameTooLarge`]; truncated frames and garbage end it with an error; nothing
/// panics and nothing of an announced size is allocated before the size is checked.
pub fn framed_byte_link<R, W>(
    reader: R,
    writer: W,
    channel: Channel,
    limits: FrameLimits,
) -> FramedLink
where
    R: AsyncRead + Send + 'static,
    W: AsyncWrite + Send + 'static,
{
    let max_bytes = limits.for_channel(channel);
    let codec = || {
        LengthDelimitedCodec::builder()
            .length_field_type::<u32>()
            .max_frame_length(max_bytes)
            .new_codec()
    };
    let reader = FramedRead::new(reader, codec()).map(move |item| match item {
        Ok(frame) => Ok(frame.freeze()),
        Err(error) => Err(map_read_error(error, channel, max_bytes)),
    });
    let writer = SinkExt::<Bytes>::sink_map_err(FramedWrite::new(writer, codec()), |error| {
        LinkError::from(error)
    });
    FramedLink {
        reader: Box::pin(reader),
        writer: Box::pin(writer),
    }
}

fn map_read_error(error: std::io::Error, channel: Channel, max_bytes: usize) -> LinkError {
    let too_large = error
        .get_ref()
        .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
    if too_large {
        return LinkError::FrameTooLarge { channel, max_bytes };
    }
    if error.kind() == std::io::ErrorKind::Other && error.to_string().contains("bytes remaining") {
        return LinkError::Protocol(
            "the stream ended inside a frame (truncated frame)".to_string(),
        );
    }
    LinkError::from(error)
}

/// Encodes the hello the dialer sends first on every link.
pub(crate) fn encode_hello(channel: Channel, local: &PeerAddr) -> Bytes {
    let address = local.as_str().as_bytes();
    let mut hello = BytesMut::with_capacity(HELLO_MAGIC.len() + 2 + address.len());
    hello.put_slice(HELLO_MAGIC);
    hello.put_u8(channel.tag());
    hello.put_u8(address.len() as u8);
    hello.put_slice(address);
    hello.freeze()
}

/// Decodes a hello, checking it names `expected` channel. Returns the dialer's address.
pub(crate) fn decode_hello(frame: &[u8], expected: Channel) -> Result<PeerAddr, LinkError> {
    let malformed = |what: &str| LinkError::Protocol(format!("malformed hello: {what}"));
    if frame.len() > HELLO_BYTES_MAX {
        return Err(malformed("longer than the maximum hello"));
    }
    let Some(rest) = frame.strip_prefix(HELLO_MAGIC.as_slice()) else {
        return Err(malformed("wrong magic or protocol version"));
    };
    let [tag, length, address @ ..] = rest else {
        return Err(malformed("truncated"));
    };
    if Channel::from_tag(*tag) != Some(expected) {
        return Err(malformed("channel does not match the link"));
    }
    if usize::from(*length) != address.len() {
        return Err(malformed("address length does not match"));
    }
    let address = std::str::from_utf8(address).map_err(|_| malformed("address is not UTF-8"))?;
    PeerAddr::new(address).map_err(|error| malformed(&error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;

    #[test]
    fn hello_round_trips_and_rejects_mismatches() {
        let address = PeerAddr::new("10.0.0.1:7000").unwrap();
        let hello = encode_hello(Channel::Bulk, &address);
        assert_eq!(decode_hello(&hello, Channel::Bulk).unwrap(), address);
        assert!(decode_hello(&hello, Channel::Bus).is_err());
        assert!(decode_hello(&hello[..hello.len() - 1], Channel::Bulk).is_err());
        assert!(decode_hello(b"XKV1\x01\x00", Channel::Bulk).is_err());
        assert!(decode_hello(b"", Channel::Bulk).is_err());
    }

    #[tokio::test]
    async fn frames_round_trip_over_a_byte_pipe() {
        let (left, right) = tokio::io::duplex(1 << 16);
        let (left_read, left_write) = tokio::io::split(left);
        let (right_read, right_write) = tokio::io::split(right);
        let limits = FrameLimits::default();
        let mut sender = framed_byte_link(left_read, left_write, Channel::Bus, limits);
        let mut receiver = framed_byte_link(right_read, right_write, Channel::Bus, limits);
        sender
            .writer
            .send(Bytes::from_static(b"hello"))
            .await
            .unwrap();
        let frame = receiver.reader.next().await.unwrap().unwrap();
        assert_eq!(&frame[..], b"hello");
    }

    #[tokio::test]
    async fn a_huge_length_prefix_is_refused_without_allocating() {
        let (mut raw, right) = tokio::io::duplex(1 << 10);
        let (right_read, right_write) = tokio::io::split(right);
        let mut receiver = framed_byte_link(
            right_read,
            right_write,
            Channel::Bus,
            FrameLimits::default(),
        );
        raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let error = receiver.reader.next().await.unwrap().unwrap_err();
        assert!(matches!(
            error,
            LinkError::FrameTooLarge {
                channel: Channel::Bus,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_truncated_frame_ends_the_reader_with_an_error() {
        let (mut raw, right) = tokio::io::duplex(1 << 10);
        let (right_read, right_write) = tokio::io::split(right);
        let mut receiver = framed_byte_link(
            right_read,
            right_write,
            Channel::Bus,
            FrameLimits::default(),
        );
        raw.write_all(&100u32.to_be_bytes()).await.unwrap();
        raw.write_all(b"short").await.unwrap();
        drop(raw);
        let error = receiver.reader.next().await.unwrap().unwrap_err();
        assert!(matches!(error, LinkError::Protocol(_)), "{error:?}");
    }

    #[tokio::test]
    async fn random_bytes_never_panic_the_decoders() {
        let mut rng = crate::rng::SplitMix64::new(99);
        for round in 0..300 {
            let length = rng.below_or_equal(600) as usize;
            let mut garbage: Vec<u8> = (0..length).map(|_| rng.next_u64() as u8).collect();
            if round % 3 == 0 && garbage.len() >= 4 {
                garbage[..4].copy_from_slice(HELLO_MAGIC);
            }
            let _ = decode_hello(&garbage, Channel::Bus);
            let _ = crate::endpoint::request::decode_envelope(Bytes::from(garbage.clone()));
            let (mut raw, right) = tokio::io::duplex(1 << 12);
            let (right_read, right_write) = tokio::io::split(right);
            let limits = FrameLimits {
                bus_frame_bytes_max: 512,
                ..FrameLimits::default()
            };
            let mut receiver = framed_byte_link(right_read, right_write, Channel::Bus, limits);
            raw.write_all(&garbage).await.unwrap();
            drop(raw);
            while let Some(Ok(frame)) = receiver.reader.next().await {
                assert!(frame.len() <= 512);
            }
        }
    }
}
