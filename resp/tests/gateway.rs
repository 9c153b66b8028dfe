//! The gateway against in-process nodes over real sockets: redirections worded as Redis
//! words them and followed by the `redis` crate's cluster client (MOVED, and ASK during a
//! slot migration), the authentication gate, HELLO 3, CLIENT, the connection's errors,
//! `maxclients`, the output buffer limit, and a shutdown that releases the port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use slotkv_cluster::core::SetSlotAction;
use slotkv_cluster::{create_cluster, Node, NodeTransport};
use slotkv_engine::key_slot;
use slotkv_resp::{RespConfig, RespListener, RespServer};
use slotkv_transport::tcp::{ClusterSecret, TcpConfig};

/// Nodes and their gateways on a runtime of their own, so the test body can use blocking
/// clients.
struct World {
    runtime: tokio::runtime::Runtime,
    nodes: Vec<Arc<Node>>,
    servers: Vec<RespServer>,
}

impl World {
    fn new(count: usize, masters: usize, config: RespConfig) -> World {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (nodes, servers) = runtime.block_on(async {
            let mut nodes = Vec::new();
            let mut servers = Vec::new();
            for _ in 0..count {
                let listener = RespListener::bind("127.0.0.1:0").await.unwrap();
                let secret = ClusterSecret::new(b"gateway test cluster secret".to_vec()).unwrap();
                let node = Node::builder(NodeTransport::Tcp(TcpConfig::new(secret)))
                    .client_port(listener.local_addr().port())
                    .node_timeout_ms(1_000)
                    .start()
                    .await
                    .unwrap();
                let node = Arc::new(node);
                servers.push(RespServer::start(
                    listener,
                    Arc::clone(&node),
                    config.clone(),
                ));
                nodes.push(node);
            }
            if let Some(per_master) = count.checked_div(masters) {
                let refs: Vec<&Node> = nodes.iter().map(|node| &**node).collect();
                create_cluster(&refs, per_master - 1, Duration::from_secs(20))
                    .await
                    .unwrap();
            }
            (nodes, servers)
        });
        World {
            runtime,
            nodes,
            servers,
        }
    }

    fn address(&self, index: usize) -> SocketAddr {
        self.servers[index].local_addr()
    }

    fn connect(&self, index: usize) -> Client {
        Client::connect(self.address(index))
    }

    /// The index of the node owning `key`'s slot.
    fn owner_of(&self, key: &[u8]) -> usize {
        let slot = key_slot(key);
        self.runtime.block_on(async {
            for (index, node) in self.nodes.iter().enumerate() {
                let id = node.id();
                let owns = node
                    .inspect(move |core| core.slot_owner(slot) == Some(id))
                    .await
                    .unwrap();
                if owns {
                    return index;
                }
            }
            panic!("no owner of slot {slot}");
        })
    }
}

/// A blocking RESP2 client that prints each reply as text (arrays one item per line).
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn send(&mut self, args: &[&str]) {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.writer.write_all(out.as_bytes()).unwrap();
    }

    fn call(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.reply()
    }

    fn reply(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let line = line.trim_end_matches("\r\n").to_string();
        let (kind, rest) = line.split_at(1);
        match kind {
            "$" if rest == "-1" => "(nil)".to_string(),
            "$" => {
                let mut body = vec![0; rest.parse::<usize>().unwrap() + 2];
                self.reader.read_exact(&mut body).unwrap();
                String::from_utf8_lossy(&body[..body.len() - 2]).into_owned()
            }
            "*" | "%" => {
                let count: usize = rest.parse().unwrap();
                let count = if kind == "%" { count * 2 } else { count };
                (0..count)
                    .map(|_| self.reply())
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            _ => line,
        }
    }
}

