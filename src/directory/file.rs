//! The file source: a vCard or CSV file the administrator maintains (`[directory] source`).
//!
//! Owns reading those files; the file is read again when its modification time or size
//! changes, so an edit is seen without a restart. vCards are read with `calcard` (2.1, 3.0
//! and 4.0); CSV with its own small RFC 4180 reader, since only the header's names matter.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use calcard::vcard::{VCard, VCardEntry, VCardParameterName, VCardProperty, VCardType};

use super::{DirectoryError, Entries, Entry, split_addresses};

/// Where entries come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    None,
    VCard(PathBuf),
    Csv(PathBuf),
}

impl Source {
    /// `none`, `vcard:PATH` or `csv:PATH`.
    pub fn parse(s: &str) -> Result<Source, DirectoryError> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(Source::None);
        }
        match s.split_once(':') {
            Some((kind, path)) if kind.eq_ignore_ascii_case("vcard") && !path.is_empty() => {
                Ok(Source::VCard(path.into()))
            }
            Some((kind, path)) if kind.eq_ignore_ascii_case("csv") && !path.is_empty() => {
                Ok(Source::Csv(path.into()))
            }
            _ => Err(DirectoryError::Source(s.to_owned())),
        }
    }

    fn path(&self) -> Option<&Path> {
        match self {
            Source::None => None,
            Source::VCard(p) | Source::Csv(p) => Some(p),
        }
    }
}

/// A loaded file, re-read when it changes.
pub struct FileSource {
    source: Source,
    cache: Mutex<Cached>,
}

struct Cached {
    stamp: Option<(SystemTime, u64)>,
    entries: Arc<Entries>,
}

impl Default for Cached {
    fn default() -> Self {
        Cached {
            stamp: None,
            entries: Arc::new(Entries::new(Vec::new())),
        }
    }
}

impl FileSource {
    pub fn new(source: Source) -> FileSource {
        FileSource {
            source,
            cache: Mutex::new(Cached::default()),
        }
    }

    pub fn name(&self) -> String {
        match &self.source {
            Source::None => "none".into(),
            Source::VCard(p) => format!("vcard:{}", p.display()),
            Source::Csv(p) => format!("csv:{}", p.display()),
        }
    }

    /// Every entry, in file order; reads the file again if it changed since the last call.
    pub fn entries(&self) -> Result<Arc<Entries>, DirectoryError> {
        let Some(path) = self.source.path() else {
            return Ok(Arc::new(Entries::new(Vec::new())));
        };
        let read_err = |source| DirectoryError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let stamp = (meta.modified().map_err(read_err)?, meta.len());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.stamp != Some(stamp) {
            let bytes = std::fs::read(path).map_err(read_err)?;
            let text = String::from_utf8_lossy(&bytes);
            let entries = match &self.source {
                Source::VCard(_) => parse_vcards(&text),
                Source::Csv(_) => parse_csv(&text),
                Source::None => Ok(Vec::new()),
            }
            .map_err(|message| DirectoryError::Parse {
                path: path.to_owned(),
                message,
            })?;
            tracing::info!(path = %path.display(), entries = entries.len(), "directory loaded");
            cache.entries = Arc::new(Entries::new(entries));
            cache.stamp = Some(stamp);
        }
        Ok(cache.entries.clone())
    }
}

/// Parses every `BEGIN:VCARD` … `END:VCARD` block (vCard 2.1, 3.0 and 4.0).
pub fn parse_vcards(text: &str) -> Result<Vec<Entry>, String> {
    // calcard forgives a card cut short; a directory file cut short is a mistake to report.
    let marker = |line: &str, what: &str| {
        line.trim()
            .trim_start_matches('\u{feff}')
            .eq_ignore_ascii_case(what)
    };
    let begins = text.lines().filter(|l| marker(l, "BEGIN:VCARD")).count();
    let ends = text.lines().filter(|l| marker(l, "END:VCARD")).count();
    if begins != ends {
        return Err("a card has no END:VCARD".into());
    }
    let mut parser = calcard::Parser::new(text);
    let mut out = Vec::new();
    loop {
        match parser.entry() {
            calcard::Entry::VCard(card) => {
                let mut e = entry_of(&card);
                if e.complete() {
                    out.push(e);
                }
            }
            calcard::Entry::Eof => return Ok(out),
            // Anything else in the file (a calendar, a stray line) is not an address book's.
            calcard::Entry::ICalendar(_) | calcard::Entry::InvalidLine(_) => {}
            calcard::Entry::UnterminatedComponent(what) => {
                return Err(format!("a {what} is never closed (no END line)"));
            }
            other => return Err(format!("not a vCard file: {other:?}")),
        }
    }
}

