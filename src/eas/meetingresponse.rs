//! MeetingResponse: the user accepts, tentatively accepts or declines a meeting, named by the
//! invitation mail (a mail folder's CollectionId + RequestId, or a Search result's LongId) or
//! by the event (a calendar folder's), with 16.x InstanceId (one occurrence) and SendResponse
//! (also tell the organizer, maybe proposing another time).
//!
//! Owns the command's flow and statuses. The invitation is read from the mail's `text/calendar`
//! part, the user's PARTSTAT set ([`crate::calendar::meeting::respond`]) in the stored event
//! on the CalDAV server, the event PUT into the default calendar when the user accepts or
//! tentatively accepts an invitation that was only in the inbox (a declined one is not stored,
//! and the answer carries no CalendarId, as MS-ASCMD says), and, when the phone asks (16.x
//! SendResponse; older phones send the reply themselves with SendMail), the iTIP REPLY is
//! submitted to the organizer over `[smtp]` and a copy filed in the user's Sent folder. An
//! invitation answered from a mail folder is then moved to Deleted Items, as Exchange does.
//!
//! A LongId is what Search gives a mail (its ServerId, `<folder>:<uid>`), so it names the same
//! folder and item as that CollectionId + RequestId would, and is answered the same way; the
//! Result then has no RequestId (MS-ASCMD echoes RequestId only when the request had one).
//!
//! A 16.x SendResponse with ProposedStartTime (and ProposedEndTime) on a tentative or declined
//! answer sends an iTIP COUNTER with the proposed times instead of the REPLY
//! ([`meeting::reply`]); the user's own event keeps the organizer's time with the user's
//! PARTSTAT, since only the organizer can move the meeting.
//!
//! Finding the stored event by UID is what costs: a `calendar-query` on the UID makes Radicale
//! read every object of the collection. So the conventional name `<collection>/<UID>.ics` (the
//! name this command and most clients give) is tried first with a GET in each of the device's
//! calendars; when none has it, the new object is PUT under that name with `If-None-Match: *`,
//! and only when the server refuses that (a UID conflict: the event is there under another
//! name) is the collection queried. The calendars come from the device's folder list in the
//! state store, so no discovery PROPFIND runs when the device has done FolderSync.
//!
//! Statuses (MS-ASCMD 2.2.3.177.9): 1 done; 2 not a meeting to answer (unknown folder or item,
//! an unknown or malformed LongId, a mail without a calendar part or with a cancellation, a bad
//! UserResponse or InstanceId, the user's own meeting, a proposal that is malformed, ends
//! before it starts, comes with an acceptance, from a phone below 16.0 or for a meeting whose
//! organizer disallows new times); 3 the mailbox, the calendar server or the submission server is
//! unreachable or failing for now (retry).

use chrono::{Datelike, NaiveDateTime};
use eas_wbxml::tags::{airsyncbase as asb, meetingresponse as mr, search};
use eas_wbxml::{Element, Tag};
use reqwest::Url;

use super::ids::{CollectionId, ServerId};
use super::status::MeetingResponseStatus as Status;
use super::version::ProtocolVersion;
use super::{Context, EasError, Reply, sync};
use crate::backend::calendar as store;
use crate::backend::davitems::{assign_ids, new_uid};
use crate::backend::kinds::{self, Class};
use crate::calendar::meeting::{self, Invitation, MeetingError, Method, Proposal, Response};
use crate::calendar::{date, ical};
use crate::dav::{DavClient, DavError, Kind, Member, Write};
use crate::mailstore::Mailstore;
use crate::smtp::{self, Envelope, SubmitError};
use crate::state::FolderEntry;

const ICALENDAR: &str = "text/calendar; charset=utf-8";

/// One `<Request>` as read.
struct Request {
    request_id: String,
    response: Option<Response>,
    collection: Option<CollectionId>,
    long_id: bool,
    /// Both a LongId and a CollectionId or RequestId, which MS-ASCMD forbids.
    mixed_ids: bool,
    /// The RequestId as sent: the Result echoes it, and only it (never a LongId).
    echo: Option<String>,
    instance: Option<Result<NaiveDateTime, ()>>,
    send: Option<SendResponse>,
}

/// 16.x `<SendResponse>`: the phone wants the organizer told, with its text if any and
/// maybe another time (Err: a time that does not parse, or an end without a start).
struct SendResponse {
    text: Option<String>,
    proposal: Option<Result<Proposal, ()>>,
}

