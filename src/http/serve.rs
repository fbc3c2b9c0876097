//! Running the router on a socket: plain HTTP (behind a TLS-terminating proxy) or HTTPS with
//! rustls, whose certificate is re-read when the PEM files change.
//!
//! Also the connection limits of `[limits]`: the cap on open connections (a connection over
//! it is answered 503 and closed), and the header and idle timeouts. hyper's own header
//! timeout also runs while a connection waits for its next request, so it cannot tell a
//! slow head from an idle connection; [`Watched`] keeps the two apart and knows, from
//! [`Counted`], when a request is under way: a held Ping is under way, never idle.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum_server::Handle;
use axum_server::accept::{Accept, DefaultAcceptor};
use axum_server::tls_rustls::RustlsConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::limits::{ConnectionGate, ConnectionSlot};
use super::{AppState, app};
use crate::metrics::{self, LimitCounters};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The certificate or key could not be read or do not fit together.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listening socket failed.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds a rustls server configuration from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServeError> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| ServeError::Tls(format!("{}: {e}", p.display())));
    let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "{}: no certificate",
            cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?
        .ok_or_else(|| ServeError::Tls(format!("{}: no private key", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves until `handle` is told to shut down. Returns the bound address through `handle`.
pub async fn serve(state: Arc<AppState>, handle: Handle) -> Result<(), ServeError> {
    let addr = state.config.server.listen;
    let service = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    raise_open_file_limit();
    fit_connections_to_open_files(&state.limits.connections);
    match (&state.config.server.tls_cert, &state.config.server.tls_key) {
        (Some(cert), Some(key)) => {
            let rustls = RustlsConfig::from_config(Arc::new(tls_config(cert, key)?));
            let every = Duration::from_secs(state.config.server.tls_reload_secs.max(1));
            let reload = tokio::spawn(reload_on_change(
                rustls.clone(),
                cert.clone(),
                key.clone(),
                every,
                state.tls_reload.clone(),
            ));
            // The watcher lives as long as the server, not longer.
            let _stop = AbortOnDrop(reload);
            let mut server = axum_server::bind_rustls(addr, rustls).map(|inner| Limited {
                inner,
                state: state.clone(),
            });
            server.http_builder().http1().max_buf_size(HTTP1_MAX_BUF);
            server.handle(handle).serve(service).await?;
        }
        _ => {
            let mut server = axum_server::bind(addr).acceptor(Limited {
                inner: DefaultAcceptor,
                state: state.clone(),
            });
            server.http_builder().http1().max_buf_size(HTTP1_MAX_BUF);
            server.handle(handle).serve(service).await?;
        }
    }
    Ok(())
}

/// hyper's smallest buffer limit (its initial buffer size). A held Ping keeps its
/// connection's read buffer for minutes; uncapped, hyper grew it to 16 KiB on most phone
/// connections (measured with heaptrack over 2,000 held Pings; 8 KiB with the cap, the
/// request dropped before waiting, see `http::run_command`). Bodies are read in 8 KiB
/// pieces; a request head above 8 KiB is refused with 431.
const HTTP1_MAX_BUF: usize = 8192;

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Re-reads the certificate when either file changes, so a renewed certificate (certbot)
/// needs no restart, and at once when `kick` is notified (SIGHUP). A broken new pair is
/// logged and the old one stays in use. Connections already open, held Pings among them,
/// keep the session they have; only new handshakes see the new certificate.
async fn reload_on_change(
    rustls: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
    kick: Arc<tokio::sync::Notify>,
) {
    let mut seen = (modified(&cert), modified(&key));
    loop {
        let kicked = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = kick.notified() => true,
        };
        let now = (modified(&cert), modified(&key));
        if now == seen && !kicked {
            continue;
        }
        seen = now;
        match tls_config(&cert, &key) {
            Ok(config) => {
                rustls.reload_from_config(Arc::new(config));
                tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "new TLS certificate not loaded; keeping the old one")
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lowers `limits.max_connections` to half the open-file limit: past that, accepting fails
/// (EMFILE) and IMAP logins with it, for everybody; under it, the extra phones get a clear
/// 503 and the other half stays for IMAP sessions, push watchers and files.
///
/// The same half with `push.source = "dovecot-events"`, although a waiting phone then holds
/// no IMAP connection: IMAP sockets go per user, not per phone, and after a restart every
/// user's first Ping starts a look whose session stays in the pool for a minute (up to four
/// per user while its phones Sync). With one phone per user that is one IMAP socket per
/// connection, so no smaller reserve is safe without knowing the ratio. A file limit that is
/// not used costs nothing, so more phones want a higher LimitNOFILE, not a larger share.
fn fit_connections_to_open_files(gate: &ConnectionGate) {
    let Some(files) = open_file_limit() else {
        return;
    };
    let fits = usize::try_from(files / 2).unwrap_or(usize::MAX).max(1);
    if gate.max() > fits {
        tracing::warn!(
            configured = gate.max(),
            used = fits,
            open_files = files,
            "limits.max_connections lowered to half the open-file limit; raise the limit \
             (systemd: LimitNOFILE=) to serve more phones"
        );
        gate.set_max(fits);
    }
}

/// Raises the soft open-file limit to the hard one. Every held Ping is a connection, and a
/// gateway started from a shell keeps the shell's soft limit (often 1,024: 512 phones) while
/// the hard one allows far more; systemd's `LimitNOFILE=` sets both, so this changes nothing
/// there. Failing leaves the limit as it was (the cap below then says so in the log).
fn raise_open_file_limit() {
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) == 0
            && now.rlim_cur < now.rlim_max
            && libc::setrlimit(
                libc::RLIMIT_NOFILE,
                &libc::rlimit {
                    rlim_cur: now.rlim_max,
                    rlim_max: now.rlim_max,
                },
            ) == 0
    };
    if raised {
        tracing::info!(
            from = now.rlim_cur,
            to = now.rlim_max,
            "open-file limit raised to its hard limit"
        );
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux).
fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The answer to a connection over the cap. Written after the request head is read, so the
/// client reads it as the answer to its request.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 60\r\n\
    Content-Length: 0\r\nConnection: close\r\n\r\n";
/// All a refusal may take: handshake, reading the head, writing the answer.
const REFUSAL_TIME: Duration = Duration::from_secs(5);

/// Wraps axum-server's acceptor (plain or TLS) with the connection limits.
#[derive(Clone)]
struct Limited<A> {
    inner: A,
    state: Arc<AppState>,
}

impl<A, S> Accept<TcpStream, S> for Limited<A>
where
    A: Accept<TcpStream, S> + Clone + Send + Sync + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A::Service: Send + 'static,
    A::Future: Send + 'static,
    S: Send + 'static,
{
    type Stream = Watched<A::Stream>;
    type Service = Counted<A::Service>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let inner = self.inner.clone();
        let state = self.state.clone();
        let gate = state.limits.connections.clone();
        let slot = gate.enter();
        Box::pin(async move {
            let Some(slot) = slot else {
                metrics::inc(&state.limits.counters.refused_connections);
                gate.note_refusal();
                if let Some(_refusing) = gate.refuse() {
                    let _ = tokio::time::timeout(REFUSAL_TIME, async {
                        let (stream, _) = inner.accept(stream, service).await?;
                        refuse(stream).await
                    })
                    .await;
                }
                return Err(io::Error::other("connection limit reached"));
            };
            let (stream, service) = inner.accept(stream, service).await?;
            let limits = &state.limits.config;
            let conn = Arc::new(Conn::default());
            let timeouts = Timeouts {
                header: Duration::from_secs(limits.header_timeout_secs),
                idle: Duration::from_secs(limits.idle_timeout_secs),
            };
            let watched = Watched::new(stream, conn.clone(), timeouts, state.clone(), slot);
            Ok((
                watched,
                Counted {
                    inner: service,
                    conn,
                },
            ))
        })
    }
}

/// Reads the request head (bounded), answers 503 and closes, reading on a moment so the
/// answer is not lost to a reset.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while head.len() < HTTP1_MAX_BUF && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    stream.write_all(REFUSAL).await?;
    stream.flush().await?;
    stream.shutdown().await?;
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    idle: Duration,
}

/// What the service side of a connection tells its socket side.
#[derive(Default)]
struct Conn {
    /// Requests under way.
    in_flight: AtomicUsize,
    /// Requests begun on the connection.
    begun: AtomicU64,
}

/// Counts the connection's requests under way.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S, R> tower::Service<R> for Counted<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.conn.begun.fetch_add(1, Ordering::AcqRel);
        self.conn.in_flight.fetch_add(1, Ordering::AcqRel);
        let under_way = UnderWay(self.conn.clone());
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(under_way);
            response
        })
    }
}

