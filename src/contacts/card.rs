//! vCard ↔ [`Contact`]: which vCard entry fills which EAS slot ([`assign`]), reading a card,
//! and merging a phone's contact back into the stored card.
//!
//! Both directions use the same assignment, so a merge touches exactly the entries (and the
//! components of `N`, `ORG`, `ADR`) that the phone was shown, and nothing else.

use std::collections::{BTreeMap, BTreeSet};

use calcard::common::{Data, PartialDateTime};
use calcard::vcard::{
    VCard, VCardEntry, VCardParameter, VCardParameterName, VCardParameterValue, VCardProperty,
    VCardType, VCardValue, VCardValueType, VCardVersion,
};

use super::{Contact, ContactError, Field, MergeOptions};
use eas_wbxml::tags::{airsyncbase as asb, contacts as c};

/// Parses one stored vCard (2.1 with QUOTED-PRINTABLE and CHARSET, 3.0, 4.0).
pub fn parse_vcard(text: &str) -> Result<VCard, ContactError> {
    VCard::parse(text)
        .map_err(|e| ContactError::BadVCard(format!("{e:?}").chars().take(120).collect()))
}

/// The vCard as text, in its own version (2.1 is written as 3.0: calcard writes 3.0 syntax).
pub fn to_text(card: &VCard) -> String {
    let version = match card.version() {
        Some(VCardVersion::V4_0) => VCardVersion::V4_0,
        _ => VCardVersion::V3_0,
    };
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = card.write_to(&mut out, version);
    if version == VCardVersion::V4_0 {
        // calcard escapes the comma of a `data:` URI as if it were text; a URI has no escapes.
        out = out.replace(";base64\\,", ";base64,");
    }
    out
}

/// The three kinds of postal address EAS has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AdrKind {
    Home,
    Business,
    Other,
}

impl AdrKind {
    /// Street, city, state, postal code, country: ADR components 2..=6.
    fn fields(self) -> [Field; 5] {
        use Field::*;
        match self {
            AdrKind::Home => [HomeStreet, HomeCity, HomeState, HomePostalCode, HomeCountry],
            AdrKind::Business => [
                BusinessStreet,
                BusinessCity,
                BusinessState,
                BusinessPostalCode,
                BusinessCountry,
            ],
            AdrKind::Other => [
                OtherStreet,
                OtherCity,
                OtherState,
                OtherPostalCode,
                OtherCountry,
            ],
        }
    }
}

/// Where a field's value lives: an entry, and for structured ones its component.
type Slot = (usize, Option<usize>);

/// Which entries of a card EAS sees.
#[derive(Debug, Default)]
pub(super) struct Assigned {
    slots: BTreeMap<Field, Slot>,
    categories: Vec<usize>,
    children: Vec<usize>,
    note: Option<usize>,
    photo: Option<usize>,
}

const N_FIELDS: [Field; 5] = [
    Field::LastName,
    Field::FirstName,
    Field::MiddleName,
    Field::Title,
    Field::Suffix,
];
const ORG_FIELDS: [Field; 2] = [Field::CompanyName, Field::Department];
const EMAILS: [Field; 3] = [Field::Email1, Field::Email2, Field::Email3];
const IMS: [Field; 3] = [Field::Im1, Field::Im2, Field::Im3];
/// Older instant-messaging properties (before IMPP); read, never written.
const IM_PROPS: &[&str] = &[
    "X-JABBER",
    "X-AIM",
    "X-ICQ",
    "X-MSN",
    "X-YAHOO",
    "X-SKYPE",
    "X-SKYPE-USERNAME",
    "X-GOOGLE-TALK",
    "X-GADUGADU",
    "X-QQ",
    "X-TWITTER",
];

