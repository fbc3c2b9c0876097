//! RFC 5322 messages in, EAS Email items out: every item is written with the streaming writer
//! and read back with `Element::decode`, so these tests check the WBXML a phone would get.
//!
//! The sample messages are described in `fixtures/mime/README.md`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eas_gateway::mime::attachment::split_file_reference;
use eas_gateway::mime::{
    AttachmentError, BodyPreference, BodyType, FlagState, ItemOptions, MessageMeta, MessageView,
    MimeSupport, PartPath, Version, write_application_data, write_flag_change,
};
use eas_wbxml::tags::{airsync, airsyncbase as asb, email, email2};
use eas_wbxml::{Element, Tag, Writer};
use proptest::prelude::*;

const ALL_VERSIONS: [Version; 5] = [
    Version::V12_1,
    Version::V14_0,
    Version::V14_1,
    Version::V16_0,
    Version::V16_1,
];
/// 2026-11-22T10:00:00Z.
const RECEIVED: i64 = 1_795_341_600;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/mime")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn meta(flags: &[&str]) -> MessageMeta {
    MessageMeta {
        flags: flags.iter().map(|f| f.to_string()).collect(),
        internal_date: RECEIVED,
        size: 0,
    }
}

fn pref(kind: BodyType) -> BodyPreference {
    BodyPreference::new(kind)
}

/// Writes the item inside `<ApplicationData>` and decodes the document again.
fn write_item(view: &MessageView<'_>, opts: &ItemOptions<'_>) -> Element {
    let mut w = Writer::new(Vec::new()).unwrap();
    w.start(airsync::ApplicationData).unwrap();
    write_application_data(&mut w, view, opts).unwrap();
    w.end().unwrap();
    Element::decode(&w.finish().unwrap()).expect("the item decodes")
}

fn item(raw: &[u8], version: Version, prefs: &[BodyPreference]) -> Element {
    let view = MessageView::parse(raw, meta(&["\\Seen"]));
    write_item(&view, &ItemOptions::new(version, prefs, "2:4711"))
}

fn text(e: &Element, tag: Tag) -> Option<&str> {
    e.child(tag).and_then(|c| c.text())
}

fn body(e: &Element) -> &Element {
    e.child(asb::Body).expect("every item has a Body")
}

fn names(e: &Element) -> Vec<&'static str> {
    e.children().iter().map(|c| c.tag.name()).collect()
}

