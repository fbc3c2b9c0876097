//! The HTTP service: `/Microsoft-Server-ActiveSync` (OPTIONS, POST), Autodiscover and
//! `/metrics`.
//!
//! Owns request handling up to the EAS layer: path and method routing (paths are matched
//! without regard to case, as clients and proxies vary), the request line, authentication, the
//! protocol version, the body limit and WBXML decoding, loading and saving the device record,
//! and the response headers. `app(state)` builds the router so tests can call it in process;
//! [`serve`] runs it on a socket, with or without TLS.

pub mod auth;
pub mod autodiscover;
pub mod error;
pub mod limits;
pub mod query;
pub mod serve;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eas_wbxml::{Element, Limits};
use tracing::Instrument;

use crate::config::Config;
use crate::eas::version::{Command, ProtocolVersion};
use crate::eas::{self, Context, Reply};
use crate::metrics::{AuthOutcome, Metrics};
use crate::state::{Device, DeviceKey, Saved, StateStore, unix_now};
use auth::{AuthenticatedUser, Authenticator};
use error::HttpError;

pub use serve::serve;

/// The value of `MS-Server-ActiveSync`: the highest version we speak.
const SERVER_VERSION: &str = "16.1";
const WBXML_TYPE: &str = "application/vnd.ms-sync.wbxml";

/// What every request handler shares.
pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn StateStore>,
    pub auth: Authenticator,
    pub metrics: Metrics,
    /// `[limits]`: held requests, new devices, connections, body timeouts.
    pub limits: limits::Limits,
    pub hub: Arc<crate::push::Hub>,
    pub pool: Arc<crate::mailstore::SessionPool>,
    pub directory: Arc<crate::directory::Directory>,
    /// Sync pages computed before the phone asks for them.
    pub read_ahead: crate::eas::sync::read_ahead::ReadAhead,
    /// The DAV client of the commands (`eas::contacts::shared`).
    pub dav: crate::eas::contacts::DavShared,
    /// Told by `systemctl reload` (SIGHUP): re-read the certificate now, changed or not.
    pub tls_reload: Arc<tokio::sync::Notify>,
}

