//! nodes.conf on disk: crash-safe saves, bounded loading, and a lock giving a file one owner.
//!
//! The sans-IO core only emits `Output::SaveConfig(NodesConf)` and starts from
//! `Core::restore`; this module is the runtime's side of that contract, with std IO only.
//! The text format lives in [`crate::core::nodes_conf`]. A save replaces the file
//! crash-safely ([`super::atomic_file`]: temp file, fsync, rename, fsync the directory). The runtime must finish each save before sending the transmits
//! queued after it (votes and epoch bumps depend on it).
//!
//! The lock is taken on a sidecar file `<nodes.conf>.lock`, not on nodes.conf itself: every
//! save renames a new inode over nodes.conf, which would silently drop a lock held on the old
//! one. The lock is an OS advisory lock (`flock` on Unix), released when the guard drops or
//! the process dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::atomic_file::{io_failure, replace_file, sibling_path, FileError};

use crate::core::nodes_conf::{
    parse_nodes_conf, render_nodes_conf, NodesConfError, MAX_NODES_CONF_BYTES,
};
use crate::core::NodesConf;

/// Largest nodes.conf [`load`] reads, in bytes (the parser's own bound).
pub(crate) const MAX_CONFIG_FILE_BYTES: u64 = MAX_NODES_CONF_BYTES as u64;

/// Why a nodes.conf operation failed. Each variant names the file; a failed save leaves the
/// previous file in place.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// An IO call failed.
    #[error("cannot {operation} {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`open`, `write`, `fsync`, `rename onto`, ...).
        operation: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another process (or another guard in this one) holds the lock.
    #[error("{} is locked: another node is already using this nodes.conf", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The file is larger than nodes.conf's bound
    /// ([`MAX_NODES_CONF_BYTES`](crate::core::nodes_conf::MAX_NODES_CONF_BYTES)).
    #[error("{} is {bytes} bytes, more than the {limit}-byte limit for nodes.conf", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size, in bytes.
        bytes: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{} is not UTF-8 text; it is not a nodes.conf", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// The text does not parse.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line number.
        #[source]
        source: NodesConfError,
    },
}

fn io_error(path: &Path, operation: &'static str) -> impl FnOnce(io::Error) -> ConfigFileError {
    let failure = io_failure(path, operation);
    move |source| failure(source).into()
}

impl From<FileError> for ConfigFileError {
    fn from(failure: FileError) -> Self {
        ConfigFileError::Io {
            path: failure.path,
            operation: failure.operation,
            source: failure.source,
        }
    }
}

/// Replaces the file at `path` with `text`, crash-safely ([`replace_file`]).
///
/// Saves to one path must not run concurrently (the [`ConfigFileLock`] holder saves); on
/// error the temp file is removed and the previous file is untouched.
pub(crate) fn save_atomically(path: &Path, text: &str) -> Result<(), ConfigFileError> {
    replace_file(path, |writer, temp| {
        writer
            .write_all(text.as_bytes())
            .map_err(io_error(temp, "write"))
    })
}

/// Renders `conf` and saves it with [`save_atomically`].
pub(crate) fn save_conf(path: &Path, conf: &NodesConf) -> Result<(), ConfigFileError> {
    save_atomically(path, &render_nodes_conf(conf))
}

/// Reads and parses nodes.conf. `Ok(None)` when the file does not exist or holds only
/// whitespace (a fresh node, as Redis treats an empty file).
pub(crate) fn load(path: &Path) -> Result<Option<NodesConf>, ConfigFileError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(path, "open")(error)),
    };
    let too_large = |bytes| ConfigFileError::TooLarge {
        path: path.to_path_buf(),
        bytes,
        limit: MAX_CONFIG_FILE_BYTES,
    };
    let length = file.metadata().map_err(io_error(path, "stat"))?.len();
    if length > MAX_CONFIG_FILE_BYTES {
        return Err(too_large(length));
    }
    let mut bytes = Vec::new();
    // One byte past the limit tells a file that grew since the stat.
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path, "read"))?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let text = String::from_utf8(bytes).map_err(|_| ConfigFileError::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse_nodes_conf(&text)
        .map(Some)
        .map_err(|source| ConfigFileError::Parse {
            path: path.to_path_buf(),
            source,
        })
}

/// Exclusive use of one nodes.conf: holds an OS lock on `<nodes.conf>.lock` until dropped.
#[derive(Debug)]
pub(crate) struct ConfigFileLock {
    /// Keeps the lock: closing the file releases it.
    _file: File,
    /// The lock file (shown by `Debug`, checked by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    path: PathBuf,
}

