//! The TCP cluster-authentication handshake: a challenge-response over fresh nonces from both
//! sides, proving knowledge of the cluster secret with HMAC-SHA256, before any frame.
//!
//! ```text
//! dialer   → acceptor : "SKVA" | version 1 | channel tag | dialer nonce (32)        = 38 bytes
//! acceptor → dialer   : acceptor nonce (32) | HMAC(secret, "slotkv-acceptor" | tag | nonces)
//! dialer   → acceptor : HMAC(secret, "slotkv-dialer" | tag | nonces)                 = 32 bytes
//! acceptor → dialer   : verdict (1 = accepted, 0 = rejected)
//! ```
//!
//! Every read has a fixed size, so a peer cannot make either side allocate. The role labels
//! stop a proof from being reflected back; the nonces stop replays; the tag binds the proof to
//! the channel. Proofs are compared in constant time (`ring::hmac::verify`).

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Channel, LinkError};

const MAGIC: &[u8; 4] = b"SKVA";
const VERSION: u8 = 1;
const NONCE_BYTES: usize = 32;
const PROOF_BYTES: usize = 32;
const OPENING_BYTES: usize = MAGIC.len() + 2 + NONCE_BYTES;
const VERDICT_ACCEPTED: u8 = 1;
const VERDICT_REJECTED: u8 = 0;
const ACCEPTOR_LABEL: &[u8] = b"slotkv-acceptor";
const DIALER_LABEL: &[u8] = b"slotkv-dialer";

fn fresh_nonce() -> Result<[u8; NONCE_BYTES], LinkError> {
    let mut nonce = [0u8; NONCE_BYTES];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| LinkError::Io("the system random number generator failed".to_string()))?;
    Ok(nonce)
}

/// The message a proof signs: role label, channel tag, dialer nonce, acceptor nonce.
fn transcript(
    label: &[u8],
    tag: u8,
    dialer: &[u8; NONCE_BYTES],
    acceptor: &[u8; NONCE_BYTES],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(label.len() + 1 + 2 * NONCE_BYTES);
    message.extend_from_slice(label);
    message.push(tag);
    message.extend_from_slice(dialer);
    message.extend_from_slice(acceptor);
    message
}

fn closed_during_handshake(error: std::io::Error, what: &str) -> LinkError {
    match LinkError::from(error) {
        LinkError::PeerClosed => LinkError::Authentication(format!(
            "the peer closed the connection {what} (it may not share our cluster secret)"
        )),
        other => other,
    }
}

/// Runs the dialer's side on `stream` for `channel`.
pub(crate) async fn dial<S>(
    stream: &mut S,
    key: &hmac::Key,
    channel: Channel,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let dialer_nonce = fresh_nonce()?;
    let mut opening = [0u8; OPENING_BYTES];
    opening[..4].copy_from_slice(MAGIC);
    opening[4] = VERSION;
    opening[5] = channel.tag();
    opening[6..].copy_from_slice(&dialer_nonce);
    stream.write_all(&opening).await?;

    let mut challenge = [0u8; NONCE_BYTES + PROOF_BYTES];
    stream
        .read_exact(&mut challenge)
        .await
        .map_err(|error| closed_during_handshake(error, "before sending its challenge"))?;
    let mut acceptor_nonce = [0u8; NONCE_BYTES];
    acceptor_nonce.copy_from_slice(&challenge[..NONCE_BYTES]);
    let expected = transcript(
        ACCEPTOR_LABEL,
        channel.tag(),
        &dialer_nonce,
        &acceptor_nonce,
    );
    if hmac::verify(key, &expected, &challenge[NONCE_BYTES..]).is_err() {
        return Err(LinkError::Authentication(
            "the peer failed to prove the cluster secret (wrong secret on one side)".to_string(),
        ));
    }
    let proof = hmac::sign(
        key,
        &transcript(DIALER_LABEL, channel.tag(), &dialer_nonce, &acceptor_nonce),
    );
    stream.write_all(proof.as_ref()).await?;
    let verdict = stream
        .read_u8()
        .await
        .map_err(|error| closed_during_handshake(error, "before its verdict"))?;
    if verdict != VERDICT_ACCEPTED {
        return Err(LinkError::Authentication(
            "the peer rejected our cluster secret".to_string(),
        ));
    }
    Ok(())
}

