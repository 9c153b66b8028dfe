//! Requests and responses on [`Channel::Request`](crate::Channel::Request): the envelope,
//! the table that matches responses to outstanding requests, and the responder handle.
//!
//! Envelope: `kind` (1 byte), request id (8 bytes, big-endian), payload. Ids are unique per
//! peer link set; many requests may be outstanding and responses may come in any order.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::{LinkError, PeerAddr, RequestError};

/// Bytes of envelope before the payload.
pub(crate) const REQUEST_HEADER_BYTES: usize = 9;

/// What an envelope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EnvelopeKind {
    /// A request to execute.
    Request,
    /// The response to request `id`.
    Response,
    /// The remote side dropped request `id` without responding.
    Unanswered,
}

impl EnvelopeKind {
    /// The kind's byte on the wire.
    pub(crate) fn tag(self) -> u8 {
        match self {
            EnvelopeKind::Request => 0,
            EnvelopeKind::Response => 1,
            EnvelopeKind::Unanswered => 2,
        }
    }
}

/// Builds an envelope frame.
pub(crate) fn encode_envelope(kind: EnvelopeKind, id: u64, payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(REQUEST_HEADER_BYTES + payload.len());
    frame.put_u8(kind.tag());
    frame.put_u64(id);
    frame.put_slice(payload);
    frame.freeze()
}

/// Splits an envelope frame into kind, id and payload (zero copy).
pub(crate) fn decode_envelope(mut frame: Bytes) -> Result<(EnvelopeKind, u64, Bytes), LinkError> {
    if frame.len() < REQUEST_HEADER_BYTES {
        return Err(LinkError::Protocol(format!(
            "request envelope of {} bytes is shorter than its {REQUEST_HEADER_BYTES}-byte header",
            frame.len()
        )));
    }
    let kind = match frame.get_u8() {
        0 => EnvelopeKind::Request,
        1 => EnvelopeKind::Response,
        2 => EnvelopeKind::Unanswered,
        other => {
            return Err(LinkError::Protocol(format!(
                "unknown request envelope kind {other}"
            )));
        }
    };
    let id = frame.get_u64();
    Ok((kind, id, frame))
}

type Completion = oneshot::Sender<Result<Bytes, RequestError>>;

/// Outstanding requests to one peer, keyed by id.
#[derive(Default)]
pub(crate) struct PendingRequests {
    waiting: Mutex<HashMap<u64, Completion>>,
}

impl PendingRequests {
    /// Registers request `id`; the returned guard unregisters it when dropped (timeout,
    /// cancellation), so abandoned requests never leak entries.
    pub(crate) fn register(
        self: &Arc<Self>,
        id: u64,
    ) -> (PendingGuard, oneshot::Receiver<Result<Bytes, RequestError>>) {
        let (sender, receiver) = oneshot::channel();
        let previous = self.waiting.lock().insert(id, sender);
        debug_assert!(
            previous.is_none(),
            "request id {id} reused while outstanding"
        );
        let guard = PendingGuard {
            pending: Arc::clone(self),
            id,
        };
        (guard, receiver)
    }

    /// Delivers the outcome of request `id`; unknown ids (timed out) are ignored.
    pub(crate) fn complete(&self, id: u64, outcome: Result<Bytes, RequestError>) {
        let waiter = self.waiting.lock().remove(&id);
        if let Some(waiter) = waiter {
            // The requester may have given up in the meantime; nothing to do then.
            let _ = waiter.send(outcome);
        }
    }

    /// Fails every outstanding request because the link to `peer` closed.
    pub(crate) fn fail_all(&self, peer: &PeerAddr, reason: &LinkError) {
        let drained: Vec<Completion> = self
            .waiting
            .lock()
            .drain()
            .map(|(_, waiter)| waiter)
            .collect();
        for waiter in drained {
            let _ = waiter.send(Err(RequestError::LinkClosed {
                peer: peer.clone(),
                reason: reason.clone(),
            }));
        }
    }

    /// How many requests are outstanding.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.lock().len()
    }
}