impl ConfigFileLock {
    /// Locks the nodes.conf at `config_path` without waiting; [`ConfigFileError::Locked`]
    /// when another process or guard already holds it. The lock file is created if needed
    /// and left in place afterwards (removing it would race with the next owner).
    pub(crate) fn acquire(config_path: &Path) -> Result<ConfigFileLock, ConfigFileError> {
        let path = sibling_path(config_path, "", ".lock").map_err(ConfigFileError::from)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path, "open lock file"))?;
        // File::try_lock (stable since Rust 1.89, the workspace's rust-version).
        match file.try_lock() {
            Ok(()) => Ok(ConfigFileLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(ConfigFileError::Locked { path }),
            Err(TryLockError::Error(source)) => Err(ConfigFileError::Io {
                path,
                operation: "lock",
                source,
            }),
        }
    }

    /// The lock file's path.
    #[cfg(test)]
    pub(crate) fn lock_path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::node::{NodeFlags, NodeId, NodeRecord};
    use crate::core::slots::SlotRange;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> TempDir {
            let path = std::env::temp_dir()
                .join(format!("slotkv-config-file-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        fn entries(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn conf(epoch: u64) -> NodesConf {
        let id = NodeId([0xab; 20]);
        let mut myself = NodeRecord::new(id, "10.0.0.1", 7000, 17000, 0);
        myself.flags = NodeFlags::MYSELF | NodeFlags::MASTER;
        myself.config_epoch = epoch;
        NodesConf {
            nodes: vec![myself],
            slot_owners: vec![(
                SlotRange {
                    start: 0,
                    end: 16383,
                },
                id,
            )],
            current_epoch: epoch,
            ..NodesConf::default()
        }
    }

    #[test]
    fn a_saved_configuration_loads_back() {
        let dir = TempDir::new("round-trip");
        let path = dir.file("nodes.conf");
        save_conf(&path, &conf(3)).unwrap();
        assert_eq!(load(&path).unwrap(), Some(conf(3)));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            render_nodes_conf(&conf(3))
        );
    }

    #[test]
    fn a_save_replaces_the_file_and_leaves_no_temp_file() {
        let dir = TempDir::new("replace");
        let path = dir.file("nodes.conf");
        save_conf(&path, &conf(1)).unwrap();
        save_conf(&path, &conf(2)).unwrap();
        assert_eq!(load(&path).unwrap(), Some(conf(2)));
        assert_eq!(dir.entries(), vec!["nodes.conf".to_string()]);
    }

    #[test]
    fn a_failed_save_names_the_path_and_keeps_nothing() {
        let dir = TempDir::new("failed-save");
        let path = dir.file("missing-dir").join("nodes.conf");
        let error = save_atomically(&path, "text").unwrap_err();
        assert!(
            matches!(
                error,
                ConfigFileError::Io {
                    operation: "create",
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("missing-dir"), "{error}");
        assert!(dir.entries().is_empty());
        assert!(save_atomically(Path::new("/"), "text").is_err());
    }

    #[test]
    fn a_missing_or_empty_file_is_a_fresh_node() {
        let dir = TempDir::new("fresh");
        let path = dir.file("nodes.conf");
        assert_eq!(load(&path).unwrap(), None);
        std::fs::write(&path, " \n\n").unwrap();
        assert_eq!(load(&path).unwrap(), None);
    }

    #[test]
    fn corrupt_files_are_typed_errors_naming_the_path() {
        let dir = TempDir::new("corrupt");
        let path = dir.file("nodes.conf");
        std::fs::write(&path, "not a node line\n").unwrap();
        let error = load(&path).unwrap_err();
        assert!(matches!(
            error,
            ConfigFileError::Parse {
                source: NodesConfError::Line { line: 1, .. },
                ..
            }
        ));
        assert!(error
            .to_string()
            .starts_with(&format!("{}: nodes.conf line 1", path.display())));
        std::fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
        assert!(matches!(load(&path), Err(ConfigFileError::NotUtf8 { .. })));
        let file = File::create(&path).unwrap();
        file.set_len(MAX_CONFIG_FILE_BYTES + 1).unwrap();
        assert!(matches!(
            load(&path),
            Err(ConfigFileError::TooLarge { bytes, .. }) if bytes == MAX_CONFIG_FILE_BYTES + 1
        ));
    }

    #[test]
    fn only_one_lock_holder_at_a_time() {
        let dir = TempDir::new("lock");
        let path = dir.file("nodes.conf");
        let first = ConfigFileLock::acquire(&path).unwrap();
        assert_eq!(first.lock_path(), dir.file("nodes.conf.lock"));
        let second = ConfigFileLock::acquire(&path).unwrap_err();
        assert!(matches!(second, ConfigFileError::Locked { .. }), "{second}");
        assert!(second.to_string().contains("nodes.conf.lock is locked"));
        // Saving under the lock does not disturb it: the lock file is never renamed.
        save_conf(&path, &conf(1)).unwrap();
        assert!(ConfigFileLock::acquire(&path).is_err());
        drop(first);
        let third = ConfigFileLock::acquire(&path);
        assert!(third.is_ok());
    }
}
