//! The address book behind GAL search, Find's GAL part and ResolveRecipients: a vCard or CSV
//! file the administrator maintains (`[directory] source`), or none at all.
//!
//! Owns reading those files and matching names against them the way Exchange's ambiguous-name
//! resolution does (every word of the query is the start of a name, an alias or an address).
//! The file is read again when its modification time or size changes, so an edit is seen
//! without a restart. Knows nothing of EAS elements, IMAP or HTTP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Why the directory file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot read directory file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("directory file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("directory.source must be none, vcard:PATH or csv:PATH, not {0:?}")]
    Source(String),
}

/// One person (or shared mailbox) in the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub display_name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The first address is the primary one.
    pub emails: Vec<String>,
    pub phone: Option<String>,
    pub mobile_phone: Option<String>,
    pub home_phone: Option<String>,
    pub office: Option<String>,
    pub title: Option<String>,
    pub company: Option<String>,
    pub alias: Option<String>,
    /// The photo's bytes (JPEG or PNG as given).
    pub photo: Option<Vec<u8>>,
}

impl Entry {
    pub fn primary_email(&self) -> Option<&str> {
        self.emails.first().map(String::as_str)
    }

    /// The alias as given, else the local part of the primary address.
    pub fn alias_or_local_part(&self) -> Option<&str> {
        self.alias
            .as_deref()
            .or_else(|| self.primary_email().and_then(|e| e.split('@').next()))
    }

    /// Gives a card without a display name one (first and last name, else the address);
    /// false when there is nothing to show at all.
    fn complete(&mut self) -> bool {
        if self.display_name.is_empty() {
            let joined = [self.first_name.as_deref(), self.last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            self.display_name = if joined.is_empty() {
                self.primary_email().unwrap_or("").to_owned()
            } else {
                joined
            };
        }
        !self.display_name.is_empty() || !self.emails.is_empty()
    }

    /// Lower-cased strings a query word may be the start of.
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        let mut add_words = |s: &str| {
            let lower = s.to_lowercase();
            keys.extend(lower.split_whitespace().map(str::to_owned));
        };
        add_words(&self.display_name);
        for s in [&self.first_name, &self.last_name, &self.alias]
            .into_iter()
            .flatten()
        {
            add_words(s);
        }
        for e in &self.emails {
            keys.push(e.to_lowercase());
        }
        keys
    }
}

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

/// How one name given to ResolveRecipients turned out.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Exactly one entry.
    Resolved(Box<Entry>),
    /// Several candidates (all of them, best first); the caller shows at most its limit.
    Ambiguous(Vec<Entry>),
    NotFound,
}

/// The loaded directory, re-read when its file changes.
pub struct Directory {
    source: Source,
    cache: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    stamp: Option<(SystemTime, u64)>,
    entries: Arc<Vec<Entry>>,
}

impl Directory {
    pub fn new(source: Source) -> Directory {
        Directory {
            source,
            cache: Mutex::new(Cached::default()),
        }
    }

    /// A directory with no source: every lookup finds nobody.
    pub fn none() -> Directory {
        Directory::new(Source::None)
    }

    pub fn is_configured(&self) -> bool {
        self.source != Source::None
    }

    /// Every entry, in file order; reads the file again if it changed since the last call.
    pub fn entries(&self) -> Result<Arc<Vec<Entry>>, DirectoryError> {
        let Some(path) = self.source.path() else {
            return Ok(Arc::new(Vec::new()));
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
            cache.entries = Arc::new(entries);
            cache.stamp = Some(stamp);
        }
        Ok(cache.entries.clone())
    }

    /// Entries matching a GAL query, ordered by display name. Every word of the query must be
    /// the start of one of the entry's names, its alias or one of its addresses.
    pub fn search(&self, query: &str) -> Result<Vec<Entry>, DirectoryError> {
        let words: Vec<String> = query
            .to_lowercase()
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let entries = self.entries()?;
        let mut found: Vec<Entry> = entries
            .iter()
            .filter(|e| {
                let keys = e.keys();
                words
                    .iter()
                    .all(|w| keys.iter().any(|k| k.starts_with(w.as_str())))
            })
            .cloned()
            .collect();
        found.sort_by_cached_key(|e| e.display_name.to_lowercase());
        Ok(found)
    }

