//! Strict decoding of the request protocol on a live node: a frame with an unknown code is
//! refused and counted, and nothing is applied. A raw endpoint on the simulated network plays
//! the peer (sending crafted requests) or the owner (answering a crafted response).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use slotkv_engine::{ExpireCondition, ExpireTime, SetCondition, SetOptions};
use slotkv_transport::sim::SimNet;
use slotkv_transport::{Endpoint, EndpointConfig, Incoming, PeerAddr};

use crate::command::{expire, get, set, strlen, BorrowedCommand, WireCommandError};
use crate::routing::protocol::{
    CommandRequest, Request, Response, REQUEST_FORMAT, RESPONSE_FORMAT,
};
use crate::routing::ClusterError;
use crate::runtime::admin::create_cluster;
use crate::{Node, NodeTransport};

const TIMEOUT: Duration = Duration::from_secs(2);

/// A one-node cluster owning every slot, and a raw endpoint on the same network.
async fn node_and_raw_peer() -> (Node, Endpoint, Incoming) {
    let net = SimNet::new(3);
    let node = Node::builder(NodeTransport::Custom(Arc::new(net.transport())))
        .bind("node:7000")
        .start()
        .await
        .unwrap();
    create_cluster(&[&node], 0, Duration::from_secs(30))
        .await
        .unwrap();
    let raw = PeerAddr::new("raw:7000").unwrap();
    let (endpoint, incoming) =
        Endpoint::bind(Arc::new(net.transport()), raw, EndpointConfig::default())
            .await
            .unwrap();
    (node, endpoint, incoming)
}

fn frame_of(command: BorrowedCommand<'_>) -> Vec<u8> {
    REQUEST_FORMAT.encode(&Request::Command(CommandRequest {
        command,
        asking: false,
        read_from_replica: false,
        durability_replicas: 0,
        durability_timeout_ms: 0,
    }))
}

/// `valid` with the one byte where it differs from `other` (the same frame with another
/// code in one field) set to `code`, which no variant of that field has.
fn with_unknown_code(valid: &[u8], other: &[u8], code: u8) -> Bytes {
    assert_eq!(valid.len(), other.len());
    let differing: Vec<usize> = (0..valid.len())
        .filter(|&at| valid[at] != other[at])
        .collect();
    assert_eq!(differing.len(), 1, "the frames differ in one code byte");
    let mut frame = valid.to_vec();
    frame[differing[0]] = code;
    Bytes::from(frame)
}

fn set_with(condition: SetCondition) -> Vec<u8> {
    let options = SetOptions {
        condition,
        ..SetOptions::default()
    };
    let (key, value) = (&b"k"[..], &b"v"[..]);
    frame_of(
        set::Set {
            key,
            value,
            options: options.into(),
        }
        .into(),
    )
}

fn expire_with(condition: ExpireCondition) -> Vec<u8> {
    let time = ExpireTime::Seconds(100).into();
    let key = &b"k"[..];
    frame_of(
        expire::Expire {
            key,
            time,
            condition: condition.into(),
        }
        .into(),
    )
}

#[tokio::test]
async fn requests_with_unknown_codes_are_refused_counted_and_not_applied() {
    let (node, raw, _incoming) = node_and_raw_peer().await;
    node.cluster().set(b"k", b"before").await.unwrap();
    let key = &b"k"[..];
    let malformed = [
        // SET condition 3: neither always, NX nor XX.
        with_unknown_code(
            &set_with(SetCondition::Always),
            &set_with(SetCondition::IfPresent),
            3,
        ),
        // EXPIRE condition 7: no such NX/XX/GT/LT combination.
        with_unknown_code(
            &expire_with(ExpireCondition::Always),
            &expire_with(ExpireCondition::IfHasTtl),
            7,
        ),
        // Command 200: no such command in the registry.
        with_unknown_code(
            &frame_of(get::Get { key }.into()),
            &frame_of(strlen::Strlen { key }.into()),
            200,
        ),
    ];
    for (count, frame) in malformed.into_iter().enumerate() {
        let answer = raw
            .request_with_timeout(node.bus_address(), frame, TIMEOUT)
            .await;
        assert!(answer.is_err(), "a malformed request got an answer");
        assert_eq!(node.stats().requests_malformed, count as u64 + 1);
    }
    let store = node.store();
    assert_eq!(store.get(b"k").as_deref(), Some(&b"before"[..]));
    assert_eq!(store.pttl(b"k"), -1, "no expiry was applied");
    let valid = Bytes::from(set_with(SetCondition::IfPresent));
    let answer = raw
        .request_with_timeout(node.bus_address(), valid, TIMEOUT)
        .await
        .unwrap();
    assert!(matches!(
        RESPONSE_FORMAT.decode(&answer),
        Ok(Response::Done(..))
    ));
    assert_eq!(store.get(b"k").as_deref(), Some(&b"v"[..]));
    assert_eq!(node.stats().requests_malformed, 3);
    node.shutdown().await;
}

#[tokio::test]
async fn an_answer_with_an_unknown_error_code_is_refused_and_counted() {
    let (node, raw, mut incoming) = node_and_raw_peer().await;
    let failed = |error| RESPONSE_FORMAT.encode(&Response::Failed(error));
    let answer = with_unknown_code(
        &failed(WireCommandError::NotAnInteger),
        &failed(WireCommandError::IncrementOverflow),
        99,
    );
    let owner = tokio::spawn(async move {
        let request = incoming.requests.recv().await.unwrap();
        request.responder.respond(answer).unwrap();
    });
    let cluster = node.cluster();
    let key = &b"k"[..];
    let request: Request<BorrowedCommand<'_>> =
        Request::Command(cluster.request(get::Get { key }.into()));
    let result = cluster.send(raw.local_addr(), &request, TIMEOUT).await;
    owner.await.unwrap();
    assert!(
        matches!(result, Err(ClusterError::Protocol(_))),
        "{result:?}"
    );
    assert_eq!(node.stats().responses_malformed, 1);
    node.shutdown().await;
}
