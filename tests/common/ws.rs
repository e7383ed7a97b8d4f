//! MQTT over WebSocket at the frame level, for tests that must send what
//! no well-behaved client library would: unfinished messages, oversized
//! frames, silence after the handshake.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// WebSocket opcodes used here.
pub const CONTINUATION: u8 = 0x0;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;

/// Opens a socket to the server's WebSocket listener and upgrades it at
/// `/mqtt`; `None` if the server closes it or refuses the upgrade.
pub async fn upgrade(addr: SocketAddr) -> Option<TcpStream> {
    let mut socket = TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut byte)).await;
        match read {
            Ok(Ok(1)) => response.push(byte[0]),
            _ => return None,
        }
    }
    response.starts_with(b"HTTP/1.1 101").then_some(socket)
}

/// One client frame (masked with a zero key, so the payload goes as is).
pub fn frame(opcode: u8, fin: bool, payload_len: usize) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload_len {
        n if n < 126 => header.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            header.push(0x80 | 126);
            header.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            header.push(0x80 | 127);
            header.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    header.extend_from_slice(&[0, 0, 0, 0]);
    header
}

/// Sends `bytes` as one complete binary message.
pub async fn send_binary(socket: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut message = frame(BINARY, true, bytes.len());
    message.extend_from_slice(bytes);
    socket.write_all(&message).await
}

/// Reads one server frame (servers do not mask): its opcode and payload.
pub async fn read_frame(socket: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    socket.read_exact(&mut head).await?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            socket.read_exact(&mut n).await?;
            u16::from_be_bytes(n) as usize
        }
        127 => {
            let mut n = [0u8; 8];
            socket.read_exact(&mut n).await?;
            u64::from_be_bytes(n) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    socket.read_exact(&mut payload).await?;
    Ok((head[0] & 0x0f, payload))
}

/// Waits until the server ends the connection (a close frame, EOF or a
/// reset); true if it did within `timeout`. Data frames are skipped.
pub async fn closed_within(socket: &mut TcpStream, timeout: Duration) -> bool {
    let ended = tokio::time::timeout(timeout, async {
        loop {
            match read_frame(socket).await {
                Ok((CLOSE, _)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    ended.await.is_ok()
}