impl AppState {
    /// State for a configuration, opening the state store it names (and, with Dovecot's push
    /// events, binding their socket: call it inside a Tokio runtime).
    pub fn new(config: Config) -> anyhow::Result<AppState> {
        let store = crate::state::open(&config.state.url)?;
        let auth = Authenticator::from_config(&config);
        // Kept a minute: phones come back within seconds (Ping answered → Sync → Ping).
        let pool = Arc::new(crate::mailstore::SessionPool::new(
            std::time::Duration::from_secs(60),
            4,
        ));
        let hub = crate::push::Hub::from_config(&config, pool.clone())?;
        // Validated with the configuration, so only a bug makes this fall back to none.
        let directory = config.directory.build().unwrap_or_else(|e| {
            tracing::error!(error = %e, "directory sources unusable; GAL search finds nobody");
            crate::directory::Directory::none()
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(end_held_requests_on_admin_changes(
                store.clone(),
                Arc::downgrade(&hub),
            ));
        }
        Ok(AppState {
            limits: limits::Limits::new(&config.limits),
            directory: Arc::new(directory),
            config,
            store,
            auth,
            metrics: Metrics::default(),
            hub,
            pool,
            read_ahead: crate::eas::sync::read_ahead::ReadAhead::new(),
            dav: Default::default(),
            tls_reload: Arc::new(tokio::sync::Notify::new()),
        })
    }
}

/// How often the store is asked for the admin's wipes and removals (`eas-gateway devices` runs
/// in another process, so it cannot tell the hub itself).
const ADMIN_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Ends the held request (Ping, waiting Sync) of every device the admin wipes or removes, so
/// the phone gets the wipe within a second instead of at its heartbeat, up to an hour later.
/// The request's own end then sees the changed record (`save_device` reports the race) and
/// answers with what the record demands. Stops when the gateway (its hub) is gone.
async fn end_held_requests_on_admin_changes(
    store: Arc<dyn StateStore>,
    hub: std::sync::Weak<crate::push::Hub>,
) {
    let mut seen = None;
    let mut round: u64 = 0;
    let mut waits_since = None;
    loop {
        if hub.strong_count() == 0 {
            return;
        }
        // Once a minute, the same loop drops Sync answers kept for a retry past their window
        // (they hold message content).
        if round % 60 == 0 {
            let before = unix_now().saturating_sub(eas::sync::RESEND_WINDOW_SECS);
            if let Err(e) = store.expire_memos(eas::sync::MEMO_LAST_RESPONSE, before) {
                tracing::warn!(error = %e, "expiring kept Sync answers");
            }
        }
        round += 1;
        if let Some(hub) = hub.upgrade() {
            // This node is alive: its SendMail claims are not taken over (several nodes).
            // When the database cannot be told, it cannot be asked either: one line a round.
            if let Err(e) = store.node_alive(hub.node()) {
                tracing::warn!(error = %e, "polling the state database");
                drop(hub);
                tokio::time::sleep(ADMIN_POLL).await;
                continue;
            }
            end_waits_superseded_elsewhere(store.as_ref(), &hub, &mut waits_since);
        }
        match store.admin_changes(seen) {
            Ok((newest, keys)) => {
                if let Some(hub) = hub.upgrade() {
                    for key in keys {
                        tracing::info!(user = %key.user, device_id = %key.device_id.escape_debug(),
                            "admin changed the device; ending its held request");
                        hub.supersede(&key.user, &key.device_id);
                    }
                }
                seen = Some(newest);
            }
            Err(e) => tracing::warn!(error = %e, "polling admin changes"),
        }
        tokio::time::sleep(ADMIN_POLL).await;
    }
}

/// Several nodes: ends every wait this node holds for a device whose newer Ping or held Sync
/// went to another node since the last look (as the hub does when the newer request comes
/// here). Only a wait registered before this look began ends, so a device seen twice, or one
/// whose wait came back here meanwhile, is left alone. On SQLite there are none (one gateway).
fn end_waits_superseded_elsewhere(
    store: &dyn StateStore,
    hub: &crate::push::Hub,
    since: &mut Option<u64>,
) {
    let mark = hub.mark();
    match store.waits_elsewhere(hub.node(), *since) {
        Ok((now, keys)) => {
            for key in keys {
                hub.supersede_before(&key.user, &key.device_id, mark);
            }
            *since = Some(now);
        }
        Err(e) => tracing::warn!(error = %e, "polling waits on other nodes"),
    }
}

/// The router, for `serve` and for in-process tests.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new().fallback(route).with_state(state)
}

