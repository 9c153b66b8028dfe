//! One client connection: reads requests, runs them in order ([`crate::commands`]) and hands
//! the encoded replies, a batch per read, to a writer task, so a pipelining client's replies
//! go out in order and in few writes.
//!
//! Bounds: the parser's ([`crate::RequestLimits`]); the replies a client leaves unread
//! (`output_buffer_bytes_max`: past it the client is closed, its unread replies dropped, as
//! Redis's `client-output-buffer-limit` does); a reply batch is handed to the writer once it
//! passes [`REPLY_BATCH_BYTES`]; a closing connection waits at most [`DRAIN_TIMEOUT`] for
//! its last replies to be written. A protocol error is answered `-ERR Protocol error: ...`
//! and the connection closed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::clients::ClientEntry;
use crate::commands::{execute, Flow, Session};
use crate::frame::RequestParser;
use crate::reply::{Protocol, Reply};
use crate::server::Gateway;

/// Initial size of a connection's read buffer, in bytes (grown for large arguments).
const READ_BUFFER_BYTES: usize = 16 << 10;

/// Replies encoded before they are handed to the writer, in bytes.
pub(crate) const REPLY_BATCH_BYTES: usize = 64 << 10;

/// Longest a closing connection waits for its last replies to be written.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// After its last reply, a closing connection reads and discards what the client still
/// sends, for at most this long and [`LINGER_BYTES_MAX`] bytes, so closing a socket with
/// unread input does not reset the connection before the client read the error.
const LINGER_TIMEOUT: Duration = Duration::from_millis(500);

/// Most bytes discarded while lingering.
const LINGER_BYTES_MAX: usize = 4 << 20;

/// Answers a client beyond `maxclients` and closes it (Redis's wording).
pub(crate) async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
    let _ = stream.shutdown().await;
}

/// What ended a connection's reading.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client closed, asked to (QUIT), or sent a protocol error: write what is left.
    Drain,
    /// Killed, or over its output limit: drop what is left.
    Abort,
}

/// Serves one client until it closes or is closed.
pub(crate) async fn run(gateway: Arc<Gateway>, stream: TcpStream, entry: Arc<ClientEntry>) {
    let (mut reader, writer) = stream.into_split();
    let (limits, output_max) = {
        let config = gateway.config.lock();
        (config.limits, config.output_buffer_bytes_max)
    };
    let unread = Arc::new(AtomicUsize::new(0));
    let (replies, batches) = mpsc::unbounded_channel();
    let mut writing = tokio::spawn(write_replies(writer, batches, Arc::clone(&unread)));
    let mut parser = RequestParser::new(limits);
    let mut session = Session::new(&gateway, Arc::clone(&entry));
    let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut parsed = Parsed::NeedInput;
    let end = loop {
        if parsed == Parsed::NeedInput {
            let read = tokio::select! {
                read = reader.read_buf(&mut buffer) => read,
                () = entry.kill.notified() => break End::Abort,
            };
            match read {
                Ok(0) | Err(_) => break End::Drain,
                Ok(_) => {}
            }
        }
        let mut out = Vec::new();
        parsed = run_parsed(&gateway, &mut session, &mut parser, &mut buffer, &mut out).await;
        let batch_bytes = out.len();
        if batch_bytes > 0 {
            unread.fetch_add(batch_bytes, Ordering::AcqRel);
            if replies.send(out).is_err() {
                break End::Abort;
            }
        }
        if unread.load(Ordering::Acquire) > output_max {
            tracing::info!(client = entry.id, address = %entry.address, limit = output_max,
                "closing a client whose unread replies exceed the output buffer limit");
            break End::Abort;
        }
        if parsed == Parsed::Close {
            break End::Drain;
        }
    };
    drop(replies);
    if end == End::Abort
        || tokio::time::timeout(DRAIN_TIMEOUT, &mut writing)
            .await
            .is_err()
    {
        writing.abort();
        return;
    }
    let _ = tokio::time::timeout(LINGER_TIMEOUT, linger(&mut reader)).await;
}

/// Reads and discards the client's input until it closes or [`LINGER_BYTES_MAX`].
async fn linger(reader: &mut tokio::net::tcp::OwnedReadHalf) {
    let mut scratch = vec![0u8; READ_BUFFER_BYTES];
    let mut discarded = 0;
    while discarded < LINGER_BYTES_MAX {
        match reader.read(&mut scratch).await {
            Ok(0) | Err(_) => return,
            Ok(read) => discarded += read,
        }
    }
}

/// Where [`run_parsed`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parsed {
    /// Every complete request ran: read more.
    NeedInput,
    /// The batch is full: hand it over, then go on with the requests still buffered.
    BatchFull,
    /// The connection closes after this batch.
    Close,
}

/// Runs the complete requests in `buffer`, encoding the replies into `out`, until the
/// batch is full; a protocol error is answered (when Redis answers it) and closes.
async fn run_parsed(
    gateway: &Gateway,
    session: &mut Session,
    parser: &mut RequestParser,
    buffer: &mut BytesMut,
    out: &mut Vec<u8>,
) -> Parsed {
    loop {
        match parser.next_request(buffer) {
            Ok(Some(arguments)) => {
                let (reply, flow) = execute(gateway, session, &arguments).await;
                match flow {
                    Flow::Continue => reply.encode(session.protocol, out),
                    Flow::Close => {
                        reply.encode(session.protocol, out);
                        return Parsed::Close;
                    }
                    Flow::CloseWithoutReply => return Parsed::Close,
                }
            }
            Ok(None) => return Parsed::NeedInput,
            Err(error) => {
                tracing::debug!(client = session.client_id(), %error, "protocol error");
                if error.is_answered() {
                    Reply::Error(format!("ERR {error}")).encode(Protocol::Resp2, out);
                }
                return Parsed::Close;
            }
        }
        if out.len() >= REPLY_BATCH_BYTES {
            return Parsed::BatchFull;
        }
    }
}

/// Writes reply batches in order until the connection closes.
async fn write_replies(
    mut writer: OwnedWriteHalf,
    mut batches: mpsc::UnboundedReceiver<Vec<u8>>,
    unread: Arc<AtomicUsize>,
) {
    while let Some(batch) = batches.recv().await {
        if writer.write_all(&batch).await.is_err() {
            return;
        }
        unread.fetch_sub(batch.len(), Ordering::AcqRel);
    }
    let _ = writer.shutdown().await;
}