    /// Resolves one recipient as a phone typed it: an address (alone or as `Name <addr>`)
    /// must match one of an entry's addresses exactly; a name resolves when it names one
    /// entry exactly or only one entry matches it.
    pub fn resolve(&self, to: &str) -> Result<Resolution, DirectoryError> {
        let to = to.trim();
        if to.is_empty() {
            return Ok(Resolution::NotFound);
        }
        if let Some(address) = address_in(to) {
            let entries = self.entries()?;
            let hit = entries
                .iter()
                .find(|e| e.emails.iter().any(|m| m.eq_ignore_ascii_case(address)));
            return Ok(match hit {
                Some(e) => Resolution::Resolved(Box::new(e.clone())),
                None => Resolution::NotFound,
            });
        }
        let mut found = self.search(to)?;
        let exact: Vec<usize> = found
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.display_name.eq_ignore_ascii_case(to)
                    || e.alias
                        .as_deref()
                        .is_some_and(|a| a.eq_ignore_ascii_case(to))
            })
            .map(|(i, _)| i)
            .collect();
        Ok(match (found.len(), exact.as_slice()) {
            (0, _) => Resolution::NotFound,
            (1, _) => Resolution::Resolved(Box::new(found.remove(0))),
            (_, [only]) => Resolution::Resolved(Box::new(found.swap_remove(*only))),
            _ => Resolution::Ambiguous(found),
        })
    }
}

/// The address in `addr`, `<addr>` or `Name <addr>`, if the text is one.
fn address_in(s: &str) -> Option<&str> {
    let inner = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let inner = inner.trim();
    let (local, domain) = inner.split_once('@')?;
    (!local.is_empty() && !domain.is_empty() && !inner.contains(char::is_whitespace))
        .then_some(inner)
}

