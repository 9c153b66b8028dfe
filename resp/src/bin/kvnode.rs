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
use slotkv_transport::tcp::{ClusterSecret, TcpConfig, TcpTls};
use slotkv_transport::tls::{NodeIdentity, TrustAnchor};

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
    /// Must be empty (keys are not saved by kvnode).
    #[arg(long, default_value = "")]
    save: String,
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
    #[error("--tls-cluster yes: {0}")]
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
    bus_port: u16,
    max_memory_bytes: u64,
    policy: EvictionPolicy,
    secret: ClusterSecret,
    tls: Option<TcpTls>,
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
    if !LOG_LEVELS.contains(&flags.loglevel.as_str()) {
        return Err(invalid(
            "loglevel",
            &flags.loglevel,
            "not one of debug, verbose, notice, warning",
        ));
    }
    Ok(Settings {
        bus_port,
        max_memory_bytes,
        policy,
        secret,
        tls: bus_tls(flags)?,
    })
}

/// The `--loglevel` values.
const LOG_LEVELS: [&str; 4] = ["debug", "verbose", "notice", "warning"];

/// The bus's TLS settings from the `--tls-*` flags.
fn bus_tls(flags: &Flags) -> Result<Option<TcpTls>, FlagError> {
    match flags.tls_cluster.as_str() {
        "no" => return Ok(None),
        "yes" => {}
        other => return Err(invalid("tls-cluster", other, "must be yes or no")),
    }
    let (Some(cert), Some(key), Some(ca)) = (
        &flags.tls_cert_file,
        &flags.tls_key_file,
        &flags.tls_ca_cert_file,
    ) else {
        return Err(invalid(
            "tls-cluster",
            "yes",
            "needs --tls-cert-file, --tls-key-file and --tls-ca-cert-file",
        ));
    };
    let identity = NodeIdentity::from_pem_files(cert, key)?;
    let trust = TrustAnchor::from_pem_file(ca)?;
    Ok(Some(TcpTls::with_server_name(
        &identity,
        &trust,
        &flags.tls_server_name,
    )?))
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
    let listener = RespListener::bind(&format!("{}:{}", flags.bind, flags.port)).await?;
    let announced_client_port = flags
        .cluster_announce_port
        .unwrap_or(listener.local_addr().port());
    let file_name = flags
        .cluster_config_file
        .clone()
        .unwrap_or_else(|| format!("nodes-{}.conf", flags.port));
    let mut transport = TcpConfig::new(settings.secret);
    if let Some(tls) = settings.tls {
        transport = transport.with_tls(tls);
    }
    let mut builder = Node::builder(NodeTransport::Tcp(transport))
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
        assert!(settings.tls.is_none());
        assert_eq!(settings.bus_port, 6379 + BUS_PORT_OFFSET);
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
