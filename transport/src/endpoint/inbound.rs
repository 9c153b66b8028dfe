//! The accepting side: the accept loop, and one task per inbound link that reads the hello,
//! then forwards frames (Bus, Bulk) or serves requests (Request) until the link closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::endpoint::links::LinkTable;
use crate::endpoint::request::{decode_envelope, EnvelopeKind, Responder};
use crate::endpoint::stats::LinkCounters;
use crate::endpoint::{write_frames, EventSink};
use crate::framing::decode_hello;
use crate::tls::PeerIdentity;
use crate::{
    Accept, AcceptedLink, Channel, Direction, EndpointConfig, FrameReader, FramedLink,
    InboundFrame, InboundRequest, LinkError, Listener, PeerAddr, TransportEvent,
};

/// What inbound link tasks share.
pub(crate) struct InboundContext {
    pub(crate) config: Arc<EndpointConfig>,
    pub(crate) events: EventSink,
    pub(crate) bus: mpsc::Sender<InboundFrame>,
    pub(crate) bulk: mpsc::Sender<InboundFrame>,
    pub(crate) requests: mpsc::Sender<InboundRequest>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) links: Arc<Semaphore>,
    /// Refusals and faulty closes, by cause.
    pub(crate) counters: Arc<LinkCounters>,
    /// The endpoint's task tracker: inbound link tasks are spawned on it.
    pub(crate) tasks: TaskTracker,
    /// Where a link is listed once its hello named the peer.
    pub(crate) link_table: Arc<LinkTable>,
}

/// Accepts links until the listener closes or the endpoint shuts down.
pub(crate) async fn run_accept_loop(mut listener: Box<dyn Listener>, context: Arc<InboundContext>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = context.shutdown.cancelled() => {
                listener.close().await;
                return;
            }
        };
        match accepted {
            None => {
                tracing::warn!("the transport listener closed; no more inbound links");
                return;
            }
            Some(Accept::Rejected { remote, reason }) => {
                tracing::warn!(%remote, %reason, "inbound connection rejected");
                context.counters.count_refused(&reason);
                context
                    .events
                    .emit(TransportEvent::Rejected { remote, reason });
            }
            Some(Accept::Link(link)) => handle_accepted(link, &context),
        }
    }
}

fn handle_accepted(link: AcceptedLink, context: &Arc<InboundContext>) {
    match Arc::clone(&context.links).try_acquire_owned() {
        Ok(permit) => {
            context
                .tasks
                .spawn(serve_inbound(link, Arc::clone(context), permit));
        }
        Err(_) => {
            let reason = LinkError::Overloaded(format!(
                "{} inbound links already open (inbound_links_max)",
                context.config.inbound_links_max
            ));
            tracing::warn!(remote = %link.remote, %reason, "inbound link refused");
            context.counters.count_refused(&reason);
            context.events.emit(TransportEvent::Rejected {
                remote: link.remote,
                reason,
            });
        }
    }
}

async fn serve_inbound(
    accepted: AcceptedLink,
    context: Arc<InboundContext>,
    _permit: OwnedSemaphorePermit,
) {
    let AcceptedLink {
        channel,
        remote,
        mut link,
        identity,
    } = accepted;
    let peer = tokio::select! {
        peer = read_hello(&mut link.reader, channel, context.config.hello_timeout_ms) => peer,
        () = context.shutdown.cancelled() => return,
    };
    let peer = peer.and_then(|peer| match &identity {
        // Per-node identity: the hello claims only what the dialer's certificate names.
        Some(identity) if !identity.names(peer.host()) => Err(LinkError::Authentication(format!(
            "the hello claims {peer}, which the peer's certificate does not name"
        ))),
        _ => Ok(peer),
    });
    let peer = match peer {
        Ok(peer) => peer,
        Err(reason) => {
            tracing::warn!(%remote, %reason, "inbound link sent no valid hello");
            context.counters.count_refused(&reason);
            context
                .events
                .emit(TransportEvent::Rejected { remote, reason });
            return;
        }
    };
    let _listed = context
        .link_table
        .register(&peer, channel, Direction::Inbound);
    context.events.emit(TransportEvent::Connected {
        peer: peer.clone(),
        channel,
        direction: Direction::Inbound,
    });
    let reason = tokio::select! {
        reason = serve_channel(&peer, channel, link, identity, &context) => reason,
        () = context.shutdown.cancelled() => LinkError::LocalClose,
    };
    context.counters.count_closed(&reason);
    tracing::info!(%peer, %channel, %reason, "inbound link closed");
    context.events.emit(TransportEvent::Closed {
        peer,
        channel,
        direction: Direction::Inbound,
        reason,
    });
}