/// Removes a request from [`PendingRequests`] when dropped.
pub(crate) struct PendingGuard {
    pending: Arc<PendingRequests>,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.pending.waiting.lock().remove(&self.id);
    }
}

/// Why a response could not be queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespondError {
    /// The response exceeds this node's request-channel frame limit; nothing was sent and the
    /// requester is told the request went unanswered.
    #[error("response of {length} bytes exceeds the maximum of {max_bytes} bytes")]
    FrameTooLarge {
        /// The framed length in bytes.
        length: usize,
        /// The limit in bytes.
        max_bytes: usize,
    },
    /// The link the request came on closed, or the requester exceeded its outstanding limit.
    #[error("the link to the requester is gone; the response was dropped")]
    LinkGone,
}

/// A request received from a peer, with the handle that answers it.
#[derive(Debug)]
pub struct InboundRequest {
    /// The requester's listening address.
    pub from: PeerAddr,
    /// The request body.
    pub payload: Bytes,
    /// Answers this request (exactly once; dropping it tells the requester "unanswered").
    pub responder: Responder,
}

/// Answers one inbound request. Responses may be sent in any order and from any task.
#[derive(Debug)]
pub struct Responder {
    id: u64,
    responses: mpsc::Sender<Bytes>,
    frame_bytes_max: usize,
    answered: bool,
}

impl Responder {
    pub(crate) fn new(
        id: u64,
        responses: mpsc::Sender<Bytes>,
        frame_bytes_max: usize,
    ) -> Responder {
        Responder {
            id,
            responses,
            frame_bytes_max,
            answered: false,
        }
    }

    /// Queues the response without waiting. The queue holds as many responses as the
    /// requester may have requests outstanding, so it is full only for a misbehaving peer.
    pub fn respond(mut self, payload: Bytes) -> Result<(), RespondError> {
        let length = REQUEST_HEADER_BYTES + payload.len();
        if length > self.frame_bytes_max {
            return Err(RespondError::FrameTooLarge {
                length,
                max_bytes: self.frame_bytes_max,
            });
        }
        self.answered = true;
        let frame = encode_envelope(EnvelopeKind::Response, self.id, &payload);
        self.responses
            .try_send(frame)
            .map_err(|_| RespondError::LinkGone)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let frame = encode_envelope(EnvelopeKind::Unanswered, self.id, &[]);
            let _ = self.responses.try_send(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_short_frames_are_rejected() {
        let frame = encode_envelope(EnvelopeKind::Response, 42, b"value");
        let (kind, id, payload) = decode_envelope(frame).unwrap();
        assert_eq!(
            (kind, id, &payload[..]),
            (EnvelopeKind::Response, 42, &b"value"[..])
        );
        assert!(decode_envelope(Bytes::from_static(b"\x01\x00")).is_err());
        assert!(decode_envelope(Bytes::from_static(&[9; 9])).is_err());
    }

    #[tokio::test]
    async fn responses_complete_out_of_order_and_dropped_guards_unregister() {
        let pending = Arc::new(PendingRequests::default());
        let (_first_guard, first) = pending.register(1);
        let (second_guard, second) = pending.register(2);
        pending.complete(2, Ok(Bytes::from_static(b"two")));
        pending.complete(1, Ok(Bytes::from_static(b"one")));
        assert_eq!(&second.await.unwrap().unwrap()[..], b"two");
        assert_eq!(&first.await.unwrap().unwrap()[..], b"one");
        drop(second_guard);
        let (guard, _receiver) = pending.register(3);
        assert_eq!(pending.len(), 1);
        drop(guard);
        assert_eq!(pending.len(), 0);
    }

    #[tokio::test]
    async fn a_dropped_responder_reports_unanswered() {
        let (sender, mut receiver) = mpsc::channel(4);
        drop(Responder::new(7, sender, 1 << 20));
        let (kind, id, _) = decode_envelope(receiver.recv().await.unwrap()).unwrap();
        assert_eq!((kind, id), (EnvelopeKind::Unanswered, 7));
    }
}
