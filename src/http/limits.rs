//! What one client may take of the server: held requests per user and per client network,
//! new devices per user, open connections, and how long a request body may dawdle.
//!
//! Owns the counters behind `[limits]` (the connection timeouts themselves live in
//! [`super::serve`], which holds the sockets) and [`Net`], the unit a client is counted by,
//! shared with the log-in throttling of [`super::auth`].

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::HeaderMap;
use axum::response::Response;

use super::error::HttpError;
use crate::config::LimitsConfig;
use crate::eas::status::Common;
use crate::eas::version::{Command, ProtocolVersion};
use crate::metrics::{self, LimitCounters};

/// How long a phone refused for a limit is asked to stay away.
pub const RETRY_AFTER_SECS: u64 = 60;

/// The slowest average a request body may arrive at once it started: 64 kbit/s, below the
/// worst mobile link a phone still syncs over.
const MIN_BODY_RATE: u64 = 8 * 1024;

/// A client network: an IPv4 address, or the /64 an IPv6 address is in (one subscriber line
/// or LAN gets a whole /64, so counting single IPv6 addresses would count nothing).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Net(IpAddr);

impl Net {
    pub fn of(ip: IpAddr) -> Net {
        match ip {
            IpAddr::V4(_) => Net(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Net(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Net(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// A value a client chose, fit for a log line: control characters, line and paragraph
/// separators and bidirectional overrides escaped (they could forge or hide lines), and cut
/// to `max` characters.
pub fn log_safe(value: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        let risky = c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
            )
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c);
        if risky || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The limits the request handlers enforce, with their counters.
pub struct Limits {
    pub config: LimitsConfig,
    pub counters: LimitCounters,
    held: Mutex<Held>,
    /// Connections, shared with the acceptor in [`super::serve`].
    pub connections: std::sync::Arc<ConnectionGate>,
}

#[derive(Default)]
struct Held {
    users: HashMap<String, usize>,
    networks: HashMap<Net, usize>,
}

/// A Ping or Sync counted against its user and network until dropped.
pub struct HeldGuard<'a> {
    limits: &'a Limits,
    user: Box<str>,
    net: Net,
}

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        let mut held = lock(&self.limits.held);
        let held = &mut *held;
        release(&mut held.users, &*self.user);
        release(&mut held.networks, &self.net);
    }
}

fn release<K: std::hash::Hash + Eq + ?Sized, Q: std::hash::Hash + Eq + std::borrow::Borrow<K>>(
    map: &mut HashMap<Q, usize>,
    key: &K,
) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Limits {
        Limits {
            config: config.clone(),
            counters: LimitCounters::default(),
            held: Mutex::new(Held::default()),
            connections: std::sync::Arc::new(ConnectionGate::new(config.max_connections)),
        }
    }

    /// Counts a Ping or Sync (the commands a phone may hold open for up to an hour) against
    /// the user and the client network for as long as the guard lives; `None` for other
    /// commands. Over a cap: 503 with Retry-After. MS-ASCMD has no Ping status for "too
    /// many" (8 is "too many folders"), and a Ping answered at once with "nothing changed"
    /// would come straight back; 503 makes a phone back off.
    pub fn hold(
        &self,
        command: Command,
        user: &str,
        client: IpAddr,
    ) -> Result<Option<HeldGuard<'_>>, HttpError> {
        if !matches!(command, Command::Ping | Command::Sync) {
            return Ok(None);
        }
        let net = Net::of(client);
        let mut held = lock(&self.held);
        let per_user = held.users.get(user).copied().unwrap_or(0);
        let per_net = held.networks.get(&net).copied().unwrap_or(0);
        if per_user >= self.config.held_requests_per_user {
            metrics::inc(&self.counters.refused_held_user);
            return Err(HttpError::Busy {
                reason: "held requests per user",
                retry_after: RETRY_AFTER_SECS,
            });
        }
        if per_net >= self.config.held_requests_per_address {
            metrics::inc(&self.counters.refused_held_address);
            return Err(HttpError::Busy {
                reason: "held requests per address",
                retry_after: RETRY_AFTER_SECS,
            });
        }
        *held.users.entry(user.to_owned()).or_default() += 1;
        *held.networks.entry(net).or_default() += 1;
        Ok(Some(HeldGuard {
            limits: self,
            user: user.into(),
            net,
        }))
    }

    /// For a DeviceId the store has not seen: `Ok(None)` when the user may add a device, else
    /// the answer. 14.0+ gets MS-ASCMD's common status 177 (MaximumDevicesReached) in the
    /// command's body, so the phone tells the user why; 12.x has no body status: 403.
    pub fn admit_new_device(
        &self,
        devices_of_user: usize,
        command: Command,
        version: ProtocolVersion,
    ) -> Result<Option<Response>, HttpError> {
        if devices_of_user < self.config.devices_per_user {
            return Ok(None);
        }
        metrics::inc(&self.counters.refused_devices);
        if !version.has_body_status() {
            return Err(HttpError::Forbidden);
        }
        let doc = crate::eas::status_document(command, Common::MaximumDevicesReached);
        Ok(Some(super::wbxml_response(doc.encode())))
    }