fn text_of(p: &VCardEntry) -> Option<String> {
    let t = p
        .values
        .iter()
        .filter_map(|v| v.as_text())
        .collect::<Vec<_>>()
        .join(",");
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// The `n`th component of a structured value (`N`, `ORG`).
fn component(p: &VCardEntry, n: usize) -> Option<String> {
    let v = p.values.get(n)?;
    let t = match v {
        calcard::vcard::VCardValue::Component(parts) => parts.first()?.clone(),
        other => other.as_text()?.to_owned(),
    };
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn has_type(p: &VCardEntry, wanted: &VCardType) -> bool {
    p.parameters(&VCardParameterName::Type)
        .any(|v| matches!(v.as_type(), Some(calcard::common::IanaType::Iana(t)) if t == wanted))
}

fn preferred(p: &VCardEntry) -> bool {
    p.parameters(&VCardParameterName::Pref).next().is_some()
        || p.parameters(&VCardParameterName::Type).any(|v| {
            matches!(v.as_type(), Some(calcard::common::IanaType::Other(t)) if t.eq_ignore_ascii_case("pref"))
        })
}

fn entry_of(card: &VCard) -> Entry {
    let mut e = Entry::default();
    let set = |slot: &mut Option<String>, v: Option<String>| {
        if slot.is_none() {
            *slot = v;
        }
    };
    for p in &card.entries {
        match &p.name {
            VCardProperty::Fn => e.display_name = text_of(p).unwrap_or_default(),
            VCardProperty::N => {
                set(&mut e.last_name, component(p, 0));
                set(&mut e.first_name, component(p, 1));
            }
            VCardProperty::Email => {
                if let Some(v) = text_of(p) {
                    let v = v.trim_start_matches("mailto:").to_owned();
                    if preferred(p) {
                        e.emails.insert(0, v);
                    } else {
                        e.emails.push(v);
                    }
                }
            }
            VCardProperty::Tel => {
                let v = text_of(p).map(|v| v.trim_start_matches("tel:").to_owned());
                if has_type(p, &VCardType::Cell) {
                    set(&mut e.mobile_phone, v);
                } else if has_type(p, &VCardType::Home) {
                    set(&mut e.home_phone, v);
                } else {
                    set(&mut e.phone, v);
                }
            }
            VCardProperty::Org => set(&mut e.company, component(p, 0)),
            VCardProperty::Title => set(&mut e.title, text_of(p)),
            VCardProperty::Nickname => set(
                &mut e.alias,
                p.values
                    .first()
                    .and_then(|v| v.as_text())
                    .map(|t| t.trim().to_owned()),
            ),
            VCardProperty::Other(name)
                if name.eq_ignore_ascii_case("X-OFFICE")
                    || name.eq_ignore_ascii_case("X-MS-OL-OFFICE") =>
            {
                set(&mut e.office, text_of(p))
            }
            // Photos given only as a link are not fetched.
            VCardProperty::Photo if e.photo.is_none() => {
                e.photo = p
                    .values
                    .iter()
                    .find_map(|v| v.as_binary())
                    .map(|d| d.data.clone());
            }
            _ => {}
        }
    }
    e
}

/// Parses a CSV file with a header row (RFC 4180 quoting). Columns are recognised by name,
/// case-insensitively: `display name`/`name`, `first name`, `last name`, `email` (also
/// `email2`, `email3`, …; one cell may list several addresses separated by `;`), `phone`,
/// `mobile`, `home phone`, `office`, `title`, `company`, `alias`. Other columns are ignored.
pub fn parse_csv(text: &str) -> Result<Vec<Entry>, String> {
    let rows = csv_rows(text)?;
    let mut rows = rows.into_iter();
    let Some(header) = rows.next() else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = header
        .iter()
        .map(|h| {
            h.trim()
                .trim_start_matches('\u{feff}')
                .to_ascii_lowercase()
                .replace(['_', '-'], " ")
        })
        .collect();
    if !names
        .iter()
        .any(|n| n.starts_with("email") || n == "e mail")
    {
        return Err("the header row has no email column".into());
    }
    let mut out = Vec::new();
    for row in rows {
        if row.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let mut e = Entry::default();
        for (name, cell) in names.iter().zip(row.iter()) {
            let v = cell.trim();
            if v.is_empty() {
                continue;
            }
            let some = || Some(v.to_owned());
            match name.as_str() {
                "display name" | "name" | "full name" => e.display_name = v.to_owned(),
                "first name" | "given name" => e.first_name = some(),
                "last name" | "surname" | "family name" => e.last_name = some(),
                n if n.starts_with("email") || n == "e mail" => e.emails.extend(split_addresses(v)),
                "phone" | "business phone" | "work phone" | "telephone" => e.phone = some(),
                "mobile" | "mobile phone" | "cell" | "cell phone" => e.mobile_phone = some(),
                "home phone" => e.home_phone = some(),
                "office" => e.office = some(),
                "title" | "job title" => e.title = some(),
                "company" | "organization" | "organisation" => e.company = some(),
                "alias" | "nickname" => e.alias = some(),
                _ => {}
            }
        }
        if e.complete() {
            out.push(e);
        }
    }
    Ok(out)
}

fn csv_rows(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    cell.push(c);
                }
                _ => cell.push(c),
            }
            continue;
        }
        match c {
            '"' if cell.trim().is_empty() => {
                cell.clear();
                quoted = true;
            }
            ',' => row.push(std::mem::take(&mut cell)),
            '\r' => {}
            '\n' => {
                line += 1;
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            _ => cell.push(c),
        }
    }
    if quoted {
        return Err(format!("line {line}: a quoted cell is never closed"));
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod test {
    use super::super::{Directory, Resolution};
    use super::*;

    const CARDS: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Alice Example\r\nN:Example;Alice;;;\r\n\
EMAIL;TYPE=INTERNET:alice.work@example.org\r\nEMAIL;TYPE=INTERNET,PREF:alice@example.org\r\n\
TEL;TYPE=CELL:+1 555 0100\r\nTEL;TYPE=WORK:+1 555 0101\r\nORG:Example Ltd;Sales\r\n\
TITLE:Head of\\, well\\, things\r\nNICKNAME:ali\r\nPHOTO;ENCODING=b;TYPE=JPEG:/9j/4A\r\n AB\r\n\
END:VCARD\r\nBEGIN:VCARD\r\nVERSION:4.0\r\nN:Smith;Bob;;;\r\nEMAIL:bob@example.org\r\n\
END:VCARD\r\nBEGIN:VCARD\r\nFN:Alicia Keys\r\nEMAIL:alicia@example.net\r\nEND:VCARD\r\n";

    fn dir(text: &str, csv: bool) -> (tempfile::TempDir, Directory) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("people");
        std::fs::write(&p, text).unwrap();
        let source = if csv {
            Source::Csv(p)
        } else {
            Source::VCard(p)
        };
        (d, Directory::new(source))
    }

    #[test]
    fn vcards_are_read_with_folding_escapes_and_preferences() {
        let entries = parse_vcards(CARDS).unwrap();
        assert_eq!(entries.len(), 3);
        let a = &entries[0];
        assert_eq!(a.display_name, "Alice Example");
        assert_eq!(
            a.emails,
            vec!["alice@example.org", "alice.work@example.org"]
        );
        assert_eq!(a.mobile_phone.as_deref(), Some("+1 555 0100"));
        assert_eq!(a.phone.as_deref(), Some("+1 555 0101"));
        assert_eq!(a.company.as_deref(), Some("Example Ltd"));
        assert_eq!(a.title.as_deref(), Some("Head of, well, things"));
        assert_eq!(a.alias.as_deref(), Some("ali"));
        assert_eq!(
            a.photo.as_deref(),
            Some(&[0xff, 0xd8, 0xff, 0xe0, 0, 1][..])
        );
        assert_eq!(entries[1].display_name, "Bob Smith");
        assert!(parse_vcards("BEGIN:VCARD\nFN:x\n").is_err());
    }

    #[test]
    fn csv_is_read_with_quotes_and_several_addresses() {
        let text = "Display Name,Email,Mobile,Company\n\"Doe, Jane\",\"jane@example.org; j@example.org\",+1 2,\"A \"\"B\"\" C\"\n\n,carl@example.org,,\n";
        let e = parse_csv(text).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].display_name, "Doe, Jane");
        assert_eq!(e[0].emails, vec!["jane@example.org", "j@example.org"]);
        assert_eq!(e[0].company.as_deref(), Some("A \"B\" C"));
        assert_eq!(e[1].display_name, "carl@example.org");
        assert!(parse_csv("name,phone\nx,1\n").is_err());
        assert!(parse_csv("email\n\"open\n").is_err());
    }

    async fn names(dir: &Directory, q: &str) -> Vec<String> {
        dir.search(q, None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.display_name)
            .collect()
    }

    #[tokio::test]
    async fn search_matches_word_starts_of_names_aliases_and_addresses() {
        let (_d, dir) = dir(CARDS, false);
        assert_eq!(
            names(&dir, "ali").await,
            vec!["Alice Example", "Alicia Keys"]
        );
        assert_eq!(names(&dir, "alice ex").await, vec!["Alice Example"]);
        assert_eq!(names(&dir, "ALICE.WORK@").await, vec!["Alice Example"]);
        assert_eq!(names(&dir, "smi").await, vec!["Bob Smith"]);
        assert!(names(&dir, "xyz").await.is_empty());
        assert!(names(&dir, "  ").await.is_empty());
    }

    #[tokio::test]
    async fn resolve_distinguishes_unique_ambiguous_and_unknown() {
        let (_d, dir) = dir(CARDS, false);
        let name = |r: Resolution| match r {
            Resolution::Resolved(e) => e.display_name,
            other => format!("{other:?}"),
        };
        assert_eq!(
            name(dir.resolve("Bob <BOB@example.org>", None).await.unwrap()),
            "Bob Smith"
        );
        assert_eq!(
            dir.resolve("nobody@example.org", None).await.unwrap(),
            Resolution::NotFound
        );
        assert_eq!(name(dir.resolve("bob", None).await.unwrap()), "Bob Smith");
        assert_eq!(
            name(dir.resolve("ali", None).await.unwrap()),
            "Alice Example"
        );
        assert!(
            matches!(dir.resolve("alic", None).await.unwrap(), Resolution::Ambiguous(v) if v.len() == 2)
        );
        assert_eq!(
            dir.resolve("zed", None).await.unwrap(),
            Resolution::NotFound
        );
    }

    #[tokio::test]
    async fn an_edited_file_is_read_again_and_no_source_finds_nobody() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("people"), "email,name\na@x.org,A\n").unwrap();
        let file = FileSource::new(Source::Csv(d.path().join("people")));
        assert_eq!(file.entries().unwrap().len(), 1);
        std::fs::write(
            d.path().join("people"),
            "email,name\na@x.org,A\nb@x.org,B\n",
        )
        .unwrap();
        assert_eq!(file.entries().unwrap().len(), 2);
        assert!(
            Directory::none()
                .search("a", None)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(Source::parse("none").unwrap(), Source::None);
        assert!(Source::parse("ldap://x").is_err());
        assert_eq!(
            Source::parse("csv:/etc/p.csv").unwrap(),
            Source::Csv("/etc/p.csv".into())
        );
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn quote(cell: &str) -> String {
            format!("\"{}\"", cell.replace('"', "\"\""))
        }

        proptest! {
            #[test]
            fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
                let _ = parse_vcards(&text);
                let _ = parse_csv(&text);
            }

            #[test]
            fn quoted_csv_cells_come_back_as_written(
                rows in proptest::collection::vec(("[^\r]{0,30}", "[a-z]{1,8}@[a-z]{1,8}\\.org"), 1..20)
            ) {
                let mut text = String::from("Display Name,Email\r\n");
                for (name, email) in &rows {
                    text.push_str(&format!("{},{}\r\n", quote(name), email));
                }
                let entries = parse_csv(&text).unwrap();
                prop_assert_eq!(entries.len(), rows.len());
                for (e, (name, email)) in entries.iter().zip(&rows) {
                    let shown = if name.trim().is_empty() { email.as_str() } else { name.trim() };
                    prop_assert_eq!(e.display_name.as_str(), shown);
                    prop_assert_eq!(&e.emails, &vec![email.clone()]);
                }
            }
        }
    }
}
