//! Differential tests against an independent codec: libwbxml 0.11 (`wbxml2xml` / `xml2wbxml`
//! from Debian's `libwbxml2-utils`).
//!
//! Three checks: libwbxml names every token of every page as we do (allowing for the spellings
//! listed below); libwbxml decodes every fixture to the tree we decode; and we decode what
//! libwbxml encodes from every XML twin (which exercises its string table and STR_T, forms our
//! own encoder never writes). The tests fail, never skip, when the tools are missing.

mod common;

use std::process::Command;

use base64::Engine as _;
use eas_wbxml::{CodePage, Content, Element, Tag};

/// Tokens libwbxml spells differently from MS-ASWBXML (16.1), as `(page, token, libwbxml name)`.
/// Every one of them is also accepted by our XML reader (`codepage::ALIASES`).
const LIBWBXML_SPELLING: &[(CodePage, u8, &str)] = &[
    (CodePage::Contacts, 0x07, "AssistantTelephoneNumber"),
    (CodePage::Contacts, 0x0D, "BusinessCity"),
    (CodePage::Contacts, 0x0E, "BusinessCountry"),
    (CodePage::Contacts, 0x0F, "BusinessPostalCode"),
    (CodePage::Contacts, 0x10, "BusinessState"),
    (CodePage::Contacts, 0x11, "BusinessStreet"),
    (CodePage::Contacts, 0x21, "HomeCity"),
    (CodePage::Contacts, 0x22, "HomeCountry"),
    (CodePage::Contacts, 0x23, "HomePostalCode"),
    (CodePage::Contacts, 0x24, "HomeState"),
    (CodePage::Contacts, 0x25, "HomeStreet"),
    (CodePage::Contacts, 0x2D, "OtherCity"),
    (CodePage::Contacts, 0x2E, "OtherCountry"),
    (CodePage::Contacts, 0x2F, "OtherPostalCode"),
    (CodePage::Contacts, 0x30, "OtherState"),
    (CodePage::Contacts, 0x31, "OtherStreet"),
    (CodePage::Email, 0x09, "AttOId"),
    (CodePage::Email, 0x19, "Reply-To"),
    (CodePage::Email, 0x1D, "DTStamp"),
    (CodePage::Email, 0x29, "Recurrence_Type"),
    (CodePage::Email, 0x2A, "Recurrence_Until"),
    (CodePage::Email, 0x2B, "Recurrence_Occurrences"),
    (CodePage::Email, 0x2C, "Recurrence_Interval"),
    (CodePage::Email, 0x2D, "Recurrence_DayOfWeek"),
    (CodePage::Email, 0x2E, "Recurrence_DayOfMonth"),
    (CodePage::Email, 0x2F, "Recurrence_WeekOfMonth"),
    (CodePage::Email, 0x30, "Recurrence_MonthOfYear"),
    (CodePage::Email, 0x3B, "FlagStatus"),
    (CodePage::Calendar, 0x05, "TimeZone"),
    (CodePage::Calendar, 0x09, "Attendee_Email"),
    (CodePage::Calendar, 0x0A, "Attendee_Name"),
    (CodePage::Calendar, 0x10, "Compressed_RTF"),
    (CodePage::Calendar, 0x11, "DTStamp"),
    (CodePage::Calendar, 0x15, "Exception_Deleted"),
    (CodePage::Calendar, 0x16, "Exception_StartTime"),
    (CodePage::Calendar, 0x19, "Organizer_Email"),
    (CodePage::Calendar, 0x1A, "Organizer_Name"),
    (CodePage::Calendar, 0x1C, "Recurrence_Type"),
    (CodePage::Calendar, 0x1D, "Recurrence_Until"),
    (CodePage::Calendar, 0x1E, "Recurrence_Occurrences"),
    (CodePage::Calendar, 0x1F, "Recurrence_Interval"),
    (CodePage::Calendar, 0x20, "Recurrence_DayOfWeek"),
    (CodePage::Calendar, 0x21, "Recurrence_DayOfMonth"),
    (CodePage::Calendar, 0x22, "Recurrence_WeekOfMonth"),
    (CodePage::Calendar, 0x23, "Recurrence_MonthOfYear"),
    (CodePage::Calendar, 0x29, "Attendee_Status"),
    (CodePage::Calendar, 0x2A, "Attendee_Type"),
    (CodePage::Tasks, 0x0D, "UTCDueDate"),
    (CodePage::Tasks, 0x10, "Recurrence_Type"),
    (CodePage::Tasks, 0x11, "Recurrence_Start"),
    (CodePage::Tasks, 0x12, "Recurrence_Until"),
    (CodePage::Tasks, 0x13, "Recurrence_Occurrences"),
    (CodePage::Tasks, 0x14, "Recurrence_Interval"),
    (CodePage::Tasks, 0x15, "Recurrence_DayOfMonth"),
    (CodePage::Tasks, 0x16, "Recurrence_DayOfWeek"),
    (CodePage::Tasks, 0x17, "Recurrence_WeekOfMonth"),
    (CodePage::Tasks, 0x18, "Recurrence_MonthOfYear"),
    (CodePage::Tasks, 0x19, "Recurrence_Regenerate"),
    (CodePage::Tasks, 0x1A, "Recurrence_DeadOccur"),
    (CodePage::Tasks, 0x1F, "UTCStartDate"),
    // The 12.0 name of this token.
    (CodePage::Provision, 0x10, "DeviceEncryptionEnabled"),
    (CodePage::Settings, 0x1F, "SmtpAddress"),
    // A typo in libwbxml's table.
    (CodePage::Settings, 0x2B, "ihsManagementInformation"),
    (CodePage::ComposeMail, 0x10, "MIME"),
    (CodePage::RightsManagement, 0x12, "RMOwner"),
];

