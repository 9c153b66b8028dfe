//! The peer manager: one [`Endpoint`] per node drives any [`Transport`].
//!
//! It owns everything the transports share, in one place:
//! - per peer, one outbound link task per channel with a bounded queue, reconnecting with
//!   bounded exponential backoff (`outbound.rs`);
//! - the accept loop and one task per inbound link, which reads the hello, tags frames with
//!   the peer's address and feeds the per-channel [`Incoming`] queues (`inbound.rs`);
//! - request ids, the pending-response table and the responder handle (`request.rs`);
//! - the table of established links and their queued bytes, for [`Endpoint::links`]
//!   (`links.rs`);
//! - lifecycle events.
//!
//! Following Redis Cluster, a node *sends* on the links it dialed and *receives* on the links
//! its peers dialed; requests go out on the dialed link and their responses come back on it.

mod inbound;
pub(crate) mod links;
mod outbound;
pub(crate) mod request;
pub(crate) mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::endpoint::inbound::InboundContext;
use crate::endpoint::links::{LinkInfo, LinkTable};
use crate::endpoint::outbound::OutboundLink;
use crate::endpoint::request::{
    encode_envelope, EnvelopeKind, PendingRequests, REQUEST_HEADER_BYTES,
};
use crate::endpoint::stats::{LinkCounters, LinkStatistics};
use crate::rng::SplitMix64;
use crate::{
    BindError, Channel, EndpointConfig, FrameWriter, InboundFrame, InboundRequest, LinkError,
    PeerAddr, RequestError, SendError, Transport, TransportEvent,
};

/// Frames written before one flush when more are already queued.
const WRITE_BATCH_FRAMES_MAX: usize = 64;

/// The address an endpoint announces instead of the one it bound (for wildcard binds and
/// address translation). Empty: the bound address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announce {
    /// The host peers dial (e.g. `10.0.0.5`); `None`: the bound host.
    pub host: Option<String>,
    /// The port peers dial; `None`: the bound port (the real one after binding port 0).
    pub port: Option<u16>,
}

impl Announce {
    fn is_empty(&self) -> bool {
        self.host.is_none() && self.port.is_none()
    }
}

/// What the endpoint delivers to its owner. Keep every receiver polled (or dropped): a full
/// queue pushes back on the links that feed it, and only on those.
pub struct Incoming {
    /// Frames received on [`Channel::Bus`], in order per peer.
    pub bus: mpsc::Receiver<InboundFrame>,
    /// Frames received on [`Channel::Bulk`], in order per peer. Not polling this queue never
    /// delays `bus` or `requests`.
    pub bulk: mpsc::Receiver<InboundFrame>,
    /// Requests to serve; answer each through its [`Responder`](crate::Responder).
    pub requests: mpsc::Receiver<InboundRequest>,
    /// Connection lifecycle events (dropped and counted when this queue is full).
    pub events: mpsc::Receiver<TransportEvent>,
}