/// Simple fields held by a property of their own: the names read (the first is written).
fn simple_props(f: Field) -> &'static [&'static str] {
    use Field::*;
    match f {
        FileAs => &["FN"],
        NickName => &["NICKNAME"],
        JobTitle => &["TITLE"],
        WebPage => &["URL"],
        YomiFirstName => &["X-PHONETIC-FIRST-NAME"],
        YomiLastName => &["X-PHONETIC-LAST-NAME"],
        YomiCompanyName => &["X-PHONETIC-ORG"],
        OfficeLocation => &["X-EAS-OFFICELOCATION", "X-EVOLUTION-OFFICE"],
        ManagerName => &[
            "X-MANAGER",
            "X-EVOLUTION-MANAGER",
            "X-KADDRESSBOOK-X-MANAGERSNAME",
        ],
        AssistantName => &[
            "X-ASSISTANT",
            "X-EVOLUTION-ASSISTANT",
            "X-KADDRESSBOOK-X-ASSISTANTSNAME",
        ],
        Spouse => &[
            "X-SPOUSE",
            "X-EVOLUTION-SPOUSE",
            "X-KADDRESSBOOK-X-SPOUSENAME",
        ],
        CustomerId => &["X-EAS-CUSTOMERID"],
        GovernmentId => &["X-EAS-GOVERNMENTID"],
        AccountName => &["X-EAS-ACCOUNTNAME"],
        Anniversary => &[
            "ANNIVERSARY",
            "X-ANNIVERSARY",
            "X-EVOLUTION-ANNIVERSARY",
            "X-KADDRESSBOOK-X-ANNIVERSARY",
        ],
        Birthday => &["BDAY"],
        _ => &[],
    }
}

fn is(entry: &VCardEntry, name: &str) -> bool {
    entry.name.as_str().eq_ignore_ascii_case(name)
}

/// The entry's TYPE values, lower case (`TYPE=HOME,VOICE` and v2.1 bare `HOME` alike).
fn types(entry: &VCardEntry) -> Vec<String> {
    let mut out = Vec::new();
    for p in &entry.params {
        if p.name != VCardParameterName::Type {
            continue;
        }
        let text = match &p.value {
            VCardParameterValue::Type(t) => type_name(t).to_owned(),
            VCardParameterValue::Text(t) => t.to_ascii_lowercase(),
            _ => continue,
        };
        out.extend(text.split(',').map(|s| s.trim().to_owned()));
    }
    out
}

fn type_name(t: &VCardType) -> &'static str {
    match t {
        VCardType::Work => "work",
        VCardType::Home => "home",
        VCardType::Text => "text",
        VCardType::Voice => "voice",
        VCardType::Fax => "fax",
        VCardType::Cell => "cell",
        VCardType::Video => "video",
        VCardType::Pager => "pager",
        VCardType::Textphone => "textphone",
        VCardType::MainNumber => "main-number",
        VCardType::Spouse => "spouse",
        VCardType::Child => "child",
        _ => "",
    }
}

/// The EAS telephone slots a TEL entry may take, best first.
fn tel_slots(types: &[String]) -> &'static [Field] {
    use Field::*;
    let has = |t: &str| types.iter().any(|x| x == t);
    if has("fax") {
        if has("home") {
            &[HomeFax, BusinessFax]
        } else {
            &[BusinessFax, HomeFax]
        }
    } else if has("cell") || has("mobile") || has("iphone") {
        &[MobilePhone]
    } else if has("pager") {
        &[PagerNumber]
    } else if has("car") {
        &[CarPhone]
    } else if has("x-radio") || has("radio") {
        &[RadioPhone]
    } else if has("x-assistant") || has("assistant") {
        &[AssistantPhone]
    } else if has("x-mms") || has("mms") {
        &[Mms]
    } else if has("main-number") || has("x-company-main") || has("main") {
        &[CompanyMainPhone]
    } else if has("work") {
        &[BusinessPhone, Business2Phone]
    } else if has("home") {
        &[HomePhone, Home2Phone]
    } else {
        &[HomePhone, Home2Phone, BusinessPhone, Business2Phone]
    }
}

