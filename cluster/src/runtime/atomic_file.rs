//! Crash-safe replacement of a file in the data directory, the one home of that sequence
//! for nodes.conf and the data snapshot: write a temp file beside the target, fsync it,
//! rename it over the target, fsync the directory. A crash leaves either the old or the
//! new file, never a torn one.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Buffer of the temp file's writer, in bytes: large enough that a snapshot of many small
/// keys costs few write calls.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// An IO call on a data-directory file failed; nothing was changed by the failed call.
#[derive(Debug, thiserror::Error)]
#[error("cannot {operation} {}: {source}", path.display())]
pub struct FileError {
    /// The file or directory.
    pub path: PathBuf,
    /// What was being done (`create`, `write`, `fsync`, `rename onto`, ...).
    pub operation: &'static str,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// A closure turning an `io::Error` of `operation` on `path` into an [`FileError`].
pub(crate) fn io_failure(
    path: &Path,
    operation: &'static str,
) -> impl FnOnce(io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError {
        path,
        operation,
        source,
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// `path` with `prefix` and `suffix` added around its file name, in the same directory.
pub(crate) fn sibling_path(path: &Path, prefix: &str, suffix: &str) -> Result<PathBuf, FileError> {
    let name = path.file_name().ok_or_else(|| FileError {
        path: path.to_path_buf(),
        operation: "name a file next to",
        source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
    })?;
    let mut sibling = std::ffi::OsString::from(prefix);
    sibling.push(name);
    sibling.push(suffix);
    Ok(parent_dir(path).join(sibling))
}

/// Replaces the file at `path` with what `write` writes, crash-safely (see the module
/// docs). `write` receives a buffered writer on the temp file and the temp file's path (for
/// its own error messages); the buffer is flushed and the file fsynced after it returns.
///
/// Replacements of one path must not run concurrently (the temp file's name is per
/// process); on error the temp file is removed and the previous file is untouched.
pub(crate) fn replace_file<E: From<FileError>>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>, &Path) -> Result<(), E>,
) -> Result<(), E> {
    let temp = sibling_path(path, ".", &format!(".tmp-{}", std::process::id()))?;
    let result = write_synced(&temp, write)
        .and_then(|()| {
            std::fs::rename(&temp, path)
                .map_err(|error| io_failure(path, "rename onto")(error).into())
        })
        .and_then(|()| sync_dir(parent_dir(path)).map_err(E::from));
    if result.is_err() {
        // Best effort: the temp file may not exist or the directory may be gone.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn write_synced<E: From<FileError>>(
    temp: &Path,
    write: impl FnOnce(&mut BufWriter<File>, &Path) -> Result<(), E>,
) -> Result<(), E> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .map_err(io_failure(temp, "create"))?;
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    write(&mut writer, temp)?;
    writer.flush().map_err(io_failure(temp, "write"))?;
    let file = writer
        .into_inner()
        .map_err(|error| io_failure(temp, "write")(error.into_error()))?;
    file.sync_all().map_err(io_failure(temp, "fsync"))?;
    Ok(())
}

/// Fsyncs directory `dir`, so a rename or removal in it survives a crash.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_failure(dir, "fsync directory"))
}

/// Directories cannot be opened as files here; the rename is as durable as the OS makes it.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> Result<(), FileError> {
    Ok(())
}
