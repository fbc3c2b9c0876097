//! Search (MS-ASCMD 2.2.1.16) of the mailbox, translated to IMAP SEARCH, and of the GAL (no
//! directory is configured yet: an honest empty answer).
//!
//! The query's FreeText becomes `TEXT` terms (Dovecot uses its full-text index for them when
//! one is configured), DateReceived bounds become SINCE/BEFORE and are then applied exactly to
//! INTERNALDATE. Hits from every chosen folder are ordered newest first by INTERNALDATE; only
//! (folder, UID, date) triples are held, and only the requested Range is fetched and written,
//! with the same properties and ServerIds (as LongId) that Sync uses.

use eas_wbxml::tags::{airsync as a, email, search as s};
use eas_wbxml::{Element, Writer};

use super::sync::{self, items, request::Options};
use super::{Context, EasError, Reply, child_text};
use crate::imap::{ImapDate, SearchKey};
use crate::mailstore::Mailstore;
use crate::state::FolderEntry;

const OK: u32 = 1;
const INVALID_REQUEST: u32 = 2;
const SERVER_ERROR: u32 = 3;
const TOO_COMPLEX: u32 = 8;
const FOLDER_SYNC_REQUIRED: u32 = 11;

/// At most this many results per response, as Exchange does.
const MAX_RANGE: usize = 100;

/// A parsed mailbox query.
#[derive(Debug, Default, PartialEq)]
struct Query {
    collections: Vec<String>,
    words: Vec<String>,
    /// DateReceived > after (unix seconds).
    after: Option<i64>,
    /// DateReceived < before.
    before: Option<i64>,
}

/// Why a query cannot be run.
#[derive(Debug, PartialEq)]
enum QueryError {
    Invalid(String),
    TooComplex(String),
}

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let Some(store) = body.child(s::Store) else {
        return Ok(top(INVALID_REQUEST));
    };
    let name = child_text(store, s::Name)
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let options = store.child(s::Options);
    let range = match options.and_then(|o| child_text(o, s::Range)) {
        None => Some((0, MAX_RANGE - 1)),
        Some(r) => parse_range(r),
    };
    let Some((first, last)) = range else {
        return Ok(store_status(INVALID_REQUEST));
    };
    match name.as_str() {
        // No directory is configured: nobody matches, which is the truthful answer.
        "gal" => return Ok(empty_result()),
        "mailbox" => {}
        _ => return Ok(store_status(INVALID_REQUEST)),
    }
    let query = match store.child(s::Query).map(parse_query) {
        Some(Ok(q)) => q,
        Some(Err(QueryError::TooComplex(why))) => {
            tracing::info!(%why, "search too complex");
            return Ok(store_status(TOO_COMPLEX));
        }
        Some(Err(QueryError::Invalid(why))) => {
            tracing::info!(%why, "invalid search");
            return Ok(store_status(INVALID_REQUEST));
        }
        None => return Ok(store_status(INVALID_REQUEST)),
    };
    let deep = options.is_some_and(|o| o.child(s::DeepTraversal).is_some());
    let folders = match folders(ctx, &query, deep)? {
        Some(f) => f,
        None => return Ok(store_status(FOLDER_SYNC_REQUIRED)),
    };
    let mut item_options = Options::default();
    if let Some(o) = options {
        let mut shaped = Element::new(a::Options);
        for c in o.children() {
            shaped.push(c.clone());
        }
        // Search carries the same BodyPreference elements as Sync's Options.
        if let Ok(parsed) = sync::request::parse_options_element(&shaped) {
            item_options = parsed;
        }
    }

    let mut mailstore = Mailstore::open(ctx).await?;
    let key = imap_key(&query);
    let mut hits: Vec<(i64, u32, u32)> = Vec::new(); // (date, folder index, uid)
    for (i, f) in folders.iter().enumerate() {
        let found = match mailstore.search_dates(&f.imap_name, &key).await {
            Ok(found) => found,
            Err(crate::imap::ImapError::No { .. } | crate::imap::ImapError::Bad { .. }) => {
                mailstore.close().await;
                return Ok(store_status(SERVER_ERROR));
            }
            Err(e) => return Err(e.into()),
        };
        for (uid, date) in found {
            // IMAP dates are whole days; the phone's bounds are instants.
            if query.after.is_some_and(|t| date <= t) || query.before.is_some_and(|t| date >= t) {
                continue;
            }
            hits.push((date, i as u32, uid));
        }
    }
    hits.sort_unstable_by(|x, y| y.cmp(x));
    let total = hits.len();
    if total == 0 || first >= total {
        mailstore.close().await;
        return Ok(no_results(total));
    }
    let last = last.min(first + MAX_RANGE - 1).min(total - 1);
    let page = &hits[first..=last];

    let enc = |e: eas_wbxml::EncodeError| EasError::Internal(e.to_string());
    let mut w = Writer::new(Vec::with_capacity(8192)).map_err(enc)?;
    w.start(s::Search).map_err(enc)?;
    w.text_element(s::Status, "1").map_err(enc)?;
    w.start(s::Response).map_err(enc)?;
    w.start(s::Store).map_err(enc)?;
    w.text_element(s::Status, &OK.to_string()).map_err(enc)?;
    // One fetch per folder for the page's messages, then written in the page's order.
    let mut rendered: Vec<items::Rendered> = Vec::new();
    for (i, f) in folders.iter().enumerate() {
        let uids: Vec<u32> = page
            .iter()
            .filter(|h| h.1 as usize == i)
            .map(|h| h.2)
            .collect();
        let r = if uids.is_empty() {
            items::Rendered::default()
        } else {
            items::fetch_and_render(
                &mut mailstore,
                &f.imap_name,
                f.id,
                &uids,
                &uids,
                ctx.version,
                &item_options,
            )
            .await?
        };
        rendered.push(r);
    }
    mailstore.close().await;
    let mut written = 0;
    for &(_, i, uid) in page {
        let f = &folders[i as usize];
        let r = &rendered[i as usize];
        if !r.contains(uid) {
            continue; // expunged since the search
        }
        w.start(s::Result).map_err(enc)?;
        w.text_element(a::Class, "Email").map_err(enc)?;
        w.text_element(s::LongId, &format!("{}:{uid}", f.id))
            .map_err(enc)?;
        w.text_element(a::CollectionId, &f.id.to_string())
            .map_err(enc)?;
        w.start(s::Properties).map_err(enc)?;
        r.write_properties(&mut w, uid)?;
        w.end().map_err(enc)?;
        w.end().map_err(enc)?;
        written += 1;
    }
    let shown_last = first + written.max(1) - 1;
    w.text_element(s::Range, &format!("{first}-{shown_last}"))
        .map_err(enc)?;
    w.text_element(s::Total, &total.to_string()).map_err(enc)?;
    w.end().map_err(enc)?;
    w.end().map_err(enc)?;
    w.end().map_err(enc)?;
    Ok(Reply::Bytes(w.finish().map_err(enc)?))
}

