//! `kvnode`: one slotkv node as a process of its own, served to Redis clients and tools by
//! the RESP gateway. `kvnode --port 7000` serves RESP on 7000 and the cluster bus on 17000
//! (the port + 10000 unless `--cluster-port`); `kvnode kvnode.conf --port 7001` reads a
//! redis.conf-style file first ([`config_file`]). A thin binary: flags in, a node and a
//! gateway started, SIGTERM / SIGINT / SHUTDOWN stop both (a master hands its slots to a
//! replica first; nodes.conf is saved on every change; with `save`, a master's keys are
//! saved too, at its save points and on shutdown).

mod config_file;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use slotkv_cluster::core::node::NodeId;
use slotkv_cluster::core::slots::SlotRange;
use slotkv_cluster::{Node, NodeTransport, Persistence};
use slotkv_engine::EvictionPolicy;
use slotkv_resp::limits::parse_memory_bytes;
use slotkv_resp::policy::policy_from_name;
use slotkv_resp::{RespConfig, RespListener, RespServer, RespTls, BUS_PORT_OFFSET};
use slotkv_transport::quic::QuicConfig;
use slotkv_transport::tcp::{ClusterSecret, TcpConfig, TcpTls};
use slotkv_transport::tls::{ClientCertificates, NodeIdentity, TrustAnchor};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// The bus secret when neither `--masterauth` nor `--requirepass` is given (loopback only:
/// a node on another address refuses to start without a password).
const DEFAULT_BUS_SECRET: &[u8] = b"slotkv kvnode default bus secret (loopback only)";

/// Prefix of the bus secret derived from a password, so a short password still makes a
/// secret of the transport's minimum length.
const BUS_SECRET_PREFIX: &str = "slotkv kvnode bus secret:";

