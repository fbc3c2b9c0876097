//! SendMail, SmartReply and SmartForward (MS-ASCMD 2.2.1.17, 2.2.1.20, 2.2.1.19): a phone
//! hands over a message; the gateway submits it over SMTP as the user, files a copy in Sent
//! when asked, and marks the message replied to or forwarded.
//!
//! 14.0 and later send a ComposeMail document:
//! ```xml
//! <SmartReply xmlns="ComposeMail:">
//!   <ClientId>1700000000123</ClientId>   <!-- the same on a retry: sent once -->
//!   <SaveInSentItems/>
//!   <Source><FolderId>5</FolderId><ItemId>5:42</ItemId></Source>   <!-- or <LongId> -->
//!   <Mime>From: ... (the new text only: the server adds the original)</Mime>
//! </SmartReply>
//! ```
//! and get HTTP 200 with an empty body on success, or `<SmartReply><Status>n</Status>` (the
//! statuses are in [`Failure::status`], the one place they are decided). 12.x POSTs the raw
//! message with `SaveInSent=T`, `CollectionId` + `ItemId` or `LongId` in the query, and learns
//! of a failure from the HTTP status only (503: try later, 500: give up).
//!
//! The steps, and what a failure at each leaves behind:
//! 1. Read the request; claim the ClientId (12.x has none: the Message-ID stands in). A
//!    ClientId sent before answers 118 (12.x: success) without sending again; one being
//!    submitted by a request still running answers "retry later".
//! 2. Fetch the source message (Smart* without ReplaceMime); gone → 150.
//! 3. Compose ([`crate::mime::compose`]): From forced to the user, Bcc stripped, original
//!    quoted or attached.
//! 4. When a Sent copy is asked for and the server keeps quota, check that it fits (113 if
//!    not). Submit over SMTP ([`crate::smtp`]), envelope sender = the user's address. Until the
//!    server accepted the message nothing was changed anywhere: the claim is released, no
//!    Sent copy exists, no flag was set.
//! 5. Record the ClientId as sent, then APPEND the copy (with Bcc) to Sent with `\Seen`, then
//!    flag the source `\Answered` / `$Forwarded`. A failure here is logged and the answer is
//!    still success: the message is out, and a failure status would make the phone send it
//!    again.
//!
//! The window left open: a crash (or a lost state write) between the message's data going out
//! and step 5 recording its acceptance leaves the ClientId claimed ("committing") but not
//! marked sent. The claim expires after the submission timeout, and a retry after that sends
//! a second copy. Recording before submitting would turn that into a message silently never
//! sent, which is worse. Nothing short of a transaction spanning SMTP and the state store
//! closes it. A node that dies earlier (its claim still "sending": nothing handed over) is
//! found dead by its silence and its claim taken over by a retry on another node at once;
//! the claim is committed by a compare-and-set right before the data, so a node taken for
//! dead while alive does not send (`Claim::commit`).

use eas_wbxml::Element;
use eas_wbxml::tags::composemail as cm;

use super::ids::{CollectionId, ServerId};
use super::status::ComposeMailStatus;
use super::sync;
use super::version::Command;
use super::{Context, EasError, Reply, child_text, status_document};
use crate::mailstore::Mailstore;
use crate::mailstore::{Flag, SpecialUse};
use crate::mime::compose::{self, ComposeError, Smart};
use crate::smtp::{self, Envelope, SubmitError};
use crate::state::{SendClaim, unix_now};

/// Which of the three commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Send,
    Reply,
    Forward,
}

/// Where the original of a SmartReply/SmartForward is: a collection and a ServerId in it
/// (`FolderId` + `ItemId`; 12.x `CollectionId` + `ItemId`), or a Search result's LongId (the
/// same form as a ServerId, whose folder part names the collection). Either is None when its
/// text names nothing, and the original is then not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Source {
    folder: Option<CollectionId>,
    item: Option<ServerId>,
}

impl Source {
    fn item(folder: &str, item: &str) -> Source {
        Source {
            folder: CollectionId::try_from(folder.trim()).ok(),
            item: ServerId::try_from(item).ok(),
        }
    }

    fn long_id(long_id: &str) -> Source {
        Source::item(long_id.split(':').next().unwrap_or(""), long_id)
    }
}