fn proposal(s: &Element) -> Option<Result<Proposal, ()>> {
    let start = text(s, mr::ProposedStartTime);
    let end = text(s, mr::ProposedEndTime);
    if start.is_none() && end.is_none() {
        return None;
    }
    let parse = |t: Option<&str>| t.map(|t| date::parse(t).ok_or(())).transpose();
    Some((|| {
        let start = parse(start)?.ok_or(())?;
        Ok(Proposal {
            start,
            end: parse(end)?,
        })
    })())
}

fn text(e: &Element, tag: Tag) -> Option<&str> {
    e.child(tag).and_then(Element::text)
}

fn read(e: &Element) -> Request {
    Request {
        request_id: text(e, mr::RequestId)
            .or_else(|| text(e, search::LongId))
            .unwrap_or_default()
            .trim()
            .to_owned(),
        response: text(e, mr::UserResponse).and_then(Response::from_code),
        collection: text(e, mr::CollectionId).and_then(|t| CollectionId::try_from(t).ok()),
        long_id: e.child(search::LongId).is_some(),
        mixed_ids: e.child(search::LongId).is_some()
            && (e.child(mr::RequestId).is_some() || e.child(mr::CollectionId).is_some()),
        echo: e
            .child(mr::RequestId)
            .map(|r| r.text().unwrap_or_default().trim().to_owned()),
        instance: text(e, mr::InstanceId).map(|t| date::parse(t).ok_or(())),
        send: e.child(mr::SendResponse).map(|s| SendResponse {
            text: s
                .child(asb::Body)
                .and_then(|b| text(b, asb::Data))
                .map(str::to_owned),
            proposal: proposal(s),
        }),
    }
}

/// What answering one request came to.
struct Outcome {
    status: Status,
    calendar_id: Option<String>,
}

impl Outcome {
    fn status(status: Status) -> Outcome {
        Outcome {
            status,
            calendar_id: None,
        }
    }
}

/// Why one request failed.
enum Failure {
    /// Not a meeting this user can answer (status 2).
    Invalid(String),
    /// A backend is down or failing for now (status 3).
    Retry(String),
}

impl From<DavError> for Failure {
    fn from(e: DavError) -> Failure {
        Failure::Retry(format!("calendar server: {e}"))
    }
}

impl From<MeetingError> for Failure {
    fn from(e: MeetingError) -> Failure {
        Failure::Invalid(e.to_string())
    }
}

/// What one request keeps open for the next: the DAV client, the user's mail, the device's
/// calendars (read once per command).
struct Session<'c, 'a> {
    ctx: &'c Context<'a>,
    dav: Option<DavClient>,
    mail: Option<Mailstore>,
    calendars: Option<Vec<FolderEntry>>,
    /// The REPLY mails submitted, filed in Sent when the command ends.
    sent: Vec<String>,
}

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let requests: Vec<Request> = body.children_with(mr::Request).map(read).collect();
    if requests.is_empty() {
        return Err(EasError::Malformed(
            "MeetingResponse without Request".into(),
        ));
    }
    let ctx: &Context<'_> = ctx;
    let mut session = Session {
        ctx,
        dav: None,
        mail: None,
        calendars: None,
        sent: Vec::new(),
    };
    let mut out = Element::new(mr::MeetingResponse);
    for r in &requests {
        let outcome = match session.answer(r).await {
            Ok(o) => o,
            Err(Failure::Invalid(why)) => {
                tracing::info!(why = %why, "MeetingResponse refused");
                Outcome::status(Status::InvalidMeetingRequest)
            }
            Err(Failure::Retry(why)) => {
                tracing::warn!(why = %why, "MeetingResponse not done; the phone retries");
                Outcome::status(Status::MailboxError)
            }
        };
        let mut result = Element::new(mr::Result);
        // A search result's LongId is not echoed (MS-ASCMD: RequestId only for RequestId).
        if let Some(id) = &r.echo {
            result.push(Element::with_text(mr::RequestId, id.clone()));
        }
        result.push(Element::with_text(
            mr::Status,
            outcome.status.code().to_string(),
        ));
        if let Some(id) = outcome.calendar_id {
            result.push(Element::with_text(mr::CalendarId, id));
        }
        out.push(result);
    }
    session.file_sent().await;
    if let Some(m) = session.mail.take() {
        m.close().await;
    }
    Ok(Reply::Document(out))
}