async fn read_hello(
    reader: &mut FrameReader,
    channel: Channel,
    timeout_ms: u64,
) -> Result<PeerAddr, LinkError> {
    let waited = tokio::time::timeout(Duration::from_millis(timeout_ms), reader.next()).await;
    match waited {
        Err(_) => Err(LinkError::Timeout {
            what: "waiting for the hello",
            after_ms: timeout_ms,
        }),
        Ok(None) => Err(LinkError::PeerClosed),
        Ok(Some(Err(error))) => Err(error),
        Ok(Some(Ok(frame))) => decode_hello(&frame, channel),
    }
}

async fn serve_channel(
    peer: &PeerAddr,
    channel: Channel,
    link: FramedLink,
    identity: Option<PeerIdentity>,
    context: &InboundContext,
) -> LinkError {
    match channel {
        Channel::Bus => forward_frames(peer, channel, link.reader, identity, &context.bus).await,
        Channel::Bulk => forward_frames(peer, channel, link.reader, identity, &context.bulk).await,
        Channel::Request => serve_requests(peer, link, context).await,
    }
}

/// Delivers frames to the owner's queue, waiting when it is full (flow control pushes back
/// on this link's sender only). Frames are discarded if the owner dropped the receiver.
async fn forward_frames(
    peer: &PeerAddr,
    channel: Channel,
    mut reader: FrameReader,
    identity: Option<PeerIdentity>,
    queue: &mpsc::Sender<InboundFrame>,
) -> LinkError {
    loop {
        let payload = match reader.next().await {
            None => return LinkError::PeerClosed,
            Some(Err(error)) => return error,
            Some(Ok(frame)) => frame,
        };
        let frame = InboundFrame {
            from: peer.clone(),
            channel,
            payload,
            identity: identity.clone(),
        };
        if queue.send(frame).await.is_err() {
            tracing::trace!(%peer, %channel, "no receiver for inbound frames; frame discarded");
        }
    }
}

/// Reads requests and writes their responses concurrently, so a slow writer never stops
/// requests from being read and vice versa.
async fn serve_requests(peer: &PeerAddr, link: FramedLink, context: &InboundContext) -> LinkError {
    let FramedLink {
        mut reader,
        mut writer,
    } = link;
    let (responses, mut response_queue) = mpsc::channel(context.config.requests_outstanding_max);
    tokio::select! {
        reason = write_frames(&mut writer, &mut response_queue, None) => reason,
        reason = read_requests(peer, &mut reader, responses, context) => reason,
    }
}

async fn read_requests(
    peer: &PeerAddr,
    reader: &mut FrameReader,
    responses: mpsc::Sender<Bytes>,
    context: &InboundContext,
) -> LinkError {
    let frame_bytes_max = context.config.frame_limits.request_frame_bytes_max;
    loop {
        let frame = match reader.next().await {
            None => return LinkError::PeerClosed,
            Some(Err(error)) => return error,
            Some(Ok(frame)) => frame,
        };
        let (id, payload) = match decode_envelope(frame) {
            Ok((EnvelopeKind::Request, id, payload)) => (id, payload),
            Ok((kind, ..)) => {
                return LinkError::Protocol(format!("expected a request, received {kind:?}"));
            }
            Err(error) => return error,
        };
        let request = InboundRequest {
            from: peer.clone(),
            payload,
            responder: Responder::new(id, responses.clone(), frame_bytes_max),
        };
        // If the owner dropped its receiver, the request (and its responder) is dropped here,
        // which tells the requester it went unanswered.
        let _ = context.requests.send(request).await;
    }
}