/// The folders to search: the named collections (with their subfolders for DeepTraversal),
/// or every mail folder. None when a named collection is unknown (FolderSync first).
fn folders(ctx: &Context<'_>, q: &Query, deep: bool) -> Result<Option<Vec<FolderEntry>>, EasError> {
    let device = &ctx.device.key;
    let all = match ctx.store.latest_hierarchy_key(device)? {
        Some(k) => ctx.store.hierarchy(device, k)?.unwrap_or_default(),
        None => return Ok(None),
    };
    if q.collections.is_empty() {
        return Ok(Some(all));
    }
    let mut out: Vec<FolderEntry> = Vec::new();
    for id in &q.collections {
        let Some(f) = all.iter().find(|f| f.id.to_string() == *id) else {
            return Ok(None);
        };
        if !out.iter().any(|o| o.id == f.id) {
            out.push(f.clone());
        }
        if deep {
            for d in sync::descendants(ctx, f.id)? {
                if !out.iter().any(|o| o.id == d.id) {
                    out.push(d);
                }
            }
        }
    }
    Ok(Some(out))
}

fn parse_query(q: &Element) -> Result<Query, QueryError> {
    let mut query = Query::default();
    for c in q.children() {
        term(c, &mut query, 0)?;
    }
    if query.words.is_empty() && query.after.is_none() && query.before.is_none() {
        return Err(QueryError::Invalid("no search terms".into()));
    }
    Ok(query)
}

fn term(e: &Element, q: &mut Query, depth: usize) -> Result<(), QueryError> {
    if depth > 4 {
        return Err(QueryError::TooComplex("nested too deep".into()));
    }
    match e.tag {
        t if t == s::And => {
            for c in e.children() {
                term(c, q, depth + 1)?;
            }
        }
        t if t == s::Or => return Err(QueryError::TooComplex("Or".into())),
        t if t == s::FreeText => {
            let text = e.text().unwrap_or("").trim();
            if text.is_empty() {
                return Err(QueryError::Invalid("empty FreeText".into()));
            }
            // Words, not a phrase: "budget review" finds a mail with both words anywhere.
            q.words.extend(text.split_whitespace().map(str::to_owned));
        }
        t if t == a::Class => {
            if e.text().is_some_and(|c| c.trim() != "Email") {
                return Err(QueryError::Invalid("only Email can be searched".into()));
            }
        }
        t if t == a::CollectionId => {
            q.collections.push(e.text().unwrap_or("").trim().to_owned());
        }
        t if t == s::GreaterThan || t == s::LessThan => {
            if e.child(email::DateReceived).is_none() {
                return Err(QueryError::Invalid(
                    "comparison on something else than DateReceived".into(),
                ));
            }
            let value = child_text(e, s::Value)
                .and_then(parse_eas_date)
                .ok_or_else(|| QueryError::Invalid("bad date".into()))?;
            if t == s::GreaterThan {
                q.after = Some(value);
            } else {
                q.before = Some(value);
            }
        }
        t if t == s::ConversationId => {
            return Err(QueryError::TooComplex("ConversationId".into()));
        }
        other => return Err(QueryError::Invalid(format!("unexpected {other:?}"))),
    }
    Ok(())
}

