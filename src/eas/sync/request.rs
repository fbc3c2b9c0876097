//! The Sync request, read from its tree into types, and the parts of it a device may leave
//! out and have the server remember (the "cached collections" of an empty or partial Sync).
//!
//! Pure: no IMAP, no storage. Values outside what the spec allows are reported as
//! [`RequestError`] so the handler can answer with the Sync status the spec names.

use eas_wbxml::Element;
use eas_wbxml::tags::{airsync as a, airsyncbase as asb};

use crate::eas::child_text;
use crate::eas::ids::{CollectionId, Presented, ServerId, SyncKey};

/// Largest WindowSize the spec allows; also the default when a device sends none.
pub const MAX_WINDOW: usize = 512;
/// Window used when the request names none.
pub const DEFAULT_WINDOW: usize = 100;

/// Body format a device asks for (AirSyncBase Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPreference {
    pub kind: u8,
    pub truncation_size: Option<u32>,
    pub all_or_none: bool,
    pub preview: Option<u32>,
}

/// Per-collection options (the ones a mail folder uses).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// FilterType 0–7 (0 = all).
    pub filter_type: u8,
    pub body_preferences: Vec<BodyPreference>,
    /// 12.1: 0 never MIME, 1 S/MIME only, 2 always.
    pub mime_support: u8,
    /// 12.1 MIMETruncation code (0–8), if given.
    pub mime_truncation: Option<u8>,
    /// 0 client wins, 1 server wins (the default).
    pub conflict: Option<u8>,
}

impl Options {
    /// The earliest INTERNALDATE (unix seconds) inside the FilterType window; 0 for all.
    pub fn since(&self, now: u64) -> u64 {
        const DAY: u64 = 86_400;
        let days = match self.filter_type {
            1 => 1,
            2 => 3,
            3 => 7,
            4 => 14,
            5 => 31,
            6 => 93,
            7 => 186,
            _ => return 0,
        };
        // Whole days: IMAP SINCE is day-granular anyway, and a window that moved every
        // second would make every Sync look like a change (a new key, no fast path).
        let since = now.saturating_sub(days * DAY);
        since - since % DAY
    }
}

/// A command the device sends about one item.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientCommand {
    /// An item changed on the phone; its ApplicationData is read by the item's store (for
    /// mail: Read, Flag and Categories).
    Change {
        server_id: Presented<ServerId>,
        data: Element,
    },
    Delete {
        server_id: Presented<ServerId>,
    },
    Fetch {
        server_id: Presented<ServerId>,
    },
    /// A new item (16.x drafts); kept whole for the handler.
    Add {
        client_id: String,
        data: Element,
    },
}

/// One `<Collection>` of a request. Its ids are kept as sent: a malformed one is answered
/// per collection (and echoed), not by refusing the request.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionRequest {
    pub sync_key: Presented<SyncKey>,
    pub collection_id: Presented<CollectionId>,
    /// GetChanges: absent means yes, except on SyncKey 0.
    pub get_changes: Option<bool>,
    pub window_size: Option<usize>,
    /// DeletesAsMoves: absent means yes.
    pub deletes_as_moves: Option<bool>,
    pub options: Option<Options>,
    pub commands: Vec<ClientCommand>,
}

/// The whole request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncRequest {
    pub collections: Vec<CollectionRequest>,
    /// Seconds (Wait is minutes on the wire; HeartbeatInterval seconds).
    pub wait_secs: Option<u64>,
    pub window_size: Option<usize>,
    pub partial: bool,
}

/// Why a request cannot be run; each maps to a Sync status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Status 4: malformed.
    #[error("malformed Sync request: {0}")]
    Protocol(String),
    /// Status 14: Wait or HeartbeatInterval out of range; carries the limit to report.
    #[error("wait out of range")]
    BadWait { limit_secs: u64 },
}