#[test]
fn keys_of_other_nodes_are_moved_and_a_cluster_client_follows() {
    let world = World::new(3, 3, RespConfig::default());
    let key = "user:1000";
    let owner = world.owner_of(key.as_bytes());
    let other = (owner + 1) % 3;
    let slot = key_slot(key.as_bytes());
    let mut client = world.connect(other);
    assert_eq!(
        client.call(&["SET", key, "v"]),
        format!("-MOVED {slot} {}", world.address(owner))
    );
    assert_eq!(
        client.call(&["MGET", "a", "b"]),
        "-CROSSSLOT Keys in request don't hash to the same slot"
    );
    let mut direct = world.connect(owner);
    assert_eq!(direct.call(&["set", key, "v"]), "+OK");
    assert_eq!(direct.call(&["GET", key]), "v");
    assert_eq!(direct.call(&["TYPE", key]), "+string");
    assert_eq!(
        client.call(&["type", key]),
        format!("-MOVED {slot} {}", world.address(owner))
    );

    let urls: Vec<String> = (0..3)
        .map(|index| format!("redis://{}/", world.address(index)))
        .collect();
    let cluster = redis::cluster::ClusterClient::new(urls).unwrap();
    let mut connection = cluster.get_connection().unwrap();
    for index in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{index}"))
            .arg(index)
            .query(&mut connection)
            .unwrap();
    }
    for index in 0..300 {
        let value: i64 = redis::cmd("INCR")
            .arg(format!("k{index}"))
            .query(&mut connection)
            .unwrap();
        assert_eq!(value, index + 1);
    }
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg("{t}a")
        .arg("{t}b")
        .query(&mut connection)
        .unwrap();
    assert_eq!(values, vec![None, None]);
}

#[test]
fn a_migrating_slot_answers_ask_and_a_cluster_client_follows_it() {
    let world = World::new(2, 2, RespConfig::default());
    let key = "migrating:key";
    let slot = key_slot(key.as_bytes());
    let source = world.owner_of(key.as_bytes());
    let target = 1 - source;
    let (source_id, target_id) = (world.nodes[source].id(), world.nodes[target].id());
    world.runtime.block_on(async {
        world.nodes[target]
            .set_slot(slot, SetSlotAction::Importing(source_id))
            .await
            .unwrap();
        world.nodes[source]
            .set_slot(slot, SetSlotAction::Migrating(target_id))
            .await
            .unwrap();
    });
    let mut on_source = world.connect(source);
    assert_eq!(
        on_source.call(&["GET", key]),
        format!("-ASK {slot} {}", world.address(target))
    );
    let mut on_target = world.connect(target);
    assert_eq!(
        on_target.call(&["GET", key]),
        format!("-MOVED {slot} {}", world.address(source)),
        "without ASKING the target redirects to the owner"
    );

    let urls = vec![format!("redis://{}/", world.address(source))];
    let cluster = redis::cluster::ClusterClient::new(urls).unwrap();
    let mut connection = cluster.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg("moved-over")
        .query(&mut connection)
        .unwrap();
    assert_eq!(on_target.call(&["ASKING"]), "+OK");
    assert_eq!(
        on_target.call(&["GET", key]),
        "moved-over",
        "the client wrote to the target"
    );
    assert_eq!(
        on_target.call(&["GET", key]),
        format!("-MOVED {slot} {}", world.address(source)),
        "ASKING holds for one command"
    );
}