/// A request under way, until it is answered or abandoned.
struct UnderWay(Arc<Conn>);

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection with no request under way waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Awaiting {
    /// The first request, or the rest of a head that began.
    Header,
    /// The next request after an answer.
    Idle,
}

/// A client connection's socket, closed when a request head takes longer than the header
/// timeout or the connection sits idle longer than the idle timeout. Time with a request
/// under way (a held Ping, a body being read) counts as neither.
struct Watched<S> {
    inner: S,
    conn: Arc<Conn>,
    timeouts: Timeouts,
    /// For the timeout counters.
    state: Arc<AppState>,
    _slot: ConnectionSlot,
    opened: Instant,
    /// The last byte read or written: the answer's last byte starts the idle clock.
    last_io: Instant,
    /// When the first byte of a request head arrived, and how many requests had begun then.
    head: Option<(Instant, u64)>,
    timer: Option<(Instant, Pin<Box<tokio::time::Sleep>>)>,
    timed_out: bool,
}

impl<S> Watched<S> {
    fn new(
        inner: S,
        conn: Arc<Conn>,
        timeouts: Timeouts,
        state: Arc<AppState>,
        slot: ConnectionSlot,
    ) -> Watched<S> {
        let now = Instant::now();
        Watched {
            inner,
            conn,
            timeouts,
            state,
            _slot: slot,
            opened: now,
            last_io: now,
            head: None,
            timer: None,
            timed_out: false,
        }
    }

