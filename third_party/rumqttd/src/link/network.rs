use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::timeout,
};

use std::{
    collections::VecDeque,
    io::{self, ErrorKind},
};
use tokio::time::{error::Elapsed, Duration};

use crate::protocol::{self, Packet, Protocol};

/// bluetick patch: the least and most room taken for one read of a
/// connection's socket; see `Network::read_chunk`.
const MIN_READ_CHUNK: usize = 256;
const MAX_READ_CHUNK: usize = 64 * 1024;
/// bluetick patch: a write buffer up to 4 × this is kept between writes.
const LEAN_WRITE_BYTES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O = {0}")]
    Io(#[from] io::Error),
    #[error("Invalid data = {0}")]
    Protocol(#[from] protocol::Error),
    #[error["Keep alive timeout"]]
    KeepAlive(#[from] Elapsed),
}

/// Network transforms packets <-> frames efficiently. It takes
/// advantage of pre-allocation, buffering and vectorization when
/// appropriate to achieve performance
pub struct Network<P> {
    /// Socket for IO
    socket: Box<dyn N>,
    /// Buffered reads
    read: BytesMut,
    /// Buffered writes
    write: BytesMut,
    /// Maximum packet size
    max_incoming_size: usize,
    /// Maximum connection buffer count. TODO: Change this to use bytes for deterministicness
    max_connection_buffer_len: usize,
    /// Keep alive timeout
    keepalive: Duration,
    /// bluetick patch: room taken for the next read. Doubles when a read
    /// fills it and halves when one uses less than a quarter, so a busy
    /// link (the bridge's) reads in large chunks and a quiet device in
    /// small ones.
    read_chunk: usize,
    /// Protocol
    protocol: P,
}

impl<P: Protocol> Network<P> {
    pub fn new(
        socket: Box<dyn N>,
        max_incoming_size: usize,
        max_connection_buffer_len: usize,
        protocol: P,
    ) -> Network<P> {
        Network {
            socket,
            // bluetick patch: no buffers up front. Upstream's 2 × 10 KiB
            // was almost half of an idle connection's memory; they are now
            // taken when bytes come or go and given back after (PATCHES.md
            // 3 and 12).
            read: BytesMut::new(),
            write: BytesMut::new(),
            max_incoming_size,
            max_connection_buffer_len,
            // Overwritten by keepalive value in connect packet, otherwise we
            // would wait indefinitely until we get a packet / network error
            // when we call read.
            keepalive: Duration::MAX,
            read_chunk: MIN_READ_CHUNK,
            protocol,
        }
    }

    pub fn set_keepalive(&mut self, keepalive: u16) {
        // bluetick patch: 0 means no keep-alive (MQTT 3.1.1 §3.1.2.10):
        // never time the client out for silence.
        if keepalive == 0 {
            self.keepalive = Duration::MAX;
            return;
        }
        let keepalive = Duration::from_secs(keepalive as u64);
        self.keepalive = keepalive + keepalive.mul_f32(0.5);
    }

    /// Reads more than 'required' bytes to frame a packet into self.read buffer
    async fn read_bytes(&mut self, required: usize) -> io::Result<usize> {
        // TODO: Fix this cancellation bug and write unit test
        let mut total_read = 0;
        loop {
            // bluetick patch: an idle connection waits here for its next
            // packet, for minutes. Wait for the socket to be readable first
            // and only then take room for the bytes, so the wait holds no
            // buffer; a buffer left empty by the last packets is given back
            // (PATCHES.md 12).
            if self.read.is_empty() {
                self.read = BytesMut::new();
                self.readable().await?;
            }
            self.read.reserve(required.max(self.read_chunk));
            let room = self.read.capacity() - self.read.len();
            let read = self.socket.read_buf(&mut self.read).await?;
            if read >= room {
                self.read_chunk = (self.read_chunk * 2).min(MAX_READ_CHUNK);
            } else if read < self.read_chunk / 4 {
                self.read_chunk = (self.read_chunk / 2).max(MIN_READ_CHUNK);
            }
            if 0 == read {
                let error = if self.read.is_empty() {
                    io::Error::new(ErrorKind::ConnectionAborted, "connection closed by peer")
                } else {
                    io::Error::new(ErrorKind::ConnectionReset, "connection reset by peer")
                };

                return Err(error);
            }

            total_read += read;
            if total_read >= required {
                return Ok(total_read);
            }
        }
    }

    /// bluetick patch: waits until the socket has bytes to read (or an
    /// error, or end of stream), without reading them. Only known for a
    /// plain TCP socket, which is what every bluetick client link is (TLS
    /// and WebSocket are relayed to it); any other stream returns at once
    /// and its read then holds a buffer while it waits, as upstream's did.
    async fn readable(&mut self) -> io::Result<()> {
        let tcp = {
            let socket: &dyn std::any::Any = &*self.socket;
            socket.downcast_ref::<tokio::net::TcpStream>()
        };
        if let Some(tcp) = tcp {
            tcp.readable().await?;
        }
        Ok(())
    }

    /// bluetick patch: after `written` bytes went out, gives the write
    /// buffer back if a burst grew it far beyond that (PATCHES.md 12).
    fn release_write_buffer(&mut self, written: usize) {
        self.write.clear();
        if self.write.capacity() > 4 * written.max(LEAN_WRITE_BYTES) {
            self.write = BytesMut::new();
        }
    }

    /// Waits on network for 1 packet
    pub async fn read(&mut self) -> Result<Packet, Error> {
        loop {
            let required = match Protocol::read_mut(
                &mut self.protocol,
                &mut self.read,
                self.max_incoming_size,
            ) {
                Ok(packet) => return Ok(packet),
                Err(protocol::Error::InsufficientBytes(required)) => required,
                Err(e) => return Err(e.into()),
            };

            // read more packets until a frame can be created. This function
            // blocks until a frame can be created. Use this in a select! branch
            timeout(self.keepalive, self.read_bytes(required)).await??;
        }
    }

    /// Read packets in bulk. This allow replies to be in bulk. This method is used
    /// after the connection is established to read a bunch of incoming packets
    pub fn readv(&mut self, packets: &mut VecDeque<Packet>) -> Result<usize, Error> {
        loop {
            match self
                .protocol
                .read_mut(&mut self.read, self.max_incoming_size)
            {
                Ok(packet) => {
                    packets.push_back(packet);
                    let connection_buffer_length = packets.len();
                    if connection_buffer_length >= self.max_connection_buffer_len {
                        return Ok(connection_buffer_length);
                    }
                }
                Err(protocol::Error::InsufficientBytes(_)) => return Ok(packets.len()),
                Err(e) => return Err(io::Error::new(ErrorKind::InvalidData, e.to_string()).into()),
            }
        }
    }

    pub async fn write(&mut self, packet: Packet) -> Result<(), Error> {
        Protocol::write(&self.protocol, packet, &mut self.write)?;
        self.socket.write_all(&self.write).await?;
        self.release_write_buffer(self.write.len());
        Ok(())
    }

    pub async fn writev(&mut self, packets: VecDeque<Packet>) -> Result<(), Error> {
        for packet in packets {
            Protocol::write(&self.protocol, packet, &mut self.write)?;
        }
        self.socket.write_all(&self.write).await?;
        self.release_write_buffer(self.write.len());
        Ok(())
    }
}

/// bluetick patch: `Any`, so [`Network`] can tell a plain TCP socket and
/// wait for it to be readable without holding a buffer.
pub trait N: AsyncRead + AsyncWrite + Send + Unpin + std::any::Any {}
impl<T> N for T where T: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