#[test]
fn a_password_gates_every_command_until_auth_or_hello_auth() {
    let config = RespConfig {
        requirepass: Some("sesame".to_string()),
        ..RespConfig::default()
    };
    let world = World::new(1, 1, config);
    let mut client = world.connect(0);
    assert_eq!(
        client.call(&["GET", "k"]),
        "-NOAUTH Authentication required."
    );
    assert_eq!(client.call(&["PING"]), "-NOAUTH Authentication required.");
    assert_eq!(
        client.call(&["AUTH", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(client.call(&["AUTH", "sesame"]), "+OK");
    assert_eq!(client.call(&["PING"]), "+PONG");

    let mut resp3 = world.connect(0);
    let hello = resp3.call(&["HELLO", "3", "AUTH", "default", "sesame", "SETNAME", "app"]);
    assert!(hello.contains("proto\n:3"), "{hello}");
    assert!(hello.contains("mode\ncluster"), "{hello}");
    assert_eq!(resp3.call(&["CLIENT", "GETNAME"]), "app");
    resp3.send(&["GET", "missing"]);
    let mut null = String::new();
    resp3.reader.read_line(&mut null).unwrap();
    assert_eq!(null, "_\r\n", "RESP3's null after HELLO 3");
}

#[test]
fn connection_commands_and_errors_are_worded_as_redis_words_them() {
    let world = World::new(1, 1, RespConfig::default());
    let mut client = world.connect(0);
    assert_eq!(client.call(&["ping", "hi"]), "hi");
    assert_eq!(client.call(&["ECHO", "x"]), "x");
    assert_eq!(client.call(&["SELECT", "0"]), "+OK");
    assert_eq!(
        client.call(&["SELECT", "1"]),
        "-ERR SELECT is not allowed in cluster mode"
    );
    assert_eq!(
        client.call(&["NOSUCH", "a"]),
        "-ERR unknown command 'NOSUCH', with args beginning with: 'a' "
    );
    assert_eq!(
        client.call(&["GET"]),
        "-ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        client.call(&["SET", "k", "v", "NX", "XX"]),
        "-ERR syntax error"
    );
    assert_eq!(client.call(&["SET", "k", "v", "EX", "10"]), "+OK");
    assert_eq!(client.call(&["TTL", "k"]), ":10");
    assert_eq!(client.call(&["SET", "k", "w", "GET"]), "v");
    assert_eq!(client.call(&["SET", "k", "x", "NX"]), "(nil)");
    assert_eq!(
        client.call(&["INCR", "k"]),
        "-ERR value is not an integer or out of range"
    );
    assert_eq!(client.call(&["CLUSTER", "KEYSLOT", "foo"]), ":12182");
    assert_eq!(
        client.call(&["CLUSTER", "COUNTKEYSINSLOT", &key_slot(b"k").to_string()]),
        ":1"
    );
    assert_eq!(
        client.call(&["CLUSTER", "GETKEYSINSLOT", &key_slot(b"k").to_string(), "5"]),
        "k"
    );
    assert_eq!(
        client.call(&["CLUSTER", "NOPE"]),
        "-ERR unknown subcommand 'NOPE'. Try CLUSTER HELP."
    );
    assert_eq!(client.call(&["DBSIZE"]), ":1");
    assert_eq!(client.call(&["KEYS", "*"]), "k");
    assert_eq!(client.call(&["FLUSHALL"]), "+OK");
    assert_eq!(client.call(&["DBSIZE"]), ":0");
    assert_eq!(client.call(&["CLIENT", "SETNAME", "first"]), "+OK");
    let id = client.call(&["CLIENT", "ID"]);
    let list = client.call(&["CLIENT", "LIST"]);
    assert!(
        list.contains(&format!("id={}", &id[1..])) && list.contains("name=first"),
        "{list}"
    );

    let mut victim = world.connect(0);
    assert_eq!(victim.call(&["PING"]), "+PONG");
    let victim_id = victim.call(&["CLIENT", "ID"]);
    assert_eq!(
        client.call(&["CLIENT", "KILL", "ID", &victim_id[1..]]),
        ":1"
    );
    victim.send(&["PING"]);
    let mut rest = Vec::new();
    let _ = victim.reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "a killed client is closed");
    assert_eq!(client.call(&["QUIT"]), "+OK");
}

#[test]
fn a_node_without_slots_is_down_for_keyed_commands() {
    let world = World::new(1, 0, RespConfig::default());
    let mut client = world.connect(0);
    assert_eq!(
        client.call(&["GET", "k"]),
        "-CLUSTERDOWN Hash slot not served"
    );
}

#[test]
fn clients_beyond_maxclients_are_refused() {
    let config = RespConfig {
        max_clients: 2,
        ..RespConfig::default()
    };
    let world = World::new(1, 1, config);
    let mut first = world.connect(0);
    let mut second = world.connect(0);
    assert_eq!(first.call(&["PING"]), "+PONG");
    assert_eq!(second.call(&["PING"]), "+PONG");
    let mut third = world.connect(0);
    assert_eq!(third.reply(), "-ERR max number of clients reached");
    drop(first);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(world.connect(0).call(&["PING"]), "+PONG");
}

#[test]
fn a_client_leaving_replies_unread_past_the_limit_is_closed() {
    let config = RespConfig {
        output_buffer_bytes_max: 1 << 20,
        ..RespConfig::default()
    };
    let world = World::new(1, 1, config);
    let value = "x".repeat(512 << 10);
    let mut client = world.connect(0);
    assert_eq!(client.call(&["SET", "big", &value]), "+OK");
    let requests = 400;
    let request = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n";
    for _ in 0..requests {
        // The server may close the connection before all requests are written: that is the
        // behaviour under test, so a failed write ends the sending.
        if client.writer.write_all(request).is_err() {
            break;
        }
    }
    // Without reading, the server's unread replies pass 1 MiB beyond what the sockets hold.
    std::thread::sleep(Duration::from_millis(1_500));
    let mut received = Vec::new();
    let _ = client.reader.read_to_end(&mut received);
    assert!(
        received.len() < requests * value.len(),
        "all {} bytes were delivered: the client was not closed",
        received.len()
    );
    assert_eq!(
        world.connect(0).call(&["PING"]),
        "+PONG",
        "others are served"
    );
}

#[test]
fn shutdown_releases_the_port_before_returning() {
    let mut world = World::new(1, 0, RespConfig::default());
    let address = world.address(0);
    let mut client = world.connect(0);
    assert_eq!(client.call(&["PING"]), "+PONG");
    let server = world.servers.remove(0);
    world.runtime.block_on(server.shutdown());
    std::net::TcpListener::bind(address).expect("the port is free again");
    let mut rest = Vec::new();
    let _ = client.reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "open connections were closed");
}

/// A two-master world where each of `keys` (of the slot of `{m}`) is set to `v-<key>` on the
/// slot's owner (the source), then the slot is opened from it to the other (the target), as
/// `redis-cli --cluster reshard` opens it; returns the world, the source's and target's
/// indices and the slot.
fn migrating_world(keys: &[&str]) -> (World, usize, usize, u16) {
    let world = World::new(2, 2, RespConfig::default());
    let slot = key_slot(b"{m}");
    let source = world.owner_of(b"{m}");
    let target = 1 - source;
    let mut client = world.connect(source);
    for key in keys {
        assert_eq!(client.call(&["SET", key, &format!("v-{key}")]), "+OK");
    }
    let (source_id, target_id) = (world.nodes[source].id(), world.nodes[target].id());
    world.runtime.block_on(async {
        world.nodes[target]
            .set_slot(slot, SetSlotAction::Importing(source_id))
            .await
            .unwrap();
        world.nodes[source]
            .set_slot(slot, SetSlotAction::Migrating(target_id))
            .await
            .unwrap();
    });
    (world, source, target, slot)
}

#[test]
fn migrate_moves_keys_to_the_target_named_by_its_client_address() {
    let (world, source, target, slot) =
        migrating_world(&["{m}a", "{m}b", "{m}c", "{m}busy", "{m}copied"]);
    let address = world.address(target);
    let (host, port) = (address.ip().to_string(), address.port().to_string());
    let mut on_source = world.connect(source);
    let mut on_target = world.connect(target);
    assert_eq!(on_source.call(&["PEXPIRE", "{m}a", "600000"]), ":1");
    let migrate = |keys: &[&str], options: &[&str]| -> Vec<String> {
        let mut args = vec!["MIGRATE", &host, &port, "", "0", "5000"];
        args.extend_from_slice(options);
        args.push("KEYS");
        args.extend_from_slice(keys);
        args.iter().map(|arg| arg.to_string()).collect()
    };
    let call = |client: &mut Client, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        client.call(&args)
    };

    assert_eq!(
        call(&mut on_source, migrate(&["{m}a", "{m}b", "{m}gone"], &[])),
        "+OK",
        "the keys found move, a missing one is no error"
    );
    assert_eq!(
        on_source.call(&["GET", "{m}a"]),
        format!("-ASK {slot} {address}"),
        "gone from the source"
    );
    assert_eq!(on_target.call(&["ASKING"]), "+OK");
    assert_eq!(on_target.call(&["GET", "{m}a"]), "v-{m}a");
    assert_eq!(on_target.call(&["ASKING"]), "+OK");
    let ttl: i64 = on_target.call(&["PTTL", "{m}a"])[1..].parse().unwrap();
    assert!((1..=600_000).contains(&ttl), "the TTL moved along: {ttl}");
    assert_eq!(
        on_source.call(&["MIGRATE", &host, &port, "{m}c", "0", "5000"]),
        "+OK",
        "the single-key form"
    );
    assert_eq!(
        call(&mut on_source, migrate(&["{m}a", "{m}nothing"], &[])),
        "+NOKEY"
    );

    assert_eq!(on_target.call(&["ASKING"]), "+OK");
    assert_eq!(on_target.call(&["SET", "{m}busy", "target's"]), "+OK");
    assert_eq!(
        call(&mut on_source, migrate(&["{m}busy"], &[])),
        "-ERR Target instance replied with error: BUSYKEY Target key name already exists."
    );
    assert_eq!(
        on_source.call(&["GET", "{m}busy"]),
        "v-{m}busy",
        "a busy key stays at the source"
    );
    assert_eq!(
        call(&mut on_source, migrate(&["{m}busy"], &["REPLACE"])),
        "+OK"
    );
    assert_eq!(on_target.call(&["ASKING"]), "+OK");
    assert_eq!(on_target.call(&["GET", "{m}busy"]), "v-{m}busy");

    assert_eq!(
        call(
            &mut on_source,
            migrate(&["{m}copied"], &["COPY", "AUTH2", "user", "secret"])
        ),
        "+OK"
    );
    assert_eq!(on_source.call(&["GET", "{m}copied"]), "v-{m}copied");
    assert_eq!(on_target.call(&["ASKING"]), "+OK");
    assert_eq!(on_target.call(&["GET", "{m}copied"]), "v-{m}copied");
}

