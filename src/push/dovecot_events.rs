//! The Dovecot event source: Dovecot itself says which mailboxes changed, so a waiting phone
//! costs no IMAP connection at all.
//!
//! `contrib/dovecot/eas-push.lua` runs inside Dovecot's imap and lmtp processes (the
//! push_notification plugin's Lua driver). After every committed transaction it sends one UDP
//! datagram naming the user, each changed mailbox with the kinds of change, and each mailbox
//! created, deleted or renamed. A mailbox that only got new messages comes with its UIDVALIDITY
//! and the highest new UID (from the events themselves: free); any other change with the
//! mailbox's counters after the commit (UIDVALIDITY, UIDNEXT, MESSAGES, HIGHESTMODSEQ), which
//! Dovecot reads by opening the mailbox again — a cost growing with the mailbox that
//! deliveries therefore never pay:
//!
//! ```text
//! EASPUSH1
//! s 9f2c4e1a77b0d3e5 42 1764460800        sender (random per process), sequence, unix time
//! u alice@example.com
//! n INBOX N 1764400000 1235                mailbox, kinds, UIDVALIDITY, highest new UID
//! m Archive SE 1764400007 88 80 5120       mailbox, kinds, counters ("-" when unknown)
//! x Projects/2025 rename Projects/2024
//! h 5b1c...e0                              HMAC-SHA256 of every byte above, hex
//! ```
//!
//! Sending never waits (an unconnected datagram socket), so Dovecot is never slowed by a gateway
//! that is down or busy. Here a listener checks the signature (shared secret), the time window
//! and the per-sender sequence (a replayed datagram is dropped), counts what it drops, and
//! hands the counters to the hub as [`Signal::Mailbox`] — the same signal the IMAP watchers
//! send after their STATUS — so each waiting device compares them with its own newest Sync
//! snapshot exactly as in IMAP mode; new messages go as [`Signal::Arrived`], which a device
//! compares with the same snapshot by UID. Either way its own changes are already in the
//! snapshot and wake nothing, and a lost or forged datagram can only wake a device early or
//! late.
//!
//! The one thing events cannot tell is what happened before a device started waiting (between
//! its last Sync and its Ping, or while the gateway was down). So when a device registers,
//! the source reads its user's watched mailboxes once over IMAP, on a pooled session that goes
//! back to the [`SessionPool`]; the pool closes sessions idle for its `max_idle`, and this
//! source makes it do so on time ([`SessionPool::reap`]), so a quiet gateway holds none. With
//! `push.source = "both"` that look is repeated for every waiting user every
//! `safety_check_secs`, in case datagrams were lost.
//!
//! The same listener hears Radicale's storage hook (`contrib/radicale/eas-dav-hook`): a `d`
//! line names the DAV user that changed something (and the collection when the sender knows
//! it), signed the same way; the user's DAV watcher ([`super::dav_watch`]) then checks its
//! collections at once. With `push.source = "imap"` and `dav.push_hook` the listener runs for
//! those lines alone (mail keeps its IMAP watchers).
//!
//! ```text
//! d -                                      a DAV change of the user, collection unknown
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::Sha256;

use super::{EventSource, Hub, Signal, UserCredentials};
use crate::imap::{ImapConfig, ImapError};
use crate::mailstore::{FolderState, Mailstore, SessionPool};

/// The first line of every datagram (format version 1).
pub const MAGIC: &str = "EASPUSH1";
/// How often idle pooled sessions are closed and the safety look is considered.
const TICK: Duration = Duration::from_secs(5);

/// One verified datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Random per Dovecot process (per script load).
    pub sender: String,
    /// 1, 2, 3 … per sender.
    pub sequence: u64,
    /// Unix seconds when it was sent.
    pub time: u64,
    /// Dovecot's user name.
    pub user: String,
    pub changes: Vec<Change>,
}

