//! The optional data snapshot: every key of a master's engine in one checksummed file beside
//! nodes.conf, written on shutdown and on demand, loaded at start (Redis's SAVE on shutdown
//! for the node that has no replica to keep its data).
//!
//! Format (integers little-endian), version [`SNAPSHOT_FORMAT_VERSION`]:
//! - header, [`HEADER_BYTES`]: the magic [`SNAPSHOT_MAGIC`], the format version (u32), the
//!   id of the node that wrote it (20 bytes), its creation time (u64, unix ms);
//! - one record per key: [`TAG_ENTRY`], key length (u32), value length (u32), absolute
//!   expiry (u64 unix ms, 0 for none), the key, the value;
//! - the end: [`TAG_END`], the number of keys (u64), then the CRC-32 (IEEE, `crc32fast`) of
//!   every byte before it (u32).
//!
//! A save walks the engine with [`export_batches`] (one slot's read lock at a time, never
//! every stripe for the whole dump) into a temp file replaced crash-safely over the target
//! ([`replace_file`]). A load checks magic and version, then the checksum over the whole
//! file, then the writer's id, and only then reads the keys into the engine, skipping those
//! already expired; every length is bounded by the engine's limits and by the bytes left in
//! the file, so no corruption makes it allocate more than the file holds or panic.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use slotkv_engine::{Clock, CommandError, Store};

use super::atomic_file::{io_failure, replace_file, FileError};
use crate::core::node::{NodeId, NODE_ID_BYTES};
use crate::node_state::store_cell::export_batches;

/// Name of the data snapshot in the data directory, beside nodes.conf.
pub const SNAPSHOT_FILE: &str = "data.snapshot";
/// What a loaded snapshot is renamed to: it is loaded once, so a crash after a restart never
/// brings back data older than what the node served since; the copy stays for inspection.
pub const LOADED_SNAPSHOT_FILE: &str = "data.snapshot.loaded";

/// The first bytes of a snapshot file.
pub(crate) const SNAPSHOT_MAGIC: [u8; 8] = *b"SLOTKVDS";
/// The format version this build writes and the newest it reads.
pub(crate) const SNAPSHOT_FORMAT_VERSION: u32 = 1;
/// Bytes of the header: magic, version, node id, creation time.
pub(crate) const HEADER_BYTES: u64 = 8 + 4 + NODE_ID_BYTES as u64 + 8;
/// Record tag of one key.
pub(crate) const TAG_ENTRY: u8 = 1;
/// Record tag of the end (key count, then the checksum).
pub(crate) const TAG_END: u8 = 0xff;
/// Bytes of the end: tag, key count, checksum.
const END_BYTES: u64 = 1 + 8 + 4;
/// Bytes of the checksum at the very end.
const CHECKSUM_BYTES: u64 = 4;
/// Read buffer of a load, in bytes.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// Whether the node keeps its data across restarts. Off by default: a pure cache's data
/// lives in memory and in its replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing but nodes.conf is written; a restarted node starts with an empty engine.
    #[default]
    None,
    /// A snapshot of the keys ([`SNAPSHOT_FILE`] in the data directory) is written when a
    /// master shuts down and by [`Node::save_snapshot`](crate::Node::save_snapshot), and is
    /// loaded once at start (then renamed [`LOADED_SNAPSHOT_FILE`]). Needs a data directory.
    /// A replica writes none on shutdown (it resyncs from its master) and loads none at
    /// start: one it finds there is set aside unloaded.
    Snapshot,
}

/// What a snapshot save wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The snapshot file.
    pub path: PathBuf,
    /// Keys written.
    pub keys: u64,
    /// Size of the file, in bytes.
    pub bytes: u64,
    /// Time the save took.
    pub duration: Duration,
}

