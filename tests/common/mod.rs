//! Shared test helpers: start a node in-process on an ephemeral port, or the real binary.
#![allow(dead_code)]

pub mod zk;

use std::path::Path;
use std::time::Duration;

use conclave::config::Config;
use conclave::node::{self, NodeHandle};
use conclave::pb::etcdserverpb::kv_client::KvClient;
use conclave::pb::etcdserverpb::lease_client::LeaseClient;
use conclave::pb::etcdserverpb::watch_client::WatchClient;
use tonic::transport::Channel;

/// A single node on an ephemeral 127.0.0.1 port, with extra etcd-style flags.
pub fn config_with(data_dir: &Path, extra: &[&str]) -> Config {
    let mut args: Vec<String> = [
        "conclave",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen-client-urls",
        "http://127.0.0.1:0",
        "--zk-listen",
        "127.0.0.1:0",
        "--log-level",
        "warn",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    Config::parse_etcd_style(args)
}

pub fn config(data_dir: &Path) -> Config {
    config_with(data_dir, &[])
}

pub async fn start(data_dir: &Path) -> NodeHandle {
    node::start(config(data_dir)).await.expect("node starts")
}

/// Starts a node on a data dir a node of this process used before: the old node's last
/// connection tasks may hold the database open for a moment after its shutdown.
pub async fn restart(data_dir: &Path) -> NodeHandle {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match node::start(config(data_dir)).await {
            Ok(n) => return n,
            Err(e) if e.contains("already open") && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("restart: {e}"),
        }
    }
}

pub async fn channel(node: &NodeHandle) -> Channel {
    Channel::from_shared(format!("http://{}", node.client_addr)).unwrap().connect().await.unwrap()
}

pub async fn clients(node: &NodeHandle) -> (KvClient<Channel>, WatchClient<Channel>, LeaseClient<Channel>) {
    let ch = channel(node).await;
    (KvClient::new(ch.clone()), WatchClient::new(ch.clone()), LeaseClient::new(ch))
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub async fn eventually<F: FnMut() -> Fut, Fut: std::future::Future<Output = bool>>(
    timeout: Duration,
    mut f: F,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Starts a node with extra etcd-style flags.
pub async fn start_with(data_dir: &Path, extra: &[&str]) -> NodeHandle {
    node::start(config_with(data_dir, extra)).await.expect("node starts")
}