/// Tokens libwbxml 0.11 does not know (it prints them as `<unknown>` and cannot encode them).
/// Fixture subtrees rooted at these tags are left out of the comparison; the rest is compared.
fn libwbxml_lacks(tag: Tag) -> bool {
    let t = tag.token();
    match tag.page() {
        // The whole Find page (16.1) is missing.
        CodePage::Find => true,
        // Attachment tags that only z-push/grommunio put on the Calendar page.
        CodePage::Calendar => (0x2B..=0x32).contains(&t),
        // 16.1's proposed-new-time elements.
        CodePage::MeetingResponse => t == 0x10 || t == 0x11,
        // Ping Version (z-push only), AccountOnlyRemoteWipe (16.1), ComposeMail Type (z-push).
        CodePage::Ping => t == 0x0E,
        CodePage::Provision => t == 0x3B,
        CodePage::ComposeMail => t == 0x0A,
        _ => false,
    }
}

fn libwbxml_name(tag: Tag) -> &'static str {
    LIBWBXML_SPELLING
        .iter()
        .find(|&&(p, t, _)| p == tag.page() && t == tag.token())
        .map_or(tag.name(), |&(_, _, n)| n)
}

fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: run `apt-get install -y libwbxml2-utils` \
         (scripts/test.sh installs it)"
    );
}

/// `wbxml2xml` on some bytes, compact output.
fn wbxml2xml(bytes: &[u8]) -> String {
    require("wbxml2xml");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.wbxml");
    let output = dir.path().join("out.xml");
    std::fs::write(&input, bytes).unwrap();
    run(Command::new("wbxml2xml")
        .args(["-l", "ACTIVESYNC", "-m", "0", "-o"])
        .arg(&output)
        .arg(&input));
    std::fs::read_to_string(&output).unwrap()
}