/// What a snapshot load read into the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadedSnapshot {
    /// Keys loaded.
    pub(crate) keys: u64,
    /// Keys skipped because they had expired.
    pub(crate) expired: u64,
    /// Size of the file, in bytes.
    pub(crate) bytes: u64,
    /// When the snapshot was written, unix ms.
    pub(crate) created_unix_ms: u64,
    /// Time the load took.
    pub(crate) duration: Duration,
}

/// Why a snapshot could not be saved. The previous snapshot file, if any, is untouched.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The node was not started with [`Persistence::Snapshot`] and a data directory.
    #[error("snapshot persistence is not enabled on this node (set persistence and data_dir)")]
    NotEnabled,
    /// An IO call failed.
    #[error(transparent)]
    Io(#[from] FileError),
    /// The engine refused to export a slot.
    #[error("cannot export the engine's keys: {0}")]
    Engine(#[from] CommandError),
    /// The blocking task writing the snapshot ended abnormally.
    #[error("the snapshot task failed: {0}")]
    Task(String),
}

/// Why a snapshot found at start was refused. The node does not start; each message names
/// the file and the way out.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotLoadError {
    /// An IO call on the snapshot failed.
    #[error(transparent)]
    Io(#[from] FileError),
    /// The file does not start with the snapshot magic.
    #[error("{} is not a slotkv snapshot (bad magic); delete it to start this node empty", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The file was written in a format version this build does not read.
    #[error(
        "{} has snapshot format version {version}, this build reads up to {SNAPSHOT_FORMAT_VERSION}; \
         start a newer slotkv, or delete it to start this node empty",
        path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version it names.
        version: u32,
    },
    /// The file ends before its header, a record or its end.
    #[error("{} is truncated ({bytes} bytes); delete it to start this node empty", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its size, in bytes.
        bytes: u64,
    },
    /// The checksum does not match the content.
    #[error(
        "{} is corrupt (checksum {computed:08x}, stored {stored:08x}); delete it to start this \
         node empty",
        path.display()
    )]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The checksum stored in the file.
        stored: u32,
        /// The checksum of its content.
        computed: u32,
    },
    /// A key or value is longer than the engine accepts.
    #[error(
        "{} holds a {what} of {length} bytes, more than the engine's {limit}; raise the limit, \
         or delete it to start this node empty",
        path.display()
    )]
    Oversized {
        /// The file.
        path: PathBuf,
        /// `key` or `value`.
        what: &'static str,
        /// The length in the file.
        length: u64,
        /// The engine's limit.
        limit: u64,
    },
    /// The content does not follow the format (unknown record, wrong key count, bytes after
    /// the end).
    #[error("{} is malformed ({reason}); delete it to start this node empty", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The snapshot was written by another node.
    #[error(
        "{} was written by node {found}, not by this node {expected}; use that node's data \
         directory, or delete it to start this node empty",
        path.display()
    )]
    OtherNode {
        /// The file.
        path: PathBuf,
        /// The writer's id.
        found: NodeId,
        /// This node's id.
        expected: NodeId,
    },
    /// The engine refused a key.
    #[error("cannot load {} into the engine: {source}", path.display())]
    Engine {
        /// The file.
        path: PathBuf,
        /// The engine's refusal.
        #[source]
        source: CommandError,
    },
}

/// A writer that counts and checksums what passes through it.
struct Summing<'a, W: Write> {
    inner: &'a mut W,
    hasher: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Summing<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.inner.write_all(bytes)
    }
}

/// Writes every key of `store` to the snapshot at `path` (crash-safely, see the module
/// docs), as written by `node` at `clock`'s time. Blocking IO: run it on the blocking pool.
pub(crate) fn save_snapshot(
    path: &Path,
    store: &Store,
    clock: &dyn Clock,
    node: NodeId,
) -> Result<SnapshotInfo, SnapshotError> {
    let started = Instant::now();
    let mut counts = (0, 0);
    replace_file(path, |writer, temp| {
        counts = write_snapshot(writer, store, clock, node)
            .map_err(|error| error.into_snapshot_error(temp))?;
        Ok::<(), SnapshotError>(())
    })?;
    let (keys, bytes) = counts;
    Ok(SnapshotInfo {
        path: path.to_path_buf(),
        keys,
        bytes,
        duration: started.elapsed(),
    })
}

