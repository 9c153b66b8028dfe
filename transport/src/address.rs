//! Peer addresses: one type that names a node for every transport.
//!
//! TCP and QUIC read a [`PeerAddr`] as `host:port`; the simulated network reads it as a node
//! name. The transport that receives the address decides how to interpret it, so the cluster
//! runtime can store, compare and gossip addresses without knowing which transport is in use.

use std::fmt;

use crate::error::AddressError;

/// The longest address accepted, in bytes. It bounds the hello frame that carries it.
pub const PEER_ADDR_BYTES_MAX: usize = 255;

/// The address of a node's listening side: `host:port` for TCP/QUIC, a node name for the
/// simulated network.
///
/// Invariant: non-empty, at most [`PEER_ADDR_BYTES_MAX`] bytes, no whitespace or control
/// characters. Two addresses are equal when their strings are equal (no resolution).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddr(String);

impl PeerAddr {
    /// Validates and wraps an address string.
    pub fn new(address: impl Into<String>) -> Result<PeerAddr, AddressError> {
        let address = address.into();
        if address.is_empty() {
            return Err(AddressError::Empty);
        }
        if address.len() > PEER_ADDR_BYTES_MAX {
            return Err(AddressError::TooLong {
                length: address.len(),
            });
        }
        if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AddressError::InvalidCharacter { address });
        }
        Ok(PeerAddr(address))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `host:port` from parts; an IPv6 host is bracketed (`[::1]:7000`).
    pub fn from_host_port(host: &str, port: u16) -> Result<PeerAddr, AddressError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.contains(':') {
            PeerAddr::new(format!("[{host}]:{port}"))
        } else {
            PeerAddr::new(format!("{host}:{port}"))
        }
    }

    /// The host (brackets of an IPv6 host removed) and port of a `host:port` address;
    /// `None` when the address has no numeric port (e.g. a simulated node's bare name).
    pub fn host_and_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.0.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let host = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        Some((host, port))
    }

    /// The host of a `host:port` address (see [`PeerAddr::host_and_port`]); the whole
    /// address when it has no numeric port.
    pub fn host(&self) -> &str {
        self.host_and_port().map_or(self.as_str(), |(host, _)| host)
    }

    /// This address with its host replaced by `host` and, when given, its port by `port`:
    /// the address peers should use for a node bound here (e.g. bound `0.0.0.0:7000`,
    /// announced `10.0.0.5:7000`). `None` when the address is not `host:port`.
    pub fn announced(&self, host: Option<&str>, port: Option<u16>) -> Option<PeerAddr> {
        let (bound_host, bound_port) = self.host_and_port()?;
        PeerAddr::from_host_port(host.unwrap_or(bound_host), port.unwrap_or(bound_port)).ok()
    }

    /// Resolves a `host:port` address to a socket address (TCP and QUIC use this).
    pub async fn resolve(&self) -> Result<std::net::SocketAddr, AddressError> {
        if let Ok(socket) = self.0.parse() {
            return Ok(socket);
        }
        let mut found = tokio::net::lookup_host(self.0.as_str())
            .await
            .map_err(|error| AddressError::Unresolvable {
                address: self.0.clone(),
                cause: error.to_string(),
            })?;
        found.next().ok_or_else(|| AddressError::Unresolvable {
            address: self.0.clone(),
            cause: "no addresses found".to_string(),
        })
    }
}

impl From<std::net::SocketAddr> for PeerAddr {
    fn from(socket: std::net::SocketAddr) -> PeerAddr {
        PeerAddr(socket.to_string())
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl fmt::Debug for PeerAddr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "PeerAddr({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_long_and_whitespace_addresses() {
        assert!(PeerAddr::new("").is_err());
        assert!(PeerAddr::new("a".repeat(PEER_ADDR_BYTES_MAX + 1)).is_err());
        assert!(PeerAddr::new("node a").is_err());
        assert!(PeerAddr::new("127.0.0.1:7000").is_ok());
    }

    #[test]
    fn splits_and_joins_host_and_port() {
        let v4 = PeerAddr::new("0.0.0.0:7000").unwrap();
        assert_eq!(v4.host_and_port(), Some(("0.0.0.0", 7000)));
        let v6 = PeerAddr::new("[::]:7000").unwrap();
        assert_eq!(v6.host_and_port(), Some(("::", 7000)));
        assert_eq!(PeerAddr::new("n1").unwrap().host_and_port(), None);
        assert_eq!(
            v4.announced(Some("10.0.0.5"), None).unwrap().as_str(),
            "10.0.0.5:7000"
        );
        assert_eq!(
            v6.announced(Some("fd00::5"), Some(7100)).unwrap().as_str(),
            "[fd00::5]:7100"
        );
        assert_eq!(v4.announced(None, None).unwrap(), v4);
    }

    #[tokio::test]
    async fn resolves_literal_socket_addresses() {
        let address = PeerAddr::new("127.0.0.1:7000").unwrap();
        assert_eq!(address.resolve().await.unwrap().port(), 7000);
    }
}