/// How often the save points are checked, and how long a failed save waits before the next
/// try (Redis's `CONFIG_BGSAVE_RETRY_DELAY` is 5 s too).
const SAVE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// See [`SAVE_CHECK_INTERVAL`].
const SAVE_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A slotkv cluster node speaking RESP (redis-cli, redis-benchmark and cluster clients).
///
/// A first argument that is not a flag names a redis.conf-style file (`kvnode kvnode.conf
/// --port 7001`): its directives are the flags of the same names, and the flags given after
/// it win. An unknown directive is refused by name.
#[derive(Debug, Parser)]
#[command(
    name = "kvnode",
    version,
    args_override_self = true,
    override_usage = "kvnode [CONFIG-FILE] [OPTIONS]"
)]
struct Flags {
    /// RESP port.
    #[arg(long, default_value_t = 6379)]
    port: u16,
    /// Address to listen on (RESP and bus).
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Cluster bus port (default: port + 10000).
    #[arg(long)]
    cluster_port: Option<u16>,
    /// Directory of the cluster config file.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Cluster config file name in `--dir` (default: `nodes-<port>.conf`).
    #[arg(long)]
    cluster_config_file: Option<String>,
    /// cluster-node-timeout, in ms.
    #[arg(long, default_value_t = 15_000)]
    cluster_node_timeout: u64,
    /// Address announced to peers and clients (required with a wildcard bind).
    #[arg(long)]
    cluster_announce_ip: Option<String>,
    /// Client port announced (default: --port).
    #[arg(long)]
    cluster_announce_port: Option<u16>,
    /// Bus port announced (default: the bus port).
    #[arg(long)]
    cluster_announce_bus_port: Option<u16>,
    /// Password clients must AUTH with.
    #[arg(long)]
    requirepass: Option<String>,
    /// Secret the nodes prove to each other on the bus (default: derived from
    /// --requirepass).
    #[arg(long)]
    masterauth: Option<String>,
    /// Memory limit (bytes, or with k/kb/m/mb/g/gb); 0: none.
    #[arg(long, default_value = "0")]
    maxmemory: String,
    /// What a write does at the memory limit.
    #[arg(long, default_value = "noeviction")]
    maxmemory_policy: String,
    /// Most clients connected at once.
    #[arg(long, default_value_t = slotkv_resp::server::MAX_CLIENTS_DEFAULT)]
    maxclients: usize,
    /// debug, verbose, notice or warning.
    #[arg(long, default_value = "notice")]
    loglevel: String,
    /// yes: refuse to listen on a non-loopback address without --requirepass.
    #[arg(long, default_value = "yes")]
    protected_mode: String,
    /// Must be yes (a kvnode is always a cluster node).
    #[arg(long, default_value = "yes")]
    cluster_enabled: String,
    /// Must be no (no append-only file).
    #[arg(long, default_value = "no")]
    appendonly: String,
    /// Snapshot points, Redis's `save`: "" keeps no keys across restarts; "<seconds>
    /// <changes> [...]" saves a master's keys to data.snapshot in --dir when at least
    /// <changes> writes are <seconds> old, and on shutdown, and loads them at start.
    #[arg(long, default_value = "")]
    save: String,
    /// Log to this file ("" is standard output).
    #[arg(long, default_value = "")]
    logfile: String,
    /// Write the process id to this file while running.
    #[arg(long)]
    pidfile: Option<PathBuf>,
    /// Must be no: run kvnode in the foreground under a supervisor (systemd, a container).
    #[arg(long, default_value = "no")]
    daemonize: String,
    /// The cluster bus: tcp (HMAC handshake, or mutual TLS with --tls-cluster yes) or quic
    /// (always mutual TLS: needs the three --tls-*-file flags; its port is UDP).
    #[arg(long, default_value = "tcp")]
    transport: String,
    /// yes: a key of another node is served through this node instead of answered MOVED,
    /// so plain (non-cluster) clients can use any node. Beyond Redis.
    #[arg(long, default_value = "no")]
    proxy_redirects: String,
    /// yes: the cluster bus runs under mutual TLS 1.3 (needs the three --tls-*-file flags);
    /// the RESP port stays plain.
    #[arg(long, default_value = "no")]
    tls_cluster: String,
    /// This node's certificate chain (PEM), for --tls-cluster yes.
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// This node's private key (PEM), for --tls-cluster yes.
    #[arg(long)]
    tls_key_file: Option<PathBuf>,
    /// The CA certificates peers' certificates must chain to (PEM), for --tls-cluster yes.
    #[arg(long)]
    tls_ca_cert_file: Option<PathBuf>,
    /// The DNS name every node's certificate carries, for --tls-cluster yes.
    #[arg(long, default_value = slotkv_transport::tls::CLUSTER_SERVER_NAME_DEFAULT)]
    tls_server_name: String,
    /// yes: per-node identity on the bus (with --tls-cluster yes or --transport quic):
    /// every node's certificate must also name its node id (`<id>.node.slotkv`) and its
    /// announced host, and a peer claiming an address or node id its certificate does not
    /// name is refused. Set the id of a new node with --cluster-node-id.
    #[arg(long, default_value = "no")]
    tls_node_identity: String,
    /// TLS port for RESP clients (Redis's `tls-port`), with this node's --tls-cert-file and
    /// --tls-key-file. kvnode serves one client port: give --port 0 with it.
    #[arg(long)]
    tls_port: Option<u16>,
    /// Whether TLS clients must present a certificate of --tls-ca-cert-file: yes (Redis's
    /// default), optional, or no.
    #[arg(long, default_value = "yes")]
    tls_auth_clients: String,
    /// The node id (40 hex digits) of a node starting without a nodes.conf (default: a
    /// random one); a saved nodes.conf keeps its own.
    #[arg(long)]
    cluster_node_id: Option<String>,
}