/// A failure while streaming the snapshot: the writer's or the engine's.
enum WriteFailure {
    Io(io::Error),
    Engine(CommandError),
}

impl WriteFailure {
    fn into_snapshot_error(self, temp: &Path) -> SnapshotError {
        match self {
            WriteFailure::Io(source) => io_failure(temp, "write")(source).into(),
            WriteFailure::Engine(error) => SnapshotError::Engine(error),
        }
    }
}

impl From<io::Error> for WriteFailure {
    fn from(error: io::Error) -> Self {
        WriteFailure::Io(error)
    }
}

/// Streams the snapshot of `store` into `writer`; returns the keys and bytes written.
fn write_snapshot<W: Write>(
    writer: &mut W,
    store: &Store,
    clock: &dyn Clock,
    node: NodeId,
) -> Result<(u64, u64), WriteFailure> {
    let mut out = Summing {
        inner: writer,
        hasher: crc32fast::Hasher::new(),
        bytes: 0,
    };
    out.put(&SNAPSHOT_MAGIC)?;
    out.put(&SNAPSHOT_FORMAT_VERSION.to_le_bytes())?;
    out.put(&node.0)?;
    out.put(&clock.now_ms().to_le_bytes())?;
    let mut keys = 0u64;
    let mut batches = export_batches(store);
    loop {
        // Read before the batch: the absolute expiry is never later than the engine's.
        let now_ms = clock.now_ms();
        let Some(batch) = batches.next() else { break };
        for entry in batch.map_err(WriteFailure::Engine)? {
            let expire_at_ms = entry
                .ttl_ms
                .map_or(0, |ttl_ms| now_ms.saturating_add(ttl_ms).max(1));
            out.put(&[TAG_ENTRY])?;
            out.put(&length_u32(entry.key.len())?.to_le_bytes())?;
            out.put(&length_u32(entry.value.len())?.to_le_bytes())?;
            out.put(&expire_at_ms.to_le_bytes())?;
            out.put(&entry.key)?;
            out.put(&entry.value)?;
            keys += 1;
        }
    }
    out.put(&[TAG_END])?;
    out.put(&keys.to_le_bytes())?;
    let checksum = out.hasher.clone().finalize();
    out.inner.write_all(&checksum.to_le_bytes())?;
    Ok((keys, out.bytes + CHECKSUM_BYTES))
}

/// A key or value length as the format's u32 (the engine's limits keep them below 4 GiB).
fn length_u32(length: usize) -> io::Result<u32> {
    u32::try_from(length).map_err(|_| io::Error::other("a key or value of 4 GiB or more"))
}

/// Loads the snapshot at `path` into `store` for node `node` (see the module docs).
/// `Ok(None)` when there is no snapshot. Blocking IO: run it on the blocking pool.
pub(crate) fn load_snapshot(
    path: &Path,
    store: &Store,
    clock: &dyn Clock,
    node: NodeId,
) -> Result<Option<LoadedSnapshot>, SnapshotLoadError> {
    let started = Instant::now();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_failure(path, "open")(error).into()),
    };
    let bytes = file.metadata().map_err(io_failure(path, "stat"))?.len();
    let reopen = || File::open(path).map_err(|error| io_failure(path, "open")(error).into());
    let (keys, expired, created_unix_ms) =
        read_snapshot(path, bytes, file, reopen, store, clock, node)?;
    Ok(Some(LoadedSnapshot {
        keys,
        expired,
        bytes,
        created_unix_ms,
        duration: started.elapsed(),
    }))
}