/// A send request, from either form.
#[derive(Debug)]
struct Request {
    kind: Kind,
    /// What makes a retry recognisable: the ClientId, or for 12.x the Message-ID.
    dedup_key: Option<String>,
    save_in_sent: bool,
    /// The MIME is complete: add nothing from the original.
    replace_mime: bool,
    source: Option<Source>,
    mime: Vec<u8>,
}

/// Why a message was not sent. [`Failure::status`] is the only place these become numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No Mime, or bytes that are not a message.
    InvalidMime,
    /// The message names no recipient.
    NoRecipients,
    /// This ClientId was sent before.
    PreviouslySent,
    /// The Source of a SmartReply/SmartForward does not exist (any more).
    SourceNotFound,
    /// The submission server is down or answered "try later", the mailbox could not be read,
    /// or a request with the same ClientId is being submitted right now.
    RetryLater,
    /// The submission server refused the message, a recipient, or our credentials.
    SubmissionFailed,
    /// The message is larger than the submission server accepts.
    TooLarge,
    /// The copy asked for in Sent would not fit in the user's quota (checked before sending).
    MailboxQuotaExceeded,
    /// Our own state could not be read or written.
    ServerError,
}

impl Failure {
    /// The ComposeMail Status (MS-ASCMD 2.2.2 common status codes).
    pub fn status(self) -> ComposeMailStatus {
        match self {
            Failure::InvalidMime => ComposeMailStatus::InvalidMime,
            Failure::NoRecipients => ComposeMailStatus::MessageHasNoRecipient,
            Failure::PreviouslySent => ComposeMailStatus::MessagePreviouslySent,
            Failure::SourceNotFound => ComposeMailStatus::ItemNotFound,
            Failure::RetryLater => ComposeMailStatus::ServerErrorRetryLater,
            Failure::SubmissionFailed => ComposeMailStatus::MailSubmissionFailed,
            Failure::TooLarge => ComposeMailStatus::SendQuotaExceeded,
            Failure::MailboxQuotaExceeded => ComposeMailStatus::MailboxQuotaExceeded,
            Failure::ServerError => ComposeMailStatus::ServerError,
        }
    }

    /// Whether the same request may succeed later (12.x: HTTP 503 rather than 500).
    fn retry(self) -> bool {
        matches!(self, Failure::RetryLater | Failure::ServerError)
    }
}

impl From<ComposeError> for Failure {
    fn from(e: ComposeError) -> Self {
        match e {
            ComposeError::InvalidMime => Failure::InvalidMime,
            ComposeError::NoRecipients => Failure::NoRecipients,
        }
    }
}

impl From<&SubmitError> for Failure {
    fn from(e: &SubmitError) -> Self {
        match e {
            SubmitError::Unavailable(_) => Failure::RetryLater,
            SubmitError::TooLarge(_) => Failure::TooLarge,
            SubmitError::InvalidAddress(_) => Failure::NoRecipients,
            // Another node took the message over (this one was taken for dead): it sends.
            SubmitError::Withdrawn => Failure::RetryLater,
            SubmitError::AuthRejected(_)
            | SubmitError::RecipientRejected(_)
            | SubmitError::Rejected(_) => Failure::SubmissionFailed,
        }
    }
}

/// Runs SendMail, SmartReply or SmartForward. `body` is the ComposeMail document, or (12.x)
/// a lone `Mime` element holding the raw message.
pub async fn run(ctx: &mut Context<'_>, body: Option<Element>) -> Result<Reply, EasError> {
    let command = ctx.line.command;
    let result = match parse(ctx, body) {
        Ok(request) => send(ctx, request).await,
        Err(failure) => Err(failure),
    };
    match result {
        Ok(()) => Ok(Reply::Empty),
        // 12.x has no status for "sent before": the message is out, which is success to it.
        Err(Failure::PreviouslySent) if !ctx.version.has_body_status() => Ok(Reply::Empty),
        Err(f) if ctx.version.has_body_status() => {
            Ok(Reply::Document(status_document(command, f.status())))
        }
        Err(f) => Err(EasError::NotSent {
            status: f.status(),
            retry: f.retry(),
        }),
    }
}