fn now_utc() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// The member's name under the conventional `<UID>.ics`, or None when the UID is no safe
/// path segment (then the object gets a name of our own and is found by query).
fn conventional(collection: &Url, uid: &str) -> Option<Url> {
    let safe = !uid.is_empty()
        && uid.len() <= 200
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._-+=".contains(&b));
    if !safe {
        return None;
    }
    // Written as the servers write it in their hrefs (Python's quoting: `@`, `+`, `=`
    // escaped), so the item id made from this path is the one their listings give.
    let mut name = String::with_capacity(uid.len() + 8);
    for c in uid.chars() {
        match c {
            '@' => name.push_str("%40"),
            '+' => name.push_str("%2B"),
            '=' => name.push_str("%3D"),
            c => name.push(c),
        }
    }
    collection.join(&format!("{name}.ics")).ok()
}

/// The device's newest folder list (empty before its first FolderSync).
fn device_folders(ctx: &Context<'_>) -> Result<Vec<FolderEntry>, Failure> {
    let device = ctx.device_key();
    let fail = |e: crate::state::StateError| Failure::Retry(e.to_string());
    Ok(
        match ctx.store.latest_hierarchy_key(device).map_err(fail)? {
            Some(k) => ctx
                .store
                .hierarchy(device, k)
                .map_err(fail)?
                .unwrap_or_default(),
            None => Vec::new(),
        },
    )
}

fn url_of(f: &FolderEntry) -> Option<Url> {
    let mut u = Url::parse(&f.imap_name).ok()?;
    u.set_fragment(None);
    Some(u)
}

/// The item id the calendar store gives a member (its href hashed; a rare collision is
/// resolved by the next listing, which the phone's next Sync brings).
fn item_id(url: &Url) -> u32 {
    assign_ids([url.path()])
        .into_keys()
        .next()
        .unwrap_or_default()
}

/// A stored event found for a UID.
struct Stored {
    folder: FolderEntry,
    url: Url,
    etag: Option<String>,
    ical: calcard::icalendar::ICalendar,
}

impl<'c, 'a> Session<'c, 'a> {
    fn dav(&mut self) -> Result<DavClient, Failure> {
        if let Some(d) = &self.dav {
            return Ok(d.clone());
        }
        if self.ctx.config.dav.url.trim().is_empty() {
            return Err(Failure::Invalid("no calendar server configured".into()));
        }
        let (settings, http) = super::contacts::shared(self.ctx)
            .map_err(|e| Failure::Retry(format!("calendar client: {e}")))?;
        let d = DavClient::new(
            http,
            settings,
            &self.ctx.user.login,
            self.ctx.user.password.clone(),
        );
        self.dav = Some(d.clone());
        Ok(d)
    }

    /// The device's calendars, the default first; discovered when the device has none yet.
    async fn calendars(&mut self) -> Result<Vec<FolderEntry>, Failure> {
        if let Some(c) = &self.calendars {
            return Ok(c.clone());
        }
        let ctx = self.ctx;
        let device = ctx.device_key();
        let known = device_folders(ctx)?;
        let mut cals: Vec<FolderEntry> = known
            .into_iter()
            .filter(|f| Class::of(f.kind) == Class::Calendar)
            .collect();
        if cals.is_empty() {
            // A device that has not listed its folders yet: discover (a server that cannot
            // be asked is a retry, never "no calendar").
            let dav = self.dav()?;
            let found = dav.discover(&[Kind::Calendar]).await?;
            let mut colls: Vec<_> = found
                .collections
                .into_iter()
                .filter(|c| c.kind == Kind::Calendar && store::holds(&c.components, "VEVENT"))
                .collect();
            colls.sort_by(|a, b| a.url.as_str().cmp(b.url.as_str()));
            for (i, c) in colls.iter().enumerate() {
                let kind = store::folder_kind(i == 0, false);
                let locator = store::locator(&c.url, kind);
                cals.push(FolderEntry {
                    id: ctx
                        .store
                        .folder_id(device, &locator)
                        .map_err(|e| Failure::Retry(e.to_string()))?,
                    parent: 0,
                    display_name: c.display_name.clone().unwrap_or_default(),
                    kind,
                    imap_name: locator,
                    uidvalidity: 0,
                });
            }
        }
        cals.sort_by_key(|f| f.kind != kinds::CALENDAR);
        if cals.is_empty() {
            return Err(Failure::Invalid("the user has no calendar".into()));
        }
        self.calendars = Some(cals.clone());
        Ok(cals)
    }

