//! One outbound link: dial, announce ourselves, send queued frames, read responses, and on
//! failure reconnect with bounded exponential backoff until cancelled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::backoff_delay;
use crate::endpoint::links::LinkTable;
use crate::endpoint::request::{decode_envelope, EnvelopeKind, PendingRequests};
use crate::endpoint::{write_frames, EventSink};
use crate::framing::encode_hello;
use crate::rng::SplitMix64;
use crate::{
    Channel, Direction, EndpointConfig, FrameReader, FramedLink, LinkError, PeerAddr, RequestError,
    Transport, TransportEvent,
};

/// Everything one outbound link task needs (it holds no reference to the endpoint, so the
/// endpoint shuts down when its last handle is dropped).
pub(crate) struct OutboundLink {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) local: PeerAddr,
    pub(crate) peer: PeerAddr,
    pub(crate) channel: Channel,
    pub(crate) config: Arc<EndpointConfig>,
    pub(crate) events: EventSink,
    pub(crate) pending: Arc<PendingRequests>,
    pub(crate) jitter: Arc<Mutex<SplitMix64>>,
    pub(crate) cancel: CancellationToken,
    /// Where the link is listed while it is established.
    pub(crate) links: Arc<LinkTable>,
    /// Bytes queued per channel (the queue's frames are taken off as they are written).
    pub(crate) queued_bytes: Arc<[AtomicU64; 3]>,
}

impl OutboundLink {
    /// Runs the link until cancelled: connect, drive, report, back off, repeat.
    pub(crate) async fn run(self, mut queue: mpsc::Receiver<Bytes>) {
        let mut attempt: u32 = 0;
        loop {
            let last_error = match self.open().await {
                Ok(link) => {
                    attempt = 0;
                    let _listed =
                        self.links
                            .register(&self.peer, self.channel, Direction::Outbound);
                    self.emit(TransportEvent::Connected {
                        peer: self.peer.clone(),
                        channel: self.channel,
                        direction: Direction::Outbound,
                    });
                    let reason = self.drive(link, &mut queue).await;
                    self.handle_closed(&reason, &mut queue);
                    reason
                }
                Err(error) => error,
            };
            if self.cancel.is_cancelled() {
                self.pending.fail_all(&self.peer, &LinkError::LocalClose);
                return;
            }
            attempt = attempt.saturating_add(1);
            let delay = backoff_delay(&self.config.backoff, attempt, &mut self.jitter.lock());
            tracing::debug!(peer = %self.peer, channel = %self.channel, attempt, ?delay, error = %last_error, "reconnecting");
            self.emit(TransportEvent::Reconnecting {
                peer: self.peer.clone(),
                channel: self.channel,
                attempt,
                delay,
                last_error,
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => return,
            }
        }
    }

    /// Dials and sends the hello, within the connect timeout.
    async fn open(&self) -> Result<FramedLink, LinkError> {
        let after_ms = self.config.connect_timeout_ms;
        let connecting = async {
            let limits = self.config.frame_limits;
            let mut link = self
                .transport
                .connect(&self.peer, self.channel, limits)
                .await?;
            link.writer
                .send(encode_hello(self.channel, &self.local))
                .await?;
            Ok(link)
        };
        tokio::select! {
            outcome = tokio::time::timeout(Duration::from_millis(after_ms), connecting) => {
                outcome.unwrap_or(Err(LinkError::Timeout { what: "connecting", after_ms }))
            }
            () = self.cancel.cancelled() => Err(LinkError::LocalClose),
        }
    }

    /// Sends queued frames and reads responses until the link fails or is cancelled.
    async fn drive(&self, link: FramedLink, queue: &mut mpsc::Receiver<Bytes>) -> LinkError {
        let FramedLink {
            mut reader,
            mut writer,
        } = link;
        tokio::select! {
            reason = write_frames(
                &mut writer,
                queue,
                Some(&self.queued_bytes[self.channel.index()]),
            ) => reason,
            reason = self.read_responses(&mut reader) => reason,
            () = self.cancel.cancelled() => LinkError::LocalClose,
        }
    }

    /// Reads what the accepting side sends back: responses on `Request`, nothing elsewhere.
    async fn read_responses(&self, reader: &mut FrameReader) -> LinkError {
        loop {
            let frame = match reader.next().await {
                None => return LinkError::PeerClosed,
                Some(Err(error)) => return error,
                Some(Ok(frame)) => frame,
            };
            if self.channel != Channel::Request {
                return LinkError::Protocol(format!(
                    "the accepting side sent a frame back on the {} channel",
                    self.channel
                ));
            }
            match decode_envelope(frame) {
                Ok((EnvelopeKind::Response, id, payload)) => self.pending.complete(id, Ok(payload)),
                Ok((EnvelopeKind::Unanswered, id, _)) => {
                    let peer = self.peer.clone();
                    self.pending
                        .complete(id, Err(RequestError::Unanswered { peer }));
                }
                Ok((EnvelopeKind::Request, ..)) => {
                    return LinkError::Protocol(
                        "a request arrived on the response direction".to_string(),
                    );
                }
                Err(error) => return error,
            }
        }
    }

    /// Reports the close. On `Request` it also fails the outstanding requests and discards
    /// the queued ones (their callers were just failed), so a request is never sent after its
    /// caller was told the link closed.
    fn handle_closed(&self, reason: &LinkError, queue: &mut mpsc::Receiver<Bytes>) {
        tracing::info!(peer = %self.peer, channel = %self.channel, %reason, "outbound link closed");
        self.emit(TransportEvent::Closed {
            peer: self.peer.clone(),
            channel: self.channel,
            direction: Direction::Outbound,
            reason: reason.clone(),
        });
        if self.channel == Channel::Request {
            self.pending.fail_all(&self.peer, reason);
            let queued = &self.queued_bytes[self.channel.index()];
            while let Ok(frame) = queue.try_recv() {
                queued.fetch_sub(frame.len() as u64, Ordering::Relaxed);
            }
        }
    }

    fn emit(&self, event: TransportEvent) {
        self.events.emit(event);
    }
}
