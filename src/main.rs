//! The conclave binary: parse etcd-style flags, start the node, serve until SIGINT/SIGTERM.

/// mimalloc instead of glibc's malloc: glibc's malloc/free were ~14 % of the server's CPU under
/// 100 concurrent etcd puts (perf), mimalloc cuts server CPU per put by ~10 % there. Built with
/// `no_thp`: with transparent huge pages allowed its arenas made idle RSS 17 MiB instead of 10.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use conclave::config::Config;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

fn main() {
    let threads = std::env::var("CONCLAVE_WORKER_THREADS").ok().and_then(|v| v.parse().ok());
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        rt.worker_threads(n);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conclave: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(serve());
}

async fn serve() {
    let config = Config::parse_etcd_style(std::env::args());
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(log_filter(&config.log_level))
        .init();

    let node = match conclave::node::start(config).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("conclave: {e}");
            std::process::exit(1);
        }
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conclave: installing SIGTERM handler: {e}");
            std::process::exit(1);
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    node.shutdown().await;
}

/// What to log: `CONCLAVE_LOG` if set (`target=level` directives, as in `RUST_LOG`), else the
/// etcd-style `--log-level` (etcd's `dpanic`, `panic` and `fatal` log errors only). A filter by
/// target, not tracing's regex-based `EnvFilter`: the regex engine was ~260 KB of code, much of
/// it paged in at start, and idle RSS is a goal.
fn log_filter(log_level: &str) -> Targets {
    let level = match log_level {
        "dpanic" | "panic" | "fatal" => "error",
        other => other,
    };
    let default = format!("{level},openraft=warn");
    let spec = std::env::var("CONCLAVE_LOG").unwrap_or(default);
    spec.parse().unwrap_or_else(|e| {
        eprintln!("conclave: ignoring log filter {spec:?} ({e}); logging at info");
        Targets::new().with_default(tracing::Level::INFO).with_target("openraft", tracing::Level::WARN)
    })
}