/// Parses every `BEGIN:VCARD` … `END:VCARD` block (vCard 2.1 with QUOTED-PRINTABLE and
/// CHARSET, 3.0 and 4.0) with `calcard`, the library the contacts mapping uses too.
pub fn parse_vcards(text: &str) -> Result<Vec<Entry>, String> {
    use calcard::vcard::{VCardParameterName, VCardProperty};

    let mut out = Vec::new();
    let mut parser = calcard::Parser::new(text);
    loop {
        let card = match parser.entry() {
            calcard::Entry::VCard(card) => card,
            calcard::Entry::Eof => break,
            // Calendars and stray lines are not people; a card cut short is an error.
            calcard::Entry::ICalendar(_) | calcard::Entry::InvalidLine(_) => continue,
            other => return Err(format!("not a vCard file: {other:?}")),
        };
        let mut e = Entry::default();
        let set = |slot: &mut Option<String>, v: Option<String>| {
            if let Some(v) = v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                slot.get_or_insert(v);
            }
        };
        for p in &card.entries {
            let texts: Vec<&str> = p.values.iter().filter_map(|v| v.as_text()).collect();
            let first = texts.first().map(|t| (*t).to_owned());
            let types: Vec<String> = p
                .params
                .iter()
                .filter(|x| x.name == VCardParameterName::Type)
                .filter_map(|x| x.value.as_text().map(str::to_ascii_uppercase))
                .flat_map(|t| t.split(',').map(str::to_owned).collect::<Vec<_>>())
                .collect();
            let has_type = |t: &str| types.iter().any(|x| x == t);
            match &p.name {
                VCardProperty::Fn => e.display_name = texts.join(",").trim().to_owned(),
                VCardProperty::N => {
                    set(&mut e.last_name, first);
                    set(&mut e.first_name, texts.get(1).map(|t| (*t).to_owned()));
                }
                VCardProperty::Email => {
                    let v = first.unwrap_or_default();
                    let v = v.trim().trim_start_matches("mailto:").to_owned();
                    if v.is_empty() {
                        continue;
                    }
                    let pref = has_type("PREF")
                        || p.params.iter().any(|x| x.name == VCardParameterName::Pref);
                    if pref {
                        e.emails.insert(0, v);
                    } else {
                        e.emails.push(v);
                    }
                }
                VCardProperty::Tel => {
                    let v = first.map(|v| v.trim().trim_start_matches("tel:").to_owned());
                    if has_type("CELL") {
                        set(&mut e.mobile_phone, v);
                    } else if has_type("HOME") {
                        set(&mut e.home_phone, v);
                    } else {
                        set(&mut e.phone, v);
                    }
                }
                VCardProperty::Org => set(&mut e.company, first),
                VCardProperty::Title => set(&mut e.title, Some(texts.join(","))),
                VCardProperty::Nickname => set(&mut e.alias, first),
                VCardProperty::Photo if e.photo.is_none() => {
                    // Inline data only (base64 or a data: URI); links are not fetched.
                    e.photo = p
                        .values
                        .iter()
                        .find_map(|v| v.as_binary())
                        .map(|d| d.data.clone())
                        .filter(|d| !d.is_empty());
                }
                VCardProperty::Other(name)
                    if name.eq_ignore_ascii_case("X-OFFICE")
                        || name.eq_ignore_ascii_case("X-MS-OL-OFFICE") =>
                {
                    set(&mut e.office, first)
                }
                _ => {}
            }
        }
        if e.complete() {
            out.push(e);
        }
    }
    Ok(out)
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
                n if n.starts_with("email") || n == "e mail" => e.emails.extend(
                    v.split([';', ','])
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned),
                ),
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
        // A card cut short at the end of the file is read as far as it goes.
        assert_eq!(
            parse_vcards("BEGIN:VCARD\nFN:x\n").unwrap()[0].display_name,
            "x"
        );
        // 2.1 with QUOTED-PRINTABLE and a legacy charset.
        let old = parse_vcards(
            "BEGIN:VCARD\r\nVERSION:2.1\r\nFN;CHARSET=ISO-8859-1;ENCODING=QUOTED-PRINTABLE:J=FCrgen M=FCller\r\n\
             EMAIL;PREF;INTERNET:j@example.de\r\nEND:VCARD\r\n",
        )
        .unwrap();
        assert_eq!(old[0].display_name, "Jürgen Müller");
        assert_eq!(old[0].primary_email(), Some("j@example.de"));
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

    #[test]
    fn search_matches_word_starts_of_names_aliases_and_addresses() {
        let (_d, dir) = dir(CARDS, false);
        let names = |q: &str| -> Vec<String> {
            dir.search(q)
                .unwrap()
                .into_iter()
                .map(|e| e.display_name)
                .collect()
        };
        assert_eq!(names("ali"), vec!["Alice Example", "Alicia Keys"]);
        assert_eq!(names("alice ex"), vec!["Alice Example"]);
        assert_eq!(names("ALICE.WORK@"), vec!["Alice Example"]);
        assert_eq!(names("smi"), vec!["Bob Smith"]);
        assert!(names("xyz").is_empty());
        assert!(names("  ").is_empty());
    }

    #[test]
    fn resolve_distinguishes_unique_ambiguous_and_unknown() {
        let (_d, dir) = dir(CARDS, false);
        let name = |r: Resolution| match r {
            Resolution::Resolved(e) => e.display_name,
            other => format!("{other:?}"),
        };
        assert_eq!(
            name(dir.resolve("Bob <BOB@example.org>").unwrap()),
            "Bob Smith"
        );
        assert_eq!(
            dir.resolve("nobody@example.org").unwrap(),
            Resolution::NotFound
        );
        assert_eq!(name(dir.resolve("bob").unwrap()), "Bob Smith");
        assert_eq!(name(dir.resolve("ali").unwrap()), "Alice Example");
        assert!(matches!(dir.resolve("alic").unwrap(), Resolution::Ambiguous(v) if v.len() == 2));
        assert_eq!(dir.resolve("zed").unwrap(), Resolution::NotFound);
    }

    #[test]
    fn an_edited_file_is_read_again_and_no_source_finds_nobody() {
        let (d, dir) = dir("email,name\na@x.org,A\n", true);
        assert_eq!(dir.entries().unwrap().len(), 1);
        std::fs::write(
            d.path().join("people"),
            "email,name\na@x.org,A\nb@x.org,B\n",
        )
        .unwrap();
        assert_eq!(dir.entries().unwrap().len(), 2);
        assert!(Directory::none().search("a").unwrap().is_empty());
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