/// Sends lifecycle events without ever blocking a link task.
#[derive(Clone)]
pub(crate) struct EventSink {
    sender: mpsc::Sender<TransportEvent>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    pub(crate) fn emit(&self, event: TransportEvent) {
        tracing::debug!(?event, "transport event");
        if self.sender.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends every queued frame through `writer`, flushing after each batch. Returns why it
/// stopped: the writer failed, or every queue sender is gone ([`LinkError::LocalClose`]).
pub(crate) async fn write_frames(
    writer: &mut FrameWriter,
    queue: &mut mpsc::Receiver<Bytes>,
    queued_bytes: Option<&AtomicU64>,
) -> LinkError {
    let taken = |frame: &Bytes| {
        if let Some(queued) = queued_bytes {
            queued.fetch_sub(frame.len() as u64, Ordering::Relaxed);
        }
    };
    loop {
        let Some(frame) = queue.recv().await else {
            return LinkError::LocalClose;
        };
        taken(&frame);
        if let Err(error) = writer.feed(frame).await {
            return error;
        }
        for _ in 1..WRITE_BATCH_FRAMES_MAX {
            let Ok(frame) = queue.try_recv() else {
                break;
            };
            taken(&frame);
            if let Err(error) = writer.feed(frame).await {
                return error;
            }
        }
        if let Err(error) = writer.flush().await {
            return error;
        }
    }
}

/// The outbound side of one peer: a queue per channel feeding its link task.
struct PeerLinks {
    queues: [mpsc::Sender<Bytes>; 3],
    /// Bytes of the frames in each queue (added when queued, taken off when written).
    queued_bytes: Arc<[AtomicU64; 3]>,
    pending: Arc<PendingRequests>,
    outstanding: Semaphore,
    next_request_id: AtomicU64,
    bus_frames_dropped: AtomicU64,
    cancel: CancellationToken,
}

impl PeerLinks {
    /// Queues `frame` on `channel`, waiting while its queue is full, and counts its bytes.
    async fn queue(
        &self,
        channel: Channel,
        frame: Bytes,
    ) -> Result<(), mpsc::error::SendError<Bytes>> {
        let length = frame.len() as u64;
        let queued = &self.queued_bytes[channel.index()];
        queued.fetch_add(length, Ordering::Relaxed);
        let sent = self.queues[channel.index()].send(frame).await;
        if sent.is_err() {
            queued.fetch_sub(length, Ordering::Relaxed);
        }
        sent
    }
}

impl Drop for PeerLinks {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct Shared {
    transport: Arc<dyn Transport>,
    local: PeerAddr,
    config: Arc<EndpointConfig>,
    runtime: tokio::runtime::Handle,
    peers: Mutex<HashMap<PeerAddr, Arc<PeerLinks>>>,
    /// The established links, both directions.
    links: Arc<LinkTable>,
    events: EventSink,
    counters: Arc<LinkCounters>,
    jitter: Arc<Mutex<SplitMix64>>,
    shutdown: CancellationToken,
    /// Every task of the endpoint (accept loop, inbound and outbound links), so that
    /// [`Endpoint::close`] can wait for all of them.
    tasks: TaskTracker,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// One node's side of the cluster bus. Cheap to clone; the last clone dropped shuts it down.
///
/// `send_bus`, `send_bulk` and `request` open the outbound links to a peer on first use (or
/// call [`Endpoint::connect`] to open them early) and keep them open, reconnecting with
/// backoff, until [`Endpoint::disconnect`] or shutdown.
///
/// Ordering: frames on one channel to one peer arrive in the order they were queued, at most
/// once. A frame in flight when a link fails is lost, never duplicated or reordered; the link
/// reconnects and later frames follow. There is no ordering between channels.
#[derive(Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
}

impl Endpoint {
    /// Listens on `local` through `transport` and starts accepting peers. Must be called
    /// inside a tokio runtime; the endpoint's tasks run on that runtime. Peers know it by
    /// the address it bound (see [`Endpoint::bind_announced`] for a wildcard bind).
    pub async fn bind(
        transport: Arc<dyn Transport>,
        local: PeerAddr,
        config: EndpointConfig,
    ) -> Result<(Endpoint, Incoming), BindError> {
        Self::bind_announced(transport, local, Announce::default(), config).await
    }

    /// Listens on `local` (e.g. the wildcard `0.0.0.0:7000` or `[::]:7000`) and is known to
    /// peers by the announced address: the bound address with the host and port of
    /// `announce` where given. That address is this endpoint's identity everywhere: its
    /// [`Endpoint::local_addr`], the hello of every link it dials, so peers attribute its
    /// frames, streams and requests to it.
    pub async fn bind_announced(
        transport: Arc<dyn Transport>,
        local: PeerAddr,
        announce: Announce,
        config: EndpointConfig,
    ) -> Result<(Endpoint, Incoming), BindError> {
        config.validate()?;
        let listener = transport
            .listen(&local, config.frame_limits)
            .await
            .map_err(|cause| BindError::Listen {
                address: local.clone(),
                cause,
            })?;
        let (event_sender, events) = mpsc::channel(config.event_queue_max);
        let (bus_sender, bus) = mpsc::channel(config.inbound_queue_frames_max);
        let (bulk_sender, bulk) = mpsc::channel(config.inbound_queue_frames_max);
        let (request_sender, requests) = mpsc::channel(config.inbound_queue_frames_max);
        let jitter = match config.jitter_seed {
            Some(seed) => SplitMix64::new(seed),
            None => SplitMix64::from_os(),
        };
        let bound = listener.local_addr();
        let local = if announce.is_empty() {
            bound
        } else {
            bound
                .announced(announce.host.as_deref(), announce.port)
                .ok_or_else(|| BindError::Announce {
                    bound: bound.clone(),
                })?
        };
        let shared = Arc::new(Shared {
            transport,
            local,
            config: Arc::new(config),
            runtime: tokio::runtime::Handle::current(),
            peers: Mutex::new(HashMap::new()),
            links: Arc::default(),
            events: EventSink {
                sender: event_sender,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            counters: Arc::default(),
            jitter: Arc::new(Mutex::new(jitter)),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let context = InboundContext {
            config: Arc::clone(&shared.config),
            events: shared.events.clone(),
            bus: bus_sender,
            bulk: bulk_sender,
            requests: request_sender,
            shutdown: shared.shutdown.clone(),
            links: Arc::new(Semaphore::new(shared.config.inbound_links_max)),
            counters: Arc::clone(&shared.counters),
            tasks: shared.tasks.clone(),
            link_table: Arc::clone(&shared.links),
        };
        shared.tasks.spawn_on(
            inbound::run_accept_loop(listener, Arc::new(context)),
            &shared.runtime,
        );
        let incoming = Incoming {
            bus,
            bulk,
            requests,
            events,
        };
        Ok((Endpoint { shared }, incoming))
    }

    /// The address peers dial to reach this node and know it by: the announced address, or
    /// the bound one (with the real port if bound to port 0).
    pub fn local_addr(&self) -> &PeerAddr {
        &self.shared.local
    }

    /// The configuration in force.
    pub fn config(&self) -> &EndpointConfig {
        &self.shared.config
    }

    /// Opens the outbound links to `peer` now instead of on first send. Idempotent.
    pub fn connect(&self, peer: &PeerAddr) -> Result<(), SendError> {
        self.peer_links(peer).map(|_| ())
    }

    /// Closes the outbound links to `peer`, stops reconnecting, drops its queued frames and
    /// fails its outstanding requests. Returns whether the peer was known.
    pub fn disconnect(&self, peer: &PeerAddr) -> bool {
        let removed = self.shared.peers.lock().remove(peer);
        if let Some(links) = &removed {
            links.cancel.cancel();
        }
        removed.is_some()
    }

    /// The established links of both directions and every channel, oldest first (a link
    /// connecting or reconnecting is not listed): a node's CLUSTER LINKS.
    pub fn links(&self) -> Vec<LinkInfo> {
        let peers = self.shared.peers.lock();
        self.shared.links.snapshot(|peer, channel| {
            peers.get(peer).map_or((0, 0), |links| {
                let queue = &links.queues[channel.index()];
                (
                    queue.max_capacity() - queue.capacity(),
                    links.queued_bytes[channel.index()].load(Ordering::Relaxed),
                )
            })
        })
    }

    /// The peers with outbound links (open, connecting or reconnecting), in address order.
    pub fn linked_peers(&self) -> Vec<PeerAddr> {
        let mut peers: Vec<PeerAddr> = self.shared.peers.lock().keys().cloned().collect();
        peers.sort();
        peers
    }

    /// Queues a gossip frame without waiting. When the peer's bus queue is full the frame is
    /// dropped, counted in [`Endpoint::bus_frames_dropped`] and [`SendError::QueueFull`] returned.
    pub fn send_bus(&self, peer: &PeerAddr, frame: Bytes) -> Result<(), SendError> {
        self.check_frame(Channel::Bus, &frame)?;
        let links = self.peer_links(peer)?;
        let length = frame.len() as u64;
        let queued = &links.queued_bytes[Channel::Bus.index()];
        queued.fetch_add(length, Ordering::Relaxed);
        let sent = links.queues[Channel::Bus.index()].try_send(frame);
        if sent.is_err() {
            queued.fetch_sub(length, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                links.bus_frames_dropped.fetch_add(1, Ordering::Relaxed);
                Err(SendError::QueueFull { peer: peer.clone() })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Shutdown),
        }
    }

    /// Queues a bulk frame, waiting while the peer's bulk queue is full (backpressure).
    /// Cancel-safe: if the future is dropped before it completes, the frame was not queued.
    pub async fn send_bulk(&self, peer: &PeerAddr, frame: Bytes) -> Result<(), SendError> {
        self.check_frame(Channel::Bulk, &frame)?;
        let links = self.peer_links(peer)?;
        links
            .queue(Channel::Bulk, frame)
            .await
            .map_err(|_| SendError::Shutdown)
    }

    /// Sends a request and waits for its response, with the configured default timeout.
    pub async fn request(&self, peer: &PeerAddr, payload: Bytes) -> Result<Bytes, RequestError> {
        let timeout = Duration::from_millis(self.shared.config.request_timeout_ms);
        self.request_with_timeout(peer, payload, timeout).await
    }

    /// Sends a request and waits at most `timeout` for its response (queueing and waiting for
    /// an outstanding-request slot included). Many requests may be outstanding per peer, up
    /// to `requests_outstanding_max`; responses are matched by id in any order. Dropping the
    /// future abandons the request (a late response is discarded).
    pub async fn request_with_timeout(
        &self,
        peer: &PeerAddr,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        let max_bytes = self.shared.config.frame_limits.request_frame_bytes_max;
        let length = REQUEST_HEADER_BYTES + payload.len();
        if length > max_bytes {
            return Err(RequestError::FrameTooLarge { length, max_bytes });
        }
        let links = self.peer_links(peer).map_err(|_| RequestError::Shutdown)?;
        match tokio::time::timeout(timeout, issue_request(&links, payload)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RequestError::Timeout {
                peer: peer.clone(),
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }

    /// Bus frames to `peer` dropped because its queue was full.
    pub fn bus_frames_dropped(&self, peer: &PeerAddr) -> u64 {
        let peers = self.shared.peers.lock();
        peers
            .get(peer)
            .map_or(0, |links| links.bus_frames_dropped.load(Ordering::Relaxed))
    }

    /// Inbound connections refused and inbound links closed on a peer's fault, by cause.
    pub fn statistics(&self) -> LinkStatistics {
        self.shared.counters.snapshot()
    }

    /// Lifecycle events dropped because [`Incoming::events`] was full.
    pub fn events_dropped(&self) -> u64 {
        self.shared.events.dropped.load(Ordering::Relaxed)
    }

    /// Stops listening and closes every link; later sends fail with `Shutdown`. Returns at
    /// once: the listener and the links close in the background (see [`Endpoint::close`]).
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
        self.shared.peers.lock().clear();
    }

    /// Shuts down (as [`Endpoint::shutdown`]) and resolves only once the listener has
    /// released its socket, every inbound and outbound link task has ended and the
    /// transport has released what it holds: the same address can then be bound again at
    /// once, by this process or another.
    pub async fn close(&self) {
        self.shutdown();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        self.shared.transport.close().await;
    }

    fn check_frame(&self, channel: Channel, frame: &Bytes) -> Result<(), SendError> {
        let max_bytes = self.shared.config.frame_limits.for_channel(channel);
        if frame.len() > max_bytes {
            return Err(SendError::FrameTooLarge {
                channel,
                length: frame.len(),
                max_bytes,
            });
        }
        Ok(())
    }

    fn peer_links(&self, peer: &PeerAddr) -> Result<Arc<PeerLinks>, SendError> {
        let shared = &self.shared;
        if shared.shutdown.is_cancelled() {
            return Err(SendError::Shutdown);
        }
        let mut peers = shared.peers.lock();
        if let Some(links) = peers.get(peer) {
            return Ok(Arc::clone(links));
        }
        let links = self.spawn_peer_links(peer);
        peers.insert(peer.clone(), Arc::clone(&links));
        Ok(links)
    }

    fn spawn_peer_links(&self, peer: &PeerAddr) -> Arc<PeerLinks> {
        let shared = &self.shared;
        let config = &shared.config;
        let cancel = shared.shutdown.child_token();
        let pending = Arc::new(PendingRequests::default());
        let capacities = [
            config.bus_queue_frames_max,
            config.bulk_queue_frames_max,
            config.request_queue_frames_max,
        ];
        let queued_bytes: Arc<[AtomicU64; 3]> = Arc::default();
        let queues = Channel::ALL.map(|channel| {
            let (sender, receiver) = mpsc::channel(capacities[channel.index()]);
            let link = OutboundLink {
                transport: Arc::clone(&shared.transport),
                local: shared.local.clone(),
                peer: peer.clone(),
                channel,
                config: Arc::clone(config),
                events: shared.events.clone(),
                pending: Arc::clone(&pending),
                jitter: Arc::clone(&shared.jitter),
                cancel: cancel.clone(),
                links: Arc::clone(&shared.links),
                queued_bytes: Arc::clone(&queued_bytes),
            };
            shared.tasks.spawn_on(link.run(receiver), &shared.runtime);
            sender
        });
        Arc::new(PeerLinks {
            queues,
            queued_bytes,
            pending,
            outstanding: Semaphore::new(config.requests_outstanding_max),
            next_request_id: AtomicU64::new(1),
            bus_frames_dropped: AtomicU64::new(0),
            cancel,
        })
    }
}

async fn issue_request(links: &PeerLinks, payload: Bytes) -> Result<Bytes, RequestError> {
    let _permit = links
        .outstanding
        .acquire()
        .await
        .map_err(|_| RequestError::Shutdown)?;
    let id = links.next_request_id.fetch_add(1, Ordering::Relaxed);
    let (_guard, response) = links.pending.register(id);
    let frame = encode_envelope(EnvelopeKind::Request, id, &payload);
    links
        .queue(Channel::Request, frame)
        .await
        .map_err(|_| RequestError::Shutdown)?;
    response.await.unwrap_or(Err(RequestError::Shutdown))
}
