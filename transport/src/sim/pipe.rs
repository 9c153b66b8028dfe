//! One simulated link: two bounded in-memory frame pipes that the [`SimNet`](super::SimNet)
//! can sever, drop frames from, and delay.
//!
//! Latency is applied at the receiving end against a due time stamped at send, so frames are
//! delayed in a pipeline (throughput is not divided by latency) and never reordered. The
//! receiving end enforces its channel's frame limit exactly like the byte-stream framing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::rng::SplitMix64;
use crate::{Channel, FrameReader, FrameWriter, FramedLink, LinkError};

/// Frames in flight per direction of a simulated link before the sender waits.
pub(crate) const SIM_PIPE_FRAMES_MAX: usize = 64;

/// What the network decides for one frame.
pub(crate) enum FrameFate {
    /// Deliver after this delay.
    Deliver(Duration),
    /// Lose it silently.
    Drop,
    /// The link must be severed (partition or kill) with this reason.
    Sever(LinkError),
}

/// Decides the fate of each frame; implemented by the network state.
pub(crate) trait FateSource: Send + Sync + 'static {
    /// The fate of a frame from `from` to `to`. `droppable` is false for a link's first frame;
    /// `rng` is the sending direction's own generator, so fates do not depend on how tasks
    /// interleave.
    fn frame_fate(&self, from: &str, to: &str, droppable: bool, rng: &mut SplitMix64) -> FrameFate;
}

/// The shared state of one link (both directions): its endpoints and whether it was severed.
pub(crate) struct SimLink {
    pub(crate) dialer: String,
    pub(crate) acceptor: String,
    severed: CancellationToken,
    reason: Mutex<Option<LinkError>>,
}

impl SimLink {
    pub(crate) fn new(dialer: String, acceptor: String) -> Arc<SimLink> {
        Arc::new(SimLink {
            dialer,
            acceptor,
            severed: CancellationToken::new(),
            reason: Mutex::new(None),
        })
    }

    /// Breaks both directions; readers and writers fail with `reason`.
    pub(crate) fn sever(&self, reason: LinkError) {
        self.reason.lock().get_or_insert(reason);
        self.severed.cancel();
    }

    /// Whether the link touches `node`.
    pub(crate) fn touches(&self, node: &str) -> bool {
        self.dialer == node || self.acceptor == node
    }

    fn severed_reason(&self) -> Option<LinkError> {
        if !self.severed.is_cancelled() {
            return None;
        }
        Some(self.reason.lock().clone().unwrap_or(LinkError::PeerClosed))
    }
}

/// Builds both ends of a link: `(dialer end, acceptor end)`.
pub(crate) fn link_pair(
    link: &Arc<SimLink>,
    fates: Arc<dyn FateSource>,
    seed: u64,
    channel: Channel,
    dialer_frame_bytes_max: usize,
    acceptor_frame_bytes_max: usize,
) -> (FramedLink, FramedLink) {
    let (to_acceptor, from_dialer) = mpsc::channel(SIM_PIPE_FRAMES_MAX);
    let (to_dialer, from_acceptor) = mpsc::channel(SIM_PIPE_FRAMES_MAX);
    let dialer_end = FramedLink {
        reader: reader(
            from_acceptor,
            Arc::clone(link),
            channel,
            dialer_frame_bytes_max,
        ),
        writer: writer(
            to_acceptor,
            Arc::clone(link),
            Arc::clone(&fates),
            true,
            seed,
        ),
    };
    let acceptor_end = FramedLink {
        reader: reader(
            from_dialer,
            Arc::clone(link),
            channel,
            acceptor_frame_bytes_max,
        ),
        writer: writer(to_dialer, Arc::clone(link), fates, false, !seed),
    };
    (dialer_end, acceptor_end)
}

struct WriterState {
    pipe: mpsc::Sender<(Instant, Bytes)>,
    link: Arc<SimLink>,
    fates: Arc<dyn FateSource>,
    from_dialer: bool,
    frames_sent: u64,
    last_due: Instant,
    rng: SplitMix64,
}

fn writer(
    pipe: mpsc::Sender<(Instant, Bytes)>,
    link: Arc<SimLink>,
    fates: Arc<dyn FateSource>,
    from_dialer: bool,
    seed: u64,
) -> FrameWriter {
    let state = WriterState {
        pipe,
        link,
        fates,
        from_dialer,
        frames_sent: 0,
        last_due: Instant::now(),
        rng: SplitMix64::new(seed),
    };
    Box::pin(futures_util::sink::unfold(
        state,
        |mut state, frame: Bytes| async move {
            if let Some(reason) = state.link.severed_reason() {
                return Err(reason);
            }
            let (from, to) = match state.from_dialer {
                true => (&state.link.dialer, &state.link.acceptor),
                false => (&state.link.acceptor, &state.link.dialer),
            };
            let droppable = state.frames_sent > 0;
            state.frames_sent += 1;
            let fate = state.fates.frame_fate(from, to, droppable, &mut state.rng);
            let delay = match fate {
                FrameFate::Drop => return Ok(state),
                FrameFate::Sever(reason) => {
                    state.link.sever(reason.clone());
                    return Err(reason);
                }
                FrameFate::Deliver(delay) => delay,
            };
            let due = (Instant::now() + delay).max(state.last_due);
            state.last_due = due;
            if state.pipe.send((due, frame)).await.is_err() {
                return Err(state.link.severed_reason().unwrap_or(LinkError::PeerClosed));
            }
            Ok(state)
        },
    ))
}

struct ReaderState {
    pipe: mpsc::Receiver<(Instant, Bytes)>,
    link: Arc<SimLink>,
    channel: Channel,
    frame_bytes_max: usize,
    finished: bool,
}

fn reader(
    pipe: mpsc::Receiver<(Instant, Bytes)>,
    link: Arc<SimLink>,
    channel: Channel,
    frame_bytes_max: usize,
) -> FrameReader {
    let state = ReaderState {
        pipe,
        link,
        channel,
        frame_bytes_max,
        finished: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        |mut state| async move {
            if state.finished {
                return None;
            }
            let outcome = next_frame(&mut state).await;
            match outcome {
                Some(Ok(frame)) => Some((Ok(frame), state)),
                Some(Err(error)) => {
                    state.finished = true;
                    Some((Err(error), state))
                }
                None => None,
            }
        },
    ))
}

async fn next_frame(state: &mut ReaderState) -> Option<Result<Bytes, LinkError>> {
    let severed = state.link.severed.clone();
    let received = tokio::select! {
        biased;
        () = severed.cancelled() => return state.link.severed_reason().map(Err),
        received = state.pipe.recv() => received,
    };
    let (due, frame) = received?;
    // Without latency the frame is due already; a timer would round up to the next
    // millisecond tick, so sleep only when there is time to wait.
    if due > Instant::now() {
        tokio::select! {
            biased;
            () = severed.cancelled() => return state.link.severed_reason().map(Err),
            () = tokio::time::sleep_until(due) => {}
        }
    }
    if frame.len() > state.frame_bytes_max {
        return Some(Err(LinkError::FrameTooLarge {
            channel: state.channel,
            max_bytes: state.frame_bytes_max,
        }));
    }
    Some(Ok(frame))
}
