//! Plays one scenario against one broker and records what comes back.

use crate::packet::{self, Ids};
use crate::script::{Scenario, Step};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long `recv` waits for a packet before recording `nothing`. Generous:
/// the machine may be busy, and only a broker that differs ever waits it out.
pub const RECV_DEADLINE: Duration = Duration::from_secs(10);

/// What one broker did in one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// One line per `recv` or `quiet` step: `conn: PACKET`, `conn: close`
    /// or `conn: nothing`.
    pub lines: Vec<String>,
    /// Set if the scenario could not be played at all (connection refused).
    pub failure: Option<String>,
}

/// One client connection of a scenario.
struct Conn {
    stream: TcpStream,
    /// Bytes received and not yet rendered.
    buffer: Vec<u8>,
    ids: Ids,
    /// The broker closed (or reset) the connection.
    closed: bool,
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, RECV_DEADLINE)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buffer: Vec::new(),
            ids: Ids::default(),
            closed: false,
        })
    }

    fn send(&mut self, bytes: &[u8]) {
        // A broker may already have closed the connection; the next recv
        // records that, so a failed write needs no line of its own.
        let _ = self.stream.write_all(bytes);
    }

    /// The next packet, `close`, or `nothing` once `wait` has passed.
    fn next(&mut self, wait: Duration, scenario: &str) -> String {
        let deadline = Instant::now() + wait;
        loop {
            if let Some((header, body, used)) = packet::split(&self.buffer) {
                let line = packet::render(header, body, &mut self.ids, scenario);
                self.buffer.drain(..used);
                return line;
            }
            if self.closed {
                return "close".into();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return "nothing".into();
            }
            // A zero timeout would mean "block forever".
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }
}

/// Plays `scenario` against the broker at `addr`.
pub fn play(scenario: &Scenario, addr: SocketAddr) -> Transcript {
    let mut conns: HashMap<String, Conn> = HashMap::new();
    let mut lines = Vec::new();
    let conn = |conns: &mut HashMap<String, Conn>, name: &str| -> Result<(), String> {
        if !conns.contains_key(name) {
            let opened = Conn::open(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
            conns.insert(name.to_owned(), opened);
        }
        Ok(())
    };
    for step in &scenario.steps {
        let result = (|| -> Result<(), String> {
            match step {
                Step::Open(name) => {
                    // `open` after a `drop` starts a fresh connection.
                    conns.remove(name);
                    conn(&mut conns, name)
                }
                Step::Connect(name, spec) => {
                    if conns.get(name).is_some_and(|c| c.closed) {
                        conns.remove(name);
                    }
                    conn(&mut conns, name)?;
                    let c = conns.get_mut(name).ok_or("no connection")?;
                    c.send(&packet::connect(spec));
                    Ok(())
                }
                Step::Send(name, spec) => {
                    conn(&mut conns, name)?;
                    let c = conns.get_mut(name).ok_or("no connection")?;
                    let last = c.ids.last;
                    c.send(&packet::encode(spec, last));
                    Ok(())
                }
                Step::Recv(name, _) | Step::Quiet(name, _) => {
                    let wait = match step {
                        Step::Quiet(_, wait) => *wait,
                        _ => RECV_DEADLINE,
                    };
                    let line = match conns.get_mut(name) {
                        Some(c) => c.next(wait, &scenario.name),
                        None => "close".into(),
                    };
                    lines.push(format!("{name}: {line}"));
                    Ok(())
                }
                Step::Drop(name) => {
                    if let Some(c) = conns.remove(name) {
                        // Already closed by the broker is as good.
                        let _ = c.stream.shutdown(Shutdown::Both);
                    }
                    Ok(())
                }
                Step::Sleep(wait) => {
                    std::thread::sleep(*wait);
                    Ok(())
                }
            }
        })();
        if let Err(failure) = result {
            return Transcript {
                lines,
                failure: Some(failure),
            };
        }
    }
    Transcript {
        lines,
        failure: None,
    }
}