    fn counters(&self) -> &LimitCounters {
        &self.state.limits.counters
    }

    fn deadline(&mut self) -> (Instant, Awaiting) {
        let begun = self.conn.begun.load(Ordering::Acquire);
        if self.head.is_some_and(|(_, n)| n != begun) {
            // That head became a request, which has been answered since.
            self.head = None;
        }
        match self.head {
            Some((first_byte, _)) => (first_byte + self.timeouts.header, Awaiting::Header),
            None if begun == 0 => (self.opened + self.timeouts.header, Awaiting::Header),
            None => (self.last_io + self.timeouts.idle, Awaiting::Idle),
        }
    }

    /// With nothing to read and no request under way: whether the clock ran out (arming
    /// the timer to wake the reader when it will).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<Awaiting> {
        if self.conn.in_flight.load(Ordering::Acquire) > 0 {
            self.head = None;
            self.timer = None;
            return None;
        }
        let (deadline, awaiting) = self.deadline();
        let timer = match &mut self.timer {
            Some((at, timer)) if *at == deadline => timer,
            slot => {
                let timer = Box::pin(tokio::time::sleep_until(deadline.into()));
                &mut slot.insert((deadline, timer)).1
            }
        };
        timer.as_mut().poll(cx).is_ready().then_some(awaiting)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let now = Instant::now();
                    this.last_io = now;
                    if this.head.is_none() && this.conn.in_flight.load(Ordering::Acquire) == 0 {
                        this.head = Some((now, this.conn.begun.load(Ordering::Acquire)));
                    }
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        match this.expired(cx) {
            None => Poll::Pending,
            Some(Awaiting::Idle) => {
                // Like the client hanging up: hyper closes an idle connection quietly.
                metrics::inc(&this.counters().timeout_idle);
                this.timed_out = true;
                Poll::Ready(Ok(()))
            }
            Some(Awaiting::Header) => {
                metrics::inc(&this.counters().timeout_header);
                this.timed_out = true;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not received in time",
                )))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.last_io = Instant::now();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.last_io = Instant::now();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
