//! ResolveRecipients' Availability from the recipients' calendars on the user's CalDAV server.
//!
//! Owns finding a recipient's calendars and asking them: the recipient's calendar home is the
//! user's own with the user's DAV name replaced by the recipient's (Radicale, and servers with
//! `/<user>/` homes, lay them out so); each calendar is asked with a `free-busy-query` (RFC
//! 4791 §7.10) and, when the server does not answer that report (Radicale 3.1), with a
//! time-range `calendar-query` whose events are turned into busy time here
//! ([`crate::calendar::freebusy`]). All as the requesting user, so the server's rights decide:
//! a recipient whose calendars the user may not read, or who has none there, has no data.

use std::sync::Arc;

use reqwest::Url;

use super::Context;
use crate::backend::calendar::holds;
use crate::calendar::{date, freebusy, ical};
use crate::dav::{DavClient, DavError, DavSettings, Kind};

/// What a recipient's Availability says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// MergedFreeBusy.
    Data(String),
    /// The recipient's calendars cannot be read (status 163).
    NoData,
    /// The calendar server is down or slow (status 162: ask again).
    Retry,
}

/// How long one request's free/busy look-ups may take together; recipients after that get
/// 162 (ask again) rather than hold the phone's request (up to 100 names, a few round trips
/// each).
const BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// The free/busy look-ups of one request (the user's own homes found once).
pub struct FreeBusy {
    dav: DavClient,
    settings: Arc<DavSettings>,
    homes: Option<Vec<Url>>,
    started: std::time::Instant,
}

enum Failed {
    NoData,
    Retry,
}

impl From<DavError> for Failed {
    fn from(e: DavError) -> Failed {
        if e.is_retryable() {
            tracing::warn!(error = %e, "free/busy: calendar server unavailable");
            Failed::Retry
        } else {
            Failed::NoData
        }
    }
}

/// A path segment as the user's name may appear in it (`@` escaped or not).
fn segment_matches(segment: &str, name: &str) -> bool {
    segment == name || segment.replace("%40", "@").eq_ignore_ascii_case(name)
}

/// The recipient's home: `home` with the segment naming `own` replaced by `theirs`.
pub fn home_of(home: &Url, own: &str, theirs: &str) -> Option<Url> {
    if own.eq_ignore_ascii_case(theirs) {
        return Some(home.clone());
    }
    let segments: Vec<&str> = home.path().split('/').collect();
    let at = segments.iter().position(|s| segment_matches(s, own))?;
    let mut path: Vec<String> = segments.iter().map(|s| (*s).to_owned()).collect();
    path[at] = theirs.replace('@', "%40");
    let mut u = home.clone();
    u.set_path(&path.join("/"));
    Some(u)
}

impl FreeBusy {
    /// None without a `[dav]` server.
    pub fn new(ctx: &Context<'_>) -> Option<FreeBusy> {
        if ctx.config.dav.url.trim().is_empty() {
            return None;
        }
        let (settings, http) = super::contacts::shared(ctx).ok()?;
        let dav = DavClient::new(
            http,
            settings.clone(),
            &ctx.user.login,
            ctx.user.password.clone(),
        );
        Some(FreeBusy {
            dav,
            settings,
            homes: None,
            started: std::time::Instant::now(),
        })
    }

    /// The recipient's free/busy in `[from, to)` (unix seconds).
    pub async fn of(&mut self, email: &str, from: i64, to: i64) -> Availability {
        let Some(left) = BUDGET.checked_sub(self.started.elapsed()) else {
            return Availability::Retry;
        };
        match tokio::time::timeout(left, self.look(email, from, to))
            .await
            .unwrap_or(Err(Failed::Retry))
        {
            Ok(a) => a,
            Err(Failed::NoData) => Availability::NoData,
            Err(Failed::Retry) => Availability::Retry,
        }
    }

    async fn look(&mut self, email: &str, from: i64, to: i64) -> Result<Availability, Failed> {
        let (Some(from), Some(to)) = (
            chrono::DateTime::from_timestamp(from, 0),
            chrono::DateTime::from_timestamp(to, 0),
        ) else {
            return Ok(Availability::NoData);
        };
        let (from, to) = (from.naive_utc(), to.naive_utc());
        if self.homes.is_none() {
            let found = self.dav.discover(&[Kind::Calendar]).await?;
            self.homes = Some(found.calendar_homes);
        }
        let own = self.dav.user().to_owned();
        let theirs = self.settings.user_name(email);
        let homes: Vec<Url> = self
            .homes
            .iter()
            .flatten()
            .filter_map(|h| home_of(h, &own, &theirs))
            .collect();
        let (start, end) = (date::compact(from), date::compact(to));
        let mut busy = Vec::new();
        let mut read_any = false;
        for home in homes {
            let collections = match self.dav.collections(&home).await {
                Ok(c) => c,
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(_) => continue,
            };
            for c in collections
                .iter()
                .filter(|c| c.kind == Kind::Calendar && holds(&c.components, "VEVENT"))
            {
                match self.dav.free_busy(&c.url, &start, &end).await? {
                    Some(text) => {
                        busy.extend(freebusy::from_vfreebusy(&text));
                        read_any = true;
                    }
                    None => match self.dav.events_between(&c.url, &start, &end).await {
                        Ok(members) => {
                            read_any = true;
                            for m in members {
                                let Ok(object) = ical::parse(m.data.as_deref().unwrap_or(""))
                                else {
                                    continue;
                                };
                                busy.extend(freebusy::from_events(&object, &[email], from, to));
                            }
                        }
                        Err(e) if e.is_retryable() => return Err(e.into()),
                        Err(_) => {}
                    },
                }
            }
        }
        if !read_any {
            return Ok(Availability::NoData);
        }
        Ok(Availability::Data(freebusy::merged(&busy, from, to)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_of_others() {
        let h = Url::parse("http://h/alice%40example.com/").unwrap();
        assert_eq!(
            home_of(&h, "alice@example.com", "bob@example.com")
                .unwrap()
                .as_str(),
            "http://h/bob%40example.com/"
        );
        let h = Url::parse("http://h/dav/calendars/alice/").unwrap();
        assert_eq!(
            home_of(&h, "alice", "bob").unwrap().as_str(),
            "http://h/dav/calendars/bob/"
        );
        let h = Url::parse("http://h/calendars/").unwrap();
        assert_eq!(home_of(&h, "alice", "bob"), None);
    }
}
