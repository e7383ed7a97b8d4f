//! A stock Mosquitto on a free loopback port, stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `mosquitto` with a generated config: anonymous clients, no
/// persistence, loopback only.
pub struct Mosquitto {
    child: Child,
    pub addr: SocketAddr,
    /// Holds the config and the log.
    dir: tempfile::TempDir,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("mosquitto is not installed (scripts/test installs it): {0}")]
    NotInstalled(std::io::Error),
    #[error("preparing mosquitto: {0}")]
    Io(#[from] std::io::Error),
    #[error("mosquitto did not listen on {addr} within 20 s; its log:\n{log}")]
    NotListening { addr: SocketAddr, log: String },
}

impl Mosquitto {
    /// Starts one that logs everything (the conformance suite reads it).
    pub fn start() -> Result<Mosquitto, StartError> {
        Mosquitto::start_with("log_type all\n")
    }

    /// Starts one with `settings` (mosquitto.conf lines, such as log types
    /// and queue limits) after the listener, anonymous access and no
    /// persistence.
    pub fn start_with(settings: &str) -> Result<Mosquitto, StartError> {
        let dir = tempfile::tempdir()?;
        // Take a free port from the kernel; mosquitto binds it right after.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\n{settings}"
            ),
        )?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Its log goes to a file we open: started as root, mosquitto
            // drops to its own user and could not open one in our tempdir.
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .map_err(StartError::NotInstalled)?;
        let mosquitto = Mosquitto { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return Err(StartError::NotListening {
                    addr,
                    log: mosquitto.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(mosquitto)
    }

    /// What mosquitto logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        // Already exited is fine: there is nothing left to stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