    async fn answer(&mut self, r: &Request) -> Result<Outcome, Failure> {
        let Some(response) = r.response else {
            return Err(Failure::Invalid("UserResponse".into()));
        };
        let collection = if r.long_id {
            if r.mixed_ids {
                return Err(Failure::Invalid(
                    "LongId with CollectionId or RequestId".into(),
                ));
            }
            // The folder is the one the id names, as for ItemOperations and SmartReply.
            let id = ServerId::try_from(r.request_id.as_str())
                .map_err(|_| Failure::Invalid("malformed LongId".into()))?;
            Some(id.folder())
        } else {
            r.collection
        };
        self.check_proposal(r, response)?;
        let folder = sync::current_folder(self.ctx, collection)
            .map_err(|e| Failure::Retry(e.to_string()))?
            .ok_or_else(|| Failure::Invalid("unknown CollectionId or LongId".into()))?;
        let item = ServerId::try_from(r.request_id.as_str())
            .ok()
            .and_then(|s| s.uid_in(CollectionId::new(folder.id)))
            .ok_or_else(|| Failure::Invalid("RequestId".into()))?;
        let instance = match r.instance {
            Some(Ok(i)) => Some(i),
            Some(Err(())) => return Err(Failure::Invalid("InstanceId".into())),
            None => None,
        };
        match Class::of(folder.kind) {
            Class::Calendar => {
                self.answer_event(&folder, item, response, instance, r)
                    .await
            }
            Class::Email if instance.is_some() => Err(Failure::Invalid(
                "InstanceId names a meeting request mail".into(),
            )),
            Class::Email => {
                let outcome = self.answer_invitation(&folder, item, response, r).await?;
                self.put_away(&folder, item).await;
                Ok(outcome)
            }
            _ => Err(Failure::Invalid("not a mail or calendar folder".into())),
        }
    }

    /// Refuses a new time that cannot be proposed (status 2): ProposedStartTime is 16.0's, it
    /// goes with a tentative or declined answer (accepting a time and asking for another says
    /// two things), and the end may not come before the start.
    fn check_proposal(&self, r: &Request, response: Response) -> Result<(), Failure> {
        let Some(p) = r.send.as_ref().and_then(|s| s.proposal) else {
            return Ok(());
        };
        let p = p.map_err(|()| Failure::Invalid("ProposedStartTime/EndTime".into()))?;
        if self.ctx.version < ProtocolVersion::V16_0 {
            return Err(Failure::Invalid("a new time proposed below 16.0".into()));
        }
        if response == Response::Accepted {
            return Err(Failure::Invalid(
                "a new time proposed with an acceptance".into(),
            ));
        }
        if p.end.is_some_and(|e| e < p.start) {
            return Err(Failure::Invalid("a proposed end before its start".into()));
        }
        Ok(())
    }

    /// Moves an answered invitation to Deleted Items, as Exchange does: phones expect it gone
    /// from the Inbox (the next Sync there deletes it, the Deleted Items' next Sync adds it).
    /// Best effort, the answer stands either way: with no Deleted Items folder known to the
    /// device, or a MOVE the server refuses (the mailbox is gone), the mail stays where it is,
    /// since IMAP MOVE is all or nothing.
    async fn put_away(&mut self, folder: &FolderEntry, uid: u32) {
        if folder.kind == kinds::DELETED_ITEMS {
            return;
        }
        let trash = match device_folders(self.ctx) {
            Ok(all) => all.into_iter().find(|f| f.kind == kinds::DELETED_ITEMS),
            Err(Failure::Retry(why) | Failure::Invalid(why)) => {
                tracing::warn!(why = %why, "answered; the invitation stays (no folder list)");
                return;
            }
        };
        let (Some(trash), Some(store)) = (trash, self.mail.as_mut()) else {
            return;
        };
        if let Err(e) = store
            .move_to(&folder.imap_name, uid, &trash.imap_name)
            .await
        {
            tracing::warn!(error = %e, "answered; the invitation could not be moved to the trash");
        }
    }

    async fn invitation(&mut self, folder: &FolderEntry, uid: u32) -> Result<Invitation, Failure> {
        if self.mail.is_none() {
            self.mail = Some(
                self.ctx
                    .mailstore()
                    .await
                    .map_err(|e| Failure::Retry(format!("mailbox: {e}")))?,
            );
        }
        let Some(store) = self.mail.as_mut() else {
            return Err(Failure::Retry("mailbox".into()));
        };
        let fetched = store
            .fetch(&folder.imap_name, &[uid])
            .await
            .map_err(|e| Failure::Retry(format!("mailbox: {e}")))?;
        let m = fetched
            .into_iter()
            .next()
            .ok_or_else(|| Failure::Invalid("no such mail".into()))?;
        let view = crate::backend::mail::render::view(&m);
        let part = view
            .calendar_part()
            .ok_or_else(|| Failure::Invalid("a mail without a calendar part".into()))?;
        let email = self.ctx.user.email.as_str();
        let inv = meeting::parse(
            &part.text,
            part.method.as_deref(),
            &[email],
            now_utc().year(),
        )
        .map_err(|e| Failure::Invalid(e.to_string()))?;
        if inv.method != Method::Request {
            return Err(Failure::Invalid("not an invitation".into()));
        }
        Ok(inv)
    }

