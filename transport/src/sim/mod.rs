//! The simulated network: nodes in one process, addressed by name, linked by bounded
//! in-memory frame pipes, with faults under the control of a [`SimNet`].
//!
//! The simulated transport runs under the same [`Endpoint`](crate::Endpoint) as TCP and QUIC
//! (same queues, hello, request matching, events) and enforces the same frame limits at the
//! receiving end. The controller can partition any two sets of nodes, heal, drop a percentage
//! of frames, add latency with jitter, and kill or restore a node. All randomness comes from
//! one seeded generator, so a run replays from its seed (given the same task interleaving).

mod pipe;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::rng::SplitMix64;
use crate::sim::pipe::{link_pair, FateSource, FrameFate, SimLink};
use crate::{
    Accept, AcceptedLink, Channel, FrameLimits, FramedLink, LinkError, Listener, PeerAddr,
    Transport,
};

/// Links waiting in a simulated listener's queue before further dials are refused.
const SIM_ACCEPT_QUEUE_LINKS_MAX: usize = 64;

struct Registration {
    queue: mpsc::Sender<Accept>,
    limits: FrameLimits,
    credential: u64,
}

#[derive(Default)]
struct NetState {
    listeners: HashMap<String, Registration>,
    killed: HashSet<String>,
    /// Ordered pairs (both orders stored) that cannot reach each other.
    blocked: HashSet<(String, String)>,
    drop_percent: u64,
    latency_ms: u64,
    jitter_ms: u64,
    links: Vec<Weak<SimLink>>,
    /// Links made so far per (dialer, acceptor, channel): part of each link's seed.
    generations: HashMap<(String, String, u8), u64>,
}

struct NetShared {
    state: Mutex<NetState>,
    seed: u64,
}