/// Decides which entries fill which EAS slots (first come, first served, document order).
pub(super) fn assign(card: &VCard) -> Assigned {
    let mut a = Assigned::default();
    let take = |a: &mut Assigned, f: Field, slot: Slot| -> bool {
        match a.slots.entry(f) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(slot);
                true
            }
        }
    };
    let mut adr_kinds: BTreeSet<AdrKind> = BTreeSet::new();
    for (i, e) in card.entries.iter().enumerate() {
        match &e.name {
            VCardProperty::N => {
                if !a.slots.contains_key(&Field::LastName) {
                    for (c, f) in N_FIELDS.into_iter().enumerate() {
                        take(&mut a, f, (i, Some(c)));
                    }
                }
            }
            VCardProperty::Org => {
                if !a.slots.contains_key(&Field::CompanyName) {
                    for (c, f) in ORG_FIELDS.into_iter().enumerate() {
                        take(&mut a, f, (i, Some(c)));
                    }
                }
            }
            VCardProperty::Adr => {
                let t = types(e);
                let kind = if t.iter().any(|x| x == "home") {
                    AdrKind::Home
                } else if t.iter().any(|x| x == "work") {
                    AdrKind::Business
                } else {
                    AdrKind::Other
                };
                if adr_kinds.insert(kind) {
                    for (c, f) in kind.fields().into_iter().enumerate() {
                        take(&mut a, f, (i, Some(c + 2)));
                    }
                }
            }
            VCardProperty::Email => {
                if let Some(f) = EMAILS.into_iter().find(|f| !a.slots.contains_key(f)) {
                    take(&mut a, f, (i, None));
                }
            }
            VCardProperty::Tel => {
                let t = types(e);
                if let Some(f) = tel_slots(&t).iter().find(|f| !a.slots.contains_key(f)) {
                    take(&mut a, *f, (i, None));
                }
            }
            VCardProperty::Impp => {
                if let Some(f) = IMS.into_iter().find(|f| !a.slots.contains_key(f)) {
                    take(&mut a, f, (i, None));
                }
            }
            VCardProperty::Categories => a.categories.push(i),
            VCardProperty::Note => {
                a.note.get_or_insert(i);
            }
            VCardProperty::Photo => {
                a.photo.get_or_insert(i);
            }
            VCardProperty::Related => {
                let t = types(e);
                if t.iter().any(|x| x == "spouse") {
                    take(&mut a, Field::Spouse, (i, None));
                } else if t.iter().any(|x| x == "child") {
                    a.children.push(i);
                }
            }
            _ if is(e, "X-CHILD") || is(e, "X-EVOLUTION-CHILD") => a.children.push(i),
            _ if IM_PROPS.iter().any(|n| is(e, n)) => {
                if let Some(f) = IMS.into_iter().find(|f| !a.slots.contains_key(f)) {
                    take(&mut a, f, (i, None));
                }
            }
            _ => {
                for f in Field::ALL {
                    if simple_props(f).iter().any(|n| is(e, n)) {
                        take(&mut a, f, (i, None));
                        break;
                    }
                }
            }
        }
    }
    a
}