fn parse(ctx: &Context<'_>, body: Option<Element>) -> Result<Request, Failure> {
    let kind = match ctx.line.command {
        Command::SmartReply => Kind::Reply,
        Command::SmartForward => Kind::Forward,
        _ => Kind::Send,
    };
    let body = body.ok_or(Failure::InvalidMime)?;
    if body.tag == cm::Mime {
        // The 12.x form: everything else is in the query string.
        let mime = body.opaque().map(<[u8]>::to_vec).unwrap_or_default();
        let p = &ctx.line.params;
        let source = match (&p.long_id, &p.collection_id, &p.item_id) {
            (Some(long_id), _, _) => Some(Source::long_id(long_id)),
            (None, Some(folder), Some(item)) => Some(Source::item(folder, item)),
            _ => None,
        };
        return Ok(Request {
            kind,
            dedup_key: message_id(&mime).map(|id| format!("message-id:{id}")),
            save_in_sent: p.save_in_sent,
            replace_mime: false,
            source,
            mime,
        });
    }
    if Some(body.tag) != super::root_tag(ctx.line.command) {
        return Err(Failure::InvalidMime);
    }
    // iOS has been seen sending Mime as a string instead of opaque data: take either.
    let mime = body
        .child(cm::Mime)
        .and_then(|m| {
            m.opaque()
                .map(<[u8]>::to_vec)
                .or_else(|| m.text().map(|t| t.as_bytes().to_vec()))
        })
        .ok_or(Failure::InvalidMime)?;
    let source = body.child(cm::Source).and_then(|s| {
        if let Some(long_id) = child_text(s, cm::LongId) {
            return Some(Source::long_id(long_id.trim()));
        }
        Some(Source::item(
            child_text(s, cm::FolderId)?.trim(),
            child_text(s, cm::ItemId)?.trim(),
        ))
    });
    Ok(Request {
        kind,
        dedup_key: child_text(&body, cm::ClientId)
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| format!("client-id:{c}")),
        save_in_sent: body.child(cm::SaveInSentItems).is_some(),
        replace_mime: body.child(cm::ReplaceMime).is_some(),
        source,
        mime,
    })
}

/// The Message-ID of a raw message, for 12.x retries.
fn message_id(mime: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::default().parse_headers(mime)?;
    parsed.message_id().map(str::to_owned)
}

async fn send(ctx: &Context<'_>, request: Request) -> Result<(), Failure> {
    let smtp_config = ctx.config.smtp_config().map_err(|e| {
        tracing::error!(error = %e, "smtp configuration");
        Failure::ServerError
    })?;
    let mut claim = None;
    if let Some(key) = &request.dedup_key {
        // Long enough that a submission still running is never overtaken by its retry.
        let stale_after = smtp_config.timeout.as_secs().saturating_mul(4) + 60;
        let device = ctx.device_key().clone();
        match ctx
            .store
            .claim_client_id(&device, key, unix_now(), stale_after, ctx.hub.node())
            .map_err(state_failure)?
        {
            SendClaim::Claimed => {}
            SendClaim::AlreadySent => return Err(Failure::PreviouslySent),
            SendClaim::InProgress => return Err(Failure::RetryLater),
        }
        claim = Some(Claim {
            store: ctx.store,
            device,
            key: key.clone(),
            node: ctx.hub.node(),
            release_on_drop: true,
        });
    }
    let outcome = submit(ctx, &request, &smtp_config, claim.as_mut()).await;
    if let Some(claim) = claim {
        claim.finish(outcome.is_ok());
    }
    let (mut store, source, sent_copy) = outcome?;
    if let (Some((mailbox, copy)), Some(store)) = (&sent_copy, store.as_mut()) {
        if let Err(e) = store.append_sent(mailbox, copy).await {
            tracing::warn!(error = %e, "sent, but the copy could not be filed in Sent");
        }
    }
    if let (Some((mailbox, uid)), Some(store)) = (&source, store.as_mut()) {
        let flag = match request.kind {
            Kind::Reply => Some(Flag::Answered),
            Kind::Forward => Some(Flag::Keyword("$Forwarded".into())),
            Kind::Send => None,
        };
        if let Some(flag) = flag {
            if let Err(e) = store.add_flag(mailbox, *uid, flag).await {
                tracing::warn!(error = %e, "sent, but the source could not be flagged");
            }
        }
    }
    if let Some(store) = store {
        store.close().await;
    }
    Ok(())
}