/// What one transaction did to one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Only new messages (delivered, appended, copied or moved in): the highest new UID.
    Arrived {
        mailbox: String,
        kinds: Kinds,
        uidvalidity: u32,
        uid: u32,
    },
    /// Messages were changed or removed (perhaps added too); the counters after the commit
    /// when Dovecot could read them.
    Messages {
        mailbox: String,
        kinds: Kinds,
        state: Option<FolderState>,
    },
    Created(String),
    Deleted(String),
    Renamed {
        from: String,
        to: String,
    },
    /// Something of the user's on the DAV server changed (Radicale's hook): the collection's
    /// path when the sender knew it.
    Dav(Option<String>),
}

/// The kinds of message change in a transaction (RFC 5423 names in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kinds {
    /// Delivered (MessageNew: LMTP/LDA).
    pub new: bool,
    /// APPENDed, copied or moved in (MessageAppend).
    pub append: bool,
    /// FlagsSet.
    pub flags_set: bool,
    /// FlagsClear.
    pub flags_cleared: bool,
    /// MessageExpunge.
    pub expunge: bool,
}

impl Kinds {
    fn parse(letters: &str) -> Kinds {
        let mut k = Kinds::default();
        for c in letters.chars() {
            match c {
                'N' => k.new = true,
                'A' => k.append = true,
                'S' => k.flags_set = true,
                'C' => k.flags_cleared = true,
                'E' => k.expunge = true,
                _ => {}
            }
        }
        k
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not a datagram of ours, or cut short: no signature line, bad fields.
    #[error("malformed datagram: {0}")]
    Malformed(&'static str),
    /// The signature does not match the shared secret (another secret, or forged).
    #[error("bad signature")]
    BadSignature,
    /// Seen before (same sender and sequence), or stamped outside the time window.
    #[error("replayed or outside the time window")]
    Replayed,
}

type HmacSha256 = hmac::Hmac<Sha256>;

fn mac(key: &[u8], message: &[u8]) -> HmacSha256 {
    use hmac::Mac;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    mac(key, message).finalize().into_bytes().into()
}

/// The 32 bytes of a 64-digit hex signature (either case).
fn unhex32(sig: &[u8]) -> Option<[u8; 32]> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    if sig.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(sig.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The secret as the script reads it: the file's bytes without trailing white space.
pub fn read_secret(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    // Whoever can read the secret can sign events, and whoever can write it can choose it:
    // the owner and one group (Dovecot's mail user) only, like ssh does for its keys.
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o027 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} has mode {:04o}: other users may read it or its group may change it; \
                 use chmod 0640 (or 0600)",
                path.display(),
                mode & 0o7777
            ),
        ));
    }
    let mut bytes = std::fs::read(path)?;
    while bytes
        .last()
        .is_some_and(|b| b.is_ascii_whitespace() || *b == 0x0b)
    {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(bytes)
}

/// `%XX` for `%`, space and control characters, as the script writes names.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '%' || c == ' ' || c.is_ascii_control() {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, Rejected> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let h = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(Rejected::Malformed("bad %-escape"))?;
            out.push(h);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Rejected::Malformed("name is not UTF-8"))
}

/// Signs a datagram body (everything before the `h` line) the way the script does; for
/// tests and `eas-gateway check`.
pub fn sign(secret: &[u8], body: &str) -> Vec<u8> {
    let mut out = body.as_bytes().to_vec();
    out.extend_from_slice(b"h ");
    out.extend_from_slice(hex(&hmac_sha256(secret, body.as_bytes())).as_bytes());
    out.push(b'\n');
    out
}

/// Checks the signature, then parses. Replays are the caller's business ([`ReplayGuard`]).
pub fn verify(secret: &[u8], datagram: &[u8]) -> Result<Datagram, Rejected> {
    let datagram = datagram.strip_suffix(b"\n").unwrap_or(datagram);
    let at = memchr_last_h(datagram).ok_or(Rejected::Malformed("no signature line"))?;
    let (body, sig) = (&datagram[..at + 1], &datagram[at + 3..]);
    let sig = unhex32(sig).ok_or(Rejected::BadSignature)?;
    // In constant time (the crate compares with `subtle`): a timing must not tell how much
    // of a forged signature was right.
    hmac::Mac::verify_slice(mac(secret, body), &sig).map_err(|_| Rejected::BadSignature)?;
    parse(std::str::from_utf8(body).map_err(|_| Rejected::Malformed("not UTF-8"))?)
}

