//! Per-node identity on the bus: where the transport binds identities
//! (`TcpTls::binding_identities`, `QuicConfig::bind_identities`), each node's certificate
//! names its announced host and its node id (as [`node_identity_name`] spells it). The
//! transport checks the host (the dialed listener's, and the one an accepted link's hello
//! claims); this file checks the rest: at start, that our own certificate names what we
//! will claim, and on every inbound bus message, that the link's certificate names the
//! node id the message claims as its sender. A member holding a valid cluster certificate
//! can then pose neither as another member's address nor as its node id.

use slotkv_transport::tls::{NodeIdentity, PeerIdentity};

use crate::core::node::NodeId;
use crate::runtime::config::NodeTransport;

/// The DNS name a node's certificate carries for node id `id` under per-node identity:
/// `<40 hex digits>.node.slotkv`.
pub fn node_identity_name(id: &NodeId) -> String {
    format!("{id}.node.slotkv")
}

/// Our own certificate, when `transport` binds identities.
fn bound_identity(transport: &NodeTransport) -> Option<&NodeIdentity> {
    match transport {
        NodeTransport::Tcp(config) => config
            .tls
            .as_ref()
            .filter(|tls| tls.binds_identities())
            .map(|tls| tls.identity()),
        NodeTransport::Quic(config) => config.bind_identities.then_some(&config.identity),
        NodeTransport::Custom(_) => None,
    }
}

/// Whether our certificate names what this node will claim (its node id `id` and
/// announced host `host`) when `transport` binds identities; the error says what is
/// missing and how to mend it.
pub(crate) fn check_own_identity(
    transport: &NodeTransport,
    id: &NodeId,
    host: &str,
) -> Result<(), String> {
    let Some(identity) = bound_identity(transport) else {
        return Ok(());
    };
    let id_name = node_identity_name(id);
    let missing: Vec<&str> = [id_name.as_str(), host]
        .into_iter()
        .filter(|name| !identity.names(name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "per-node identity is on but this node's certificate does not name {}; issue it \
         with the subject alternative names {id_name} and {host} (the node id is set with \
         `node_id` or kept in nodes.conf)",
        missing.join(" and ")
    ))
}

/// Whether a bus message claiming sender `sender` may be taken from a link that proved
/// `identity` (`None`: the transport binds no identities, so any).
pub(crate) fn sender_is_named(identity: Option<&PeerIdentity>, sender: &NodeId) -> bool {
    identity.is_none_or(|identity| identity.names(&node_identity_name(sender)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotkv_transport::tcp::{ClusterSecret, TcpConfig, TcpTls};
    use slotkv_transport::tls::DevCertificateAuthority;

    fn tcp(
        identity: &NodeIdentity,
        authority: &DevCertificateAuthority,
        bind: bool,
    ) -> NodeTransport {
        let mut tls = TcpTls::new(identity, &authority.trust_anchor()).unwrap();
        if bind {
            tls = tls.binding_identities();
        }
        let secret = ClusterSecret::new(b"0123456789abcdef0123".to_vec()).unwrap();
        NodeTransport::Tcp(TcpConfig::new(secret).with_tls(tls))
    }

    #[test]
    fn a_certificate_must_name_the_node_id_and_host_it_will_claim() {
        let authority = DevCertificateAuthority::generate().unwrap();
        let id = NodeId::parse_hex(&"07".repeat(20)).unwrap();
        let other = NodeId::parse_hex(&"08".repeat(20)).unwrap();
        let named = authority
            .issue_named_node_identity(&[node_identity_name(&id), "10.1.2.3".to_string()])
            .unwrap();
        let binding = tcp(&named, &authority, true);
        assert_eq!(check_own_identity(&binding, &id, "10.1.2.3"), Ok(()));
        let wrong_host = check_own_identity(&binding, &id, "10.1.2.4").unwrap_err();
        assert!(
            wrong_host.contains("does not name 10.1.2.4"),
            "{wrong_host}"
        );
        let wrong_id = check_own_identity(&binding, &other, "10.1.2.3").unwrap_err();
        assert!(wrong_id.contains(&node_identity_name(&other)), "{wrong_id}");
        // Without binding, any certificate of the cluster will do.
        let plain = authority.issue_node_identity().unwrap();
        assert_eq!(
            check_own_identity(&tcp(&plain, &authority, false), &other, "x"),
            Ok(())
        );
    }

    #[test]
    fn a_message_is_taken_only_from_a_link_whose_certificate_names_its_sender() {
        let authority = DevCertificateAuthority::generate().unwrap();
        let id = NodeId::parse_hex(&"07".repeat(20)).unwrap();
        let other = NodeId::parse_hex(&"08".repeat(20)).unwrap();
        let named = authority
            .issue_named_node_identity(&[node_identity_name(&id)])
            .unwrap();
        let proved = PeerIdentity::new(named.certificate().unwrap().clone());
        assert!(sender_is_named(Some(&proved), &id));
        assert!(!sender_is_named(Some(&proved), &other));
        assert!(sender_is_named(None, &other));
    }
}