/// A claimed ClientId. If the request is abandoned (the phone hung up, so the handler is
/// dropped) before submission began, dropping the claim releases it, so the phone's retry is
/// not told "in progress". From the moment submission begins it is kept until [`Claim::finish`]
/// says how it ended: abandoned during SMTP, the message may be out, and the claim expires
/// on its own.
struct Claim<'a> {
    store: &'a dyn crate::state::StateStore,
    device: crate::state::DeviceKey,
    key: String,
    /// This gateway among the nodes on the state database: the claim's owner.
    node: &'a str,
    release_on_drop: bool,
}

impl Claim<'_> {
    /// Right before the message's data goes out: from here on the claim is never taken over
    /// (the message may be out). False when another node took it over meanwhile (this one
    /// was taken for dead) or the store cannot say: then nothing is sent.
    fn commit(&self) -> bool {
        match self
            .store
            .commit_client_id(&self.device, &self.key, unix_now(), self.node)
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!("another node took this message over; not sent here");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record the handover; not sent");
                false
            }
        }
    }

    fn finish(mut self, sent: bool) {
        self.release_on_drop = false;
        if let Err(e) =
            self.store
                .finish_client_id(&self.device, &self.key, sent, unix_now(), self.node)
        {
            // The message is out (or not) either way; the claim expires on its own.
            tracing::warn!(error = %e, "could not record the ClientId");
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.release_on_drop {
            let _ =
                self.store
                    .finish_client_id(&self.device, &self.key, false, unix_now(), self.node);
        }
    }
}

/// What a successful submission leaves for the steps after it: the open mailbox (if one was
/// needed), the source (mailbox, UID), and the Sent mailbox with the copy for it (if asked).
type Submitted = (
    Option<Mailstore>,
    Option<(String, u32)>,
    Option<(String, Vec<u8>)>,
);

/// Steps 2–4: fetch the source, compose, submit. Nothing is changed unless this succeeds.
async fn submit(
    ctx: &Context<'_>,
    request: &Request,
    smtp_config: &smtp::SmtpConfig,
    mut claim: Option<&mut Claim<'_>>,
) -> Result<Submitted, Failure> {
    let needs_store = request.save_in_sent || request.kind != Kind::Send;
    let mut store = if needs_store {
        Some(ctx.mailstore().await.map_err(|e| {
            tracing::warn!(error = %e, "mailbox unavailable; nothing sent");
            Failure::RetryLater
        })?)
    } else {
        None
    };
    let mut source = None;
    let mut original = None;
    if request.kind != Kind::Send {
        let located = match &request.source {
            Some(s) => locate(ctx, s).map_err(state_failure)?,
            None => None,
        };
        if let (Some((mailbox, uid)), Some(store)) = (&located, store.as_mut()) {
            let fetched = store.fetch(mailbox, &[*uid]).await.map_err(|e| {
                tracing::warn!(error = %e, "source unavailable; nothing sent");
                Failure::RetryLater
            })?;
            original = fetched.into_iter().next().map(|m| m.raw);
            if original.is_some() {
                source = located;
            }
        }
        // With ReplaceMime the original adds nothing: only its flag is lost if it is gone.
        if original.is_none() && !request.replace_mime {
            if let Some(store) = store {
                store.close().await;
            }
            return Err(Failure::SourceNotFound);
        }
    }
    let smart = match (request.kind, &original, request.replace_mime) {
        (_, _, true) | (Kind::Send, _, _) | (_, None, _) => Smart::None,
        (Kind::Reply, Some(o), false) => Smart::Reply(o),
        (Kind::Forward, Some(o), false) => Smart::Forward(o),
    };
    let sender = compose::Sender {
        address: &ctx.user.email,
        now_unix: unix_now() as i64,
        message_id_host: &smtp_config.hello_name,
    };
    let prepared = match compose::prepare(&request.mime, &sender, smart) {
        Ok(p) => p,
        Err(e) => {
            if let Some(store) = store {
                store.close().await;
            }
            return Err(e.into());
        }
    };
    // The Sent copy must fit: once the message is out, a failure to file it can only be
    // logged. Servers without quota (or that cannot say) are not asked twice.
    let mut sent_copy = None;
    if let (true, Some(s)) = (request.save_in_sent, store.as_mut()) {
        let mailbox = sent_mailbox(ctx, s).await;
        if let Ok(Some(room)) = s.storage_room(&mailbox).await {
            if room < prepared.sent_copy.len() as u64 {
                tracing::info!(room, "the Sent copy would exceed the quota; nothing sent");
                if let Some(store) = store {
                    store.close().await;
                }
                return Err(Failure::MailboxQuotaExceeded);
            }
        }
        sent_copy = Some((mailbox, prepared.sent_copy.clone()));
    }
    if prepared.from_rewritten {
        tracing::info!("From named another address; sent from the user's own");
    }
    let envelope = Envelope {
        from: ctx.user.email.clone(),
        to: prepared.recipients.clone(),
    };
    let login = (ctx.user.login.as_str(), &ctx.user.password);
    if let Some(claim) = claim.as_deref_mut() {
        claim.release_on_drop = false;
    }
    let go_on = || claim.as_deref().is_none_or(Claim::commit);
    match smtp::submit_fenced(
        smtp_config,
        Some(login),
        &envelope,
        &prepared.transmit,
        go_on,
    )
    .await
    {
        Ok(()) => {
            tracing::info!(
                recipients = envelope.to.len(),
                bytes = prepared.transmit.len(),
                "message submitted"
            );
            Ok((store, source, sent_copy))
        }
        Err(e) => {
            match &e {
                SubmitError::Unavailable(_) => tracing::warn!(error = %e, "not sent"),
                _ => tracing::info!(error = %e, "not sent"),
            }
            if let Some(store) = store {
                store.close().await;
            }
            Err(Failure::from(&e))
        }
    }
}

