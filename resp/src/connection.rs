//! One client connection: reads requests, runs them in order ([`crate::commands`]) and
//! writes the encoded replies of each read at once, in one task, so a pipelining client's
//! replies go out in order and in few writes.
//!
//! Bounds: the parser's ([`crate::RequestLimits`]); the replies a client leaves unread
//! (`output_buffer_bytes_max`: past it the client is closed, its unread replies dropped, as
//! Redis's `client-output-buffer-limit` does); replies are written once a batch passes
//! [`REPLY_BATCH_BYTES`] even while requests remain buffered; a closing connection waits at most [`DRAIN_TIMEOUT`] for
//! its last replies to be written. A protocol error is answered `-ERR Protocol error: ...`
//! and the connection closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

use crate::clients::ClientEntry;
use crate::commands::{execute, Flow, Session};
use crate::frame::RequestParser;
use crate::reply::{Protocol, Reply};
use crate::server::Gateway;

/// Initial size of a connection's read buffer, in bytes (grown for large arguments).
const READ_BUFFER_BYTES: usize = 16 << 10;

/// Replies encoded before they are handed to the writer, in bytes.
pub(crate) const REPLY_BATCH_BYTES: usize = 64 << 10;

/// Most capacity an emptied output buffer keeps, in bytes.
const OUTPUT_RETAINED_BYTES_MAX: usize = 4 * REPLY_BATCH_BYTES;

/// Longest a closing connection waits for its last replies to be written.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// After its last reply, a closing connection reads and discards what the client still
/// sends, for at most this long and [`LINGER_BYTES_MAX`] bytes, so closing a socket with
/// unread input does not reset the connection before the client read the error.
const LINGER_TIMEOUT: Duration = Duration::from_millis(500);

/// Most bytes discarded while lingering.
const LINGER_BYTES_MAX: usize = 4 << 20;

/// The writing half of a client connection: written without waiting while it takes bytes,
/// waited on only while replies are pending.
pub(crate) trait ClientWrite: AsyncWrite + Unpin + Send {
    /// Writes what the connection takes now; `WouldBlock` when it takes nothing.
    fn write_now(&mut self, bytes: &[u8]) -> std::io::Result<usize>;

    /// Pushes bytes taken but still buffered (a TLS session's) toward the socket without
    /// waiting; whether none are left.
    fn flush_now(&mut self) -> std::io::Result<bool>;