#[test]
fn migrate_refusals_are_worded_as_redis_words_them() {
    let (world, source, target, _) = migrating_world(&["{m}k"]);
    let address = world.address(target);
    let (host, port) = (address.ip().to_string(), address.port().to_string());
    let mut on_source = world.connect(source);
    assert_eq!(
        on_source.call(&["MIGRATE", "127.0.0.1", "1", "{m}k", "0", "1000"]),
        "-IOERR error or timeout connecting to the client",
        "no node of the cluster is there: nothing is dialled"
    );
    assert_eq!(
        on_source.call(&["MIGRATE", "127.0.0.1", "1", "{m}none", "0", "1000"]),
        "+NOKEY",
        "keys are looked up first, as Redis does"
    );
    assert_eq!(
        on_source.call(&["MIGRATE", &host, &port, "{m}k", "3", "1000"]),
        "-ERR Target instance replied with error: ERR SELECT is not allowed in cluster mode"
    );
    let own = world.address(source);
    assert_eq!(
        on_source.call(&[
            "MIGRATE",
            &own.ip().to_string(),
            &own.port().to_string(),
            "{m}k",
            "0",
            "1000"
        ]),
        "-ERR MIGRATE's target is this node itself"
    );
    assert_eq!(
        on_source.call(&["MIGRATE", &host, &port, "{m}k", "0"]),
        "-ERR wrong number of arguments for 'migrate' command"
    );
    assert_eq!(
        on_source.call(&["MIGRATE", &host, &port, "{m}k", "0", "1000", "KEYS", "{m}k"]),
        "-ERR When using MIGRATE KEYS option, the key argument must be set to the empty string"
    );
    assert_eq!(
        on_source.call(&["MIGRATE", &host, &port, "{m}k", "0", "1000", "SOON"]),
        "-ERR syntax error"
    );
    assert_eq!(
        on_source.call(&["MIGRATE", &host, &port, "", "0", "1000", "KEYS", "{m}k", "other"]),
        "-CROSSSLOT Keys in request don't hash to the same slot"
    );
    let elsewhere = (0..)
        .map(|index| format!("elsewhere:{index}"))
        .find(|key| world.owner_of(key.as_bytes()) == target)
        .unwrap();
    assert_eq!(
        on_source.call(&["MIGRATE", &host, &port, &elsewhere, "0", "1000"]),
        format!("-MOVED {} {address}", key_slot(elsewhere.as_bytes())),
        "a stable slot of another node is redirected"
    );
    let mut on_target = world.connect(target);
    assert_eq!(
        on_target.call(&["MIGRATE", &host, &port, "{m}k", "0", "1000"]),
        "+NOKEY",
        "an importing slot runs MIGRATE locally, whatever the keys"
    );
    assert_eq!(on_source.call(&["GET", "{m}k"]), "v-{m}k", "nothing moved");
    assert_eq!(
        on_source
            .call(&["COMMAND", "INFO", "migrate"])
            .lines()
            .take(2)
            .collect::<Vec<_>>(),
        vec!["migrate", ":-6"]
    );
}