fn flag(e: &Element, tag: eas_wbxml::Tag) -> Option<bool> {
    child_text(e, tag).map(|v| v.trim() == "1")
}

fn number<T: std::str::FromStr>(
    e: &Element,
    tag: eas_wbxml::Tag,
) -> Result<Option<T>, RequestError> {
    match child_text(e, tag) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| RequestError::Protocol(format!("{tag:?} is not a number: {v:?}"))),
    }
}

/// Reads a Sync request. `wait_bounds` are the allowed Wait/HeartbeatInterval in seconds.
pub fn parse(root: &Element, wait_bounds: (u64, u64)) -> Result<SyncRequest, RequestError> {
    let mut req = SyncRequest {
        partial: root.child(a::Partial).is_some(),
        window_size: number(root, a::WindowSize)?,
        ..SyncRequest::default()
    };
    let wait = match (
        number::<u64>(root, a::Wait)?,
        number::<u64>(root, a::HeartbeatInterval)?,
    ) {
        (Some(_), Some(_)) => {
            return Err(RequestError::Protocol(
                "both Wait and HeartbeatInterval".into(),
            ));
        }
        (Some(minutes), None) => Some(minutes * 60),
        (None, secs) => secs,
    };
    if let Some(w) = wait {
        let (lo, hi) = wait_bounds;
        if w < lo {
            return Err(RequestError::BadWait { limit_secs: lo });
        }
        if w > hi {
            return Err(RequestError::BadWait { limit_secs: hi });
        }
    }
    req.wait_secs = wait;
    if let Some(collections) = root.child(a::Collections) {
        for c in collections.children_with(a::Collection) {
            req.collections.push(collection(c)?);
        }
    }
    Ok(req)
}

fn collection(c: &Element) -> Result<CollectionRequest, RequestError> {
    let collection_id = child_text(c, a::CollectionId)
        .map(Presented::new)
        .ok_or_else(|| RequestError::Protocol("Collection without CollectionId".into()))?;
    let sync_key = child_text(c, a::SyncKey)
        .map(Presented::new)
        .ok_or_else(|| RequestError::Protocol("Collection without SyncKey".into()))?;
    // An empty GetChanges element means "yes".
    let get_changes = c
        .child(a::GetChanges)
        .map(|g| g.text().is_none_or(|t| t.trim() != "0"));
    let mut options = None;
    for o in c.children_with(a::Options) {
        // A mail folder has one Options; others (Class SMS) are not ours to read.
        if child_text(o, a::Class).is_some_and(|class| class != "Email") {
            continue;
        }
        options = Some(parse_options(o)?);
    }
    let mut commands = Vec::new();
    if let Some(cmds) = c.child(a::Commands) {
        for cmd in cmds.children() {
            commands.push(command(cmd)?);
        }
    }
    Ok(CollectionRequest {
        sync_key,
        collection_id,
        get_changes,
        window_size: number(c, a::WindowSize)?,
        deletes_as_moves: flag(c, a::DeletesAsMoves).or_else(|| {
            // An empty DeletesAsMoves element means "yes".
            c.child(a::DeletesAsMoves).map(|_| true)
        }),
        options,
        commands,
    })
}

/// Reads an Options element (Sync's, or Search's and ItemOperations' which carry the same
/// BodyPreference and MIMESupport children).
pub fn parse_options_element(o: &Element) -> Result<Options, RequestError> {
    parse_options(o)
}

fn parse_options(o: &Element) -> Result<Options, RequestError> {
    let mut options = Options {
        filter_type: number(o, a::FilterType)?.unwrap_or(0),
        mime_support: number(o, a::MIMESupport)?.unwrap_or(0),
        mime_truncation: number(o, a::MIMETruncation)?,
        conflict: number(o, a::Conflict)?,
        ..Options::default()
    };
    if options.filter_type > 8 || options.mime_support > 2 {
        return Err(RequestError::Protocol("option out of range".into()));
    }
    for p in o.children_with(asb::BodyPreference) {
        let kind = number(p, asb::Type)?
            .ok_or_else(|| RequestError::Protocol("BodyPreference without Type".into()))?;
        options.body_preferences.push(BodyPreference {
            kind,
            truncation_size: number(p, asb::TruncationSize)?,
            all_or_none: flag(p, asb::AllOrNone).unwrap_or(false),
            preview: number(p, asb::Preview)?,
        });
    }
    Ok(options)
}

