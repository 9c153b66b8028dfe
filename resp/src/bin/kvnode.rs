//! `kvnode`: one slotkv node as a process of its own, served to Redis clients and tools by
//! the RESP gateway. `kvnode --port 7000` serves RESP on 7000 and the cluster bus on 17000
//! (the port + 10000 unless `--cluster-port`). A thin binary: flags in, a node and a
//! gateway started, SIGTERM / SIGINT / SHUTDOWN stop both (a master hands its slots to a
//! replica first; nodes.conf is saved on every change).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use slotkv_cluster::{Node, NodeTransport};
use slotkv_engine::EvictionPolicy;
use slotkv_resp::limits::parse_memory_bytes;
use slotkv_resp::policy::policy_from_name;
use slotkv_resp::{RespConfig, RespListener, RespServer, BUS_PORT_OFFSET};
use slotkv_transport::tcp::{ClusterSecret, TcpConfig};

/// The bus secret when neither `--masterauth` nor `--requirepass` is given (loopback only:
/// a node on another address refuses to start without a password).
const DEFAULT_BUS_SECRET: &[u8] = b"slotkv kvnode default bus secret (loopback only)";

/// Prefix of the bus secret derived from a password, so a short password still makes a
/// secret of the transport's minimum length.
const BUS_SECRET_PREFIX: &str = "slotkv kvnode bus secret:";

/// A slotkv cluster node speaking RESP (redis-cli, redis-benchmark and cluster clients).
#[derive(Debug, Parser)]
#[command(name = "kvnode", version)]
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
    /// Cluster config file name in `--dir` (default: nodes-<port>.conf).
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
    /// Must be empty (keys are not saved by kvnode).
    #[arg(long, default_value = "")]
    save: String,
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
    bus_port: u16,
    max_memory_bytes: u64,
    policy: EvictionPolicy,
    secret: ClusterSecret,
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
    if !flags.save.is_empty() {
        return Err(invalid(
            "save",
            &flags.save,
            "kvnode saves no keys; leave it empty",
        ));
    }
    if flags.protected_mode == "yes" && !is_loopback(&flags.bind) && flags.requirepass.is_none() {
        return Err(invalid(
            "bind",
            &flags.bind,
            "a non-loopback address needs --requirepass (or --protected-mode no)",
        ));
    }
    let bus_port = match flags.cluster_port {
        Some(port) => port,
        None => flags.port.checked_add(BUS_PORT_OFFSET).ok_or_else(|| {
            invalid(
                "port",
                &flags.port.to_string(),
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
    Ok(Settings {
        bus_port,
        max_memory_bytes,
        policy,
        secret,
    })
}

fn log_filter(level: &str) -> tracing::Level {
    match level {
        "debug" => tracing::Level::DEBUG,
        "verbose" => tracing::Level::INFO,
        "warning" => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    }
}

async fn run(flags: Flags, settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let listener = RespListener::bind(&format!("{}:{}", flags.bind, flags.port)).await?;
    let announced_client_port = flags
        .cluster_announce_port
        .unwrap_or(listener.local_addr().port());
    let file_name = flags
        .cluster_config_file
        .clone()
        .unwrap_or_else(|| format!("nodes-{}.conf", flags.port));
    let mut builder = Node::builder(NodeTransport::Tcp(TcpConfig::new(settings.secret)))
        .bind(format!("{}:{}", flags.bind, settings.bus_port))
        .client_port(announced_client_port)
        .node_timeout_ms(flags.cluster_node_timeout)
        .data_dir(&flags.dir)
        .config_file_name(file_name)
        .max_memory(settings.max_memory_bytes, settings.policy);
    if let Some(host) = &flags.cluster_announce_ip {
        builder = builder.announce_host(host.clone());
    }
    if let Some(port) = flags.cluster_announce_bus_port {
        builder = builder.announce_port(port);
    }
    let node = Arc::new(builder.start().await?);
    let config = RespConfig {
        requirepass: flags.requirepass.clone(),
        max_clients: flags.maxclients,
        ..RespConfig::default()
    };
    let server = RespServer::start(listener, Arc::clone(&node), config);
    tracing::info!(resp = %server.local_addr(), bus = %node.bus_address(), id = %node.id(),
        "kvnode ready");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        () = server.shutdown_requested() => tracing::info!("SHUTDOWN received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
    server.shutdown().await;
    match Arc::try_unwrap(node) {
        Ok(node) => node.shutdown().await,
        Err(_) => tracing::warn!("the node is still shared; stopping it without a hand-over"),
    }
    Ok(())
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_max_level(log_filter(&flags.loglevel))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let settings = match check(&flags) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("kvnode: {error}");
            return ExitCode::from(2);
        }
    };
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