#[test]
fn cluster_reset_turns_a_replica_into_an_empty_master() {
    let world = World::new(2, 1, RespConfig::default());
    let master = world.owner_of(b"kept");
    let replica = 1 - master;
    let mut on_master = world.connect(master);
    assert_eq!(on_master.call(&["SET", "kept", "v"]), "+OK");
    let mut on_replica = world.connect(replica);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while on_replica.call(&["DBSIZE"]) != ":1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica never held the key"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ROLE, as Redis answers it on each side (what Sentinel-era clients and scripts read).
    let role = on_replica.call(&["ROLE"]);
    let lines: Vec<&str> = role.lines().collect();
    let master_port = world.address(master).port();
    assert_eq!(lines[0], "slave", "{role}");
    assert_eq!(lines[2], format!(":{master_port}"), "{role}");
    assert_eq!(lines[3], "connected", "{role}");
    let role = on_master.call(&["ROLE"]);
    let replica_port = world.address(replica).port().to_string();
    assert!(
        role.starts_with("master") && role.lines().any(|line| line == replica_port),
        "{role}"
    );
    assert_eq!(
        on_master.call(&["CLUSTER", "RESET", "SOFT"]),
        "-ERR CLUSTER RESET can't be called with master nodes containing keys"
    );
    assert_eq!(on_replica.call(&["CLUSTER", "RESET", "SOFT"]), "+OK");
    assert_eq!(on_replica.call(&["DBSIZE"]), ":0", "its copy was deleted");
    let nodes = on_replica.call(&["CLUSTER", "NODES"]);
    assert!(
        nodes.contains("myself,master") && nodes.lines().count() == 1,
        "{nodes}"
    );
    assert_eq!(on_master.call(&["GET", "kept"]), "v");
}