/// FNV-1a, to fold names into link seeds.
fn fold_name(hash: u64, name: &str) -> u64 {
    name.bytes().fold(hash, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl NetState {
    fn unreachable_reason(&self, from: &str, to: &str) -> Option<LinkError> {
        for node in [from, to] {
            if self.killed.contains(node) {
                return Some(LinkError::Unreachable(format!("node {node} is killed")));
            }
        }
        if self.blocked.contains(&(from.to_string(), to.to_string())) {
            return Some(LinkError::Unreachable(format!(
                "{from} and {to} are partitioned"
            )));
        }
        None
    }

    fn sever_where(&mut self, reason: &LinkError, mut condition: impl FnMut(&SimLink) -> bool) {
        self.links.retain(|weak| weak.strong_count() > 0);
        for link in self.links.iter().filter_map(Weak::upgrade) {
            if condition(&link) {
                link.sever(reason.clone());
            }
        }
    }
}

impl FateSource for NetShared {
    fn frame_fate(&self, from: &str, to: &str, droppable: bool, rng: &mut SplitMix64) -> FrameFate {
        let state = self.state.lock();
        if let Some(reason) = state.unreachable_reason(from, to) {
            return FrameFate::Sever(reason);
        }
        if droppable && state.drop_percent > 0 && rng.below_or_equal(99) < state.drop_percent {
            return FrameFate::Drop;
        }
        let jitter_ms = rng.below_or_equal(state.jitter_ms);
        FrameFate::Deliver(Duration::from_millis(state.latency_ms + jitter_ms))
    }
}

/// The controller of a simulated network. Cheap to clone; clones control the same network.
#[derive(Clone)]
pub struct SimNet {
    shared: Arc<NetShared>,
}

impl SimNet {
    /// An empty, healthy network whose drops and jitter follow `seed`. Each direction of each
    /// link draws from its own generator, derived from the seed, the two node names, the
    /// channel and how many such links came before, so a replay sees the same faults per link.
    pub fn new(seed: u64) -> SimNet {
        SimNet {
            shared: Arc::new(NetShared {
                state: Mutex::new(NetState::default()),
                seed,
            }),
        }
    }

    /// A transport for one node of the cluster. Its address is the name given to `listen`.
    pub fn transport(&self) -> SimTransport {
        self.transport_with_credential(0)
    }

    /// A transport whose nodes only accept dialers with the same `credential`: models a node
    /// with a wrong cluster secret or certificate (the default credential is 0).
    pub fn transport_with_credential(&self, credential: u64) -> SimTransport {
        SimTransport {
            net: self.clone(),
            name: Mutex::new(None),
            credential,
        }
    }

    /// Cuts every node of `side_a` off from every node of `side_b` (both directions); open
    /// links between them fail at once and new ones are refused until [`SimNet::heal`].
    pub fn partition(&self, side_a: &[&str], side_b: &[&str]) {
        let mut state = self.shared.state.lock();
        for a in side_a {
            for b in side_b {
                state.blocked.insert((a.to_string(), b.to_string()));
                state.blocked.insert((b.to_string(), a.to_string()));
            }
        }
        let blocked = state.blocked.clone();
        let reason = LinkError::Unreachable("network partition".to_string());
        state.sever_where(&reason, |link| {
            blocked.contains(&(link.dialer.clone(), link.acceptor.clone()))
        });
    }

    /// Removes every partition (killed nodes stay killed).
    pub fn heal(&self) {
        self.shared.state.lock().blocked.clear();
    }

    /// Drops `percent` (0..=100, clamped) of frames after each link's first; 0 disables.
    pub fn set_drop_percent(&self, percent: u8) {
        self.shared.state.lock().drop_percent = u64::from(percent.min(100));
    }

    /// Delays every frame by `fixed_ms` plus a uniform `0..=jitter_ms`, preserving order.
    pub fn set_latency(&self, fixed_ms: u64, jitter_ms: u64) {
        let mut state = self.shared.state.lock();
        state.latency_ms = fixed_ms;
        state.jitter_ms = jitter_ms;
    }

    /// Kills `node`: its links close with a reason and nobody can reach it, nor it anybody.
    pub fn kill(&self, node: &str) {
        let mut state = self.shared.state.lock();
        state.killed.insert(node.to_string());
        let reason = LinkError::Unreachable(format!("node {node} is killed"));
        state.sever_where(&reason, |link| link.touches(node));
    }

    /// Brings a killed node back; peers reconnect on their next attempt.
    pub fn restore(&self, node: &str) {
        self.shared.state.lock().killed.remove(node);
    }

    fn register(
        &self,
        name: &str,
        limits: FrameLimits,
        credential: u64,
    ) -> Result<SimListener, LinkError> {
        let mut state = self.shared.state.lock();
        if state
            .listeners
            .get(name)
            .is_some_and(|entry| !entry.queue.is_closed())
        {
            return Err(LinkError::Io(format!(
                "simulated address {name} is already in use"
            )));
        }
        let (queue, accepted) = mpsc::channel(SIM_ACCEPT_QUEUE_LINKS_MAX);
        let registration = Registration {
            queue,
            limits,
            credential,
        };
        state.listeners.insert(name.to_string(), registration);
        Ok(SimListener {
            local: PeerAddr::new(name)?,
            accepted,
        })
    }

    fn dial(
        &self,
        dialer: &str,
        credential: u64,
        peer: &str,
        channel: Channel,
        limits: FrameLimits,
    ) -> Result<FramedLink, LinkError> {
        let mut state = self.shared.state.lock();
        if let Some(reason) = state.unreachable_reason(dialer, peer) {
            return Err(reason);
        }
        let seed = self.next_link_seed(&mut state, dialer, peer, channel);
        let Some(registration) = state.listeners.get(peer) else {
            return Err(LinkError::Unreachable(format!(
                "no simulated node listens as {peer}"
            )));
        };
        if registration.credential != credential {
            let reason = LinkError::Authentication(format!(
                "{dialer} presented credentials of another cluster"
            ));
            let rejected = Accept::Rejected {
                remote: dialer.to_string(),
                reason,
            };
            let _ = registration.queue.try_send(rejected);
            return Err(LinkError::Authentication(format!(
                "{peer} rejected our credentials"
            )));
        }
        let link = SimLink::new(dialer.to_string(), peer.to_string());
        let fates: Arc<dyn FateSource> = Arc::clone(&self.shared) as Arc<dyn FateSource>;
        let limits = (
            limits.for_channel(channel),
            registration.limits.for_channel(channel),
        );
        let (dialer_end, acceptor_end) = link_pair(&link, fates, seed, channel, limits.0, limits.1);
        let accepted = Accept::Link(AcceptedLink {
            channel,
            remote: dialer.to_string(),
            link: acceptor_end,
            identity: None,
        });
        registration.queue.try_send(accepted).map_err(|_| {
            LinkError::Unreachable(format!(
                "{peer} is not accepting (listener closed or its queue is full)"
            ))
        })?;
        state.links.push(Arc::downgrade(&link));
        Ok(dialer_end)
    }

    /// The seed of a new link: the network seed mixed with both names, the channel and how
    /// many links this dialer opened to this peer on this channel before.
    fn next_link_seed(
        &self,
        state: &mut NetState,
        dialer: &str,
        peer: &str,
        channel: Channel,
    ) -> u64 {
        let key = (dialer.to_string(), peer.to_string(), channel.tag());
        let generation = state.generations.entry(key).or_insert(0);
        *generation += 1;
        let names = fold_name(fold_name(0xcbf2_9ce4_8422_2325, dialer), peer);
        let mixed = self.shared.seed ^ names ^ (*generation << 8) ^ u64::from(channel.tag());
        SplitMix64::new(mixed).next_u64()
    }
}

/// The simulated [`Transport`] of one node; make one per node with [`SimNet::transport`].
pub struct SimTransport {
    net: SimNet,
    name: Mutex<Option<String>>,
    credential: u64,
}

impl Transport for SimTransport {
    fn listen<'a>(
        &'a self,
        local: &'a PeerAddr,
        limits: FrameLimits,
    ) -> BoxFuture<'a, Result<Box<dyn Listener>, LinkError>> {
        Box::pin(async move {
            let listener = self.net.register(local.as_str(), limits, self.credential)?;
            *self.name.lock() = Some(local.as_str().to_string());
            let listener: Box<dyn Listener> = Box::new(listener);
            Ok(listener)
        })
    }

    fn connect<'a>(
        &'a self,
        peer: &'a PeerAddr,
        channel: Channel,
        limits: FrameLimits,
    ) -> BoxFuture<'a, Result<FramedLink, LinkError>> {
        Box::pin(async move {
            let name = self.name.lock().clone().ok_or_else(|| {
                LinkError::Unreachable("this simulated node has not called listen yet".to_string())
            })?;
            self.net
                .dial(&name, self.credential, peer.as_str(), channel, limits)
        })
    }
}

struct SimListener {
    local: PeerAddr,
    accepted: mpsc::Receiver<Accept>,
}

impl Listener for SimListener {
    fn local_addr(&self) -> PeerAddr {
        self.local.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, Option<Accept>> {
        Box::pin(self.accepted.recv())
    }
}