/// [`load_snapshot`] from bytes in memory (`path` only names them in errors): the fuzz
/// target's way in, without the file system.
pub(crate) fn load_snapshot_bytes(
    path: &Path,
    content: &[u8],
    store: &Store,
    clock: &dyn Clock,
    node: NodeId,
) -> Result<(u64, u64), SnapshotLoadError> {
    let bytes = content.len() as u64;
    let reopen = || Ok::<_, SnapshotLoadError>(content);
    read_snapshot(path, bytes, content, reopen, store, clock, node)
        .map(|(keys, expired, _)| (keys, expired))
}

/// [`save_snapshot`] into memory: the snapshot's bytes as a save would write them.
pub(crate) fn snapshot_bytes(
    store: &Store,
    clock: &dyn Clock,
    node: NodeId,
) -> Result<Vec<u8>, SnapshotError> {
    let mut content = Vec::new();
    write_snapshot(&mut content, store, clock, node)
        .map_err(|error| error.into_snapshot_error(Path::new("memory")))?;
    Ok(content)
}

/// The load's two passes over a snapshot of `bytes` bytes: the header from `source`, the
/// checksum over a second reader from `reopen`, then the writer's id, then the keys from
/// `source`. Returns the keys loaded, those skipped as expired, and the creation time.
fn read_snapshot<R: Read>(
    path: &Path,
    bytes: u64,
    source: R,
    reopen: impl FnOnce() -> Result<R, SnapshotLoadError>,
    store: &Store,
    clock: &dyn Clock,
    node: NodeId,
) -> Result<(u64, u64, u64), SnapshotLoadError> {
    let mut reader = Reader::new(path, source, bytes);
    let (writer, created_unix_ms) = reader.header()?;
    verify_checksum(path, bytes, reopen()?)?;
    if writer != node {
        return Err(SnapshotLoadError::OtherNode {
            path: path.to_path_buf(),
            found: writer,
            expected: node,
        });
    }
    let (keys, expired) = reader.entries(store, clock)?;
    Ok((keys, expired, created_unix_ms))
}

/// Checks the CRC-32 at the end of the snapshot against every byte before it (a first pass
/// over it, so nothing of a corrupt file reaches the engine).
fn verify_checksum<R: Read>(path: &Path, bytes: u64, source: R) -> Result<(), SnapshotLoadError> {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, source);
    let mut hasher = crc32fast::Hasher::new();
    let mut content = (&mut reader).take(bytes - CHECKSUM_BYTES);
    let mut buffer = vec![0u8; READ_BUFFER_BYTES.min(bytes as usize)];
    loop {
        let read = content
            .read(&mut buffer)
            .map_err(io_failure(path, "read"))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    let mut stored = [0u8; CHECKSUM_BYTES as usize];
    reader
        .read_exact(&mut stored)
        .map_err(|_| SnapshotLoadError::Truncated {
            path: path.to_path_buf(),
            bytes,
        })?;
    let stored = u32::from_le_bytes(stored);
    let computed = hasher.finalize();
    if stored != computed {
        return Err(SnapshotLoadError::ChecksumMismatch {
            path: path.to_path_buf(),
            stored,
            computed,
        });
    }
    Ok(())
}

/// The parsing pass over a snapshot: reads within the bytes before the checksum.
struct Reader<'a, R> {
    path: &'a Path,
    inner: BufReader<R>,
    /// Size of the file.
    bytes: u64,
    /// Bytes left before the checksum.
    remaining: u64,
}