#[test]
fn slot_stats_report_the_keys_reads_and_writes_of_this_nodes_slots() {
    let world = World::new(3, 3, RespConfig::default());
    let key = "user:1000";
    let owner = world.owner_of(key.as_bytes());
    let slot = key_slot(key.as_bytes()).to_string();
    let mut direct = world.connect(owner);
    assert_eq!(direct.call(&["SET", key, "v"]), "+OK");
    assert_eq!(direct.call(&["GET", key]), "v");
    assert_eq!(direct.call(&["GET", key]), "v");
    let stats = direct.call(&["CLUSTER", "SLOT-STATS", "SLOTSRANGE", &slot, &slot]);
    let fields: Vec<&str> = stats.lines().collect();
    assert_eq!(fields.len(), 9, "{stats}");
    assert_eq!(fields[0], format!(":{slot}"));
    assert_eq!(
        (fields[1], fields[2], fields[5], fields[6], fields[7], fields[8]),
        ("key-count", ":1", "reads", ":2", "writes", ":1"),
        "{stats}"
    );
    // The busiest slot by reads is that one; another node's shard does not list it.
    let top = direct.call(&["cluster", "slot-stats", "orderby", "reads", "limit", "1"]);
    assert!(top.starts_with(&format!(":{slot}\n")), "{top}");
    let mut other = world.connect((owner + 1) % 3);
    assert_eq!(
        other.call(&["CLUSTER", "SLOT-STATS", "SLOTSRANGE", &slot, &slot]),
        ""
    );
    for (args, error) in [
        (vec!["ORDERBY", "cpu-usec"], "-ERR syntax error"),
        (
            vec!["ORDERBY", "reads", "LIMIT", "0"],
            "-ERR Limit has to lie in between 1 and 16384 (maximum number of slots)",
        ),
        (
            vec!["SLOTSRANGE", "9", "3"],
            "-ERR Start slot number 9 is greater than end slot number 3",
        ),
        (
            vec!["SLOTSRANGE"],
            "-ERR wrong number of arguments for 'cluster|slot-stats' command",
        ),
    ] {
        let mut call = vec!["CLUSTER", "SLOT-STATS"];
        call.extend(args);
        assert_eq!(direct.call(&call), error);
    }
}

#[test]
fn flushslots_needs_an_empty_node_then_unbinds_its_slots() {
    let world = World::new(3, 3, RespConfig::default());
    let key = "user:1000";
    let owner = world.owner_of(key.as_bytes());
    let mut client = world.connect(owner);
    assert_eq!(client.call(&["SET", key, "v"]), "+OK");
    assert_eq!(
        client.call(&["CLUSTER", "FLUSHSLOTS"]),
        "-ERR DB must be empty to perform CLUSTER FLUSHSLOTS."
    );
    assert_eq!(
        client.call(&["CLUSTER", "FLUSHSLOTS", "now"]),
        "-ERR wrong number of arguments for 'cluster|flushslots' command"
    );
    assert_eq!(client.call(&["DEL", key]), ":1");
    assert_eq!(client.call(&["cluster", "flushslots"]), "+OK");
    let myself = client.call(&["CLUSTER", "MYID"]);
    let nodes = client.call(&["CLUSTER", "NODES"]);
    let line = nodes
        .lines()
        .find(|line| line.starts_with(&myself))
        .unwrap();
    assert_eq!(line.split_whitespace().count(), 8, "slots left: {line}");
}