fn command(cmd: &Element) -> Result<ClientCommand, RequestError> {
    let server_id = || {
        child_text(cmd, a::ServerId)
            .map(Presented::new)
            .ok_or_else(|| RequestError::Protocol(format!("{:?} without ServerId", cmd.tag)))
    };
    Ok(match cmd.tag {
        t if t == a::Change => ClientCommand::Change {
            server_id: server_id()?,
            data: with_instance(application_data(cmd), cmd),
        },
        // 16.x: one occurrence of a series deleted (MS-ASAIRS InstanceId). The series stays,
        // so this is a Change of it for the calendar store (`backend::calendar`): the
        // InstanceId and `calendar:Deleted` in its ApplicationData.
        t if t == a::Delete && cmd.child(asb::InstanceId).is_some() => ClientCommand::Change {
            server_id: server_id()?,
            data: with_instance(
                Element::with_children(
                    a::ApplicationData,
                    vec![Element::with_text(eas_wbxml::tags::calendar::Deleted, "1")],
                ),
                cmd,
            ),
        },
        t if t == a::Delete => ClientCommand::Delete {
            server_id: server_id()?,
        },
        t if t == a::Fetch => ClientCommand::Fetch {
            server_id: server_id()?,
        },
        t if t == a::Add => ClientCommand::Add {
            client_id: child_text(cmd, a::ClientId)
                .ok_or_else(|| RequestError::Protocol("Add without ClientId".into()))?
                .to_owned(),
            data: application_data(cmd),
        },
        other => return Err(RequestError::Protocol(format!("unknown command {other:?}"))),
    })
}

/// A command's ApplicationData, kept whole for the item's store (empty when absent).
fn application_data(cmd: &Element) -> Element {
    cmd.child(a::ApplicationData)
        .cloned()
        .unwrap_or_else(|| Element::new(a::ApplicationData))
}

/// A 16.x Change or Delete names one occurrence by an InstanceId beside its ApplicationData;
/// the store reads it inside (where it also stands in responses for orphan instances).
fn with_instance(mut data: Element, cmd: &Element) -> Element {
    if let Some(i) = cmd.child(asb::InstanceId)
        && data.child(asb::InstanceId).is_none()
    {
        data.push(i.clone());
    }
    data
}

#[cfg(test)]
mod test {
    use super::*;

    fn parse_xml(xml: &str) -> Result<SyncRequest, RequestError> {
        parse(&eas_wbxml::from_xml(xml).unwrap(), (60, 3540))
    }

    #[test]
    fn instance_ids_reach_the_store() {
        let r = parse_xml(
            r#"<Sync xmlns="AirSync:" xmlns:B="AirSyncBase:" xmlns:C="Calendar:"><Collections><Collection>
                <SyncKey>3</SyncKey><CollectionId>4</CollectionId><Commands>
                  <Change><ServerId>4:7</ServerId><B:InstanceId>20260105T083000Z</B:InstanceId><ApplicationData><C:Subject>One</C:Subject></ApplicationData></Change>
                  <Delete><ServerId>4:7</ServerId><B:InstanceId>20260112T083000Z</B:InstanceId></Delete>
                  <Delete><ServerId>4:8</ServerId></Delete>
                </Commands></Collection></Collections></Sync>"#,
        )
        .unwrap();
        let c = &r.collections[0].commands;
        let ClientCommand::Change { data, .. } = &c[0] else {
            panic!("{:?}", c[0]);
        };
        assert_eq!(child_text(data, asb::InstanceId), Some("20260105T083000Z"));
        let ClientCommand::Change { data, .. } = &c[1] else {
            panic!(
                "an occurrence's Delete is a Change of the series: {:?}",
                c[1]
            );
        };
        assert_eq!(child_text(data, asb::InstanceId), Some("20260112T083000Z"));
        assert_eq!(
            child_text(data, eas_wbxml::tags::calendar::Deleted),
            Some("1")
        );
        assert!(matches!(c[2], ClientCommand::Delete { .. }));
    }