/// Runs the acceptor's side on `stream`; returns the channel the dialer asked for.
pub(crate) async fn accept<S>(stream: &mut S, key: &hmac::Key) -> Result<Channel, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut opening = [0u8; OPENING_BYTES];
    stream
        .read_exact(&mut opening)
        .await
        .map_err(|error| closed_during_handshake(error, "before its opening"))?;
    if &opening[..4] != MAGIC || opening[4] != VERSION {
        return Err(LinkError::Authentication(
            "the dialer did not start the slotkv handshake (wrong protocol or version)".to_string(),
        ));
    }
    let channel = Channel::from_tag(opening[5])
        .ok_or_else(|| LinkError::Protocol(format!("unknown channel tag {}", opening[5])))?;
    let mut dialer_nonce = [0u8; NONCE_BYTES];
    dialer_nonce.copy_from_slice(&opening[6..]);
    let acceptor_nonce = fresh_nonce()?;
    let proof = hmac::sign(
        key,
        &transcript(
            ACCEPTOR_LABEL,
            channel.tag(),
            &dialer_nonce,
            &acceptor_nonce,
        ),
    );
    let mut challenge = [0u8; NONCE_BYTES + PROOF_BYTES];
    challenge[..NONCE_BYTES].copy_from_slice(&acceptor_nonce);
    challenge[NONCE_BYTES..].copy_from_slice(proof.as_ref());
    stream.write_all(&challenge).await?;

    let mut dialer_proof = [0u8; PROOF_BYTES];
    stream
        .read_exact(&mut dialer_proof)
        .await
        .map_err(|error| closed_during_handshake(error, "before proving the secret"))?;
    let expected = transcript(DIALER_LABEL, channel.tag(), &dialer_nonce, &acceptor_nonce);
    if hmac::verify(key, &expected, &dialer_proof).is_err() {
        // Best effort: tell the dialer why before closing.
        let _ = stream.write_all(&[VERDICT_REJECTED]).await;
        return Err(LinkError::Authentication(
            "the dialer failed to prove the cluster secret (wrong secret on one side)".to_string(),
        ));
    }
    stream.write_all(&[VERDICT_ACCEPTED]).await?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &[u8]) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, secret)
    }

    #[tokio::test]
    async fn matching_secrets_authenticate_and_carry_the_channel() {
        let (mut dialer, mut acceptor) = tokio::io::duplex(1024);
        let shared = key(b"0123456789abcdef");
        let (dialed, accepted) = tokio::join!(
            dial(&mut dialer, &shared, Channel::Bulk),
            accept(&mut acceptor, &shared)
        );
        assert_eq!(dialed, Ok(()));
        assert_eq!(accepted, Ok(Channel::Bulk));
    }

    #[tokio::test]
    async fn different_secrets_fail_on_both_sides() {
        let (mut dialer, mut acceptor) = tokio::io::duplex(1024);
        let (dialer_key, acceptor_key) = (key(b"0123456789abcdef"), key(b"fedcba9876543210"));
        let (dialed, accepted) = tokio::join!(
            async {
                let outcome = dial(&mut dialer, &dialer_key, Channel::Bus).await;
                drop(dialer);
                outcome
            },
            accept(&mut acceptor, &acceptor_key)
        );
        assert!(
            matches!(dialed, Err(LinkError::Authentication(_))),
            "{dialed:?}"
        );
        assert!(
            matches!(accepted, Err(LinkError::Authentication(_))),
            "{accepted:?}"
        );
    }

    #[tokio::test]
    async fn garbage_instead_of_an_opening_is_rejected() {
        let (mut dialer, mut acceptor) = tokio::io::duplex(1024);
        dialer.write_all(&[0xff; OPENING_BYTES]).await.unwrap();
        let accepted = accept(&mut acceptor, &key(b"0123456789abcdef")).await;
        assert!(matches!(accepted, Err(LinkError::Authentication(_))));
    }
}