    /// Resolves once the connection may take more (`Err`: it failed).
    fn ready(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl ClientWrite for OwnedWriteHalf {
    fn write_now(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.try_write(bytes)
    }

    fn flush_now(&mut self) -> std::io::Result<bool> {
        Ok(true)
    }

    async fn ready(&mut self) -> std::io::Result<()> {
        self.writable().await
    }
}

/// A TLS connection's writing half: a write the socket cannot take now stays in the TLS
/// session's buffer, and flushing that buffer is what waiting for room means.
impl<S: AsyncRead + AsyncWrite + Unpin + Send> ClientWrite
    for tokio::io::WriteHalf<tokio_rustls::server::TlsStream<S>>
{
    fn write_now(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut context = Context::from_waker(Waker::noop());
        match Pin::new(self).poll_write(&mut context, bytes) {
            Poll::Ready(written) => written,
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush_now(&mut self) -> std::io::Result<bool> {
        let mut context = Context::from_waker(Waker::noop());
        match Pin::new(self).poll_flush(&mut context) {
            Poll::Ready(flushed) => flushed.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }

    async fn ready(&mut self) -> std::io::Result<()> {
        self.flush().await
    }
}

/// Answers a client beyond `maxclients` and closes it (Redis's wording).
pub(crate) async fn refuse(mut stream: impl AsyncWrite + Unpin) {
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
///
/// One task reads, runs and writes: the replies of each read are written at once with a
/// non-blocking write, and what the socket does not take waits in `output` (written when
/// the socket is writable again, while reading goes on) — no hand-over to another task
/// per request.
pub(crate) async fn run(
    gateway: Arc<Gateway>,
    mut reader: impl AsyncRead + Unpin,
    mut writer: impl ClientWrite,
    entry: Arc<ClientEntry>,
) {
    let (limits, output_max) = {
        let config = gateway.config.lock();
        (config.limits, config.output_buffer_bytes_max)
    };
    let mut parser = RequestParser::new(limits);
    let mut session = Session::new(&gateway, Arc::clone(&entry));
    let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut output = Output::default();
    let mut parsed = Parsed::NeedInput;
    let end = loop {
        if parsed == Parsed::NeedInput {
            let event = tokio::select! {
                read = reader.read_buf(&mut buffer) => Wakeup::Read(read.map_or(0, |read| read)),
                ready = writer.ready(), if output.waiting() => Wakeup::Writable(ready.is_ok()),
                () = entry.kill.notified() => break End::Abort,
            };
            match event {
                Wakeup::Read(0) => break End::Drain,
                Wakeup::Read(_) => {}
                Wakeup::Writable(false) => break End::Abort,
                Wakeup::Writable(true) => {
                    if output.write_ready(&mut writer).is_err() {
                        break End::Abort;
                    }
                    continue;
                }
            }
        }
        parsed = run_parsed(
            &gateway,
            &mut session,
            &mut parser,
            &mut buffer,
            &mut output.bytes,
        )
        .await;
        if output.write_ready(&mut writer).is_err() {
            break End::Abort;
        }
        if output.len() > output_max {
            tracing::info!(client = entry.id, address = %entry.address, limit = output_max,
                "closing a client whose unread replies exceed the output buffer limit");
            break End::Abort;
        }
        if parsed == Parsed::Close {
            break End::Drain;
        }
    };
    if end == End::Abort {
        return;
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        writer.write_all(output.unwritten()).await?;
        writer.shutdown().await
    })
    .await;
    if !matches!(drained, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(LINGER_TIMEOUT, linger(&mut reader)).await;
}

/// What woke a connection waiting for input.
enum Wakeup {
    /// Bytes read (0: the client closed, or the read failed).
    Read(usize),
    /// The socket is writable again (false: it failed).
    Writable(bool),
}

/// Encoded replies the socket has not taken yet: `bytes[written..]`.
#[derive(Debug, Default)]
struct Output {
    bytes: Vec<u8>,
    written: usize,
    /// Bytes the writer took are still in its buffer (a TLS session's), not the socket's.
    flush_pending: bool,
}

impl Output {
    /// Whether anything waits for the connection to take more.
    fn waiting(&self) -> bool {
        !self.is_empty() || self.flush_pending
    }

    fn is_empty(&self) -> bool {
        self.written == self.bytes.len()
    }

    /// Bytes not yet written.
    fn len(&self) -> usize {
        self.bytes.len() - self.written
    }

    fn unwritten(&self) -> &[u8] {
        &self.bytes[self.written..]
    }

    /// Writes what the socket takes without waiting; `Err` when the connection failed.
    fn write_ready(&mut self, writer: &mut impl ClientWrite) -> std::io::Result<()> {
        while !self.is_empty() {
            match writer.write_now(self.unwritten()) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(written) => self.written += written,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        self.flush_pending = !writer.flush_now()?;
        if self.is_empty() {
            self.bytes.clear();
            self.written = 0;
            // A burst of replies (up to the output limit) does not keep its memory for the
            // rest of the connection.
            if self.bytes.capacity() > OUTPUT_RETAINED_BYTES_MAX {
                self.bytes = Vec::new();
            }
        } else if self.written >= REPLY_BATCH_BYTES {
            self.bytes.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }
}

/// Reads and discards the client's input until it closes or [`LINGER_BYTES_MAX`].
async fn linger(reader: &mut (impl AsyncRead + Unpin)) {
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
    let started = out.len();
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
        if out.len() - started >= REPLY_BATCH_BYTES {
            return Parsed::BatchFull;
        }
    }
}