/// A flag combination kvnode refuses, with what to change.
#[derive(Debug, thiserror::Error)]
enum FlagError {
    #[error("--{flag} {value}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("TLS files: {0}")]
    Tls(#[from] slotkv_transport::tls::TlsConfigError),
}

fn invalid(flag: &'static str, value: &str, reason: &'static str) -> FlagError {
    FlagError::Invalid {
        flag,
        value: value.to_string(),
        reason,
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// The checked settings derived from the flags.
struct Settings {
    /// The RESP port: `--port`, or `--tls-port` with `--port 0`.
    client_port: u16,
    /// TLS on it (`--tls-port`).
    client_tls: Option<RespTls>,
    bus_port: u16,
    max_memory_bytes: u64,
    policy: EvictionPolicy,
    transport: NodeTransport,
    /// `(seconds, changes)` pairs of `save`; empty: no snapshots.
    save_points: Vec<(u64, u64)>,
    proxy_redirects: bool,
    node_id: Option<NodeId>,
}

fn check(flags: &Flags) -> Result<Settings, FlagError> {
    if flags.cluster_enabled != "yes" {
        return Err(invalid(
            "cluster-enabled",
            &flags.cluster_enabled,
            "kvnode is always a cluster node",
        ));
    }
    if flags.appendonly != "no" {
        return Err(invalid(
            "appendonly",
            &flags.appendonly,
            "no append-only file exists: replicas keep the data",
        ));
    }
    if flags.daemonize != "no" {
        return Err(invalid(
            "daemonize",
            &flags.daemonize,
            "kvnode runs in the foreground: run it under a supervisor",
        ));
    }
    if flags.bind.split_whitespace().count() != 1 {
        return Err(invalid(
            "bind",
            &flags.bind,
            "kvnode listens on one address: name one (0.0.0.0 or :: for all)",
        ));
    }
    let save_points = save_points(&flags.save).ok_or_else(|| {
        invalid(
            "save",
            &flags.save,
            "not \"\" nor <seconds> <changes> pairs",
        )
    })?;
    let proxy_redirects = yes_or_no("proxy-redirects", &flags.proxy_redirects)?;
    if flags.protected_mode == "yes" && !is_loopback(&flags.bind) && flags.requirepass.is_none() {
        return Err(invalid(
            "bind",
            &flags.bind,
            "a non-loopback address needs --requirepass (or --protected-mode no)",
        ));
    }
    let (client_port, client_tls) = client_port(flags)?;
    let bus_port = match flags.cluster_port {
        Some(port) => port,
        None => client_port.checked_add(BUS_PORT_OFFSET).ok_or_else(|| {
            invalid(
                "port",
                &client_port.to_string(),
                "port + 10000 is beyond 65535: set --cluster-port",
            )
        })?,
    };
    let max_memory_bytes = parse_memory_bytes(&flags.maxmemory)
        .ok_or_else(|| invalid("maxmemory", &flags.maxmemory, "not a memory amount"))?;
    let policy = policy_from_name(&flags.maxmemory_policy).ok_or_else(|| {
        invalid(
            "maxmemory-policy",
            &flags.maxmemory_policy,
            "not an eviction policy",
        )
    })?;
    let secret = match flags.masterauth.as_ref().or(flags.requirepass.as_ref()) {
        Some(password) => format!("{BUS_SECRET_PREFIX}{password}").into_bytes(),
        None => DEFAULT_BUS_SECRET.to_vec(),
    };
    let secret = ClusterSecret::new(secret)
        .map_err(|_| invalid("masterauth", "(hidden)", "cannot make a bus secret of it"))?;
    let bind_identities = yes_or_no("tls-node-identity", &flags.tls_node_identity)?;
    let transport =
        match flags.transport.as_str() {
            "tcp" => {
                let mut transport = TcpConfig::new(secret);
                match bus_tls(flags)? {
                    Some(tls) if bind_identities => {
                        transport = transport.with_tls(tls.binding_identities());
                    }
                    Some(tls) => transport = transport.with_tls(tls),
                    None if bind_identities => return Err(invalid(
                        "tls-node-identity",
                        "yes",
                        "needs --tls-cluster yes or --transport quic (identities are certificates)",
                    )),
                    None => {}
                }
                NodeTransport::Tcp(transport)
            }
            "quic" => {
                let mut config = quic_config(flags)?;
                config.bind_identities = bind_identities;
                NodeTransport::Quic(config)
            }
            other => return Err(invalid("transport", other, "must be tcp or quic")),
        };
    let node_id = match &flags.cluster_node_id {
        None => None,
        Some(text) => Some(
            NodeId::parse_hex(text)
                .map_err(|_| invalid("cluster-node-id", text, "a node id is 40 hex digits"))?,
        ),
    };
    if !LOG_LEVELS.contains(&flags.loglevel.as_str()) {
        return Err(invalid(
            "loglevel",
            &flags.loglevel,
            "not one of debug, verbose, notice, warning",
        ));
    }
    Ok(Settings {
        client_port,
        client_tls,
        bus_port,
        max_memory_bytes,
        policy,
        transport,
        save_points,
        proxy_redirects,
        node_id,
    })
}

/// A yes / no flag's value.
fn yes_or_no(flag: &'static str, value: &str) -> Result<bool, FlagError> {
    match value {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => Err(invalid(flag, other, "must be yes or no")),
    }
}

/// `save`'s `(seconds, changes)` pairs; `None` when it is not "" nor such pairs.
fn save_points(save: &str) -> Option<Vec<(u64, u64)>> {
    let numbers = save
        .split_whitespace()
        .map(|word| word.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    if !numbers.len().is_multiple_of(2) {
        return None;
    }
    Some(
        numbers
            .chunks_exact(2)
            .map(|pair| (pair[0], pair[1]))
            .collect(),
    )
}

/// The `--loglevel` values.
const LOG_LEVELS: [&str; 4] = ["debug", "verbose", "notice", "warning"];

/// The bus's TLS settings from the `--tls-*` flags.
fn bus_tls(flags: &Flags) -> Result<Option<TcpTls>, FlagError> {
    if !yes_or_no("tls-cluster", &flags.tls_cluster)? {
        return Ok(None);
    }
    let (identity, trust) = tls_files(flags, "tls-cluster", "yes")?;
    Ok(Some(TcpTls::with_server_name(
        &identity,
        &trust,
        &flags.tls_server_name,
    )?))
}

/// The RESP port and its TLS from `--port`, `--tls-port` and `--tls-auth-clients`.
fn client_port(flags: &Flags) -> Result<(u16, Option<RespTls>), FlagError> {
    let Some(tls_port) = flags.tls_port else {
        return Ok((flags.port, None));
    };
    if flags.port != 0 {
        return Err(invalid(
            "tls-port",
            &tls_port.to_string(),
            "kvnode serves one client port: add --port 0 to serve RESP over TLS only",
        ));
    }
    let (identity, trust) = tls_files(flags, "tls-port", &tls_port.to_string())?;
    let clients = match flags.tls_auth_clients.as_str() {
        "yes" => ClientCertificates::Required(trust),
        "optional" => ClientCertificates::Optional(trust),
        "no" => ClientCertificates::NotRequested,
        other => {
            return Err(invalid(
                "tls-auth-clients",
                other,
                "must be yes, optional or no",
            ))
        }
    };
    Ok((tls_port, Some(RespTls::new(&identity, &clients)?)))
}

/// QUIC's settings from the `--tls-*` flags (QUIC is always mutual TLS).
fn quic_config(flags: &Flags) -> Result<QuicConfig, FlagError> {
    let (identity, trust) = tls_files(flags, "transport", "quic")?;
    let mut config = QuicConfig::new(identity, trust);
    config.server_name = flags.tls_server_name.clone();
    Ok(config)
}

/// This node's identity and the cluster's CA from the three `--tls-*-file` flags, which
/// `flag value` needs.
fn tls_files(
    flags: &Flags,
    flag: &'static str,
    value: &str,
) -> Result<(NodeIdentity, TrustAnchor), FlagError> {
    let (Some(cert), Some(key), Some(ca)) = (
        &flags.tls_cert_file,
        &flags.tls_key_file,
        &flags.tls_ca_cert_file,
    ) else {
        return Err(invalid(
            flag,
            value,
            "needs --tls-cert-file, --tls-key-file and --tls-ca-cert-file",
        ));
    };
    Ok((
        NodeIdentity::from_pem_files(cert, key)?,
        TrustAnchor::from_pem_file(ca)?,
    ))
}

fn log_filter(level: &str) -> tracing::Level {
    match level {
        "debug" => tracing::Level::DEBUG,
        "verbose" => tracing::Level::INFO,
        "warning" => tracing::Level::WARN,
        // "notice", the default; `check` refused any other value.
        _ => tracing::Level::INFO,
    }
}

async fn run(flags: Flags, settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let listener = RespListener::bind(&format!("{}:{}", flags.bind, settings.client_port)).await?;
    let announced_client_port = flags
        .cluster_announce_port
        .unwrap_or(listener.local_addr().port());
    let file_name = flags
        .cluster_config_file
        .clone()
        .unwrap_or_else(|| format!("nodes-{}.conf", settings.client_port));
    let mut builder = Node::builder(settings.transport)
        .bind(format!("{}:{}", flags.bind, settings.bus_port))
        .client_port(announced_client_port)
        .node_timeout_ms(flags.cluster_node_timeout)
        .data_dir(&flags.dir)
        .config_file_name(file_name)
        .max_memory(settings.max_memory_bytes, settings.policy);
    if !settings.save_points.is_empty() {
        builder = builder.persistence(Persistence::Snapshot);
    }
    if let Some(host) = &flags.cluster_announce_ip {
        builder = builder.announce_host(host.clone());
    }
    if let Some(id) = settings.node_id {
        builder = builder.node_id(id);
    }
    if let Some(port) = flags.cluster_announce_bus_port {
        builder = builder.announce_port(port);
    }
    let node = Arc::new(builder.start().await?);
    let config = RespConfig {
        requirepass: flags.requirepass.clone(),
        max_clients: flags.maxclients,
        proxy_redirects: settings.proxy_redirects,
        save: flags.save.clone(),
        tls: settings.client_tls.clone(),
        ..RespConfig::default()
    };
    let server = RespServer::start(listener, Arc::clone(&node), config);
    let saver = (!settings.save_points.is_empty())
        .then(|| tokio::spawn(save_at_points(Arc::clone(&node), settings.save_points)));
    tracing::info!(resp = %server.local_addr(), bus = %node.bus_address(), id = %node.id(),
        "kvnode ready");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        () = server.shutdown_requested() => tracing::info!("SHUTDOWN received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
    server.shutdown().await;
    if let Some(saver) = saver {
        saver.abort();
        let _ = saver.await;
    }
    match Arc::try_unwrap(node) {
        Ok(node) => node.shutdown().await,
        Err(_) => tracing::warn!("the node is still shared; stopping it without a hand-over"),
    }
    Ok(())
}

/// Saves a master's keys when one of `points` is reached: at least `changes` writes, the
/// first of them at least `seconds` ago, as Redis's `save <seconds> <changes>` (checked
/// every [`SAVE_CHECK_INTERVAL`]; writes counted by the per-slot statistics). A replica
/// saves nothing: it resyncs from its master.
async fn save_at_points(node: Arc<Node>, points: Vec<(u64, u64)>) {
    let writes = |node: &Node| -> u64 {
        node.slot_statistics(SlotRange::ALL)
            .iter()
            .map(|slot| slot.writes)
            .sum()
    };
    let mut saved_writes = writes(&node);
    let mut saved_at = Instant::now();
    let mut ticker = tokio::time::interval(SAVE_CHECK_INTERVAL);
    loop {
        ticker.tick().await;
        if node.master().is_some() {
            saved_writes = writes(&node);
            saved_at = Instant::now();
            continue;
        }
        let now_writes = writes(&node);
        let changes = now_writes.saturating_sub(saved_writes);
        let elapsed = saved_at.elapsed().as_secs();
        let due = points
            .iter()
            .any(|&(seconds, wanted)| changes >= wanted.max(1) && elapsed >= seconds);
        if !due {
            continue;
        }
        match node.save_snapshot().await {
            Ok(info) => {
                tracing::info!(
                    keys = info.keys,
                    bytes = info.bytes,
                    changes,
                    "saved the keys (save point reached)"
                );
                saved_writes = now_writes;
                saved_at = Instant::now();
            }
            Err(error) => {
                tracing::warn!(%error, "saving the keys failed; trying again in 5 s");
                tokio::time::sleep(SAVE_RETRY_DELAY).await;
            }
        }
    }
}

/// The process's arguments, with a configuration file's directives in place of its path
/// when the first argument is not a flag (see [`config_file`]).
fn arguments() -> Result<Vec<OsString>, config_file::ConfigFileError> {
    let mut arguments: Vec<OsString> = std::env::args_os().collect();
    let names_a_file = arguments
        .get(1)
        .is_some_and(|first| !first.to_string_lossy().starts_with('-'));
    if !names_a_file {
        return Ok(arguments);
    }
    let path = PathBuf::from(arguments.remove(1));
    let from_file = config_file::arguments_of_file(&path, &directive_names())?;
    arguments.splice(1..1, from_file);
    Ok(arguments)
}

/// The directives a configuration file may hold: every flag's long name but help and
/// version.
fn directive_names() -> Vec<String> {
    Flags::command()
        .get_arguments()
        .filter_map(|argument| argument.get_long())
        .filter(|name| !matches!(*name, "help" | "version"))
        .map(str::to_string)
        .collect()
}

/// Where the log goes: standard output, or `--logfile` (appended to).
fn log_writer(logfile: &str) -> std::io::Result<BoxMakeWriter> {
    if logfile.is_empty() {
        return Ok(BoxMakeWriter::new(std::io::stdout));
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logfile)?;
    Ok(BoxMakeWriter::new(std::sync::Mutex::new(file)))
}

fn main() -> ExitCode {
    let flags = match arguments() {
        Ok(arguments) => Flags::parse_from(arguments),
        Err(error) => {
            eprintln!("kvnode: {error}");
            return ExitCode::from(2);
        }
    };
    let settings = match check(&flags) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("kvnode: {error}");
            return ExitCode::from(2);
        }
    };
    let writer = match log_writer(&flags.logfile) {
        Ok(writer) => writer,
        Err(error) => {
            eprintln!("kvnode: --logfile {}: {error}", flags.logfile);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(log_filter(&flags.loglevel))
        .with_target(false)
        .with_ansi(flags.logfile.is_empty() && std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(writer)
        .init();
    if let Some(pidfile) = &flags.pidfile {
        if let Err(error) = std::fs::write(pidfile, format!("{}\n", std::process::id())) {
            eprintln!("kvnode: --pidfile {}: {error}", pidfile.display());
            return ExitCode::from(2);
        }
    }
    let pidfile = flags.pidfile.clone();
    let code = serve(flags, settings);
    if let Some(pidfile) = pidfile {
        let _ = std::fs::remove_file(pidfile);
    }
    code
}

/// Runs the node and its gateway until they stop.
fn serve(flags: Flags, settings: Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kvnode: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kvnode: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(arguments: &[&str]) -> Result<Settings, FlagError> {
        let flags =
            Flags::try_parse_from(std::iter::once("kvnode").chain(arguments.iter().copied()))
                .expect("the flags parse");
        check(&flags)
    }

    #[test]
    fn the_defaults_pass_and_the_bus_is_plain() {
        let settings = checked(&[]).expect("defaults are valid");
        assert!(matches!(settings.transport, NodeTransport::Tcp(_)));
        assert_eq!(settings.bus_port, 6379 + BUS_PORT_OFFSET);
        assert!(settings.save_points.is_empty() && !settings.proxy_redirects);
    }

    #[test]
    fn save_points_are_pairs_and_settings_kvnode_lacks_are_refused_by_name() {
        let settings = checked(&["--save", "900 1 300 10"]).expect("accepted");
        assert_eq!(settings.save_points, [(900, 1), (300, 10)]);
        for (arguments, named) in [
            (&["--save", "900"][..], "--save 900"),
            (&["--save", "soon 1"][..], "--save soon 1"),
            (&["--daemonize", "yes"][..], "--daemonize yes"),
            (&["--appendonly", "yes"][..], "--appendonly yes"),
            (&["--bind", "127.0.0.1 ::1"][..], "--bind 127.0.0.1 ::1"),
            (&["--transport", "udp"][..], "--transport udp"),
            (&["--transport", "quic"][..], "--tls-cert-file"),
            (&["--proxy-redirects", "maybe"][..], "yes or no"),
            (
                &["--tls-node-identity", "yes"][..],
                "needs --tls-cluster yes",
            ),
            (&["--cluster-node-id", "xyz"][..], "--cluster-node-id xyz"),
            (&["--tls-port", "7100"][..], "add --port 0"),
            (
                &["--port", "0", "--tls-port", "7100"][..],
                "--tls-cert-file",
            ),
        ] {
            let error = checked(arguments).err().expect("refused");
            assert!(error.to_string().contains(named), "{arguments:?}: {error}");
        }
    }

    #[test]
    fn a_config_file_sets_flags_and_the_command_line_wins() {
        let known = directive_names();
        assert!(!known.contains(&"help".to_string()));
        let text = "port 7001\ncluster-node-timeout 5000\nproxy-redirects yes\nsave 60 100\n";
        let mut arguments = vec![OsString::from("kvnode")];
        arguments
            .extend(config_file::arguments_of_text(text, "kvnode.conf", &known).expect("accepted"));
        arguments.extend(["--port", "7002"].map(OsString::from));
        let flags = Flags::try_parse_from(arguments).expect("the flags parse");
        assert_eq!(flags.port, 7002, "the command line wins");
        assert_eq!(flags.cluster_node_timeout, 5000);
        let settings = check(&flags).expect("accepted");
        assert!(settings.proxy_redirects);
        assert_eq!(settings.save_points, [(60, 100)]);
        let error = config_file::arguments_of_text("databases 16\n", "kvnode.conf", &known)
            .expect_err("refused");
        assert!(error.to_string().contains("'databases'"), "{error}");
    }

    #[test]
    fn tls_cluster_needs_its_three_files_and_names_what_is_wrong() {
        let error = checked(&["--tls-cluster", "yes"]).err().expect("refused");
        assert!(error.to_string().contains("--tls-cert-file"), "{error}");
        let error = checked(&["--tls-cluster", "maybe"]).err().expect("refused");
        assert!(error.to_string().contains("yes or no"), "{error}");
        let missing = [
            "--tls-cluster",
            "yes",
            "--tls-cert-file",
            "/nonexistent/node.crt",
            "--tls-key-file",
            "/nonexistent/node.key",
            "--tls-ca-cert-file",
            "/nonexistent/ca.crt",
        ];
        let error = checked(&missing).err().expect("refused");
        assert!(
            error.to_string().contains("/nonexistent/node.crt"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_log_level_is_refused_not_defaulted() {
        let error = checked(&["--loglevel", "chatty"]).err().expect("refused");
        assert!(error.to_string().contains("--loglevel chatty"), "{error}");
    }
}