/// Where the `\nh ` of the signature line starts (the index of its `\n`).
fn memchr_last_h(d: &[u8]) -> Option<usize> {
    d.windows(3).rposition(|w| w == b"\nh ")
}

fn parse(body: &str) -> Result<Datagram, Rejected> {
    let bad = Rejected::Malformed;
    let mut lines = body.lines();
    if lines.next() != Some(MAGIC) {
        return Err(bad("not EASPUSH1"));
    }
    let s: Vec<&str> = lines.next().ok_or(bad("no sender"))?.split(' ').collect();
    let ["s", sender, sequence, time] = s[..] else {
        return Err(bad("sender line"));
    };
    let sequence = sequence.parse().map_err(|_| bad("sequence"))?;
    let time = time.parse().map_err(|_| bad("time"))?;
    let user = lines
        .next()
        .and_then(|l| l.strip_prefix("u "))
        .ok_or(bad("no user"))?;
    let user = unescape(user)?;
    let mut changes = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        match f[..] {
            ["n", name, kinds, uidvalidity, uid] => changes.push(Change::Arrived {
                mailbox: unescape(name)?,
                kinds: Kinds::parse(kinds),
                uidvalidity: uidvalidity.parse().map_err(|_| bad("uidvalidity"))?,
                uid: uid.parse().map_err(|_| bad("uid"))?,
            }),
            ["m", name, kinds, uidvalidity, uid_next, exists, modseq] => {
                let k = Kinds::parse(kinds);
                let state = if uidvalidity == "-" {
                    None
                } else {
                    let n = |v: &str| v.parse::<u64>().map_err(|_| bad("counter"));
                    Some(FolderState {
                        uidvalidity: u32::try_from(n(uidvalidity)?).map_err(|_| bad("counter"))?,
                        uid_next: u32::try_from(n(uid_next)?).map_err(|_| bad("counter"))?,
                        exists: u32::try_from(n(exists)?).map_err(|_| bad("counter"))?,
                        highest_modseq: n(modseq)?,
                    })
                };
                changes.push(Change::Messages {
                    mailbox: unescape(name)?,
                    kinds: k,
                    state,
                });
            }
            ["x", name, "create"] => changes.push(Change::Created(unescape(name)?)),
            ["x", name, "delete"] => changes.push(Change::Deleted(unescape(name)?)),
            ["x", name, "rename", old] => changes.push(Change::Renamed {
                from: unescape(old)?,
                to: unescape(name)?,
            }),
            ["d", "-"] => changes.push(Change::Dav(None)),
            ["d", collection] => changes.push(Change::Dav(Some(unescape(collection)?))),
            // Lines of a later version of the script are skipped, not fatal.
            _ => {}
        }
    }
    Ok(Datagram {
        sender: sender.to_owned(),
        sequence,
        time,
        user,
        changes,
    })
}

/// Drops datagrams seen before: a time window around our clock, and per sender the highest
/// sequence with a bitmap of the 64 below it (datagrams may arrive slightly out of order).
/// A sender silent for longer than the window is forgotten: anything it sent is outside
/// the window by then, so the time check alone refuses a replay of it.
#[derive(Default)]
pub struct ReplayGuard {
    senders: HashMap<String, SenderState>,
    checks: u64,
}

struct SenderState {
    highest: u64,
    /// Bit i: `highest - 1 - i` was seen.
    below: u64,
    /// Newest datagram time accepted.
    last: u64,
}

