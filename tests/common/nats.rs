//! A real 3-node NATS cluster (Debian's `nats-server`, JetStream on) on
//! free loopback ports, each node with its own temporary directory; killed
//! when dropped. Nodes can be stopped and started again on the same ports
//! to play a NATS outage.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How many nodes [`NatsCluster::start`] runs.
pub const NODES: usize = 3;

/// The `nats-server` binary: on PATH, or where Debian puts it.
fn binary() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|path| path.is_file())
        .expect("nats-server is not installed (scripts/test installs Debian's nats-server)")
}

/// One NATS node's ports and process.
struct Node {
    client: SocketAddr,
    /// The HTTP monitoring endpoint (`/subsz`, `/routez`).
    monitor: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running NATS cluster.
pub struct NatsCluster {
    nodes: Vec<Node>,
    /// Holds every node's config, JetStream store and log.
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts [`NODES`] nodes routed to each other and waits until each
    /// accepts clients and sees its peers.
    pub fn start() -> NatsCluster {
        let dir = tempfile::tempdir().expect("nats temp dir");
        let ports: Vec<(u16, u16, u16)> = (0..NODES)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let mut nodes = Vec::new();
        for (i, (client, route, monitor)) in ports.iter().enumerate() {
            let routes = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, r, _))| format!("\"nats-route://127.0.0.1:{r}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let store = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&store).expect("jetstream dir");
            let config = dir.path().join(format!("n{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\n\
                     listen: 127.0.0.1:{client}\n\
                     http: 127.0.0.1:{monitor}\n\
                     jetstream {{ store_dir: \"{}\", max_memory_store: 64MB, max_file_store: 256MB }}\n\
                     cluster {{ name: bluetick-test, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n",
                    store.display()
                ),
            )
            .expect("write nats config");
            nodes.push(Node {
                client: SocketAddr::from(([127, 0, 0, 1], *client)),
                monitor: SocketAddr::from(([127, 0, 0, 1], *monitor)),
                config,
                log: dir.path().join(format!("n{i}.log")),
                child: None,
            });
        }
        let mut cluster = NatsCluster { nodes, dir };
        for i in 0..NODES {
            cluster.spawn(i);
        }
        for i in 0..NODES {
            cluster.wait_accepting(i);
        }
        cluster
    }

    /// Every node's client URL, comma-separated: the `cluster.nats_urls`
    /// value.
    pub fn urls(&self) -> String {
        (0..NODES)
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://{}", self.nodes[i].client)
    }

    /// Waits until every running node knows of a subscription to
    /// `subject`, its own client's or one behind a route: from then on a
    /// publish to it on any node reaches the subscriber.
    pub async fn interest(&self, subject: &str) {
        let quoted = format!("\"{subject}\"");
        let known = || {
            self.nodes.iter().filter(|n| n.child.is_some()).all(|node| {
                ["/subsz?subs=1&limit=100000", "/routez?subs=1"]
                    .iter()
                    .any(|path| {
                        super::http::request(node.monitor, "GET", path, None, None)
                            .body
                            .contains(&quoted)
                    })
            })
        };
        let seen = super::eventually(Duration::from_secs(30), known).await;
        assert!(
            seen,
            "NATS never saw a subscription to {subject}:\n{}",
            self.logs()
        );
    }

    /// Kills node `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every node: NATS is unreachable.
    pub fn kill_all(&mut self) {
        for i in 0..NODES {
            self.kill(i);
        }
    }

    /// Starts node `i` again on its ports and directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {i} is running");
        self.spawn(i);
        self.wait_accepting(i);
    }

    /// Starts every stopped node again.
    pub fn restart_all(&mut self) {
        for i in 0..NODES {
            if self.nodes[i].child.is_none() {
                self.spawn(i);
            }
        }
        for i in 0..NODES {
            self.wait_accepting(i);
        }
    }

    /// Every node's log so far.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                format!(
                    "--- nats n{i} ---\n{}",
                    std::fs::read_to_string(&node.log).unwrap_or_default()
                )
            })
            .collect()
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("nats log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("nats log"))
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        node.child = Some(child);
    }

    fn wait_accepting(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&self.nodes[i].client, Duration::from_millis(200)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "nats node {i} did not start:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..NODES {
            self.kill(i);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
