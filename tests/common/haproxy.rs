//! HAProxy 2.6 (Debian's) in front of bluetick nodes' MQTT listeners, on a
//! free loopback port, with the client-id stickiness of deploy/haproxy.cfg:
//! the MQTT client id picks the node (consistent hash), and a node that
//! stops answering leaves the ring within about a second. Killed when
//! dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running HAProxy.
pub struct Haproxy {
    child: Child,
    /// Where MQTT clients connect.
    pub mqtt: SocketAddr,
    dir: tempfile::TempDir,
}

impl Haproxy {
    /// Balances MQTT over `nodes` by client id.
    pub fn start(nodes: &[SocketAddr]) -> Haproxy {
        let dir = tempfile::tempdir().expect("haproxy dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("    server node{i} {addr}\n"))
            .collect();
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "defaults\n\
                 \x20   mode tcp\n\
                 \x20   timeout connect 2s\n\
                 \x20   timeout client 10m\n\
                 \x20   timeout server 10m\n\
                 frontend mqtt\n\
                 \x20   bind 127.0.0.1:{port}\n\
                 \x20   tcp-request inspect-delay 10s\n\
                 \x20   tcp-request content reject unless {{ req.payload(0,0),mqtt_is_valid }}\n\
                 \x20   tcp-request content set-var(sess.cid) req.payload(0,0),mqtt_field_value(connect,client_identifier)\n\
                 \x20   tcp-request content accept if {{ req.len gt 0 }}\n\
                 \x20   default_backend bluetick\n\
                 backend bluetick\n\
                 \x20   balance hash var(sess.cid)\n\
                 \x20   hash-type consistent\n\
                 \x20   default-server check inter 300ms fall 2 rise 2\n\
                 {servers}"
            ),
        )
        .expect("write haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("haproxy log");
        let child = Command::new(binary())
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn haproxy");
        let mqtt = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&mqtt, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Haproxy { child, mqtt, dir }
    }

    /// HAProxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- haproxy ---\n{}", self.log());
        }
    }
}

/// `haproxy`: on PATH, or where Debian puts it.
fn binary() -> std::path::PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| "haproxy".into())
}
