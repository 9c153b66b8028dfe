//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) and for the corpus replay test,
//! which runs every stored input through them on stable: the readers of bytes a peer sends
//! before and after authentication. Each must never panic; a decoder with an encoder must
//! round-trip what it accepts. Not part of the library's API: hidden, and may change.

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::endpoint::request::{decode_envelope, encode_envelope, EnvelopeKind};
use crate::framing::{decode_hello, encode_hello, framed_byte_link};
use crate::tcp::handshake;
use crate::{Channel, FrameLimits, PeerAddr};

/// Which reader an input is for: one fuzz target and one corpus folder each
/// (`fuzz/corpus/<name>`, named by [`Target::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The hello that opens every link, read for each channel.
    Hello,
    /// A request-channel envelope (kind, id, payload).
    Envelope,
    /// A byte stream cut into length-delimited frames under small limits.
    Frames,
    /// The TCP transport's HMAC handshake, answered by the accepting side.
    TcpHandshake,
}

/// Frame limit of the [`Target::Frames`] reader: small, so oversized lengths are common.
const FUZZ_FRAME_BYTES_MAX: usize = 4 << 10;

impl Target {
    /// Every target.
    pub const ALL: [Target; 4] = [
        Target::Hello,
        Target::Envelope,
        Target::Frames,
        Target::TcpHandshake,
    ];

    /// The target's name: its fuzz target's and its corpus folder's.
    pub fn name(self) -> &'static str {
        match self {
            Target::Hello => "hello",
            Target::Envelope => "envelope",
            Target::Frames => "frames",
            Target::TcpHandshake => "tcp_handshake",
        }
    }

    /// Valid inputs to start fuzzing from (what `fuzz/seed-corpus` writes into the corpus).
    pub fn seeds(self) -> Vec<Vec<u8>> {
        let addresses = ["10.0.0.1:7000", "node-a.example:17000", "[::1]:7000"];
        match self {
            Target::Hello => Channel::ALL
                .iter()
                .zip(addresses)
                .filter_map(|(channel, address)| {
                    let address = PeerAddr::new(address).ok()?;
                    Some(encode_hello(*channel, &address).to_vec())
                })
                .collect(),
            Target::Envelope => [
                EnvelopeKind::Request,
                EnvelopeKind::Response,
                EnvelopeKind::Unanswered,
            ]
            .iter()
            .enumerate()
            .map(|(id, kind)| encode_envelope(*kind, id as u64, b"payload").to_vec())
            .collect(),
            Target::Frames => {
                let mut stream = Vec::new();
                for payload in [&b"ping"[..], &[0; 300][..], &[]] {
                    stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                    stream.extend_from_slice(payload);
                }
                let truncated = stream[..stream.len() - 100].to_vec();
                vec![stream, truncated, (u32::MAX).to_be_bytes().to_vec()]
            }
            Target::TcpHandshake => Channel::ALL
                .iter()
                .map(|channel| {
                    // A well-formed opening and a proof made without the secret.
                    let mut opening = b"SKVA\x01".to_vec();
                    opening.push(channel.tag());
                    opening.extend_from_slice(&[7; 32]);
                    opening.extend_from_slice(&[9; 32]);
                    opening
                })
                .collect(),
        }
    }

    /// Runs one input; panics only on a defect.
    pub fn run(self, data: &[u8]) {
        match self {
            Target::Hello => hello(data),
            Target::Envelope => envelope(data),
            Target::Frames => frames(data),
            Target::TcpHandshake => tcp_handshake(data),
        }
    }
}

fn hello(data: &[u8]) {
    for channel in Channel::ALL {
        if let Ok(address) = decode_hello(data, channel) {
            let again = decode_hello(&encode_hello(channel, &address), channel);
            assert_eq!(again.ok(), Some(address), "a hello changed in a round trip");
        }
    }
}

fn envelope(data: &[u8]) {
    if let Ok((kind, id, payload)) = decode_envelope(Bytes::copy_from_slice(data)) {
        let again = decode_envelope(encode_envelope(kind, id, &payload))
            .map(|(kind, id, payload)| (kind.tag(), id, payload));
        assert_eq!(
            again.ok(),
            Some((kind.tag(), id, payload)),
            "an envelope changed in a round trip"
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("a fuzz input needs a tokio runtime: {error}"),
    }
}

fn frames(data: &[u8]) {
    let limits = FrameLimits {
        bus_frame_bytes_max: FUZZ_FRAME_BYTES_MAX,
        bulk_frame_bytes_max: FUZZ_FRAME_BYTES_MAX,
        request_frame_bytes_max: FUZZ_FRAME_BYTES_MAX,
    };
    let data = data.to_vec();
    runtime().block_on(async move {
        let (mut remote, local) = tokio::io::duplex(data.len().max(1));
        let (read, write) = tokio::io::split(local);
        let mut link = framed_byte_link(read, write, Channel::Bus, limits);
        // The whole input, then end of stream: the reader must end, never hang or panic.
        let _ = remote.write_all(&data).await;
        drop(remote);
        while let Some(frame) = link.reader.next().await {
            match frame {
                Ok(frame) => assert!(frame.len() <= FUZZ_FRAME_BYTES_MAX, "oversized frame"),
                Err(_) => break,
            }
        }
    });
}

fn tcp_handshake(data: &[u8]) {
    let data = data.to_vec();
    runtime().block_on(async move {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"fuzzing secret");
        let (mut remote, mut local) = tokio::io::duplex(data.len().max(64));
        let _ = remote.write_all(&data).await;
        drop(remote);
        // Garbage never authenticates (a forged MAC would need the secret).
        let accepted = handshake::accept(&mut local, &key).await;
        assert!(accepted.is_err(), "garbage passed the handshake");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_seeds_that_run() {
        for target in Target::ALL {
            let seeds = target.seeds();
            assert!(!seeds.is_empty(), "{} has no seeds", target.name());
            for seed in &seeds {
                target.run(seed);
            }
        }
        for seed in Target::Hello.seeds() {
            assert!(Channel::ALL
                .iter()
                .any(|channel| decode_hello(&seed, *channel).is_ok()));
        }
    }
}