/// The source's mailbox and UID, if its folder is one the device knows.
fn locate(ctx: &Context<'_>, source: &Source) -> Result<Option<(String, u32)>, EasError> {
    let Some(folder) = sync::current_folder(ctx, source.folder)? else {
        return Ok(None);
    };
    let uid = source
        .item
        .and_then(|s| s.uid_in(CollectionId::new(folder.id)));
    Ok(uid.map(|uid| (folder.imap_name, uid)))
}

/// Where the Sent copy goes: the Sent folder the device knows, else the server's `\Sent`,
/// else `Sent`.
pub(super) async fn sent_mailbox(ctx: &Context<'_>, store: &mut Mailstore) -> String {
    if let Some(m) = sent_of_device(ctx) {
        return m;
    }
    match store.special_use(SpecialUse::Sent).await {
        Ok(Some(m)) => m,
        _ => "Sent".to_owned(),
    }
}

fn sent_of_device(ctx: &Context<'_>) -> Option<String> {
    let device = ctx.device_key();
    let key = ctx.store.latest_hierarchy_key(device).ok()??;
    ctx.store
        .hierarchy(device, key)
        .ok()??
        .into_iter()
        .find(|f| f.kind == super::folders::SENT_ITEMS)
        .map(|f| f.imap_name)
}

fn state_failure(e: impl std::fmt::Display) -> Failure {
    tracing::error!(error = %e, "state store");
    Failure::ServerError
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn every_failure_has_its_own_status() {
        let all = [
            Failure::InvalidMime,
            Failure::NoRecipients,
            Failure::PreviouslySent,
            Failure::SourceNotFound,
            Failure::RetryLater,
            Failure::SubmissionFailed,
            Failure::TooLarge,
            Failure::MailboxQuotaExceeded,
            Failure::ServerError,
        ];
        let mut codes: Vec<u32> = all.iter().map(|f| f.status().code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert_eq!(
            Failure::from(&SubmitError::Unavailable("x".into())),
            Failure::RetryLater
        );
        assert!(Failure::RetryLater.retry() && !Failure::SubmissionFailed.retry());
    }

    #[test]
    fn a_message_id_stands_in_for_the_client_id() {
        assert_eq!(
            message_id(b"Message-ID: <abc@example.com>\r\nTo: x@example.com\r\n\r\nhi"),
            Some("abc@example.com".into())
        );
        assert_eq!(message_id(b"To: x@example.com\r\n\r\nhi"), None);
    }
}
