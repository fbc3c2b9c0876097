//! The byte stream to the server: TCP or TLS, a read buffer, and the inactivity timeout.
//!
//! It knows how to get one whole response ([`super::frame`] finds the end,
//! [`super::parse`] reads it) and how to write bytes; it knows nothing about commands.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::error::ImapError;
use super::response::Response;
use super::{frame, parse, tls};

/// How much we ask the socket for at a time once a response is arriving. Large enough that a
/// FETCH of many messages takes few reads; responses are parsed where they lie in the buffer,
/// so a read that brings several costs no extra copying.
const READ_CHUNK: usize = 64 * 1024;
/// What an empty buffer reserves before waiting: a connection spends most of its life
/// waiting (a watcher in IDLE, a pooled session between requests), and thousands of them
/// must not each hold a chunk, or the memory of the largest response they ever carried.
const WAITING_CAPACITY: usize = 1024;

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS swaps the stream; a failed upgrade leaves it here.
    Upgrading,
}

pub(crate) struct Connection {
    stream: Stream,
    /// Bytes received; those from `start` on are not yet returned as a response.
    buf: Vec<u8>,
    start: usize,
    timeout: Duration,
    /// The longest response accepted ([`frame::frame`]).
    max_response: usize,
}

impl Connection {
    /// Opens the TCP connection, and TLS on it right away when `implicit_tls`.
    pub async fn open(
        host: &str,
        port: u16,
        implicit_tls: bool,
        insecure: bool,
        timeout: Duration,
    ) -> Result<Connection, ImapError> {
        let tcp = within(timeout, TcpStream::connect((host, port))).await??;
        // Commands are small and we wait for each answer; do not let Nagle delay them.
        tcp.set_nodelay(true)?;
        let stream = if implicit_tls {
            Stream::Tls(Box::new(
                within(timeout, tls::handshake(tcp, host, insecure)).await??,
            ))
        } else {
            Stream::Plain(tcp)
        };
        Ok(Connection {
            stream,
            buf: Vec::new(),
            start: 0,
            timeout,
            max_response: frame::MAX_RESPONSE_BYTES,
        })
    }

    /// Switches a plain connection to TLS (after the server's OK to STARTTLS).
    pub async fn start_tls(&mut self, host: &str, insecure: bool) -> Result<(), ImapError> {
        // Anything the server sent after its OK was sent in plaintext, where an attacker could
        // have injected it; it must not be read as if it came over TLS (cf. CVE-2011-0411).
        if self.buf.len() > self.start {
            return Err(ImapError::Protocol(
                "server sent data after accepting STARTTLS".into(),
            ));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(ImapError::Protocol("STARTTLS on a TLS connection".into()));
        };
        let tls = within(self.timeout, tls::handshake(tcp, host, insecure)).await??;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Responses longer than this are refused with [`ImapError::TooLarge`].
    pub fn set_max_response(&mut self, bytes: usize) {
        self.max_response = bytes;
    }

    /// Reads the next complete response.
    pub async fn read_response(&mut self) -> Result<Response, ImapError> {
        self.read_response_within(self.timeout).await
    }

    /// Reads the next complete response, waiting at most `wait` for each read (IDLE waits far
    /// longer than a command may take). Cancel-safe: bytes already read stay in the buffer.
    pub async fn read_response_within(&mut self, wait: Duration) -> Result<Response, ImapError> {
        loop {
            let pending = &self.buf[self.start..];
            let at_least = match frame::frame(pending, self.max_response) {
                Ok(frame::Framed::Complete(len)) => {
                    let parsed = parse::response(&pending[..len]);
                    self.start += len;
                    if self.start == self.buf.len() {
                        self.start = 0;
                        if self.buf.capacity() > WAITING_CAPACITY {
                            self.buf = Vec::new();
                        } else {
                            self.buf.clear();
                        }
                    }
                    return parsed.map_err(|e| ImapError::Protocol(e.to_string()));
                }
                Ok(frame::Framed::Incomplete { at_least }) => at_least,
                Err(frame::FrameError::TooLarge { limit }) => {
                    return Err(ImapError::TooLarge { limit });
                }
            };
            // The returned responses before `start` are dropped when they are most of the
            // buffer or the next read would otherwise grow it (moving them along).
            if self.start > 0
                && (self.start >= self.buf.len() / 2
                    || self.buf.capacity() - self.buf.len() < READ_CHUNK)
            {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let missing = (self.start + at_least).saturating_sub(self.buf.len());
            if missing > READ_CHUNK {
                // A large literal is on its way and its length is known: room for exactly
                // that, where growing a chunk at a time would double the buffer's capacity
                // and leave up to half of it unused (a 30 MB message held in 64 MB).
                self.buf.reserve_exact(missing + READ_CHUNK);
            } else {
                self.buf.reserve(if self.buf.is_empty() {
                    WAITING_CAPACITY
                } else {
                    READ_CHUNK
                });
            }
            let n = match &mut self.stream {
                Stream::Plain(s) => within(wait, s.read_buf(&mut self.buf)).await??,
                Stream::Tls(s) => within(wait, s.read_buf(&mut self.buf)).await??,
                Stream::Upgrading => return Err(broken()),
            };
            if n == 0 {
                return Err(ImapError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                )));
            }
        }
    }

    /// Writes and flushes `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ImapError> {
        match &mut self.stream {
            Stream::Plain(s) => {
                within(self.timeout, async {
                    s.write_all(bytes).await?;
                    s.flush().await
                })
                .await??;
            }
            Stream::Tls(s) => {
                within(self.timeout, async {
                    s.write_all(bytes).await?;
                    s.flush().await
                })
                .await??;
            }
            Stream::Upgrading => return Err(broken()),
        }
        Ok(())
    }

    /// Closes the write side politely (TLS close_notify, TCP FIN).
    pub async fn shutdown(&mut self) {
        let _ = match &mut self.stream {
            Stream::Plain(s) => within(self.timeout, s.shutdown()).await,
            Stream::Tls(s) => within(self.timeout, s.shutdown()).await,
            Stream::Upgrading => return,
        };
    }
}

fn broken() -> ImapError {
    ImapError::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "connection is unusable after a failed TLS upgrade",
    ))
}

async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, ImapError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ImapError::Timeout(limit))
}