#[test]
fn plain_message_in_exchange_order() {
    let raw = fixture("plain.eml");
    let e = item(&raw, Version::V14_1, &[pref(BodyType::Plain)]);
    assert_eq!(
        names(&e),
        [
            "To",
            "Cc",
            "From",
            "Subject",
            "ReplyTo",
            "DateReceived",
            "DisplayTo",
            "ThreadTopic",
            "Importance",
            "Read",
            "Body",
            "MessageClass",
            "InternetCPID",
            "Flag",
            "ContentClass",
            "NativeBodyType",
            "ConversationId",
            "ConversationIndex",
        ]
    );
    assert_eq!(
        text(&e, email::To),
        Some("\"Jane Doe\" <jane@example.com>, carol@example.net")
    );
    assert_eq!(text(&e, email::Cc), Some("\"Dave\" <dave@example.net>"));
    assert_eq!(
        text(&e, email::From),
        Some("\"Bob Example\" <bob@example.org>")
    );
    assert_eq!(text(&e, email::ReplyTo), Some("lists@example.org"));
    assert_eq!(text(&e, email::Subject), Some("Re: Lunch?"));
    assert_eq!(text(&e, email::ThreadTopic), Some("Lunch?"));
    assert_eq!(
        text(&e, email::DisplayTo),
        Some("Jane Doe; carol@example.net")
    );
    assert_eq!(
        text(&e, email::DateReceived),
        Some("2026-11-22T10:00:00.000Z")
    );
    assert_eq!(text(&e, email::Importance), Some("2"));
    assert_eq!(text(&e, email::Read), Some("1"));
    assert_eq!(text(&e, email::MessageClass), Some("IPM.Note"));
    assert_eq!(text(&e, email::InternetCPID), Some("65001"));
    assert_eq!(
        text(&e, email::ContentClass),
        Some("urn:content-classes:message")
    );
    assert_eq!(text(&e, asb::NativeBodyType), Some("1"));
    assert_eq!(e.child(email::Flag).unwrap().children(), []);
    let b = body(&e);
    assert_eq!(names(b), ["Type", "EstimatedDataSize", "Data"]);
    assert_eq!(text(b, asb::Type), Some("1"));
    let data = text(b, asb::Data).unwrap();
    assert!(data.starts_with("Noon at the café <downstairs> & then back."));
    assert_eq!(
        text(b, asb::EstimatedDataSize),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(
        e.child(email2::ConversationId)
            .unwrap()
            .opaque()
            .unwrap()
            .len(),
        16
    );
    assert_eq!(
        e.child(email2::ConversationIndex)
            .unwrap()
            .opaque()
            .unwrap()
            .len(),
        22
    );
}

#[test]
fn a_thread_shares_one_conversation_id() {
    let (plain, alternative) = (fixture("plain.eml"), fixture("alternative.eml"));
    let reply = MessageView::parse(&plain, meta(&[]));
    let root = b"Message-ID: <root@example.org>\r\nSubject: Lunch?\r\n\r\nhi\r\n";
    let root = MessageView::parse(root, meta(&[]));
    assert_eq!(reply.conversation_id(), root.conversation_id());
    let other = MessageView::parse(&alternative, meta(&[]));
    assert_ne!(other.conversation_id(), root.conversation_id());
}

#[test]
fn version_12_1_has_no_email2_categories_or_preview() {
    let raw = fixture("plain.eml");
    let view = MessageView::parse(&raw, meta(&["\\Seen", "\\Flagged", "Work", "\\Answered"]));
    let prefs = [BodyPreference {
        preview: Some(50),
        ..pref(BodyType::Plain)
    }];
    let old = write_item(&view, &ItemOptions::new(Version::V12_1, &prefs, "p"));
    for tag in [
        email2::ConversationId,
        email2::ConversationIndex,
        email2::LastVerbExecuted,
        email::Categories,
        email2::IsDraft,
    ] {
        assert!(old.child(tag).is_none(), "{tag} in 12.1");
    }
    assert!(body(&old).child(asb::Preview).is_none());
    assert_eq!(text(&old, asb::NativeBodyType), Some("1"));

    let new = write_item(&view, &ItemOptions::new(Version::V14_1, &prefs, "p"));
    assert_eq!(text(&new, email2::LastVerbExecuted), Some("1"));
    let cats: Vec<_> = new
        .child(email::Categories)
        .unwrap()
        .children_with(email::Category)
        .map(|c| c.text().unwrap())
        .collect();
    assert_eq!(cats, ["Work"]);
    assert_eq!(
        text(body(&new), asb::Preview),
        Some("Noon at the café <downstairs> & then back. -- Bob")
    );
    assert!(new.child(email2::IsDraft).is_none());

    let v16 = write_item(&view, &ItemOptions::new(Version::V16_1, &prefs, "p"));
    assert_eq!(text(&v16, email2::IsDraft), Some("0"));
    assert_eq!(names(&v16).last(), Some(&"IsDraft"));
}

#[test]
fn flags_become_read_flag_and_categories() {
    let raw = fixture("plain.eml");
    let view = MessageView::parse(
        &raw,
        meta(&["\\Flagged", "$Forwarded", "$MDNSent", "$Junk", "Family"]),
    );
    let e = write_item(
        &view,
        &ItemOptions::new(Version::V14_0, &[pref(BodyType::Plain)], "p"),
    );
    assert_eq!(text(&e, email::Read), Some("0"));
    let flag = e.child(email::Flag).unwrap();
    assert_eq!(names(flag), ["Status", "FlagType"]);
    assert_eq!(text(flag, email::Status), Some("2"));
    assert_eq!(text(&e, email2::LastVerbExecuted), Some("3"));
    let cats: Vec<_> = e
        .child(email::Categories)
        .unwrap()
        .children()
        .iter()
        .map(|c| c.text().unwrap())
        .collect();
    assert_eq!(cats, ["Family"]);
}

#[test]
fn flag_only_change() {
    let write = |flags: &FlagState, v| {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.start(airsync::ApplicationData).unwrap();
        write_flag_change(&mut w, flags, v).unwrap();
        w.end().unwrap();
        Element::decode(&w.finish().unwrap()).unwrap()
    };
    let cleared = FlagState::from_imap(&["\\Seen"]);
    let e = write(&cleared, Version::V14_1);
    assert_eq!(names(&e), ["Read", "Flag", "Categories"]);
    assert_eq!(text(&e, email::Read), Some("1"));
    // Empty elements clear what the phone has.
    assert!(e.child(email::Flag).unwrap().children().is_empty());
    assert!(e.child(email::Categories).unwrap().children().is_empty());

    let set = FlagState::from_imap(&["\\Flagged", "Work"]);
    let e = write(&set, Version::V12_1);
    assert_eq!(names(&e), ["Read", "Flag"]);
    assert_eq!(
        text(e.child(email::Flag).unwrap(), email::Status),
        Some("2")
    );
}

#[test]
fn html_only_message() {
    let raw = fixture("html-only.eml");
    let plain = item(&raw, Version::V14_1, &[pref(BodyType::Plain)]);
    assert_eq!(text(&plain, asb::NativeBodyType), Some("2"));
    assert_eq!(
        text(body(&plain), asb::Data),
        Some("Digest\n\nFirst item & second item.\n\nThird")
    );
    let html = item(&raw, Version::V14_1, &[pref(BodyType::Html)]);
    assert_eq!(text(body(&html), asb::Type), Some("2"));
    let data = text(body(&html), asb::Data).unwrap();
    assert!(data.contains("<h1>Digest</h1>"), "{data}");
}

#[test]
fn plain_only_message_as_html_is_escaped() {
    let raw = fixture("plain.eml");
    let e = item(&raw, Version::V14_1, &[pref(BodyType::Html)]);
    let data = text(body(&e), asb::Data).unwrap();
    assert!(data.starts_with("<html>"), "{data}");
    assert!(data.contains("caf\u{e9} &lt;downstairs&gt; &amp; then back.<br>"));
    assert_eq!(text(&e, asb::NativeBodyType), Some("1"));
}

#[test]
fn alternative_takes_each_format_from_its_part() {
    let raw = fixture("alternative.eml");
    let view = MessageView::parse(&raw, meta(&[]));
    assert_eq!(view.plain_text(), "Plain version of the text.");
    assert!(view.html().contains("HTML <i>version</i>"));
    assert_eq!(view.native_body_type(), BodyType::Html);
    // RTF is skipped; the next preference in the phone's order wins.
    let e = item(
        &raw,
        Version::V14_1,
        &[
            pref(BodyType::Rtf),
            pref(BodyType::Html),
            pref(BodyType::Plain),
        ],
    );
    assert_eq!(text(body(&e), asb::Type), Some("2"));
}

#[test]
fn attachments_are_listed_and_fetched() {
    let raw = fixture("attachments.eml");
    let view = MessageView::parse(&raw, meta(&[]));
    let e = write_item(
        &view,
        &ItemOptions::new(Version::V14_1, &[pref(BodyType::Html)], "2:4711"),
    );
    let list: Vec<&Element> = e
        .child(asb::Attachments)
        .expect("attachments listed")
        .children_with(asb::Attachment)
        .collect();
    assert_eq!(list.len(), 3);

    let chart = list[0];
    assert_eq!(
        names(chart),
        [
            "DisplayName",
            "FileReference",
            "Method",
            "EstimatedDataSize",
            "ContentId",
            "IsInline"
        ]
    );
    assert_eq!(text(chart, asb::DisplayName), Some("chart.png"));
    assert_eq!(text(chart, asb::FileReference), Some("2:4711:1.2"));
    assert_eq!(text(chart, asb::Method), Some("1"));
    assert_eq!(text(chart, asb::ContentId), Some("chart@example.org"));
    assert_eq!(text(chart, asb::IsInline), Some("1"));
    let png = fixture("attachment-chart.png");
    assert_eq!(
        text(chart, asb::EstimatedDataSize),
        Some(png.len().to_string().as_str())
    );

    let report = list[1];
    assert_eq!(text(report, asb::DisplayName), Some("Q3 réport.pdf"));
    assert_eq!(text(report, asb::FileReference), Some("2:4711:2"));
    assert!(report.child(asb::IsInline).is_none());
    let embedded = list[2];
    assert_eq!(
        text(embedded, asb::DisplayName),
        Some("Original figures.eml")
    );

    // The body's cid: reference and the attachment's ContentId agree.
    assert!(
        text(body(&e), asb::Data)
            .unwrap()
            .contains("cid:chart@example.org")
    );

    // ItemOperations: FileReference -> bytes, byte for byte.
    let (prefix, path) = split_file_reference("2:4711:1.2").unwrap();
    assert_eq!(prefix, "2:4711");
    let got = view.attachment(&path).unwrap();
    assert_eq!(got.content_type, "image/png");
    assert_eq!(&*got.data, &png[..]);
    let pdf = fixture("attachment-report.pdf");
    let got = view.attachment(&"2".parse().unwrap()).unwrap();
    assert_eq!(got.content_type, "application/pdf");
    assert_eq!(&*got.data, &pdf[..]);
    assert_eq!(got.range(0, 7).unwrap(), b"%PDF-1.4");
    assert_eq!(
        got.range(pdf.len() as u64 - 6, u64::MAX).unwrap(),
        b"%%EOF\n"
    );
    assert!(matches!(
        got.range(pdf.len() as u64, pdf.len() as u64 + 5),
        Err(AttachmentError::InvalidRange { .. })
    ));
    let eml = view.attachment(&"3".parse().unwrap()).unwrap();
    assert_eq!(eml.content_type, "message/rfc822");
    assert!(eml.data.starts_with(b"From: Carol"));

    // Paths that are not attachments (the body, a multipart, nothing) are not served.
    for path in ["1", "1.1", "1.1.1", "4", "9.9"] {
        let path: PartPath = path.parse().unwrap();
        assert_eq!(view.attachment(&path), Err(AttachmentError::NotFound(path)));
    }
}

#[test]
fn charsets_and_encoded_words_become_utf8() {
    let cases: [(&str, &str, &str, &str); 3] = [
        (
            "latin1.eml",
            "\"Jürgen Müller\" <jm@example.de>",
            "Grüße aus Köln",
            "Schöne Grüße aus Köln, für alle!",
        ),
        (
            "windows1252.eml",
            "shop@example.com",
            "Price €100 – “special”",
            "Only €100 – “today” only…",
        ),
        (
            "shift_jis.eml",
            "\"山田\" <yamada@example.jp>",
            "会議の予定",
            "明日の会議は十時からです。",
        ),
    ];
    for (file, from, subject, body_start) in cases {
        let e = item(&fixture(file), Version::V14_1, &[pref(BodyType::Plain)]);
        assert_eq!(text(&e, email::From), Some(from), "{file}");
        assert_eq!(text(&e, email::Subject), Some(subject), "{file}");
        let data = text(body(&e), asb::Data).unwrap();
        assert!(data.starts_with(body_start), "{file}: {data:?}");
    }
}

#[test]
fn missing_subject_and_date() {
    let raw = fixture("no-subject-no-date.eml");
    let view = MessageView::parse(&raw, meta(&[]));
    assert_eq!(view.sent_date(), RECEIVED);
    let e = write_item(
        &view,
        &ItemOptions::new(Version::V14_1, &[pref(BodyType::Plain)], "p"),
    );
    assert!(e.child(email::Subject).is_none());
    assert!(e.child(email::ThreadTopic).is_none());
    assert_eq!(
        text(&e, email::DateReceived),
        Some("2026-11-22T10:00:00.000Z")
    );
    assert_eq!(text(&e, email::Importance), Some("1"));
}

#[test]
fn malformed_mime_degrades_the_item_only() {
    let raw = fixture("malformed.eml");
    for v in ALL_VERSIONS {
        let e = item(&raw, v, &[pref(BodyType::Plain)]);
        assert_eq!(text(&e, email::From), Some("\"Nobody Really\""));
        assert_eq!(text(&e, email::Subject), Some("Broken on purpose"));
        assert!(
            text(body(&e), asb::Data)
                .unwrap()
                .contains("Text before the bad part.")
        );
    }
    let view = MessageView::parse(&raw, meta(&[]));
    // The attachment with invalid base64 is still listed and still fetchable.
    assert_eq!(view.attachments().len(), 1);
    assert!(view.attachment(&view.attachments()[0].path).is_ok());
}

#[test]
fn unparseable_bytes_become_a_raw_text_item() {
    for raw in [
        &b""[..],
        b"just some text, no headers",
        b"\xff\xfe\x00\x01binary",
    ] {
        let view = MessageView::parse(raw, meta(&[]));
        let e = write_item(
            &view,
            &ItemOptions::new(Version::V16_1, &[pref(BodyType::Html)], "p"),
        );
        assert!(text(&e, email::DateReceived).is_some());
        assert_eq!(text(&e, email::MessageClass), Some("IPM.Note"));
        assert!(body(&e).child(asb::Data).is_some());
    }
}

/// Found by the `mime_item` fuzz target: mail-parser 0.11 panics ("Invalid part ID, could not
/// find multipart") on a multipart/mixed whose first part's header block is binary junk. The
/// view contains the panic and the item falls back to the raw text.
#[test]
fn fuzz_mail_parser_invalid_part_id_panic_is_contained() {
    let raw = fixture("regress-mail-parser-invalid-part-id.eml");
    let view = MessageView::parse(&raw, meta(&[]));
    assert!(!view.is_parsed());
    let e = write_item(
        &view,
        &ItemOptions::new(Version::V14_1, &[pref(BodyType::Plain)], "p"),
    );
    assert!(
        text(body(&e), asb::Data)
            .unwrap()
            .starts_with("From: Alice")
    );
    assert!(e.child(asb::Attachments).is_none());
}

#[test]
fn mime_body_is_the_raw_message() {
    let raw = fixture("alternative.eml");
    let e = item(&raw, Version::V14_1, &[pref(BodyType::Mime)]);
    let b = body(&e);
    assert_eq!(text(b, asb::Type), Some("4"));
    assert_eq!(text(b, asb::Data).unwrap().as_bytes(), &raw[..]);
    assert_eq!(
        text(b, asb::EstimatedDataSize),
        Some(raw.len().to_string().as_str())
    );

    // 12.1 MIMESupport 2 without a Type 4 preference: MIME, cut by MIMETruncation (1 = 4 KB).
    let mut big = fixture("plain.eml");
    big.extend(b"More text for a message over four kilobytes.\r\n".repeat(100));
    let view = MessageView::parse(&big, meta(&[]));
    let prefs = [pref(BodyType::Plain)];
    let opts = ItemOptions {
        mime_support: MimeSupport::Always,
        mime_truncation: Some(1),
        ..ItemOptions::new(Version::V12_1, &prefs, "p")
    };
    let e = write_item(&view, &opts);
    let b = body(&e);
    assert_eq!(text(b, asb::Type), Some("4"));
    assert_eq!(text(b, asb::Truncated), Some("1"));
    assert_eq!(text(b, asb::Data).unwrap().len(), 4096);
}

#[test]
fn smime_is_sent_as_mime_when_asked() {
    let raw = fixture("smime-signed.eml");
    let view = MessageView::parse(&raw, meta(&[]));
    let prefs = [pref(BodyType::Mime), pref(BodyType::Html)];
    let opts = ItemOptions {
        mime_support: MimeSupport::SmimeOnly,
        ..ItemOptions::new(Version::V14_1, &prefs, "p")
    };
    let e = write_item(&view, &opts);
    assert_eq!(
        text(&e, email::MessageClass),
        Some("IPM.Note.SMIME.MultipartSigned")
    );
    assert!(
        e.child(asb::Attachments).is_none(),
        "smime.p7s is not listed"
    );
    assert_eq!(text(body(&e), asb::Type), Some("4"));

    // The same options on an ordinary message give HTML.
    let plain = fixture("plain.eml");
    let e = write_item(&MessageView::parse(&plain, meta(&[])), &opts);
    assert_eq!(text(body(&e), asb::Type), Some("2"));
}

#[test]
fn truncation_and_all_or_none() {
    let raw = fixture("shift_jis.eml");
    let full = MessageView::parse(&raw, meta(&[])).plain_text().to_owned();
    let p = BodyPreference {
        truncation_size: Some(10),
        ..pref(BodyType::Plain)
    };
    let e = item(&raw, Version::V14_1, &[p]);
    let b = body(&e);
    assert_eq!(text(b, asb::Truncated), Some("1"));
    // 10 bytes of three-byte characters: three characters, nine bytes.
    assert_eq!(text(b, asb::Data), Some("明日の"));
    assert_eq!(
        text(b, asb::EstimatedDataSize),
        Some(full.len().to_string().as_str())
    );

    let none = BodyPreference {
        all_or_none: true,
        ..p
    };
    let b = item(&raw, Version::V14_1, &[none]);
    assert_eq!(text(body(&b), asb::Truncated), Some("1"));
    assert!(body(&b).child(asb::Data).is_none());

    let fits = BodyPreference {
        truncation_size: Some(100_000),
        ..none
    };
    let b = item(&raw, Version::V14_1, &[fits]);
    assert!(body(&b).child(asb::Truncated).is_none());
    assert_eq!(text(body(&b), asb::Data), Some(full.as_str()));
}

/// A message of several megabytes: the body is cut to the limit without reading it twice
/// more than needed, and the whole item takes well under a second even unoptimised.
#[test]
fn huge_message_truncates_fast() {
    let line = "Zeile mit Umlauten äöü und 日本語 — line of text that goes on.\r\n";
    let mut raw = b"From: big@example.org\r\nTo: jane@example.com\r\nSubject: Big\r\n\
                    Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        .to_vec();
    while raw.len() < 6 * 1024 * 1024 {
        raw.extend_from_slice(line.as_bytes());
    }
    let started = Instant::now();
    let view = MessageView::parse(&raw, meta(&[]));
    let prefs = [BodyPreference {
        truncation_size: Some(32 * 1024 + 1),
        preview: Some(255),
        ..pref(BodyType::Html)
    }];
    let e = write_item(&view, &ItemOptions::new(Version::V14_1, &prefs, "p"));
    let elapsed = started.elapsed();
    let b = body(&e);
    let data = text(b, asb::Data).unwrap();
    assert!(data.len() <= 32 * 1024 + 1 && data.len() > 32 * 1024 - 4);
    assert_eq!(text(b, asb::Truncated), Some("1"));
    let estimated: usize = text(b, asb::EstimatedDataSize).unwrap().parse().unwrap();
    assert_eq!(estimated, view.html().len());
    assert!(estimated > 6 * 1024 * 1024);
    assert_eq!(text(b, asb::Preview).unwrap().chars().count(), 255);
    assert!(
        elapsed < Duration::from_secs(5),
        "a 6 MB item took {elapsed:?}"
    );
}

#[test]
fn every_fixture_writes_in_every_version() {
    let files = [
        "plain.eml",
        "html-only.eml",
        "alternative.eml",
        "attachments.eml",
        "latin1.eml",
        "windows1252.eml",
        "shift_jis.eml",
        "malformed.eml",
        "no-subject-no-date.eml",
        "smime-signed.eml",
    ];
    let prefs = [
        [pref(BodyType::Plain)],
        [pref(BodyType::Html)],
        [pref(BodyType::Mime)],
        [pref(BodyType::Rtf)],
    ];
    for file in files {
        let raw = fixture(file);
        for v in ALL_VERSIONS {
            for p in &prefs {
                let e = item(&raw, v, p);
                assert!(text(&e, email::DateReceived).is_some(), "{file} {v}");
                assert!(text(&e, email::Importance).is_some(), "{file} {v}");
            }
        }
    }
}

/// Mail-shaped noise: header lines, boundaries, encodings and charsets in random order, so the
/// parser's MIME paths are reached, not only its "no headers" exit.
fn mimeish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"Content-Type: multipart/mixed; boundary=\"b\"\r\n".to_vec()),
        Just(b"Content-Type: multipart/alternative; boundary=b\r\n".to_vec()),
        Just(b"Content-Type: text/html; charset=shift_jis\r\n".to_vec()),
        Just(b"Content-Type: text/plain; charset=iso-2022-jp\r\n".to_vec()),
        Just(b"Content-Type: message/rfc822\r\n".to_vec()),
        Just(b"Content-Type: image/png; name==?utf-8?b?w6k=?=\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec()),
        Just(b"Content-ID: <x@y>\r\n".to_vec()),
        Just(b"Subject: =?utf-8?q?=E2=82=AC?= re: fwd:\r\n".to_vec()),
        Just(b"From: \"a\\\" b\" <a@b>, ,<\r\n".to_vec()),
        Just(b"References: <r@x>\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"--b\r\n".to_vec()),
        Just(b"--b--\r\n".to_vec()),
        Just(b"<p>x&amp;<br><script>".to_vec()),
        Just(b"=C3=A9=\r\n".to_vec()),
        Just(b"QUJDRA==\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

fn any_pref() -> impl Strategy<Value = BodyPreference> {
    (
        1u8..=4,
        proptest::option::of(0u32..300),
        any::<bool>(),
        proptest::option::of(0u32..300),
    )
        .prop_map(
            |(kind, truncation_size, all_or_none, preview)| BodyPreference {
                kind: BodyType::from_code(kind).unwrap(),
                truncation_size,
                all_or_none,
                preview,
            },
        )
}

fn check_item(raw: &[u8], version_index: usize, p: BodyPreference, mime_support: u8) {
    let view = MessageView::parse(
        raw,
        MessageMeta {
            flags: vec!["\\Seen".into(), "kw".into()],
            internal_date: i64::from(raw.len() as u32) * 1000,
            size: raw.len() as u64,
        },
    );
    let prefs = [p];
    let opts = ItemOptions {
        mime_support: MimeSupport::from_code(mime_support),
        ..ItemOptions::new(ALL_VERSIONS[version_index], &prefs, "1:2")
    };
    let e = write_item(&view, &opts);
    let b = body(&e);
    // MIMESupport may have replaced the preference with MIME and its own limit.
    let same_type = text(b, asb::Type) == Some(p.kind.code().to_string().as_str());
    if let (true, Some(limit), Some(data)) = (same_type, p.truncation_size, text(b, asb::Data)) {
        assert!(data.len() <= limit as usize);
    }
    for a in view.attachments() {
        let reference = a.file_reference("1:2");
        let (_, path) = split_file_reference(&reference).unwrap();
        assert!(view.attachment(&path).is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn html_helpers_are_total(html in "(<[a-zA-Z/!]{0,8}|[^<]{0,20}|&#?[a-z0-9]{0,6};?|>|\"|charset=)*") {
        let _ = eas_gateway::mime::html::html_to_text(&html);
        let _ = eas_gateway::mime::html::declare_utf8(&html);
    }

    #[test]
    fn random_bytes_always_make_an_item(
        raw in proptest::collection::vec(any::<u8>(), 0..2048),
        v in 0usize..5,
        p in any_pref(),
        mime in 0u8..4,
    ) {
        check_item(&raw, v, p, mime);
    }

    #[test]
    fn mime_shaped_noise_always_makes_an_item(
        raw in mimeish(),
        v in 0usize..5,
        p in any_pref(),
        mime in 0u8..4,
    ) {
        check_item(&raw, v, p, mime);
    }
}