fn text_of(v: &VCardValue, sep: &str) -> Option<String> {
    match v {
        VCardValue::Text(t) => Some(t.clone()),
        VCardValue::Component(parts) => Some(parts.join(sep)),
        VCardValue::Integer(n) => Some(n.to_string()),
        VCardValue::Float(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A date as (year, month, day) from a date value or a text date.
fn date_of(e: &VCardEntry) -> Option<(u16, u8, u8)> {
    match e.values.first()? {
        VCardValue::PartialDateTime(d) => Some((d.year?, d.month?, d.day?)),
        VCardValue::Text(t) => parse_text_date(t),
        _ => None,
    }
}

/// `YYYY-MM-DD`, `YYYYMMDD`, optionally followed by a time.
fn parse_text_date(t: &str) -> Option<(u16, u8, u8)> {
    let digits: String = t
        .trim()
        .chars()
        .take_while(|c| *c != 'T' && *c != 't' && *c != ' ')
        .filter(|c| c.is_ascii_digit())
        .collect();
    if digits.len() != 8 {
        return None;
    }
    let y = digits[0..4].parse().ok()?;
    let m = digits[4..6].parse().ok()?;
    let d = digits[6..8].parse().ok()?;
    valid_date(y, m, d).then_some((y, m, d))
}

fn valid_date(y: u16, m: u8, d: u8) -> bool {
    (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

fn days_in_month(y: u16, m: u8) -> u8 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// EAS's form of a date: midnight UTC of that day.
pub(super) fn eas_date((y, m, d): (u16, u8, u8)) -> String {
    format!("{y:04}-{m:02}-{d:02}T00:00:00.000Z")
}

/// The calendar day a phone meant by an EAS date-time. Phones send the local midnight of the
/// day converted to UTC (e.g. `1980-05-16T22:00:00Z` in UTC+2), so the nearest midnight is the
/// day: anything from 12:00 on belongs to the next day.
pub(super) fn day_of_eas_date(t: &str) -> Option<(u16, u8, u8)> {
    let t = t.trim();
    let (y, m, d) = parse_text_date(t)?;
    let time: String = t
        .split(['T', 't'])
        .nth(1)
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(2)
        .collect();
    let hour: u8 = time.parse().unwrap_or(0);
    if hour < 12 {
        return Some((y, m, d));
    }
    Some(if d < days_in_month(y, m) {
        (y, m, d + 1)
    } else if m < 12 {
        (y, m + 1, 1)
    } else {
        (y + 1, 1, 1)
    })
}

/// After `scheme:` for an IM address (`xmpp:a@b` → `a@b`); plain values as they are.
fn strip_scheme(v: &str) -> &str {
    match v.split_once(':') {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            rest.trim_start_matches("//")
        }
        _ => v,
    }
}

/// The value EAS shows for `f` held at `slot`.
fn value_at(card: &VCard, f: Field, (i, comp): Slot) -> Option<String> {
    let e = card.entries.get(i)?;
    let v = match comp {
        Some(c) => {
            let sep = if matches!(e.name, VCardProperty::Adr) {
                "\n"
            } else {
                " "
            };
            text_of(e.values.get(c)?, sep)?
        }
        None => match f {
            Field::Birthday | Field::Anniversary => eas_date(date_of(e)?),
            _ => {
                let parts: Vec<String> = e.values.iter().filter_map(|v| text_of(v, " ")).collect();
                let joined = parts.join(",");
                match f {
                    Field::Email1 | Field::Email2 | Field::Email3 => {
                        joined.trim().trim_start_matches("mailto:").to_owned()
                    }
                    Field::Im1 | Field::Im2 | Field::Im3 => strip_scheme(joined.trim()).to_owned(),
                    _ if is_phone(f) => joined.trim().trim_start_matches("tel:").to_owned(),
                    _ => joined,
                }
            }
        },
    };
    (!v.trim().is_empty()).then_some(v)
}

fn is_phone(f: Field) -> bool {
    use Field::*;
    matches!(
        f,
        HomePhone
            | Home2Phone
            | BusinessPhone
            | Business2Phone
            | MobilePhone
            | CarPhone
            | PagerNumber
            | RadioPhone
            | HomeFax
            | BusinessFax
            | AssistantPhone
            | CompanyMainPhone
            | Mms
    )
}

fn texts(e: &VCardEntry) -> Vec<String> {
    e.values
        .iter()
        .filter_map(|v| text_of(v, ","))
        .flat_map(|t| {
            t.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// The stored card as EAS sees it.
pub fn from_vcard(card: &VCard) -> Contact {
    read(card, &assign(card))
}

fn read(card: &VCard, a: &Assigned) -> Contact {
    let mut out = Contact::default();
    for (f, slot) in &a.slots {
        if let Some(v) = value_at(card, *f, *slot) {
            out.fields.insert(*f, v);
        }
    }
    out.categories = a
        .categories
        .iter()
        .flat_map(|i| texts(&card.entries[*i]))
        .collect();
    out.children = a
        .children
        .iter()
        .flat_map(|i| {
            card.entries[*i]
                .values
                .iter()
                .filter_map(|v| text_of(v, " "))
                .map(|t| strip_scheme(t.trim()).to_owned())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    out.body = a
        .note
        .map(|i| {
            let parts: Vec<String> = card.entries[i]
                .values
                .iter()
                .filter_map(|v| text_of(v, ","))
                .collect();
            parts.join(",")
        })
        .filter(|b| !b.trim().is_empty());
    out.picture = a.photo.and_then(|i| match card.entries[i].values.first() {
        Some(VCardValue::Binary(d)) if !d.data.is_empty() => Some(d.data.clone()),
        _ => None,
    });
    out
}

fn is_v4(card: &VCard) -> bool {
    card.version() == Some(VCardVersion::V4_0)
}

fn typ(t: &str) -> VCardParameter {
    VCardParameter::typ(VCardParameterValue::Text(t.to_owned()))
}

fn text_entry(name: &str, value: String) -> VCardEntry {
    VCardEntry::new(property(name)).with_value(VCardValue::Text(value))
}

fn property(name: &str) -> VCardProperty {
    match name {
        "FN" => VCardProperty::Fn,
        "NICKNAME" => VCardProperty::Nickname,
        "TITLE" => VCardProperty::Title,
        "URL" => VCardProperty::Url,
        "BDAY" => VCardProperty::Bday,
        "ANNIVERSARY" => VCardProperty::Anniversary,
        "NOTE" => VCardProperty::Note,
        other => VCardProperty::Other(other.to_owned()),
    }
}

fn date_value((y, m, d): (u16, u8, u8)) -> VCardValue {
    VCardValue::PartialDateTime(PartialDateTime {
        year: Some(y),
        month: Some(m),
        day: Some(d),
        ..PartialDateTime::default()
    })
}

/// A new entry holding `f` = `v` (for a field the stored card does not have yet).
fn new_entry(f: Field, v: &str, v4: bool) -> Option<VCardEntry> {
    use Field::*;
    let tel = |types: &[&str]| {
        let mut e = VCardEntry::new(VCardProperty::Tel).with_value(VCardValue::Text(v.to_owned()));
        for t in types {
            e.add_param(typ(t));
        }
        e
    };
    Some(match f {
        Email1 | Email2 | Email3 => {
            let e =
                VCardEntry::new(VCardProperty::Email).with_value(VCardValue::Text(v.to_owned()));
            if v4 { e } else { e.with_param(typ("INTERNET")) }
        }
        HomePhone | Home2Phone => tel(&["HOME", "VOICE"]),
        BusinessPhone | Business2Phone => tel(&["WORK", "VOICE"]),
        MobilePhone => tel(&["CELL"]),
        CarPhone => tel(&["CAR"]),
        PagerNumber => tel(&["PAGER"]),
        RadioPhone => tel(&["X-RADIO"]),
        HomeFax => tel(&["HOME", "FAX"]),
        BusinessFax => tel(&["WORK", "FAX"]),
        AssistantPhone => tel(&["X-ASSISTANT"]),
        CompanyMainPhone => tel(&["WORK", "X-COMPANY-MAIN"]),
        Mms => tel(&["X-MMS"]),
        Im1 | Im2 | Im3 => {
            let uri = if strip_scheme(v) != v {
                v.to_owned()
            } else {
                format!("xmpp:{v}")
            };
            VCardEntry::new(VCardProperty::Impp).with_value(VCardValue::Text(uri))
        }
        Birthday => {
            VCardEntry::new(VCardProperty::Bday).with_value(date_value(day_of_eas_date(v)?))
        }
        Anniversary => {
            let day = day_of_eas_date(v)?;
            if v4 {
                VCardEntry::new(VCardProperty::Anniversary).with_value(date_value(day))
            } else {
                text_entry(
                    "X-ANNIVERSARY",
                    format!("{:04}-{:02}-{:02}", day.0, day.1, day.2),
                )
            }
        }
        Spouse if v4 => VCardEntry::new(VCardProperty::Related)
            .with_param(VCardParameter::typ(VCardType::Spouse))
            .with_param(VCardParameter::value(VCardValueType::Text))
            .with_value(VCardValue::Text(v.to_owned())),
        _ => text_entry(simple_props(f).first()?, v.to_owned()),
    })
}

/// Writes `v` into an existing whole-entry slot, keeping its parameters, group and the form
/// of its value (a `tel:` or `xmpp:` prefix).
fn set_value(e: &mut VCardEntry, f: Field, v: &str) {
    let old = e
        .values
        .first()
        .and_then(|x| text_of(x, " "))
        .unwrap_or_default();
    let value = match f {
        Field::Birthday | Field::Anniversary => match day_of_eas_date(v) {
            Some(day) if matches!(e.values.first(), Some(VCardValue::PartialDateTime(_))) => {
                date_value(day)
            }
            Some((y, m, d)) => VCardValue::Text(format!("{y:04}-{m:02}-{d:02}")),
            None => return,
        },
        Field::Im1 | Field::Im2 | Field::Im3
            if strip_scheme(&old) != old && strip_scheme(v) == v =>
        {
            let scheme = &old[..old.len() - strip_scheme(&old).len()];
            VCardValue::Text(format!("{scheme}{v}"))
        }
        _ if is_phone(f) && old.starts_with("tel:") => VCardValue::Text(format!("tel:{v}")),
        Field::Email1 | Field::Email2 | Field::Email3 if old.starts_with("mailto:") => {
            VCardValue::Text(format!("mailto:{v}"))
        }
        _ => VCardValue::Text(v.to_owned()),
    };
    e.values = vec![value];
}

fn set_component(e: &mut VCardEntry, comp: usize, v: &str) {
    while e.values.len() <= comp {
        e.values.push(VCardValue::Text(String::new()));
    }
    e.values[comp] = VCardValue::Text(v.to_owned());
}

fn empty_structured(name: VCardProperty, parts: usize) -> VCardEntry {
    VCardEntry::new(name).with_values(vec![VCardValue::Text(String::new()); parts])
}

/// A display name made from the names (what `FN` holds when nothing else says).
fn display_name(c: &Contact) -> String {
    let names: Vec<&str> = [Field::FirstName, Field::MiddleName, Field::LastName]
        .into_iter()
        .filter_map(|f| c.get(f))
        .collect();
    if !names.is_empty() {
        return names.join(" ");
    }
    [
        Field::CompanyName,
        Field::NickName,
        Field::Email1,
        Field::MobilePhone,
    ]
    .into_iter()
    .find_map(|f| c.get(f))
    .unwrap_or("")
    .to_owned()
}

/// A new vCard 3.0 for a contact the phone added, with `uid`.
pub fn new_vcard(phone: &Contact, uid: &str, opts: &MergeOptions) -> VCard {
    let mut card = VCard::default();
    card.entries
        .push(VCardEntry::new(VCardProperty::Version).with_value(VCardValue::Text("3.0".into())));
    card.entries
        .push(VCardEntry::new(VCardProperty::Uid).with_value(VCardValue::Text(uid.to_owned())));
    let opts = MergeOptions {
        supported: None,
        ..opts.clone()
    };
    merge(&card, phone, &opts)
}

/// A structured property the phone may fill for the first time: its name, component count,
/// fields, their slots (entry index filled in later) and the TYPE a new one gets.
type Group = (
    VCardProperty,
    usize,
    Vec<Field>,
    Vec<Slot>,
    Option<&'static str>,
);

/// The stored card with the phone's contact merged in (see the module doc).
pub fn merge(stored: &VCard, phone: &Contact, opts: &MergeOptions) -> VCard {
    let mut card = stored.clone();
    let v4 = is_v4(&card);
    let before = from_vcard(&card);
    let ghosted = |f: Field, sent: bool| !sent && !opts.supports(f.tag());
    let changed = |f: Field| phone.get(f) != before.get(f) && !ghosted(f, phone.get(f).is_some());

    // Structured entries the phone fills for the first time.
    let mut a = assign(&card);
    let mut groups: Vec<Group> = vec![
        (
            VCardProperty::N,
            5,
            N_FIELDS.to_vec(),
            (0..5).map(|c| (0, Some(c))).collect(),
            None,
        ),
        (
            VCardProperty::Org,
            2,
            ORG_FIELDS.to_vec(),
            (0..2).map(|c| (0, Some(c))).collect(),
            None,
        ),
    ];
    for (kind, t) in [
        (AdrKind::Home, Some("HOME")),
        (AdrKind::Business, Some("WORK")),
        (AdrKind::Other, None),
    ] {
        let slots = (2..7).map(|c| (0, Some(c))).collect();
        groups.push((VCardProperty::Adr, 7, kind.fields().to_vec(), slots, t));
    }
    for (name, parts, fields, slots, t) in groups {
        if fields.iter().any(|f| a.slots.contains_key(f)) {
            continue;
        }
        if !fields.iter().any(|f| phone.get(*f).is_some()) {
            continue;
        }
        let mut e = empty_structured(name, parts);
        if let Some(t) = t {
            e.add_param(typ(t));
        }
        card.entries.push(e);
        let i = card.entries.len() - 1;
        for (f, (_, c)) in fields.into_iter().zip(slots) {
            a.slots.insert(f, (i, c));
        }
    }

    let mut remove: BTreeSet<usize> = BTreeSet::new();
    let mut added: Vec<VCardEntry> = Vec::new();
    for f in Field::ALL {
        if !changed(f) {
            continue;
        }
        let new = phone.get(f);
        match (a.slots.get(&f).copied(), new) {
            (Some((i, Some(c))), v) => set_component(&mut card.entries[i], c, v.unwrap_or("")),
            (Some((i, None)), Some(v)) => set_value(&mut card.entries[i], f, v),
            (Some((i, None)), None) => {
                remove.insert(i);
            }
            (None, Some(v)) => added.extend(new_entry(f, v, v4)),
            (None, None) => {}
        }
    }
    // An ORG or ADR emptied by the phone goes; N stays (3.0 requires it).
    for (f, (i, c)) in &a.slots {
        if c.is_some()
            && !N_FIELDS.contains(f)
            && card.entries[*i]
                .values
                .iter()
                .all(|v| text_of(v, "").is_none_or(|t| t.is_empty()))
        {
            remove.insert(*i);
        }
    }

    // Categories and children: replaced as a whole when they differ.
    if phone.categories != before.categories
        && !ghosted_list(opts, c::Categories, !phone.categories.is_empty())
    {
        remove.extend(a.categories.iter().copied());
        if !phone.categories.is_empty() {
            added.push(
                VCardEntry::new(VCardProperty::Categories).with_values(
                    phone
                        .categories
                        .iter()
                        .map(|t| VCardValue::Text(t.clone()))
                        .collect(),
                ),
            );
        }
    }
    if phone.children != before.children
        && !ghosted_list(opts, c::Children, !phone.children.is_empty())
    {
        remove.extend(a.children.iter().copied());
        for child in &phone.children {
            added.push(if v4 {
                VCardEntry::new(VCardProperty::Related)
                    .with_param(VCardParameter::typ(VCardType::Child))
                    .with_param(VCardParameter::value(VCardValueType::Text))
                    .with_value(VCardValue::Text(child.clone()))
            } else {
                text_entry("X-CHILD", child.clone())
            });
        }
    }

    // Notes: a truncated copy on the phone never shortens the stored notes.
    let keep_body = opts.body_truncated
        && match (&phone.body, &before.body) {
            (None, _) => true,
            (Some(p), Some(b)) => b.starts_with(p.as_str()),
            (Some(_), None) => false,
        };
    if phone.body != before.body
        && !keep_body
        && !ghosted_list(opts, asb::Body, phone.body.is_some())
    {
        match (a.note, &phone.body) {
            (Some(i), Some(b)) => card.entries[i].values = vec![VCardValue::Text(b.clone())],
            (Some(i), None) => {
                remove.insert(i);
            }
            (None, Some(b)) => added.push(text_entry("NOTE", b.clone())),
            (None, None) => {}
        }
    }

    // The photo: only one the phone was shown can be deleted by leaving it out.
    let shown = before
        .picture
        .as_ref()
        .filter(|p| p.len() <= opts.picture_max_bytes);
    let picture_changed = match (&phone.picture, shown) {
        (Some(p), Some(s)) => p != s,
        (Some(_), None) => true,
        (None, Some(_)) => !ghosted_list(opts, c::Picture, false),
        (None, None) => false,
    };
    if picture_changed {
        if let Some(i) = a.photo {
            remove.insert(i);
        }
        if let Some(p) = &phone.picture {
            added.push(photo_entry(p, v4));
        }
    }

    // FN: set by the phone's FileAs; made from the names when missing, or when the names
    // changed under an FN that was only made from them.
    let names_changed = N_FIELDS.iter().any(|f| changed(*f));
    let fn_slot = a.slots.get(&Field::FileAs).map(|s| s.0);
    let fn_kept = fn_slot.is_some_and(|i| !remove.contains(&i));
    let after_names = {
        let mut c = before.clone();
        for f in N_FIELDS.iter().chain(ORG_FIELDS.iter()) {
            match phone.get(*f) {
                Some(v) => c.set(*f, v),
                None if changed(*f) => {
                    c.fields.remove(f);
                }
                None => {}
            }
        }
        c
    };
    let derived = display_name(&after_names);
    if fn_kept {
        if names_changed
            && !changed(Field::FileAs)
            && before.get(Field::FileAs) == Some(display_name(&before).as_str())
            && !derived.is_empty()
        {
            let i = fn_slot.unwrap_or_default();
            card.entries[i].values = vec![VCardValue::Text(derived)];
        }
    } else if !added.iter().any(|e| e.name == VCardProperty::Fn) {
        added.push(text_entry(
            "FN",
            if derived.is_empty() {
                "-".to_owned()
            } else {
                derived
            },
        ));
    }

    let mut entries: Vec<VCardEntry> = card
        .entries
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !remove.contains(i))
        .map(|(_, e)| e)
        .collect();
    entries.extend(added);
    VCard { entries }
}

/// Whether a list-like property (categories, children, body, picture) the phone left out is
/// ghosted (not in its Supported list), and so kept.
fn ghosted_list(opts: &MergeOptions, tag: eas_wbxml::Tag, sent: bool) -> bool {
    !sent && !opts.supports(tag)
}

/// A PHOTO entry for image bytes: inline base64 (3.0) or a `data:` URI (4.0).
fn photo_entry(bytes: &[u8], v4: bool) -> VCardEntry {
    let (mime, short) = if bytes.starts_with(&[0x89, b'P', b'N', b'G']) {
        ("image/png", "PNG")
    } else if bytes.starts_with(b"GIF8") {
        ("image/gif", "GIF")
    } else {
        ("image/jpeg", "JPEG")
    };
    let data = VCardValue::Binary(Data {
        content_type: Some(mime.to_owned()),
        data: bytes.to_vec(),
    });
    let e = VCardEntry::new(VCardProperty::Photo).with_value(data);
    if v4 { e } else { e.with_param(typ(short)) }
}