impl ReplayGuard {
    /// Whether a datagram is new; records it if so.
    pub fn accept(&mut self, sender: &str, sequence: u64, time: u64, now: u64, skew: u64) -> bool {
        if time.abs_diff(now) > skew {
            return false;
        }
        self.checks += 1;
        if self.checks % 1024 == 0 {
            self.senders
                .retain(|_, s| now.saturating_sub(s.last) <= skew + 1);
        }
        let Some(s) = self.senders.get_mut(sender) else {
            self.senders.insert(
                sender.to_owned(),
                SenderState {
                    highest: sequence,
                    below: 0,
                    last: time,
                },
            );
            return true;
        };
        s.last = s.last.max(time);
        if sequence > s.highest {
            let shift = sequence - s.highest;
            s.below = if shift > 64 {
                0
            } else {
                // The old highest becomes bit shift-1.
                (s.below << (shift - 1) << 1) | (1u64 << (shift - 1))
            };
            s.highest = sequence;
            return true;
        }
        let back = s.highest - sequence;
        if back == 0 || back > 64 {
            return false;
        }
        let bit = 1u64 << (back - 1);
        if s.below & bit != 0 {
            return false;
        }
        s.below |= bit;
        true
    }

    /// Senders remembered.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }
}

/// What the listener did with the datagrams, for `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub bad_signature: AtomicU64,
    pub replayed: AtomicU64,
    pub malformed: AtomicU64,
    /// Mailbox and hierarchy changes handed to the hub for a user with waiting devices.
    pub published: AtomicU64,
}

impl Counters {
    fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "# HELP eas_push_events_total Datagrams from Dovecot's push script, by outcome.\n\
             # TYPE eas_push_events_total counter\n\
             eas_push_events_total{{result=\"accepted\"}} {}\n\
             eas_push_events_total{{result=\"bad_signature\"}} {}\n\
             eas_push_events_total{{result=\"replayed\"}} {}\n\
             eas_push_events_total{{result=\"malformed\"}} {}\n\
             # HELP eas_push_event_signals_total Changes from Dovecot's events handed to waiting devices.\n\
             # TYPE eas_push_event_signals_total counter\n\
             eas_push_event_signals_total {}\n",
            get(&self.accepted),
            get(&self.bad_signature),
            get(&self.replayed),
            get(&self.malformed),
            get(&self.published),
        )
    }
}

/// How the source is set up.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// A Unix datagram socket instead of `listen`.
    pub socket: Option<std::path::PathBuf>,
    pub secret: Vec<u8>,
    pub max_skew: Duration,
    /// `both`: look at every waiting user over IMAP this often.
    pub safety_check: Option<Duration>,
    pub imap: ImapConfig,
    pub pool: Arc<SessionPool>,
    /// Dovecot sends mail events here (`dovecot-events`/`both`); false when the listener only
    /// hears Radicale's hook and another source watches mail.
    pub mail: bool,
}

/// The source: the datagram listener, the looks at registration, the pool reaper.
pub struct DovecotEvents {
    shared: Arc<Shared>,
    /// The mail source when it is not this one (IMAP watchers, the listener only for DAV).
    inner: Option<Box<dyn EventSource>>,
    /// The UDP address bound (None with a Unix socket).
    local: Option<SocketAddr>,
    /// The Unix socket file, removed again on drop.
    socket_path: Option<std::path::PathBuf>,
}

/// Where datagrams arrive.
pub enum Listener {
    Udp(tokio::net::UdpSocket),
    Unix(tokio::net::UnixDatagram),
}