/// `xml2wbxml` on an XML text (libwbxml writes a string table by default).
fn xml2wbxml(xml: &str) -> Vec<u8> {
    require("xml2wbxml");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.xml");
    let output = dir.path().join("out.wbxml");
    std::fs::write(&input, xml).unwrap();
    run(Command::new("xml2wbxml").arg("-o").arg(&output).arg(&input));
    std::fs::read(&output).unwrap()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("libwbxml tool failed to start");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tree without the subtrees libwbxml cannot represent; `None` when the root itself is one.
fn comparable(e: &Element) -> Option<Element> {
    if libwbxml_lacks(e.tag) {
        return None;
    }
    let content = match &e.content {
        Content::Elements(c) => Content::Elements(c.iter().filter_map(comparable).collect()),
        other => other.clone(),
    };
    Some(Element {
        tag: e.tag,
        content,
    })
}

/// XML in libwbxml's own dialect: its spellings, a default namespace per page change.
fn libwbxml_xml(root: &Element) -> String {
    fn walk(e: &Element, parent: Option<CodePage>, out: &mut String) {
        let name = libwbxml_name(e.tag);
        out.push('<');
        out.push_str(name);
        if parent != Some(e.tag.page()) {
            // libwbxml matches namespaces case-sensitively and calls page 16 `Gal:`; given
            // `GAL:` it silently looks the tag up on another page.
            let ns = match e.tag.page() {
                CodePage::GAL => "Gal:".to_owned(),
                page => page.namespace(),
            };
            out.push_str(&format!(" xmlns=\"{ns}\""));
        }
        out.push('>');
        match &e.content {
            Content::Elements(c) => c.iter().for_each(|c| walk(c, Some(e.tag.page()), out)),
            Content::Text(s) => out.push_str(
                &s.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('\r', "&#13;"),
            ),
            Content::Opaque(_) => unreachable!("converted to base64 first"),
        }
        out.push_str(&format!("</{name}>"));
    }
    let mut out = String::from(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE ActiveSync PUBLIC \"-//MICROSOFT//DTD ActiveSync//EN\" \
         \"http://www.microsoft.com/\">\n",
    );
    walk(root, None, &mut out);
    out
}

/// Compares our tree with libwbxml's XML rendering of the same bytes. libwbxml prints opaque
/// data as base64 for the tags it knows to be binary (ConversationId …) and as the raw bytes for
/// the others (ItemOperations Data …), so an opaque block matches either rendering.
fn same_as_rendered(ours: &Element, theirs: &Element, path: &str) -> Result<(), String> {
    let path = format!("{path}/{:?}", ours.tag);
    if ours.tag != theirs.tag {
        return Err(format!("{path}: libwbxml has {:?}", theirs.tag));
    }
    match (&ours.content, &theirs.content) {
        (Content::Elements(a), Content::Elements(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .try_for_each(|(a, b)| same_as_rendered(a, b, &path)),
        (Content::Text(a), Content::Text(b)) if a == b => Ok(()),
        // libwbxml drops trailing whitespace from what it prints.
        (Content::Opaque(a), Content::Text(b))
            if b.trim_end().as_bytes() == a.trim_ascii_end()
                || *b == base64::engine::general_purpose::STANDARD.encode(a) =>
        {
            Ok(())
        }
        // An empty opaque block has no text to render.
        (Content::Opaque(a), Content::Elements(b)) if a.is_empty() && b.is_empty() => Ok(()),
        (a, b) => Err(format!("{path}: ours {a:?}, libwbxml {b:?}")),
    }
}

#[test]
fn libwbxml_names_every_token_as_we_do() {
    for &page in CodePage::ALL {
        // <AirSync:Sync> holding every tag of the page as an empty element.
        let mut doc = vec![0x03, 0x01, 0x6A, 0x00, 0x45, 0x00, page.number()];
        doc.extend(page.entries().iter().map(|&(token, _)| token));
        doc.push(0x01);
        let xml = wbxml2xml(&doc);
        let inner = xml.split_once("<Sync xmlns=\"AirSync:\">").unwrap().1;
        let names: Vec<&str> = inner
            .split('<')
            .filter_map(|t| t.split([' ', '/', '>']).next())
            .filter(|n| !n.is_empty())
            .take(page.entries().len())
            .collect();
        assert_eq!(names.len(), page.entries().len(), "{page:?}: {xml}");
        for (&(token, ours), theirs) in page.entries().iter().zip(names) {
            let tag = Tag::from_token(page, token).unwrap();
            let expected = if libwbxml_lacks(tag) {
                "unknown"
            } else {
                libwbxml_name(tag)
            };
            assert_eq!(theirs, expected, "{page:?} token {token:#04x} ({ours})");
            if expected != "unknown" && expected != ours {
                assert_eq!(
                    Tag::from_name_or_alias(page, expected),
                    Some(tag),
                    "libwbxml's spelling {expected} must be an accepted alias"
                );
            }
        }
    }
}

#[test]
fn libwbxml_decodes_every_fixture_to_our_tree() {
    let mut compared = 0;
    for f in common::fixtures() {
        let bytes = std::fs::read(&f.wbxml)
            .unwrap_or_else(|e| panic!("{}: {e} (run the fixtures test first)", f.name));
        let ours = Element::decode(&bytes).unwrap();
        let Some(expected) = comparable(&ours) else {
            continue; // a document libwbxml has no tags for at all (Find)
        };
        let input = if expected == ours {
            bytes
        } else {
            expected.encode()
        };
        let theirs = eas_wbxml::from_xml(&wbxml2xml(&input))
            .unwrap_or_else(|e| panic!("{}: libwbxml output unreadable: {e}", f.name));
        if let Err(e) = same_as_rendered(&expected, &theirs, "") {
            panic!("{}: {e}", f.name);
        }
        compared += 1;
    }
    assert!(compared > 20, "only {compared} fixtures compared");
}

#[test]
fn we_decode_what_libwbxml_encodes_from_every_twin() {
    let mut compared = 0;
    for f in common::fixtures() {
        let twin = eas_wbxml::from_xml(&std::fs::read_to_string(&f.xml).unwrap()).unwrap();
        let Some(expected) = comparable(&twin) else {
            continue;
        };
        let expected = common::opaque_as_base64(&expected);
        let bytes = xml2wbxml(&libwbxml_xml(&expected));
        let ours = Element::decode(&bytes)
            .unwrap_or_else(|e| panic!("{}: cannot decode libwbxml's encoding: {e}", f.name));
        assert_eq!(common::opaque_as_base64(&ours), expected, "{}", f.name);
        compared += 1;
    }
    assert!(compared > 20, "only {compared} fixtures compared");
}

#[test]
fn libwbxml_string_table_header_is_accepted() {
    let bytes = xml2wbxml(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE ActiveSync PUBLIC \"-//MICROSOFT//DTD \
         ActiveSync//EN\" \"http://www.microsoft.com/\">\n<Ping xmlns=\"Ping:\"><Status>1\
         </Status></Ping>",
    );
    let reader = eas_wbxml::Reader::new(&bytes).unwrap();
    assert_eq!(
        reader.header().public_id,
        eas_wbxml::PublicId::String("-//MICROSOFT//DTD ActiveSync//EN")
    );
}
