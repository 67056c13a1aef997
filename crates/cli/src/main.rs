//! `corral`: the one binary. `corral serve` runs the keeper; `corral shell` is a zkCli-like
//! shell. Errors reach the user here as one clear line and a non-zero exit code.

mod bench;
mod doctor;
mod shell;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use corral_keeper::config::{self, Config};
use corral_keeper::zk_import;
use corral_keeper::Keeper;
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(
    name = "corral",
    version,
    about = "A ZooKeeper-compatible coordination service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A ZooKeeper zoo.cfg.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The client port (overrides clientPort).
    #[arg(long)]
    port: Option<u16>,
    /// Where the data goes (overrides dataDir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The HTTP admin server's port (overrides admin.serverPort; the embedded default is
    /// ZooKeeper's 8080 on loopback).
    #[arg(long)]
    admin_port: Option<u16>,
    /// Start even though the configuration asks for TLS or SASL protection corral does not
    /// provide yet; each such key is logged as a warning at every start.
    #[arg(long)]
    allow_unenforced_security: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the keeper. Without --config: standalone on 127.0.0.1:2181, data in ./corral-data.
    Serve(ServeArgs),
    /// zkCli's shell: `corral shell [-server h1:p,h2:p/chroot] [-timeout ms] [-r] [cmd args]`,
    /// or `-c 'cmd'` for one command with no banner.
    #[command(disable_help_flag = true)]
    Shell {
        /// zkCli's arguments, read by the shell itself (its single-dash long options are not
        /// clap's).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Load driver: one JSON line of throughput and latency percentiles on stdout.
    Bench(bench::BenchArgs),
    /// Why do sessions expire here? Measures round trips to each member, reads their
    /// timeouts, fsync and stall figures, roles and obituaries, and prints findings ranked
    /// by likelihood with a fix for each. Exit 1 when one is a problem.
    Doctor(doctor::DoctorArgs),
    /// Import a ZooKeeper data directory (its version-2 snapshots and logs) into an empty
    /// corral data directory. ZooKeeper's files are only read.
    ImportZk {
        /// ZooKeeper's dataDir (or the version-2 directory in it).
        #[arg(long)]
        from: PathBuf,
        /// ZooKeeper's dataLogDir, when it is not the dataDir.
        #[arg(long)]
        from_log: Option<PathBuf>,
        /// corral's dataDir to create (its WAL goes there too).
        #[arg(long)]
        to: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openraft narrates every vote at info; operators need our lines, not those.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"))
                // The keeper answers each client from its own apply and drops openraft's
                // per-write receiver (client_write_ff, "fire and forget"); openraft warns of
                // every such drop, which at every write costs more than the write. Whatever
                // RUST_LOG says, that line stays off.
                .add_directive(
                    "openraft::raft::responder=error"
                        .parse()
                        .expect("a constant directive"),
                ),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corral: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Shell { args } => {
            let code = runtime.block_on(shell::run(args));
            ExitCode::from(code.clamp(0, 255) as u8)
        }
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Doctor(args) => runtime.block_on(doctor::run(args)),
        Command::ImportZk { from, from_log, to } => import_zk(&from, from_log.as_deref(), &to),
    }
}

fn import_zk(
    from: &std::path::Path,
    from_log: Option<&std::path::Path>,
    to: &std::path::Path,
) -> ExitCode {
    let storage = corral_keeper::StorageConfig::new(to);
    match zk_import::import_offline(from, from_log, &storage) {
        Ok(s) => {
            println!(
                "imported {} znodes, {} sessions ({} ephemerals) at zxid 0x{:x} from {} ({} \
                 transactions replayed from {} logs) into {} ({} bytes, {} ms)",
                s.znodes,
                s.sessions,
                s.ephemerals,
                s.last_zxid,
                s.snapshot
                    .as_ref()
                    .map_or_else(|| "no snapshot".to_string(), |p| p.display().to_string()),
                s.txns_replayed,
                s.logs.len(),
                to.display(),
                s.snapshot_bytes,
                s.elapsed_ms
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("corral: import failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let refuse = |e: &dyn std::fmt::Display| {
        error!("invalid configuration: {e}");
        eprintln!("corral: invalid configuration: {e}");
        ExitCode::from(2)
    };
    let mut config = match &args.config {
        None => Config::embedded(),
        Some(path) => match config::load(path) {
            Ok((config, warnings)) => {
                for w in warnings {
                    warn!("{w}");
                }
                config
            }
            Err(e) => return refuse(&e),
        },
    };
    if let Some(port) = args.port {
        config.client_port = port;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(port) = args.admin_port {
        config.admin_server_port = port;
        config.admin_enable_server = true;
        config.admin_server_explicit = true;
    }
    config.allow_unenforced_security |= args.allow_unenforced_security;
    match config.check_security() {
        Ok(warnings) => {
            for w in warnings {
                warn!("{w}");
            }
        }
        Err(e) => return refuse(&e),
    }
    let keeper = Keeper::new(config);
    // Keeper::start logs the banner (addresses, paths, timeouts) once it serves.
    if let Err(e) = keeper.start().await {
        error!("cannot start: {e}");
        eprintln!("corral: cannot start: {e}");
        return ExitCode::FAILURE;
    }
    wait_for_signal().await;
    info!("shutting down");
    keeper.shutdown(std::time::Duration::from_secs(5)).await;
    ExitCode::SUCCESS
}

/// SIGTERM (what service managers and test harnesses send) or Ctrl-C.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
