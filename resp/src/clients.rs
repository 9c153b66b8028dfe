//! The server's table of connected clients: what CLIENT LIST / INFO clients show and how
//! CLIENT KILL reaches another connection. Bounded by `maxclients` (the accept loop refuses
//! a client beyond it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// What one connection shows of itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientInfo {
    /// CLIENT SETNAME.
    pub(crate) name: String,
    /// CLIENT SETINFO LIB-NAME.
    pub(crate) lib_name: String,
    /// CLIENT SETINFO LIB-VER.
    pub(crate) lib_version: String,
    /// The last command's name, lower case.
    pub(crate) last_command: String,
    /// 2 or 3.
    pub(crate) protocol: u8,
    /// READONLY is on.
    pub(crate) read_only: bool,
}

/// One connected client.
#[derive(Debug)]
pub(crate) struct ClientEntry {
    /// CLIENT ID.
    pub(crate) id: u64,
    /// The peer's address.
    pub(crate) address: SocketAddr,
    /// The server's address it connected to.
    pub(crate) local_address: SocketAddr,
    /// When it connected.
    pub(crate) connected: Instant,
    /// What it shows (updated by its connection).
    pub(crate) info: Mutex<ClientInfo>,
    /// Notified by CLIENT KILL (and the server's shutdown): the connection closes.
    pub(crate) kill: Notify,
}

/// The connected clients (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Clients {
    next_id: AtomicU64,
    entries: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
    /// Connections accepted since start.
    pub(crate) connections_received: AtomicU64,
    /// Connections refused at `maxclients`.
    pub(crate) rejected_connections: AtomicU64,
    /// Commands processed since start.
    pub(crate) commands_processed: AtomicU64,
}

impl Clients {
    /// Registers a new connection, or `None` when `max` clients are connected.
    pub(crate) fn register(
        &self,
        address: SocketAddr,
        local_address: SocketAddr,
        max: usize,
    ) -> Option<Arc<ClientEntry>> {
        let mut entries = self.entries.lock();
        if entries.len() >= max {
            self.rejected_connections.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.connections_received.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(ClientEntry {
            id,
            address,
            local_address,
            connected: Instant::now(),
            info: Mutex::new(ClientInfo {
                protocol: 2,
                ..ClientInfo::default()
            }),
            kill: Notify::new(),
        });
        entries.insert(id, Arc::clone(&entry));
        Some(entry)
    }

    /// Removes a closed connection.
    pub(crate) fn remove(&self, id: u64) {
        self.entries.lock().remove(&id);
    }

    /// Every connected client, by id.
    pub(crate) fn all(&self) -> Vec<Arc<ClientEntry>> {
        self.entries.lock().values().cloned().collect()
    }

    /// Connected clients.
    pub(crate) fn count(&self) -> usize {
        self.entries.lock().len()
    }

    /// Asks every connection to close (the server's shutdown).
    pub(crate) fn kill_all(&self) {
        for entry in self.all() {
            entry.kill.notify_one();
        }
    }
}

impl ClientEntry {
    /// The CLIENT LIST line of this client.
    pub(crate) fn list_line(&self) -> String {
        let info = self.info.lock();
        let age = self.connected.elapsed().as_secs();
        let flags = if info.read_only { "r" } else { "N" };
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={age} idle=0 flags={flags} db=0 sub=0 \
             psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 \
             omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} \
             lib-ver={}",
            self.id,
            self.address,
            self.local_address,
            info.name,
            if info.last_command.is_empty() {
                "NULL"
            } else {
                &info.last_command
            },
            info.protocol,
            info.lib_name,
            info.lib_version,
        )
    }
}