/// Not an `async fn`: its own state (the request, the path) would then be kept, boxed by
/// axum, for as long as a held Ping waits. The future it returns is the command's alone.
fn route(State(state): State<Arc<AppState>>, request: Request) -> BoxFuture<Response> {
    let path = request.uri().path().to_ascii_lowercase();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client = client_address(&state.config, peer, request.headers());
    let (head, body) = request.into_parts();
    let body = state
        .limits
        .timed_body(body, &head.headers, state.config.server.max_body_bytes);
    match path.trim_end_matches('/') {
        // Each boxed at its own size: a held Ping's task then carries only ActiveSync's state.
        // The request head is boxed too (see `post`).
        "/microsoft-server-activesync" => Box::pin(activesync(state, client, Box::new(head), body)),
        "/autodiscover/autodiscover.xml" => {
            Box::pin(autodiscover(state, client, Request::from_parts(head, body)))
        }
        "/metrics" if client.is_loopback() => Box::pin(std::future::ready(metrics(&state))),
        _ => Box::pin(std::future::ready(HttpError::NotFound.into_response())),
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// The exposition for `/metrics` (loopback only: it names commands, not users, but says
/// how busy the gateway is).
fn metrics(state: &AppState) -> Response {
    state.limits.counters.connections_open.store(
        state.limits.connections.open() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let text = state.metrics.exposition(&crate::metrics::Snapshot {
        push: state.hub.counts(),
        pooled_imap_sessions: state.pool.len(),
        auth: state.auth.counters(),
        limits: &state.limits.counters,
        extra: &[state.hub.source_metrics(), state.read_ahead.metrics()],
    });
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

/// The client's address: the peer, or what a trusted proxy says the peer was.
fn client_address(config: &Config, peer: Option<IpAddr>, headers: &HeaderMap) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if !config.server.trusted_proxies.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        // The last address not added by one of our own proxies is the client.
        .and_then(|v| {
            v.split(',')
                .rev()
                .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                .find(|a| !config.server.trusted_proxies.contains(a))
        });
    let real_ip = || {
        headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    };
    forwarded.or_else(real_ip).unwrap_or(peer)
}

async fn authenticate(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
) -> Result<AuthenticatedUser, HttpError> {
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::parse_basic)
        .ok_or(HttpError::Unauthorized);
    let creds = match creds {
        Ok(c) => c,
        Err(e) => {
            state.metrics.auth(AuthOutcome::Missing);
            return Err(e);
        }
    };
    let result = state.auth.verify(&creds, client).await;
    state.metrics.auth(match &result {
        Ok(_) => AuthOutcome::Ok,
        Err(auth::AuthError::Missing) => AuthOutcome::Missing,
        Err(auth::AuthError::Rejected) => AuthOutcome::BadPassword,
        Err(auth::AuthError::Throttled { .. }) => AuthOutcome::Throttled,
        Err(auth::AuthError::Backend(_)) => AuthOutcome::BackendDown,
    });
    Ok(result?)
}

/// The head arrives boxed: an argument of an async fn keeps its bytes in the future for the
/// future's whole life, and a held Ping's future lives for minutes (the box itself is freed
/// before the command runs, see `post`).
async fn activesync(
    state: Arc<AppState>,
    client: IpAddr,
    head: Box<axum::http::request::Parts>,
    body: Body,
) -> Response {
    // The body is not `Sync`, so nothing may hold a reference to the whole request across an
    // await: the head and the body travel separately.
    let method = head.method.clone();
    let started = std::time::Instant::now();
    let span = tracing::info_span!(
        "eas",
        %client,
        cmd = tracing::field::Empty,
        user = tracing::field::Empty,
        device_id = tracing::field::Empty,
        protocol_version = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let (command, result) = async {
        if method == Method::OPTIONS {
            tracing::Span::current().record("cmd", "OPTIONS");
            return ("OPTIONS", options(&state, client, &head.headers).await);
        }
        if method != Method::POST {
            // A metrics label: any token is a method, so only the standard ones are named.
            let name = match method.as_str() {
                "GET" => "GET",
                "HEAD" => "HEAD",
                "PUT" => "PUT",
                "DELETE" => "DELETE",
                "PATCH" => "PATCH",
                "CONNECT" => "CONNECT",
                "TRACE" => "TRACE",
                _ => "other",
            };
            return (name, Err(HttpError::MethodNotAllowed));
        }
        post(&state, client, head, body).await
    }
    .instrument(span.clone())
    .await;
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            match &e {
                HttpError::Internal(_) | HttpError::Unavailable(_) => {
                    tracing::error!(parent: &span, error = %e, "request failed")
                }
                _ => tracing::info!(parent: &span, error = %e, "request refused"),
            }
            e.into_response()
        }
    };
    span.record("status", response.status().as_u16());
    tracing::info!(parent: &span, "answered");
    state
        .metrics
        .record(command, response.status().as_u16(), started.elapsed());
    with_server_headers(response)
}

fn with_server_headers(mut response: Response) -> Response {
    response.headers_mut().insert(
        "MS-Server-ActiveSync",
        HeaderValue::from_static(SERVER_VERSION),
    );
    response
}

async fn options(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    Box::pin(authenticate(state, client, headers)).await?;
    let versions = ProtocolVersion::ALL.map(|v| v.as_str()).join(",");
    let commands = eas::IMPLEMENTED
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(",");
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    h.insert("MS-ASProtocolVersions", header_value(&versions));
    h.insert("MS-ASProtocolCommands", header_value(&commands));
    h.insert(header::ALLOW, HeaderValue::from_static("OPTIONS,POST"));
    h.insert("Public", HeaderValue::from_static("OPTIONS,POST"));
    Ok(response)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A POSTed command: returns the command name (for metrics: an EAS command's name, or
/// `invalid` for a request line that names none) and the response.
async fn post(
    state: &AppState,
    client: IpAddr,
    mut head: Box<axum::http::request::Parts>,
    body: Body,
) -> (&'static str, Result<Response, HttpError>) {
    // Boxed, like the head: both travel down three async fns that keep their arguments' bytes
    // for as long as a held Ping waits.
    let headers = Box::new(std::mem::take(&mut head.headers));
    let line = match query::parse(head.uri.query().unwrap_or("")) {
        Ok(line) => Box::new(line),
        Err(e) => return ("invalid", Err(e.into())),
    };
    // Like the header values (see run_command), the URI and axum's copy of it in the
    // extensions (OriginalUri) are slices of hyper's read buffer.
    drop(head);
    let name = line.command.name();
    tracing::Span::current().record("cmd", name);
    (name, run_command(state, client, line, headers, body).await)
}

async fn run_command(
    state: &AppState,
    client: IpAddr,
    line: Box<query::RequestLine>,
    headers: Box<HeaderMap>,
    body: Body,
) -> Result<Response, HttpError> {
    // Boxed like the commands: a login's state is large and a held request must not carry it.
    let user = Box::pin(authenticate(state, client, &headers)).await?;
    let result = run_as(state, client, line, headers, body, &user).await;
    if let Err(HttpError::Unauthorized) = &result {
        // Authenticated from the cache, then refused by IMAP inside the command: the password
        // changed since. The next request asks IMAP (and gets its 401 there).
        if state.auth.forget(&user.login, user.password.expose()) {
            tracing::info!("the IMAP server refused the cached password; forgotten");
        }
    }
    result
}

/// The command of an authenticated user.
async fn run_as(
    state: &AppState,
    client: IpAddr,
    line: Box<query::RequestLine>,
    headers: Box<HeaderMap>,
    body: Body,
    user: &AuthenticatedUser,
) -> Result<Response, HttpError> {
    let span = tracing::Span::current();
    let _held = state.limits.hold(line.command, &user.key, client)?;
    span.record("user", user.key.as_str());
    span.record("device_id", line.device_id.as_str());

    let version = match line.version {
        Some(v) => v,
        None => headers
            .get("MS-ASProtocolVersion")
            .and_then(|v| v.to_str().ok())
            .and_then(ProtocolVersion::parse)
            .ok_or_else(|| {
                HttpError::BadRequest("missing or unsupported MS-ASProtocolVersion".into())
            })?,
    };
    span.record("protocol_version", version.as_str());
    // A header that is not a key (or is 0) presents none.
    let policy_key = line.policy_key.or_else(|| {
        headers
            .get("X-MS-PolicyKey")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| eas::ids::PolicyKey::try_from(v.trim()).ok())
    });

    let limit = state.config.server.max_body_bytes;
    let body = Box::pin(read_body(body, limit)).await?;
    let tree = if body.is_empty() {
        None
    } else if is_raw_mime(line.command, &headers, &body) {
        // 12.x SendMail/SmartReply/SmartForward: the body is the RFC 822 message itself. It
        // travels to the command as a lone ComposeMail `Mime` element.
        Some(Element::with_opaque(
            eas_wbxml::tags::composemail::Mime,
            body.to_vec(),
        ))
    } else {
        let limits = Limits::for_body(limit);
        Some(
            Element::decode_with(&body, limits)
                .map_err(|e| HttpError::BadRequest(format!("WBXML: {e}")))?,
        )
    };
    // The header values and a body that came in one piece are slices of hyper's read buffer
    // for this connection: kept across a held Ping, they pin that buffer (and the header
    // map) for minutes, thousands of times over. Nothing below needs them.
    drop(headers);
    drop(body);

    let key = DeviceKey {
        user: user.key.clone(),
        device_id: line.device_id.clone(),
    };
    // The device and what its command reads first, in one store call (one round trip to a
    // shared database); nothing of it outlives this request (see `eas::reads`).
    // One statement: the loaded record is a temporary of it, not a local kept in the future.
    let loaded_at = std::time::Instant::now();
    let (device, reads) = match load(state.store.as_ref(), &key, line.command, tree.as_ref())? {
        (Some(device), reads) => (device, reads),
        (None, reads) => {
            if let Some(refusal) = admit_new_device(state, &key.user, line.command, version)? {
                return Ok(refusal);
            }
            (Device::new(key, &line.device_type), reads)
        }
    };
    // What the request saw, so that only what it changes is written back (see save_device).
    let original = device.clone();
    let mut ctx = Context {
        user,
        line: &line,
        version,
        policy_key,
        device,
        store: state.store.as_ref(),
        config: &state.config,
        hub: &state.hub,
        pool: &state.pool,
        directory: &state.directory,
        read_ahead: &state.read_ahead,
        dav: &state.dav,
        reads,
    };
    let reply = eas::dispatch(&mut ctx, tree).await?;
    // Only a command that ran is remembered; a refused request leaves the state as it was.
    ctx.device.last_seen = unix_now();
    ctx.device.device_type = line.device_type.clone();
    ctx.device.protocol_version = Some(version.as_str().to_owned());
    let memos = ctx.reads.take_pending();
    let memos: Vec<(&str, &[u8])> = memos.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let saved = match save_unless_unchanged(
        state.store.as_ref(),
        &original,
        &ctx.device,
        &memos,
        ctx.reads.no_other_writes() && loaded_at.elapsed() < UNCHECKED_END_WITHIN,
    ) {
        Ok(saved) => saved,
        // The database went away while the command ran (a Ping held across a restart). If
        // the request changed nothing but when the device was last seen, its answer is still
        // right: deliver it (a Ping answered at its heartbeat) rather than make the phone ask
        // again. A change that matters (a policy key, a wipe acknowledged, a memo the command
        // keeps) must be stored first, so that request gets the retryable error.
        Err(e)
            if e.is_unavailable()
                && memos.is_empty()
                && only_bookkeeping_changed(&original, &ctx.device) =>
        {
            tracing::warn!(error = %e, "device record not updated (last seen); answering anyway");
            Saved::Stored {
                device: Box::new(ctx.device.clone()),
                raced: false,
            }
        }
        Err(e) => return Err(e.into()),
    };
    let reply = match saved {
        Saved::Stored { raced: false, .. } => reply,
        // The admin (or another request of the device) changed the record while this one
        // ran, typically a wipe or removal during a held Ping: the answer follows the record
        // as it is now, so the phone learns of the wipe with this answer.
        Saved::Stored { device, .. } => recheck(
            line.command,
            version,
            &device,
            &state.config,
            policy_key,
            reply,
        )?,
        Saved::Removed => {
            // Whatever the command wrote for the device (snapshots, memos) goes too, and the
            // device starts over as a new one.
            state.store.delete_device(&ctx.device.key)?;
            let fresh = Device::new(ctx.device.key.clone(), &line.device_type);
            recheck(
                line.command,
                version,
                &fresh,
                &state.config,
                policy_key,
                reply,
            )?
        }
    };
    Ok(match reply {
        Reply::Document(doc) => wbxml_response(doc.encode()),
        Reply::Empty => wbxml_response(Vec::new()),
        Reply::Bytes(bytes) => wbxml_response(bytes),
    })
}

/// The device and what its command reads first, in one store call. Not inline in `run_as`:
/// what was asked and loaded would take room in the request's future for as long as a held
/// Ping waits.
fn load(
    store: &dyn StateStore,
    key: &DeviceKey,
    command: Command,
    tree: Option<&Element>,
) -> Result<(Option<Device>, Box<eas::reads::Reads>), HttpError> {
    let wants = eas::reads::wants(command, tree);
    let mut loaded = store.load(key, &wants)?;
    let device = loaded.device.take();
    Ok((device, Box::new(eas::reads::Reads::new(wants, loaded))))
}

/// A command's answer, or what the device record as it now is demands instead. Provision's own
/// answer stands (it carries the keys it just stored).
fn recheck(
    command: Command,
    version: ProtocolVersion,
    device: &Device,
    config: &Config,
    policy_key: Option<eas::ids::PolicyKey>,
    reply: Reply,
) -> Result<Reply, HttpError> {
    if command == Command::Provision {
        return Ok(reply);
    }
    match eas::gate(command, version, device, config, policy_key) {
        None => Ok(reply),
        Some(refusal) => Ok(refusal?),
    }
}

/// Whether a send command's body is a raw message (`Content-Type: message/rfc822`, or
/// anything that does not start like WBXML) rather than a ComposeMail document.
fn is_raw_mime(command: Command, headers: &HeaderMap, body: &[u8]) -> bool {
    if !matches!(
        command,
        Command::SendMail | Command::SmartReply | Command::SmartForward
    ) {
        return false;
    }
    let rfc822 = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("message/rfc822"));
    // WBXML 1.3 documents start with the version byte 0x03; a message starts with a header.
    rfc822 || body.first() != Some(&0x03)
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, HttpError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // `to_bytes` reports the limit through the error's source chain.
        let text = format!("{e:?}");
        if text.contains("LengthLimit") {
            HttpError::TooLarge
        } else if text.contains("BodyTimeout") {
            HttpError::RequestTimeout
        } else {
            HttpError::BadRequest(format!("body: {e}"))
        }
    })
}