impl Listener {
    /// Binds what the settings name (needs a Tokio runtime). A Unix socket file left by a
    /// process that is gone is replaced; one somebody still reads from is `AddrInUse`.
    pub fn bind(listen: SocketAddr, socket: Option<&std::path::Path>) -> std::io::Result<Listener> {
        match socket {
            None => {
                let s = std::net::UdpSocket::bind(listen)?;
                s.set_nonblocking(true)?;
                Ok(Listener::Udp(tokio::net::UdpSocket::from_std(s)?))
            }
            Some(path) => {
                use std::os::unix::fs::{FileTypeExt, PermissionsExt};
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                    let probe = std::os::unix::net::UnixDatagram::unbound()?;
                    if probe.connect(path).is_ok() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::AddrInUse,
                            "another process listens on it",
                        ));
                    }
                    std::fs::remove_file(path)?;
                }
                let s = tokio::net::UnixDatagram::bind(path)?;
                // Writable by the gateway's user and one group, never by every local user
                // (forged datagrams are harmless, but a flood of them is work). The group is
                // the directory's, so the operator grants Dovecot's mail user access by
                // creating the directory with that group (docs/deploy/dovecot-events.md).
                use std::os::unix::fs::MetadataExt;
                if let Some(gid) = path
                    .parent()
                    .and_then(|d| std::fs::metadata(d).ok())
                    .map(|m| m.gid())
                {
                    if let Err(e) = std::os::unix::fs::chown(path, None, Some(gid)) {
                        tracing::warn!(error = %e, gid, socket = %path.display(),
                            "cannot give the events socket its directory's group");
                    }
                }
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
                Ok(Listener::Unix(s))
            }
        }
    }

    pub async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Listener::Udp(s) => s.recv_from(buf).await.map(|(n, _)| n),
            Listener::Unix(s) => s.recv(buf).await,
        }
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Udp(s) => s.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }
}

struct Shared {
    hub: OnceLock<Weak<Hub>>,
    settings: Settings,
    /// Users with waiting devices: how to log in for a look, and whether one runs.
    users: Mutex<HashMap<String, UserLook>>,
    /// Sessions out of the pool for a look right now.
    looking: AtomicUsize,
    /// `both`: a round of safety looks is under way (a slow round never overlaps the next).
    safety_running: std::sync::atomic::AtomicBool,
    counters: Counters,
    /// Set when the source is dropped: the listener and the ticker end.
    stop: tokio::sync::watch::Sender<bool>,
}

struct UserLook {
    credentials: UserCredentials,
    running: bool,
    again: bool,
    /// The last look failed (BackendDown was told).
    down: bool,
}

impl DovecotEvents {
    /// Binds the listener and starts its tasks (needs a Tokio runtime), then the hub.
    pub fn hub(
        settings: Settings,
        inner: Option<Box<dyn EventSource>>,
        dav: Option<super::dav_watch::DavWatchers>,
        grace: Duration,
    ) -> std::io::Result<Arc<Hub>> {
        let socket = Listener::bind(settings.listen, settings.socket.as_deref())?;
        let local = socket.local_addr();
        let socket_path = settings.socket.clone();
        let shared = Arc::new(Shared {
            hub: OnceLock::new(),
            settings,
            users: Mutex::new(HashMap::new()),
            looking: AtomicUsize::new(0),
            safety_running: std::sync::atomic::AtomicBool::new(false),
            counters: Counters::default(),
            stop: tokio::sync::watch::channel(false).0,
        });
        match (&local, &socket_path) {
            (Some(a), _) => tracing::info!(listen = %a, "listening for Dovecot's push events"),
            (None, Some(p)) => {
                tracing::info!(socket = %p.display(), "listening for Dovecot's push events")
            }
            (None, None) => {}
        }
        let source = DovecotEvents {
            shared: shared.clone(),
            inner,
            local,
            socket_path,
        };
        let hub = Hub::with_sources(Box::new(source), dav, grace);
        let _ = shared.hub.set(Arc::downgrade(&hub));
        tokio::spawn(listen(
            socket,
            Arc::downgrade(&shared),
            shared.stop.subscribe(),
        ));
        tokio::spawn(tick(Arc::downgrade(&shared), shared.stop.subscribe()));
        Ok(hub)
    }
}