    /// The stored event with this UID: `<UID>.ics` in each calendar, none found = None (the
    /// query runs only when a PUT says the UID is there under another name).
    async fn find_conventional(&mut self, uid: &str) -> Result<Option<Stored>, Failure> {
        let dav = self.dav()?;
        for folder in self.calendars().await? {
            let Some(coll) = url_of(&folder) else {
                continue;
            };
            let Some(url) = conventional(&coll, uid) else {
                continue;
            };
            match dav.get(&url).await {
                Ok(m) => {
                    if let Some(s) = stored(folder, m, uid) {
                        return Ok(Some(s));
                    }
                }
                Err(DavError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// The stored event with this UID by `calendar-query` in each calendar.
    async fn find_by_query(&mut self, uid: &str) -> Result<Option<Stored>, Failure> {
        let dav = self.dav()?;
        for folder in self.calendars().await? {
            let Some(coll) = url_of(&folder) else {
                continue;
            };
            for m in dav.find_by_uid(&coll, uid).await? {
                if let Some(s) = stored(folder.clone(), m, uid) {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    async fn answer_invitation(
        &mut self,
        folder: &FolderEntry,
        uid: u32,
        response: Response,
        r: &Request,
    ) -> Result<Outcome, Failure> {
        let inv = self.invitation(folder, uid).await?;
        if proposes(r) && inv.disallow_new_time {
            return Err(Failure::Invalid("the organizer disallows new times".into()));
        }
        let email = self.ctx.user.email.clone();
        let emails = [email.as_str()];
        let now = now_utc();
        let mut sent = false;
        // A PUT refused as a conflict: the event is there under another name; look again.
        for attempt in 0..2 {
            let found = if attempt == 0 {
                self.find_conventional(&inv.uid).await?
            } else {
                self.find_by_query(&inv.uid).await?
            };
            match found {
                Some(mut s) => {
                    // An invitation newer than what is stored replaces it.
                    let newer = sequence_of(&s.ical) < inv.sequence;
                    if newer {
                        s.ical = meeting::to_stored(&inv);
                    }
                    let answered = meeting::respond(&mut s.ical, &emails, response, None, now)?;
                    let answer = (r, answered, response, now);
                    match self
                        .store_and_reply(&s.url, &s.ical, s.etag.as_deref(), answer, &mut sent)
                        .await?
                    {
                        Put::Done => {}
                        // Changed meanwhile: read it again (once).
                        Put::Conflict if attempt == 0 => continue,
                        Put::Conflict => {
                            return Err(Failure::Retry("the event keeps changing".into()));
                        }
                    }
                    return Ok(Outcome {
                        status: Status::Success,
                        calendar_id: (response != Response::Declined)
                            .then(|| format!("{}:{}", s.folder.id, item_id(&s.url))),
                    });
                }
                None => {
                    let mut ical = meeting::to_stored(&inv);
                    let answered = meeting::respond(&mut ical, &emails, response, None, now)?;
                    if response == Response::Declined {
                        // Declined invitations stay out of the calendar.
                        if !sent {
                            let copy =
                                send_reply(self.ctx, r, &ical, answered, response, now).await?;
                            self.sent.extend(copy);
                        }
                        return Ok(Outcome::status(Status::Success));
                    }
                    let cals = self.calendars().await?;
                    let default = cals[0].clone();
                    let coll = url_of(&default)
                        .ok_or_else(|| Failure::Retry("a bad calendar URL".into()))?;
                    let url = conventional(&coll, &inv.uid)
                        .or_else(|| coll.join(&format!("{}.ics", new_uid())).ok())
                        .ok_or_else(|| Failure::Retry("a bad calendar URL".into()))?;
                    let answer = (r, answered, response, now);
                    match self
                        .store_and_reply(&url, &ical, None, answer, &mut sent)
                        .await?
                    {
                        Put::Done => {}
                        Put::Conflict if attempt == 0 => continue,
                        Put::Conflict => {
                            return Err(Failure::Retry("the calendar refused the event".into()));
                        }
                    }
                    return Ok(Outcome {
                        status: Status::Success,
                        calendar_id: Some(format!("{}:{}", default.id, item_id(&url))),
                    });
                }
            }
        }
        Err(Failure::Retry("the event keeps changing".into()))
    }

    async fn answer_event(
        &mut self,
        folder: &FolderEntry,
        item: u32,
        response: Response,
        instance: Option<NaiveDateTime>,
        r: &Request,
    ) -> Result<Outcome, Failure> {
        let dav = self.dav()?;
        let coll = url_of(folder).ok_or_else(|| Failure::Invalid("calendar URL".into()))?;
        let listed = dav.calendar_query(&coll, "VEVENT", false).await?;
        let ids = assign_ids(listed.iter().map(|m| m.url.path()));
        let path = ids
            .get(&item)
            .map(|p| (*p).to_owned())
            .ok_or_else(|| Failure::Invalid("no such event".into()))?;
        let url = listed
            .iter()
            .find(|m| m.url.path() == path)
            .map(|m| m.url.clone())
            .ok_or_else(|| Failure::Invalid("no such event".into()))?;
        let email = self.ctx.user.email.clone();
        let emails = [email.as_str()];
        let now = now_utc();
        let mut sent = false;
        for _ in 0..2 {
            let m = match dav.get(&url).await {
                Ok(m) => m,
                Err(DavError::NotFound) => return Err(Failure::Invalid("no such event".into())),
                Err(e) => return Err(e.into()),
            };
            let mut ical = ical::parse(m.data.as_deref().unwrap_or(""))
                .map_err(|e| Failure::Invalid(e.to_string()))?;
            if proposes(r) && meeting::disallows_counter(&ical) {
                return Err(Failure::Invalid("the organizer disallows new times".into()));
            }
            let answered = meeting::respond(&mut ical, &emails, response, instance, now)?;
            let answer = (r, answered, response, now);
            match self
                .store_and_reply(&url, &ical, m.etag.as_deref(), answer, &mut sent)
                .await?
            {
                Put::Done => {}
                Put::Conflict => continue,
            }
            return Ok(Outcome {
                status: Status::Success,
                calendar_id: (response != Response::Declined)
                    .then(|| format!("{}:{}", folder.id, item)),
            });
        }
        Err(Failure::Retry("the event keeps changing".into()))
    }

    /// Stores the answered event and, when the phone asked, submits the REPLY, both at once:
    /// the submission (about 45 ms at the test Postfix, more than the PUT) then costs nothing
    /// on top. A REPLY sent while the PUT met a conflict is not sent again on the next try
    /// (`sent`); one sent before a PUT failed for now is sent again when the phone retries
    /// (an iTIP REPLY says the same twice, harmlessly).
    async fn store_and_reply(
        &mut self,
        url: &Url,
        ical: &calcard::icalendar::ICalendar,
        etag: Option<&str>,
        (r, answered, response, now): (&Request, u32, Response, NaiveDateTime),
        sent: &mut bool,
    ) -> Result<Put, Failure> {
        let dav = self.dav()?;
        let ctx = self.ctx;
        let already = *sent;
        let reply = async {
            if already {
                Ok(None)
            } else {
                send_reply(ctx, r, ical, answered, response, now).await
            }
        };
        let (stored, replied) = tokio::join!(put(&dav, url, ical, etag), reply);
        if let Ok(Some(copy)) = &replied {
            self.sent.push(copy.clone());
        }
        match stored? {
            Put::Conflict => {
                *sent = replied.is_ok();
                Ok(Put::Conflict)
            }
            Put::Done => {
                replied?;
                Ok(Put::Done)
            }
        }
    }

    /// Files the REPLY mails sent in the user's Sent folder, as SendMail files a sent mail
    /// (Exchange keeps meeting responses in Sent Items too). The replies are out: a copy that
    /// cannot be filed is logged, the answers stand.
    async fn file_sent(&mut self) {
        if self.sent.is_empty() {
            return;
        }
        if self.mail.is_none() {
            match self.ctx.mailstore().await {
                Ok(m) => self.mail = Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "replied, but no copy filed in Sent (mailbox)");
                    return;
                }
            }
        }
        let Some(store) = self.mail.as_mut() else {
            return;
        };
        let mailbox = super::send::sent_mailbox(self.ctx, store).await;
        for copy in std::mem::take(&mut self.sent) {
            if let Err(e) = store.append_sent(&mailbox, copy.as_bytes()).await {
                tracing::warn!(error = %e, "replied, but the copy could not be filed in Sent");
            }
        }
    }
}

/// PUT with `If-Match` (an ETag) or `If-None-Match: *` (new).
async fn put(
    dav: &DavClient,
    url: &Url,
    ical: &calcard::icalendar::ICalendar,
    etag: Option<&str>,
) -> Result<Put, Failure> {
    let condition = match etag {
        Some(e) => Write::Replace(e),
        None => Write::Create,
    };
    match dav.put(url, ICALENDAR, ical::write(ical), condition).await {
        Ok(_) => Ok(Put::Done),
        // 412: changed meanwhile, or (new) a member of that name exists; 409/403/400: the
        // servers' no-uid-conflict (the UID lives under another name).
        Err(DavError::PreconditionFailed | DavError::Forbidden) => Ok(Put::Conflict),
        Err(DavError::Status {
            status: 400 | 409, ..
        }) => Ok(Put::Conflict),
        Err(e) if e.is_retryable() => Err(e.into()),
        Err(e) => Err(Failure::Retry(format!(
            "calendar server refused the event: {e}"
        ))),
    }
}

/// Submits the iTIP REPLY when the phone asked for it and the meeting has an organizer; the
/// mail that went out, for the Sent folder.
async fn send_reply(
    ctx: &Context<'_>,
    r: &Request,
    ical: &calcard::icalendar::ICalendar,
    answered: u32,
    response: Response,
    now: NaiveDateTime,
) -> Result<Option<String>, Failure> {
    let Some(send) = &r.send else {
        return Ok(None);
    };
    let Some(organizer) = organizer_of(ical, answered) else {
        return Ok(None);
    };
    let config = ctx
        .config
        .smtp_config()
        .map_err(|e| Failure::Retry(format!("submission: {e}")))?;
    let email = &ctx.user.email;
    let proposal = send.proposal.and_then(Result::ok);
    let reply = meeting::reply(ical, answered, email, None, response, proposal, now)
        .map_err(|e| Failure::Invalid(e.to_string()))?;
    let summary = summary_of(ical, answered);
    let message = reply_message(
        email,
        &organizer,
        &summary,
        (response, proposal),
        send.text.as_deref(),
        &ical::write(&reply),
        &config.hello_name,
        now,
    );
    let envelope = Envelope {
        from: email.clone(),
        to: vec![organizer],
    };
    let login = (ctx.user.login.as_str(), &ctx.user.password);
    match smtp::submit(&config, Some(login), &envelope, message.as_bytes()).await {
        Ok(()) => Ok(Some(message)),
        Err(e @ (SubmitError::Unavailable(_) | SubmitError::AuthRejected(_))) => {
            Err(Failure::Retry(format!("submission: {e}")))
        }
        // The answer is stored; a reply the organizer's side refuses for good is logged.
        Err(e) => {
            tracing::warn!(error = %e, "the meeting reply was refused");
            Ok(None)
        }
    }
}

enum Put {
    Done,
    Conflict,
}

/// Whether the request proposes another time (checked by [`Session::check_proposal`]).
fn proposes(r: &Request) -> bool {
    r.send.as_ref().is_some_and(|s| s.proposal.is_some())
}

fn stored(folder: FolderEntry, m: Member, uid: &str) -> Option<Stored> {
    let ical = ical::parse(m.data.as_deref()?).ok()?;
    if meeting::uid_of(&ical) != Some(uid) {
        return None;
    }
    Some(Stored {
        folder,
        url: m.url,
        etag: m.etag,
        ical,
    })
}

fn sequence_of(ical: &calcard::icalendar::ICalendar) -> i64 {
    use calcard::icalendar::{ICalendarComponentType, ICalendarProperty};
    ical::children_of(ical, &ICalendarComponentType::VEvent)
        .first()
        .and_then(|id| {
            ical.components[*id as usize]
                .property(&ICalendarProperty::Sequence)?
                .values
                .first()?
                .as_integer()
        })
        .unwrap_or(0)
}

fn organizer_of(ical: &calcard::icalendar::ICalendar, id: u32) -> Option<String> {
    use calcard::icalendar::ICalendarProperty;
    let v = ical
        .components
        .get(id as usize)?
        .property(&ICalendarProperty::Organizer)?
        .values
        .first()?
        .as_text()?
        .trim();
    let v = if v.len() >= 7 && v[..7].eq_ignore_ascii_case("mailto:") {
        &v[7..]
    } else {
        v
    };
    (v.contains('@') && !v.contains(char::is_whitespace)).then(|| v.to_owned())
}

fn summary_of(ical: &calcard::icalendar::ICalendar, id: u32) -> String {
    use calcard::icalendar::ICalendarProperty;
    ical.components
        .get(id as usize)
        .and_then(|c| ical::text(c, &ICalendarProperty::Summary))
        .unwrap_or_default()
        .to_owned()
}

/// The reply mail: a short text and the REPLY as `text/calendar; method=REPLY` (RFC 6047),
/// or with a proposal the COUNTER, under the subject Outlook gives one.
#[allow(clippy::too_many_arguments)]
fn reply_message(
    from: &str,
    to: &str,
    summary: &str,
    (response, proposal): (Response, Option<Proposal>),
    note: Option<&str>,
    calendar: &str,
    host: &str,
    now: NaiveDateTime,
) -> String {
    use crate::mime::header;
    let boundary = format!("=_reply_{}", new_uid());
    let unix = now.and_utc().timestamp();
    let mut m = String::new();
    m.push_str(&header::mailbox("From", None, from));
    m.push_str(&header::mailbox("To", None, to));
    let subject = match proposal {
        Some(_) => format!("New Time Proposed: {summary}"),
        None => format!("{}: {summary}", response.word()),
    };
    m.push_str(&header::text("Subject", &subject));
    m.push_str(&header::text(
        "Date",
        &crate::mime::date::rfc5322_date(unix),
    ));
    m.push_str(&header::message_ids(
        "Message-ID",
        [format!("{}@{host}", new_uid()).as_str()],
    ));
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
    ));
    let mut text = format!(
        "{from} has {} the invitation.",
        response.word().to_ascii_lowercase()
    );
    if response == Response::Tentative {
        text = format!("{from} has tentatively accepted the invitation.");
    }
    if let Some(p) = proposal {
        text.push_str(&format!(
            "\r\n\r\nProposed new time: {} UTC",
            p.start.format("%Y-%m-%d %H:%M")
        ));
        if let Some(e) = p.end {
            text.push_str(&format!(" to {} UTC", e.format("%Y-%m-%d %H:%M")));
        }
    }
    let method = if proposal.is_some() {
        "COUNTER"
    } else {
        "REPLY"
    };
    if let Some(n) = note.map(str::trim).filter(|n| !n.is_empty()) {
        text.push_str("\r\n\r\n");
        text.push_str(n);
    }
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        base64_lines(text.as_bytes())
    ));
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/calendar; charset=utf-8; method={method}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        base64_lines(calendar.as_bytes())
    ));
    m.push_str(&format!("--{boundary}--\r\n"));
    m
}

fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(bytes);
    b.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventional_names() {
        let c = Url::parse("http://h/u/cal/").unwrap();
        assert_eq!(
            conventional(&c, "m1@example.org").unwrap().as_str(),
            "http://h/u/cal/m1%40example.org.ics"
        );
        assert!(conventional(&c, "a/b").is_none());
        assert!(conventional(&c, "a?b").is_none());
        assert!(conventional(&c, "").is_none());
    }

    #[test]
    fn reply_mail() {
        let now = date::parse("20261102T080000Z").unwrap();
        let m = reply_message(
            "bob@example.com",
            "olga@example.org",
            "Planning",
            (Response::Accepted, None),
            Some("see you"),
            "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
            "gw.example.com",
            now,
        );
        assert!(m.contains("Subject: Accepted: Planning\r\n"), "{m}");
        assert!(m.contains("method=REPLY"), "{m}");
        assert!(m.contains("To: olga@example.org\r\n"), "{m}");
        let p = Proposal {
            start: date::parse("20261120T133000Z").unwrap(),
            end: None,
        };
        let m = reply_message(
            "bob@example.com",
            "olga@example.org",
            "Planning",
            (Response::Tentative, Some(p)),
            None,
            "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
            "gw.example.com",
            now,
        );
        assert!(
            m.contains("Subject: New Time Proposed: Planning\r\n"),
            "{m}"
        );
        assert!(m.contains("method=COUNTER"), "{m}");
    }

    #[test]
    fn proposals_read() {
        let send = |inner: &str| {
            let xml = format!(
                r#"<MeetingResponse xmlns="MeetingResponse:"><Request><SendResponse>{inner}</SendResponse></Request></MeetingResponse>"#
            );
            let tree = eas_wbxml::from_xml(&xml).unwrap();
            read(tree.child(mr::Request).unwrap())
                .send
                .unwrap()
                .proposal
        };
        assert_eq!(send(""), None);
        let p = send("<ProposedStartTime>20300610T093000Z</ProposedStartTime>")
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.start, p.end),
            (date::parse("20300610T093000Z").unwrap(), None)
        );
        assert_eq!(
            send("<ProposedEndTime>20300610T093000Z</ProposedEndTime>"),
            Some(Err(()))
        );
        assert_eq!(
            send("<ProposedStartTime>soon</ProposedStartTime>"),
            Some(Err(()))
        );
    }
}