/// How old the stored `last_seen` may be before a request that changed nothing else of its
/// device writes it: when a device was last seen is for the admin (`devices list`), to the
/// minute; a write per request was most of what a GAL search or a no-change Sync cost the
/// store beyond its reads.
const LAST_SEEN_GRANULARITY_SECS: u64 = 60;

/// How long after loading its device a request that wrote nothing may end without reading the
/// record back. A change made meanwhile (an admin's wipe) is not overwritten, since nothing
/// is written, and reaches the phone with its next request; a longer request (a held Sync
/// or Ping) reads it back so that its own answer carries it.
const UNCHECKED_END_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes the memos the command kept, then saves the device as the request leaves it — unless
/// the request changed nothing but its bookkeeping, the stored `last_seen` is recent, and the
/// record is still the one the request read: then the memos' write reads the record back in
/// the same call, and nothing else is written (a no-change Sync's whole end is one round
/// trip). A record changed meanwhile (an admin's wipe during a held Ping, another node) goes
/// through [`crate::state::save_device`], which merges and reports the race, so the answer
/// follows the record as it now is. A short request that wrote nothing at all, and has no
/// memo to write (`unchecked`, see [`UNCHECKED_END_WITHIN`]), ends without a store call.
fn save_unless_unchanged(
    store: &dyn crate::state::StateStore,
    original: &Device,
    updated: &Device,
    memos: &[(&str, &[u8])],
    unchecked: bool,
) -> Result<Saved, crate::state::StateError> {
    let recent = updated.last_seen.saturating_sub(original.last_seen) < LAST_SEEN_GRANULARITY_SECS;
    if recent
        && updated.device_type == original.device_type
        && updated.protocol_version == original.protocol_version
        && only_bookkeeping_changed(original, updated)
    {
        if unchecked && memos.is_empty() {
            return Ok(Saved::Stored {
                device: Box::new(original.clone()),
                raced: false,
            });
        }
        if let Some(current) = store.put_memos_and_read_device(&updated.key, memos)? {
            if current.version == original.version {
                return Ok(Saved::Stored {
                    device: Box::new(current),
                    raced: false,
                });
            }
        }
    } else if !memos.is_empty() {
        store.put_memos_and_read_device(&updated.key, memos)?;
    }
    crate::state::save_device(store, original, updated)
}