impl<'a, R: Read> Reader<'a, R> {
    fn new(path: &'a Path, source: R, bytes: u64) -> Reader<'a, R> {
        Reader {
            path,
            inner: BufReader::with_capacity(READ_BUFFER_BYTES.min(bytes as usize), source),
            bytes,
            remaining: bytes.saturating_sub(CHECKSUM_BYTES),
        }
    }

    fn truncated(&self) -> SnapshotLoadError {
        SnapshotLoadError::Truncated {
            path: self.path.to_path_buf(),
            bytes: self.bytes,
        }
    }

    fn malformed(&self, reason: &'static str) -> SnapshotLoadError {
        SnapshotLoadError::Malformed {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    /// Reads exactly `buffer.len()` bytes, which must lie before the checksum.
    fn fill(&mut self, buffer: &mut [u8]) -> Result<(), SnapshotLoadError> {
        if buffer.len() as u64 > self.remaining {
            return Err(self.truncated());
        }
        self.inner
            .read_exact(buffer)
            .map_err(io_failure(self.path, "read"))?;
        self.remaining -= buffer.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotLoadError> {
        let mut buffer = [0u8; N];
        self.fill(&mut buffer)?;
        Ok(buffer)
    }

    fn u32(&mut self) -> Result<u32, SnapshotLoadError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, SnapshotLoadError> {
        self.array().map(u64::from_le_bytes)
    }

    /// Magic and version first (a future version may lay out the rest differently), then
    /// the writer's id and the creation time.
    fn header(&mut self) -> Result<(NodeId, u64), SnapshotLoadError> {
        if self.bytes < HEADER_BYTES + END_BYTES {
            let mut magic = [0u8; SNAPSHOT_MAGIC.len()];
            let prefix = (self.bytes as usize).min(magic.len());
            self.inner
                .read_exact(&mut magic[..prefix])
                .map_err(io_failure(self.path, "read"))?;
            if magic[..prefix] != SNAPSHOT_MAGIC[..prefix] {
                return Err(SnapshotLoadError::BadMagic {
                    path: self.path.to_path_buf(),
                });
            }
            return Err(self.truncated());
        }
        if self.array()? != SNAPSHOT_MAGIC {
            return Err(SnapshotLoadError::BadMagic {
                path: self.path.to_path_buf(),
            });
        }
        let version = self.u32()?;
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotLoadError::UnsupportedVersion {
                path: self.path.to_path_buf(),
                version,
            });
        }
        let node = NodeId(self.array()?);
        let created_unix_ms = self.u64()?;
        Ok((node, created_unix_ms))
    }

    /// A length read from the file, bounded by the engine's `limit` and the bytes left.
    fn length(&mut self, what: &'static str, limit: usize) -> Result<usize, SnapshotLoadError> {
        let length = u64::from(self.u32()?);
        if length > limit as u64 {
            return Err(SnapshotLoadError::Oversized {
                path: self.path.to_path_buf(),
                what,
                length,
                limit: limit as u64,
            });
        }
        Ok(length as usize)
    }

    /// Reads every record into `store`; returns the keys loaded and those skipped as
    /// expired.
    fn entries(
        &mut self,
        store: &Store,
        clock: &dyn Clock,
    ) -> Result<(u64, u64), SnapshotLoadError> {
        let (max_key, max_value) = (store.config().max_key_bytes, store.config().max_value_bytes);
        let (mut loaded, mut expired) = (0u64, 0u64);
        loop {
            match self.array::<1>()? {
                [TAG_ENTRY] => {}
                [TAG_END] => break,
                _ => return Err(self.malformed("unknown record tag")),
            }
            let key_length = self.length("key", max_key)?;
            let value_length = self.length("value", max_value)?;
            let expire_at_ms = self.u64()?;
            if (key_length + value_length) as u64 > self.remaining {
                return Err(self.truncated());
            }
            let mut key = vec![0u8; key_length];
            self.fill(&mut key)?;
            let mut value = vec![0u8; value_length];
            self.fill(&mut value)?;
            if expire_at_ms != 0 && expire_at_ms <= clock.now_ms() {
                expired += 1;
                continue;
            }
            let deadline = (expire_at_ms != 0).then_some(expire_at_ms);
            store.apply_set(&key, &value, deadline).map_err(|source| {
                SnapshotLoadError::Engine {
                    path: self.path.to_path_buf(),
                    source,
                }
            })?;
            loaded += 1;
        }
        if self.u64()? != loaded + expired {
            return Err(self.malformed("the key count does not match the records"));
        }
        if self.remaining != 0 {
            return Err(self.malformed("bytes after the end record"));
        }
        Ok((loaded, expired))
    }
}

#[cfg(test)]
mod tests;