impl Drop for DovecotEvents {
    fn drop(&mut self) {
        // The listener and the ticker end, and the socket closes with them.
        self.shared.stop.send_replace(true);
        if let Some(p) = &self.socket_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl EventSource for DovecotEvents {
    fn watch(&self, hub: &Arc<Hub>, user: &UserCredentials) {
        if let Some(inner) = &self.inner {
            inner.watch(hub, user);
        }
        if !self.shared.settings.mail {
            return;
        }
        {
            let mut users = lock(&self.shared.users);
            match users.get_mut(&user.key) {
                Some(u) => u.credentials = user.clone(),
                None => {
                    users.insert(
                        user.key.clone(),
                        UserLook {
                            credentials: user.clone(),
                            running: false,
                            again: false,
                            down: false,
                        },
                    );
                }
            }
        }
        start_look(&self.shared, &user.key);
    }

    fn connections(&self) -> usize {
        self.shared.looking.load(Ordering::Relaxed)
            + self.inner.as_ref().map_or(0, |i| i.connections())
    }

    fn metrics(&self) -> String {
        let mut out = self.shared.counters.render();
        if let Some(i) = &self.inner {
            out.push_str(&i.metrics());
        }
        out
    }

    fn events_addr(&self) -> Option<SocketAddr> {
        self.local
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Shared {
    fn hub(&self) -> Option<Arc<Hub>> {
        self.hub.get().and_then(Weak::upgrade)
    }

    /// One datagram: verify, refuse replays, publish.
    fn handle(&self, guard: &mut ReplayGuard, bytes: &[u8]) {
        let c = &self.counters;
        let d = match verify(&self.settings.secret, bytes) {
            Ok(d) => d,
            Err(e) => {
                let counter = match e {
                    Rejected::BadSignature => &c.bad_signature,
                    _ => &c.malformed,
                };
                let n = counter.fetch_add(1, Ordering::Relaxed);
                // The first and then every 1000th, so a flood does not flood the log.
                if n % 1000 == 0 {
                    tracing::warn!(error = %e, dropped = n + 1, "Dovecot push event dropped");
                }
                return;
            }
        };
        let skew = self.settings.max_skew.as_secs();
        if !guard.accept(&d.sender, d.sequence, d.time, unix_now(), skew) {
            let n = c.replayed.fetch_add(1, Ordering::Relaxed);
            if n % 1000 == 0 {
                tracing::warn!(dropped = n + 1, "Dovecot push event replayed or too old");
            }
            return;
        }
        c.accepted.fetch_add(1, Ordering::Relaxed);
        let Some(hub) = self.hub() else {
            return;
        };
        // Our user keys are lower-case log-in names; Dovecot's user names are too by default
        // (auth_username_format = %Lu).
        let user = d.user.to_lowercase();
        // Radicale's user names are DAV user names, which the DAV watchers map to ours.
        for change in &d.changes {
            if let Change::Dav(collection) = change {
                if hub.dav_changed(&d.user, collection.as_deref()) {
                    c.published.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if !hub.is_watched(&user) {
            return;
        }
        for change in d.changes {
            if matches!(change, Change::Dav(_)) {
                continue;
            }
            c.published.fetch_add(1, Ordering::Relaxed);
            match change {
                Change::Arrived {
                    mailbox,
                    uidvalidity,
                    uid,
                    ..
                } => hub.publish(
                    &user,
                    Signal::Arrived {
                        mailbox,
                        uidvalidity,
                        uid,
                    },
                ),
                Change::Messages { mailbox, state, .. } => {
                    hub.publish(&user, Signal::Mailbox(mailbox, state))
                }
                Change::Created(name) => hub.publish(&user, Signal::Hierarchy(name)),
                Change::Deleted(name) => {
                    // Devices waiting on it look and find it gone (status 7).
                    hub.publish(&user, Signal::Mailbox(name.clone(), None));
                    hub.publish(&user, Signal::Hierarchy(name));
                }
                Change::Renamed { from, to } => {
                    hub.publish(&user, Signal::Mailbox(from, None));
                    hub.publish(&user, Signal::Hierarchy(to));
                }
                Change::Dav(_) => {}
            }
        }
    }

    /// Reads the STATUS of every mailbox the user's waiting devices watch, on a pooled session
    /// that goes back to the pool, and publishes it.
    async fn look(&self, user: &str) {
        let Some(hub) = self.hub() else {
            return;
        };
        let mailboxes = hub.mailboxes_of(user);
        let Some(creds) = lock(&self.users).get(user).map(|u| u.credentials.clone()) else {
            return;
        };
        if mailboxes.is_empty() {
            return;
        }
        self.looking.fetch_add(1, Ordering::Relaxed);
        let result = self.look_with(&hub, &creds, mailboxes).await;
        self.looking.fetch_sub(1, Ordering::Relaxed);
        let mut users = lock(&self.users);
        let Some(u) = users.get_mut(user) else {
            return;
        };
        match result {
            Ok(()) if u.down => {
                u.down = false;
                hub.publish(user, Signal::BackendUp);
            }
            Ok(()) => {}
            Err(e) => {
                tracing::info!(user = %user, error = %e, "push look over IMAP failed");
                u.down = true;
                hub.publish(user, Signal::BackendDown);
            }
        }
    }

    async fn look_with(
        &self,
        hub: &Hub,
        creds: &UserCredentials,
        mailboxes: Vec<String>,
    ) -> Result<(), ImapError> {
        let s = &self.settings;
        let mut store = Mailstore::open_pooled(
            &s.pool,
            &s.imap,
            &creds.key,
            &creds.login,
            creds.password.expose(),
        )
        .await?;
        for m in mailboxes {
            match store.folder_state(&m).await {
                Ok(state) => hub.publish(&creds.key, Signal::Mailbox(m, Some(state))),
                Err(ImapError::No { .. }) => hub.publish(&creds.key, Signal::Mailbox(m, None)),
                // The session is dropped, not pooled.
                Err(e) => return Err(e),
            }
        }
        store.close().await;
        Ok(())
    }
}

/// Starts a look for the user, or asks the running one to go round once more (many devices
/// arriving at once cost one or two looks).
fn start_look(shared: &Arc<Shared>, user: &str) {
    {
        let mut users = lock(&shared.users);
        let Some(u) = users.get_mut(user) else {
            return;
        };
        if u.running {
            u.again = true;
            return;
        }
        u.running = true;
    }
    let (shared, user) = (shared.clone(), user.to_owned());
    tokio::spawn(async move {
        loop {
            shared.look(&user).await;
            let mut users = lock(&shared.users);
            match users.get_mut(&user) {
                Some(u) if u.again => u.again = false,
                Some(u) => {
                    u.running = false;
                    return;
                }
                None => return,
            }
        }
    });
}

async fn listen(
    socket: Listener,
    shared: Weak<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65_536];
    let mut guard = ReplayGuard::default();
    loop {
        let Some(s) = shared.upgrade() else {
            return;
        };
        if *stop.borrow_and_update() {
            return;
        }
        tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) => s.handle(&mut guard, &buf[..n]),
                // ICMP errors and the like: nothing to do but go on.
                Err(e) => tracing::debug!(error = %e, "push events socket"),
            },
            _ = stop.changed() => return,
        }
    }
}

/// Closes idle pooled sessions on time, forgets users nobody waits for, and (`both`) looks
/// at every waiting user now and then.
async fn tick(shared: Weak<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut last_safety = tokio::time::Instant::now();
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        let Some(s) = shared.upgrade() else {
            return;
        };
        s.settings.pool.reap();
        let Some(hub) = s.hub() else {
            return;
        };
        let users: Vec<String> = {
            let mut users = lock(&s.users);
            users.retain(|k, u| u.running || hub.is_watched(k));
            users.keys().cloned().collect()
        };
        if let Some(every) = s.settings.safety_check {
            if last_safety.elapsed() >= every && !s.safety_running.swap(true, Ordering::SeqCst) {
                last_safety = tokio::time::Instant::now();
                // One user after the other: a slow check, not a burst of logins.
                let s = s.clone();
                tokio::spawn(async move {
                    for u in users {
                        s.look(&u).await;
                    }
                    s.safety_running.store(false, Ordering::SeqCst);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Keys longer than a block are hashed first (test case 6).
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn body() -> String {
        format!(
            "{MAGIC}\ns abc 7 1000\nu Alice@Example.com\nm INBOX NS 11 12 13 14\nm {} E - - - -\n\
             x Neu%20Ordner create\nx B rename A\nx Gone delete\nq something new\nn Sent A 5 77\n",
            escape("Entwürfe 100%")
        )
    }

    #[test]
    fn a_signed_datagram_parses() {
        let d = verify(b"s3cret", &sign(b"s3cret", &body())).unwrap();
        assert_eq!((d.sender.as_str(), d.sequence, d.time), ("abc", 7, 1000));
        assert_eq!(d.user, "Alice@Example.com");
        assert_eq!(
            d.changes[0],
            Change::Messages {
                mailbox: "INBOX".into(),
                kinds: Kinds {
                    new: true,
                    flags_set: true,
                    ..Kinds::default()
                },
                state: Some(FolderState {
                    uidvalidity: 11,
                    uid_next: 12,
                    exists: 13,
                    highest_modseq: 14
                })
            }
        );
        assert!(matches!(&d.changes[1],
            Change::Messages { mailbox, state: None, kinds } if mailbox == "Entwürfe 100%" && kinds.expunge));
        assert_eq!(d.changes[2], Change::Created("Neu Ordner".into()));
        assert_eq!(
            d.changes[3],
            Change::Renamed {
                from: "A".into(),
                to: "B".into()
            }
        );
        assert_eq!(d.changes[4], Change::Deleted("Gone".into()));
        assert_eq!(
            d.changes[5],
            Change::Arrived {
                mailbox: "Sent".into(),
                kinds: Kinds {
                    append: true,
                    ..Kinds::default()
                },
                uidvalidity: 5,
                uid: 77
            }
        );
        assert_eq!(d.changes.len(), 6);
    }

    /// What `contrib/radicale/eas-dav-hook` sends: a `d` line, the collection unknown.
    #[test]
    fn a_dav_change_line_parses() {
        let body = format!("{MAGIC}\ns 0f1e 1 1000\nu kim%20x@example.org\nd -\nd /kim/book/\n");
        let d = verify(b"k", &sign(b"k", &body)).unwrap();
        assert_eq!(d.user, "kim x@example.org");
        assert_eq!(
            d.changes,
            vec![Change::Dav(None), Change::Dav(Some("/kim/book/".into()))]
        );
    }

    #[test]
    fn wrong_secret_or_changed_bytes_are_refused() {
        let signed = sign(b"s3cret", &body());
        assert_eq!(verify(b"other", &signed), Err(Rejected::BadSignature));
        let mut changed = signed.clone();
        let at = changed.iter().position(|&b| b == b'7').unwrap();
        changed[at] = b'8';
        assert_eq!(verify(b"s3cret", &changed), Err(Rejected::BadSignature));
        assert!(matches!(
            verify(b"s3cret", body().as_bytes()),
            Err(Rejected::Malformed(_))
        ));
        assert!(matches!(
            verify(b"s3cret", &sign(b"s3cret", "HELLO\n")),
            Err(Rejected::Malformed(_))
        ));
    }

    #[test]
    fn replays_and_stale_datagrams_are_refused() {
        let mut g = ReplayGuard::default();
        assert!(g.accept("a", 1, 100, 100, 30));
        assert!(!g.accept("a", 1, 100, 100, 30), "same again");
        assert!(g.accept("a", 3, 100, 100, 30));
        assert!(g.accept("a", 2, 100, 101, 30), "late but new");
        assert!(!g.accept("a", 2, 100, 101, 30));
        assert!(g.accept("a", 100, 100, 101, 30));
        assert!(!g.accept("a", 3, 100, 101, 30), "far below the window");
        assert!(g.accept("a", 99, 100, 101, 30));
        assert!(!g.accept("a", 99, 100, 101, 30));
        assert!(g.accept("b", 1, 100, 101, 30), "senders are separate");
        assert!(!g.accept("c", 1, 50, 101, 30), "outside the time window");
        assert!(!g.accept("c", 1, 200, 101, 30), "from the future");
    }
}