/// The IMAP search for a query: every word somewhere in the message, within the date bounds
/// widened to whole days (refined on INTERNALDATE afterwards).
fn imap_key(q: &Query) -> SearchKey {
    let mut keys: Vec<SearchKey> = q.words.iter().map(|w| SearchKey::Text(w.clone())).collect();
    if let Some(t) = q.after {
        keys.push(SearchKey::Since(ImapDate::from_unix(t)));
    }
    if let Some(t) = q.before {
        keys.push(SearchKey::Before(ImapDate::from_unix(t + 86_400)));
    }
    SearchKey::And(keys)
}

/// `2026-01-01T00:00:00.000Z` (milliseconds and `Z` optional) to unix seconds.
fn parse_eas_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let time = time.trim_end_matches('Z');
    let time = time.split('.').next()?;
    let mut t = time.split(':');
    let (hh, mm, ss): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next().unwrap_or("0").parse().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn parse_range(r: &str) -> Option<(usize, usize)> {
    let (a, b) = r.trim().split_once('-')?;
    let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

fn top(status: u32) -> Reply {
    Reply::Document(Element::with_children(
        s::Search,
        vec![Element::with_text(s::Status, status.to_string())],
    ))
}

fn store_status(status: u32) -> Reply {
    Reply::Document(Element::with_children(
        s::Search,
        vec![
            Element::with_text(s::Status, "1"),
            Element::with_children(
                s::Response,
                vec![Element::with_children(
                    s::Store,
                    vec![Element::with_text(s::Status, status.to_string())],
                )],
            ),
        ],
    ))
}

fn no_results(total: usize) -> Reply {
    Reply::Document(Element::with_children(
        s::Search,
        vec![
            Element::with_text(s::Status, "1"),
            Element::with_children(
                s::Response,
                vec![Element::with_children(
                    s::Store,
                    vec![
                        Element::with_text(s::Status, "1"),
                        Element::with_text(s::Total, total.to_string()),
                    ],
                )],
            ),
        ],
    ))
}

fn empty_result() -> Reply {
    no_results(0)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_eas_date("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_eas_date("2026-03-02T10:00:00.000Z"),
            Some(1_772_445_600)
        );
        assert_eq!(parse_eas_date("2026-03-02T10:00:00Z"), Some(1_772_445_600));
        assert_eq!(parse_eas_date("2026-13-02T10:00:00Z"), None);
        assert_eq!(parse_eas_date("yesterday"), None);
    }

    #[test]
    fn queries() {
        let q = eas_wbxml::from_xml(
            r#"<Query xmlns="Search:" xmlns:airsync="AirSync:" xmlns:email="Email:"><And>
                 <airsync:Class>Email</airsync:Class><airsync:CollectionId>10</airsync:CollectionId>
                 <FreeText>budget review</FreeText>
                 <GreaterThan><email:DateReceived/><Value>2025-01-01T00:00:00.000Z</Value></GreaterThan>
               </And></Query>"#,
        )
        .unwrap();
        let parsed = parse_query(&q).unwrap();
        assert_eq!(parsed.collections, vec!["10"]);
        assert_eq!(parsed.words, vec!["budget", "review"]);
        assert_eq!(parsed.after, Some(1_735_689_600));
        let or = eas_wbxml::from_xml(
            r#"<Query xmlns="Search:"><Or><FreeText>a</FreeText></Or></Query>"#,
        )
        .unwrap();
        assert!(matches!(parse_query(&or), Err(QueryError::TooComplex(_))));
        let empty = eas_wbxml::from_xml(r#"<Query xmlns="Search:"><And/></Query>"#).unwrap();
        assert!(matches!(parse_query(&empty), Err(QueryError::Invalid(_))));
        assert_eq!(parse_range("0-24"), Some((0, 24)));
        assert_eq!(parse_range("5-1"), None);
    }
}
