//! `corral`: the one binary. `corral serve` runs the keeper; `corral shell` is a zkCli-like
//! shell. Errors reach the user here as one clear line and a non-zero exit code.

mod bench;
mod shell;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use corral_keeper::config::{self, Config};
use corral_keeper::server::Keeper;
use corral_keeper::zk_import;
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

#[derive(Subcommand)]
enum Command {
    /// Run the keeper. Without --config: standalone on 127.0.0.1:2181, data in ./corral-data.
    Serve {
        /// A ZooKeeper zoo.cfg.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// An interactive shell like zkCli.
    Shell {
        /// host:port of a keeper (or any ZooKeeper server).
        #[arg(long, short, default_value = "127.0.0.1:2181")]
        server: String,
        /// Run one command and exit (e.g. -c 'ls /').
        #[arg(short = 'c', long = "command")]
        command: Option<String>,
    },
    /// Load driver: one JSON line of throughput and latency percentiles on stdout.
    Bench(bench::BenchArgs),
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
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
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
        Command::Serve { config } => runtime.block_on(serve(config)),
        Command::Shell { server, command } => {
            let code = runtime.block_on(shell::run(&server, command));
            ExitCode::from(code.clamp(0, 255) as u8)
        }
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::ImportZk { from, from_log, to } => import_zk(&from, from_log.as_deref(), &to),
    }
}

fn import_zk(
    from: &std::path::Path,
    from_log: Option<&std::path::Path>,
    to: &std::path::Path,
) -> ExitCode {
    let storage = corral_keeper::consensus::StorageConfig::new(to);
    match zk_import::import(from, from_log, &storage) {
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

async fn serve(config_path: Option<PathBuf>) -> ExitCode {
    let config = match &config_path {
        None => Config::default(),
        Some(path) => match config::load(path) {
            Ok((config, warnings)) => {
                for w in warnings {
                    warn!("{w}");
                }
                config
            }
            Err(e) => {
                error!("invalid configuration: {e}");
                eprintln!("corral: invalid configuration: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let keeper = Keeper::new(config);
    match keeper.start().await {
        Ok(addr) => info!("serving ZooKeeper clients on {addr}"),
        Err(e) => {
            error!("cannot start: {e}");
            eprintln!("corral: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    }
    wait_for_signal().await;
    info!("shutting down");
    keeper.shutdown();
    if let Some(c) = keeper.consensus() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), c.shutdown()).await;
    }
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