#[test]
fn with_proxy_redirects_a_plain_client_is_served_every_key_through_any_node() {
    let (world, source, target, slot) = migrating_world(&["{m}stays", "{m}gone"]);
    let address = world.address(target);
    let (host, port) = (address.ip().to_string(), address.port().to_string());
    let mut on_source = world.connect(source);
    let mut on_target = world.connect(target);
    let migrated = on_source.call(&["MIGRATE", &host, &port, "", "0", "5000", "KEYS", "{m}gone"]);
    assert_eq!(migrated, "+OK");
    assert_eq!(
        on_source.call(&["GET", "{m}gone"]),
        format!("-ASK {slot} {address}"),
        "off by default"
    );
    for client in [&mut on_source, &mut on_target] {
        assert_eq!(
            client.call(&["CONFIG", "SET", "proxy-redirects", "yes"]),
            "+OK"
        );
        assert_eq!(
            client.call(&["CONFIG", "GET", "proxy-redirects"]),
            "proxy-redirects\nyes"
        );
    }
    // The source follows its own ASK to the target; the target, importing but not the
    // owner, follows its MOVED to the source.
    assert_eq!(on_source.call(&["GET", "{m}gone"]), "v-{m}gone");
    assert_eq!(on_source.call(&["GET", "{m}stays"]), "v-{m}stays");
    assert_eq!(on_target.call(&["GET", "{m}stays"]), "v-{m}stays");
    assert_eq!(on_target.call(&["GET", "{m}gone"]), "v-{m}gone");
    // A write of another node's key lands on its owner.
    let key = (0..)
        .map(|index| format!("elsewhere:{index}"))
        .find(|key| world.owner_of(key.as_bytes()) == target)
        .unwrap();
    assert_eq!(on_source.call(&["SET", &key, "proxied"]), "+OK");
    assert_eq!(
        on_source.call(&["INCR", &key]),
        "-ERR value is not an integer or out of range"
    );
    let mut on_owner = world.connect(target);
    assert_eq!(on_owner.call(&["GET", &key]), "proxied");
    assert_eq!(
        on_source.call(&["MGET", "a", "b"]),
        "-CROSSSLOT Keys in request don't hash to the same slot",
        "a multi-slot request is still refused"
    );
    assert_eq!(
        on_source.call(&["CONFIG", "SET", "proxy-redirects", "maybe"]),
        "-ERR CONFIG SET failed (possibly related to argument 'proxy-redirects') - argument must be 'yes' or 'no'"
    );
    assert_eq!(
        on_source.call(&["CONFIG", "SET", "proxy-redirects", "no"]),
        "+OK"
    );
    assert_eq!(
        on_source.call(&["GET", &key]),
        format!("-MOVED {} {address}", key_slot(key.as_bytes()))
    );
}

#[test]
fn cluster_links_lists_the_bus_links_to_and_from_every_other_node() {
    let world = World::new(3, 3, RespConfig::default());
    let mut client = world.connect(0);
    let others: Vec<String> = (1..3)
        .map(|index| world.nodes[index].id().to_hex())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let links = loop {
        let links = client.call(&["CLUSTER", "LINKS"]);
        let lines: Vec<&str> = links.lines().collect();
        let listed = |direction: &str, id: &str| {
            lines
                .windows(4)
                .any(|window| window == ["direction", direction, "node", id])
        };
        if others
            .iter()
            .all(|id| listed("to", id) && listed("from", id))
        {
            break links;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "links never listed both directions for every other node:\n{links}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !links.contains(&world.nodes[0].id().to_hex()),
        "no link to itself"
    );
    for field in [
        "create-time",
        "events",
        "send-buffer-allocated",
        "send-buffer-used",
    ] {
        assert!(links.contains(field), "{field} in:\n{links}");
    }
    assert_eq!(
        client.call(&["CLUSTER", "LINKS", "extra"]),
        "-ERR wrong number of arguments for 'cluster|links' command"
    );
}