    #[test]
    fn a_typical_request() {
        let r = parse_xml(
            r#"<Sync xmlns="AirSync:" xmlns:B="AirSyncBase:" xmlns:E="Email:">
              <Collections><Collection>
                <SyncKey>3</SyncKey><CollectionId>2</CollectionId><DeletesAsMoves/>
                <GetChanges/><WindowSize>25</WindowSize>
                <Options><FilterType>3</FilterType>
                  <B:BodyPreference><B:Type>2</B:Type><B:TruncationSize>5120</B:TruncationSize><B:Preview>255</B:Preview></B:BodyPreference>
                </Options>
                <Commands>
                  <Change><ServerId>2:7</ServerId><ApplicationData><E:Read>1</E:Read><E:Flag/></ApplicationData></Change>
                  <Delete><ServerId>2:8</ServerId></Delete>
                  <Fetch><ServerId>2:9</ServerId></Fetch>
                </Commands>
              </Collection></Collections>
              <WindowSize>100</WindowSize>
            </Sync>"#,
        )
        .unwrap();
        let c = &r.collections[0];
        assert_eq!((c.sync_key.text(), c.collection_id.text()), ("3", "2"));
        assert_eq!(c.sync_key.id(), SyncKey::try_from("3").ok());
        assert_eq!(c.collection_id.id(), Some(CollectionId::new(2)));
        assert_eq!(c.get_changes, Some(true));
        assert_eq!(c.deletes_as_moves, Some(true));
        assert_eq!(c.window_size, Some(25));
        let o = c.options.as_ref().unwrap();
        assert_eq!(o.filter_type, 3);
        assert_eq!(o.body_preferences[0].truncation_size, Some(5120));
        assert_eq!(o.body_preferences[0].preview, Some(255));
        let ClientCommand::Change { server_id, data } = &c.commands[0] else {
            panic!("not a Change: {:?}", c.commands[0]);
        };
        assert_eq!(server_id, &Presented::new("2:7"));
        assert_eq!(data.tag, a::ApplicationData);
        assert_eq!(data.children().len(), 2);
        assert_eq!(r.window_size, Some(100));
    }

    #[test]
    fn bad_requests() {
        assert!(matches!(
            parse_xml(
                r#"<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>1</SyncKey></Collection></Collections></Sync>"#
            ),
            Err(RequestError::Protocol(_))
        ));
        assert_eq!(
            parse_xml(r#"<Sync xmlns="AirSync:"><Wait>100</Wait></Sync>"#),
            Err(RequestError::BadWait { limit_secs: 3540 })
        );
        assert_eq!(
            parse_xml(r#"<Sync xmlns="AirSync:"><HeartbeatInterval>10</HeartbeatInterval></Sync>"#),
            Err(RequestError::BadWait { limit_secs: 60 })
        );
        assert!(parse_xml(r#"<Sync xmlns="AirSync:"><WindowSize>x</WindowSize></Sync>"#).is_err());
    }

    #[test]
    fn filter_windows() {
        let o = |f| Options {
            filter_type: f,
            ..Options::default()
        };
        assert_eq!(o(0).since(1_000_000), 0);
        assert_eq!(o(1).since(1_000_000), 864_000);
        assert_eq!(o(1).since(1_000_000), o(1).since(1_000_001));
        assert_eq!(o(5).since(10), 0);
    }
}