/// Whether a request changed nothing of its device but the bookkeeping every request does
/// (when it was last seen, the device type and protocol version it named).
fn only_bookkeeping_changed(original: &Device, updated: &Device) -> bool {
    let mut same = updated.clone();
    same.last_seen = original.last_seen;
    same.device_type = original.device_type.clone();
    same.protocol_version = original.protocol_version.clone();
    // A device not stored yet must be stored: its first request is not just bookkeeping.
    original.version != 0 && same == *original
}

/// `limits.devices_per_user`, asked at the first sight of a DeviceId: `Some` answer when the
/// user may not add another device.
fn admit_new_device(
    state: &AppState,
    user: &str,
    command: Command,
    version: ProtocolVersion,
) -> Result<Option<Response>, HttpError> {
    let known = state.store.devices(Some(user))?.len();
    state.limits.admit_new_device(known, command, version)
}

fn wbxml_response(bytes: Vec<u8>) -> Response {
    // Some devices choke on a default content type even for an empty body.
    ([(header::CONTENT_TYPE, WBXML_TYPE)], bytes).into_response()
}

async fn autodiscover(state: Arc<AppState>, client: IpAddr, request: Request) -> Response {
    let (head, body) = request.into_parts();
    let started = std::time::Instant::now();
    let result = async {
        if head.method != Method::POST {
            return Err(HttpError::MethodNotAllowed);
        }
        let user = authenticate(&state, client, &head.headers).await?;
        let body = read_body(body, 64 * 1024).await?;
        let xml = match autodiscover::parse(&body) {
            None => autodiscover::error_response(600),
            Some(r) if !autodiscover::wants_mobilesync(&r) => autodiscover::error_response(601),
            Some(r) => {
                tracing::info!(user = %user.key, "autodiscover");
                autodiscover::settings_response(&r.email, &state.config.activesync_url())
            }
        };
        Ok(([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response())
    }
    .await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    state.metrics.record(
        "Autodiscover",
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Commands a phone may send, for documentation and tests.
pub fn implemented_commands() -> &'static [Command] {
    eas::IMPLEMENTED
}

#[cfg(test)]
mod test {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let mut config = Config::default();
        config.server.trusted_proxies = vec!["10.0.0.1".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let forged = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        // A phone talking to us directly cannot claim another address.
        assert_eq!(
            client_address(&config, Some(ip("198.51.100.9")), &forged),
            ip("198.51.100.9")
        );
        // Through our proxy, the last address the proxy did not add itself is the client;
        // whatever the client put in front of it is ignored.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.5, 10.0.0.1")]);
        assert_eq!(
            client_address(&config, Some(ip("10.0.0.1")), &chain),
            ip("203.0.113.5")
        );
        let real = headers(&[("x-real-ip", " 2001:db8::7 ")]);
        assert_eq!(
            client_address(&config, Some(ip("10.0.0.1")), &real),
            ip("2001:db8::7")
        );
        let junk = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(
            client_address(&config, Some(ip("10.0.0.1")), &junk),
            ip("10.0.0.1")
        );
    }
}

#[cfg(test)]
mod last_seen {
    use super::*;
    use crate::state::DeviceKey;

    fn stored(store: &dyn crate::state::StateStore) -> Device {
        let key = DeviceKey {
            user: "u".into(),
            device_id: "d".into(),
        };
        let fresh = Device::new(key.clone(), "Phone");
        match crate::state::save_device(store, &fresh, &fresh).unwrap() {
            Saved::Stored { .. } => {}
            Saved::Removed => panic!("removed"),
        }
        store.device(&key).unwrap().unwrap()
    }

    /// A request that changed only when its device was last seen, a moment after the stored
    /// time, writes nothing; past the granularity, or with anything else changed, it writes;
    /// a record another writer changed meanwhile goes through the merge and reports the race.
    #[test]
    fn bookkeeping_is_written_only_when_it_matters() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::state::open(&format!("sqlite:{}", dir.path().join("s.db").display())).unwrap();
        let store = store.as_ref();
        let original = stored(store);
        let mut seen = original.clone();
        seen.last_seen = original.last_seen + 5;
        save_unless_unchanged(store, &original, &seen, &[], false).unwrap();
        let now = store.device(&original.key).unwrap().unwrap();
        assert_eq!(
            now.version, original.version,
            "no write for a recent last_seen"
        );
        assert_eq!(now.last_seen, original.last_seen);

        seen.last_seen = original.last_seen + LAST_SEEN_GRANULARITY_SECS;
        save_unless_unchanged(store, &original, &seen, &[], false).unwrap();
        let now = store.device(&original.key).unwrap().unwrap();
        assert_eq!(
            now.version,
            original.version + 1,
            "written past the granularity"
        );
        assert_eq!(now.last_seen, seen.last_seen);

        let mut other = now.clone();
        other.protocol_version = Some("16.1".into());
        save_unless_unchanged(store, &now, &other, &[], false).unwrap();
        let after = store.device(&now.key).unwrap().unwrap();
        assert_eq!(
            after.protocol_version.as_deref(),
            Some("16.1"),
            "a real change is written"
        );

        // Another writer moved the record after this request read `after`.
        let mut admin = after.clone();
        admin.device_type = "Changed".into();
        crate::state::save_device(store, &after, &admin).unwrap();
        let mut mine = after.clone();
        mine.last_seen += 1;
        match save_unless_unchanged(store, &after, &mine, &[], false).unwrap() {
            Saved::Stored { raced, .. } => assert!(raced, "the race is reported"),
            Saved::Removed => panic!("removed"),
        }

        // A short request that wrote nothing ends without a call: an admin's change made
        // meanwhile is neither reported nor overwritten, and the next request loads it.
        let before = store.device(&now.key).unwrap().unwrap();
        let mut wiped = before.clone();
        wiped.wipe = crate::state::WipeState::Requested {
            account_only: false,
        };
        crate::state::save_device(store, &before, &wiped).unwrap();
        let mut mine = before.clone();
        mine.last_seen += 1;
        match save_unless_unchanged(store, &before, &mine, &[], true).unwrap() {
            Saved::Stored { raced, .. } => assert!(!raced, "no call, so no race seen"),
            Saved::Removed => panic!("removed"),
        }
        let stored = store.device(&now.key).unwrap().unwrap();
        assert_eq!(
            stored.wipe,
            crate::state::WipeState::Requested {
                account_only: false
            },
            "kept"
        );
        // With a memo to write it reads the record back as before.
        match save_unless_unchanged(store, &before, &mine, &[("m", b"1")], true).unwrap() {
            Saved::Stored { raced, .. } => assert!(raced, "the race is reported"),
            Saved::Removed => panic!("removed"),
        }
        assert_eq!(store.memo(&now.key, "m").unwrap().unwrap(), b"1");
    }
}

#[cfg(test)]
mod future_size {
    use super::*;

    /// A held Ping keeps its whole request future alive for minutes, thousands at once: the
    /// future must stay small (big command states are boxed inside `eas::dispatch`).
    #[tokio::test]
    async fn a_held_request_future_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.state.url = format!("sqlite:{}", dir.path().join("s.db").display());
        let state = Arc::new(AppState::new(config).unwrap());
        let request = Request::builder()
            .uri("/Microsoft-Server-ActiveSync?Cmd=Ping")
            .body(axum::body::Body::empty())
            .unwrap();
        // `route` keeps nothing of its own: what a held request carries (besides axum's and
        // hyper's share) is the one box it returns, ActiveSync's future.
        let fut = route(State(state.clone()), request);
        let held = std::mem::size_of_val(&*fut);
        drop(fut);
        let head = Box::new(Request::new(()).into_parts().0);
        let fut = activesync(state, "127.0.0.1".parse().unwrap(), head, Body::empty());
        assert_eq!(
            held,
            std::mem::size_of_val(&fut),
            "route boxes activesync alone"
        );
        eprintln!("held request future {held} bytes");
        // The test profile's sizes: 760 (route) + 4,264 (activesync) bytes on 2026-12-05
        // before route returned its box and the head, line and headers went down boxed
        // (536 + 2,765 on 2026-11-30). A held Ping keeps this for its whole wait, so growth
        // past the bound costs every waiting phone and must be a decision; under 3,072 bytes
        // it also stays in a smaller jemalloc size class (5,120 before).
        assert!(held <= 3072, "held request future grew to {held} bytes");
    }
}