    /// The request body, cut off (408) when it pauses longer than `body_timeout_secs` or falls
    /// below [`MIN_BODY_RATE`] on average. The clock starts when the handler first reads, so
    /// time spent checking the password is not the phone's.
    pub fn timed_body(&self, body: Body, headers: &HeaderMap, max_body: usize) -> Body {
        let declared = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(max_body as u64);
        let pause = Duration::from_secs(self.config.body_timeout_secs);
        timed(
            body,
            pause,
            pause + Duration::from_secs(declared / MIN_BODY_RATE),
        )
    }
}

fn timed(body: Body, pause: Duration, whole: Duration) -> Body {
    Body::new(TimedBody {
        inner: body,
        pause,
        whole,
        started: None,
        timer: None,
        expired: false,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters only: nothing a panic could leave half-changed.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request body with a pause limit and an overall deadline.
struct TimedBody {
    inner: Body,
    pause: Duration,
    whole: Duration,
    started: Option<Instant>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    expired: bool,
}

/// Why a request body ended early; `read_body` answers 408 for it.
#[derive(Debug)]
pub struct BodyTimeout;

impl fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimeout {}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        let now = Instant::now();
        let started = *this.started.get_or_insert(now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                // Progress: the pause clock starts again (re-armed when next pending).
                this.timer = None;
                return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
            }
            Poll::Pending => {}
        }
        let deadline = (now + this.pause).min(started + this.whole);
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        if timer.as_mut().poll(cx).is_ready() {
            this.expired = true;
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Open connections against `max_connections`.
pub struct ConnectionGate {
    open: AtomicUsize,
    max: AtomicUsize,
    /// Connections being refused right now (each is answered 503, which takes a moment).
    refusing: AtomicUsize,
    /// Refusals since the last warning, and when that was (ms since `epoch`).
    unlogged: AtomicU64,
    last_warned: AtomicU64,
    epoch: Instant,
}

/// Refused connections answered at once; beyond it a connection is closed unanswered, so
/// refusing costs no more than a few dozen sockets.
const MAX_REFUSING: usize = 64;

impl ConnectionGate {
    pub fn new(max: usize) -> ConnectionGate {
        ConnectionGate {
            open: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
            refusing: AtomicUsize::new(0),
            unlogged: AtomicU64::new(0),
            last_warned: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A slot for a new connection, if one is free.
    pub fn enter(self: &std::sync::Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.max();
        let mut n = self.open.load(Ordering::Relaxed);
        loop {
            if n >= max {
                return None;
            }
            match self
                .open
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(ConnectionSlot(self.clone())),
                Err(now) => n = now,
            }
        }
    }

    /// Room to answer one refused connection with a 503.
    pub fn refuse(self: &std::sync::Arc<Self>) -> Option<RefusalSlot> {
        let n = self.refusing.fetch_add(1, Ordering::AcqRel);
        if n >= MAX_REFUSING {
            self.refusing.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(RefusalSlot(self.clone()))
    }

    /// Logs a refusal at most every ten seconds, with how many there were since.
    pub fn note_refusal(&self) {
        let unlogged = self.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_warned.load(Ordering::Relaxed);
        if (last != 0 && now.saturating_sub(last) < 10_000)
            || self
                .last_warned
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.unlogged.fetch_sub(unlogged, Ordering::Relaxed);
        tracing::warn!(
            open = self.open(),
            max = self.max(),
            refused = unlogged,
            "connection limit reached: new connections are answered 503 (limits.max_connections)"
        );
    }
}

/// An open connection's place; freed on drop.
pub struct ConnectionSlot(std::sync::Arc<ConnectionGate>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct RefusalSlot(std::sync::Arc<ConnectionGate>);

impl Drop for RefusalSlot {
    fn drop(&mut self) {
        self.0.refusing.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn networks_group_ipv6_by_64_and_unwrap_mapped_ipv4() {
        let n = |s: &str| Net::of(s.parse().unwrap());
        assert_eq!(n("2001:db8:1:2:aaaa::1"), n("2001:db8:1:2:bbbb::9"));
        assert_ne!(n("2001:db8:1:2::1"), n("2001:db8:1:3::1"));
        assert_eq!(n("::ffff:192.0.2.7"), n("192.0.2.7"));
        assert_ne!(n("192.0.2.7"), n("192.0.2.8"));
        assert_eq!(n("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(n("192.0.2.7").to_string(), "192.0.2.7");
    }

    #[test]
    fn log_values_cannot_forge_lines() {
        let forged = "Sync\n2026-12-04T10:00:00Z INFO eas: answered user=\"admin\"";
        let safe = log_safe(forged, 200);
        assert!(!safe.contains('\n'), "{safe}");
        assert!(safe.starts_with("Sync\\n2026"), "{safe}");
        for sneaky in [
            "a\rb",
            "a\u{2028}b",
            "a\u{202e}b",
            "a\u{1b}[31mb",
            "a\u{0}b",
        ] {
            let safe = log_safe(sneaky, 50);
            assert!(
                safe.chars()
                    .all(|c| !c.is_control() && !('\u{2000}'..='\u{206f}').contains(&c)),
                "{sneaky:?} -> {safe:?}"
            );
        }
        // An escaped value cannot pass for another escaped value.
        assert_ne!(log_safe("a\\nb", 50), log_safe("a\nb", 50));
        assert_eq!(log_safe("Ünïcode ok", 50), "Ünïcode ok");
        assert_eq!(
            log_safe(&"x".repeat(100), 10),
            format!("{}…", "x".repeat(10))
        );
    }

    #[test]
    fn held_requests_are_capped_per_user_and_network() {
        let config = LimitsConfig {
            held_requests_per_user: 2,
            held_requests_per_address: 3,
            ..LimitsConfig::default()
        };
        let limits = Limits::new(&config);
        let home: IpAddr = "2001:db8::1".parse().unwrap();
        let same_lan: IpAddr = "2001:db8::2".parse().unwrap();
        let elsewhere: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(
            limits
                .hold(Command::FolderSync, "ann", home)
                .unwrap()
                .is_none()
        );
        let a = limits.hold(Command::Ping, "ann", home).unwrap();
        let b = limits.hold(Command::Sync, "ann", same_lan).unwrap();
        assert!(matches!(
            limits.hold(Command::Ping, "ann", elsewhere),
            Err(HttpError::Busy { .. })
        ));
        let c = limits.hold(Command::Ping, "bob", same_lan).unwrap();
        assert!(
            matches!(
                limits.hold(Command::Ping, "cid", home),
                Err(HttpError::Busy { .. })
            ),
            "the /64 holds three"
        );
        drop(a);
        let _d = limits.hold(Command::Ping, "ann", elsewhere).unwrap();
        drop((b, c));
        assert_eq!(lock(&limits.held).users.len(), 1);
        assert_eq!(limits.counters.refused_held_user.load(Ordering::Relaxed), 1);
        assert_eq!(
            limits.counters.refused_held_address.load(Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn the_connection_gate_counts_and_frees() {
        let gate = std::sync::Arc::new(ConnectionGate::new(2));
        let a = gate.enter().unwrap();
        let _b = gate.enter().unwrap();
        assert!(gate.enter().is_none());
        drop(a);
        assert!(gate.enter().is_some());
        let refusals: Vec<_> = (0..MAX_REFUSING).map(|_| gate.refuse().unwrap()).collect();
        assert!(gate.refuse().is_none());
        drop(refusals);
        assert!(gate.refuse().is_some());
    }

    /// A body fed piece by piece through a channel.
    struct Trickle(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for Trickle {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|piece| piece.map(|b| Ok(http_body::Frame::data(b))))
        }
    }

    /// Sends a byte every 250 ms three times, then pauses; returns after how many ms
    /// reading the body failed.
    async fn trickle(pause: Duration, whole: Duration) -> u128 {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let body = timed(Body::new(Trickle(rx)), pause, whole);
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let _ = tx.send(Bytes::from_static(b"x")).await;
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx);
        });
        let t = Instant::now();
        let err = axum::body::to_bytes(body, 1 << 30).await.unwrap_err();
        assert!(format!("{err:?}").contains("BodyTimeout"), "{err:?}");
        feeder.abort();
        t.elapsed().as_millis()
    }

    #[tokio::test]
    async fn a_trickling_body_is_cut_off() {
        let ms = Duration::from_millis;
        // Pieces 250 ms apart pass a 500 ms pause limit; the long pause after the last one
        // does not: cut at 750 + 500 ms.
        let cut = trickle(ms(500), ms(10_000)).await;
        assert!((1200..2500).contains(&cut), "{cut} ms");
        // Whatever the progress, the whole body has its deadline.
        let cut = trickle(ms(500), ms(600)).await;
        assert!((550..1100).contains(&cut), "{cut} ms");
        // The whole deadline follows the declared length at 8 KiB/s.
        let limits = Limits::new(&LimitsConfig {
            body_timeout_secs: 5,
            ..LimitsConfig::default()
        });
        let mut headers = HeaderMap::new();
        headers.insert("content-length", (800 * 1024).to_string().parse().unwrap());
        let body = limits.timed_body(Body::empty(), &headers, 1 << 30);
        assert!(axum::body::to_bytes(body, 1).await.unwrap().is_empty());
    }
}
