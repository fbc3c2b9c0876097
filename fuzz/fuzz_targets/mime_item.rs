//! Arbitrary bytes as a message from the IMAP store. Turning it into an Email item must never
//! panic, the item must be a WBXML document that decodes, and every attachment it lists must
//! be fetchable by its FileReference.
//!
//! The first two bytes choose the protocol version, body preference and MIMESupport, so one
//! corpus reaches every writer path; the rest is the message.
#![no_main]

use eas_gateway::mime::attachment::split_file_reference;
use eas_gateway::mime::{
    BodyPreference, BodyType, ItemOptions, MessageMeta, MessageView, MimeSupport, Version,
    write_application_data,
};
use eas_wbxml::{Element, Writer, tags::airsync};
use libfuzzer_sys::fuzz_target;
use std::sync::Once;

const VERSIONS: [Version; 5] = [
    Version::V12_1,
    Version::V14_0,
    Version::V14_1,
    Version::V16_0,
    Version::V16_1,
];

/// mail-parser can panic on hostile input (see `tests/mime_items.rs`); `MessageView::parse`
/// contains that, and the property is that no panic gets *out*. libfuzzer-sys aborts in its
/// panic hook, before any `catch_unwind` runs, so the hook is replaced with a silent one: a
/// panic that escapes still aborts the run, because libfuzzer-sys aborts when the target
/// unwinds.
static CONTAINED_PANICS: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    CONTAINED_PANICS.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let [a, b, raw @ ..] = data else {
        return;
    };
    let pref = BodyPreference {
        kind: BodyType::from_code(a % 4 + 1).unwrap(),
        truncation_size: (b & 0x80 != 0).then_some(u32::from(*b) * 7),
        all_or_none: b & 0x40 != 0,
        preview: (b & 0x20 != 0).then_some(u32::from(*b)),
    };
    let meta = MessageMeta {
        flags: vec!["\\Seen".into(), "\\Flagged".into(), "Work".into()],
        internal_date: i64::from(*a) << 24,
        size: raw.len() as u64,
    };
    let view = MessageView::parse(raw, meta.clone());
    // The item rendered from the skeleton (attachment bodies left out) tells the same.
    if let Some(skeleton) = eas_gateway::mime::skeleton::skeleton(raw) {
        let thin = MessageView::parse_with_skeleton(raw, Some(&skeleton), meta.clone());
        assert_eq!(thin.plain_text(), view.plain_text());
        assert_eq!(thin.html(), view.html());
        let names = |v: &MessageView<'_>| {
            v.attachments()
                .iter()
                .map(|a| (a.path.clone(), a.display_name.clone(), a.content_type.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&thin), names(&view));
    }
    let prefs = [pref];
    let opts = ItemOptions {
        mime_support: MimeSupport::from_code(a / 4 % 3),
        ..ItemOptions::new(VERSIONS[usize::from(a / 12 % 5)], &prefs, "1:2")
    };
    let mut w = Writer::new(Vec::new()).unwrap();
    w.start(airsync::ApplicationData).unwrap();
    write_application_data(&mut w, &view, &opts).unwrap();
    w.end().unwrap();
    Element::decode(&w.finish().unwrap()).expect("the item decodes");
    for attachment in view.attachments() {
        let reference = attachment.file_reference("1:2");
        let (_, path) = split_file_reference(&reference).unwrap();
        let got = view
            .attachment(&path)
            .expect("listed attachments are fetchable");
        assert_eq!(got.data.len() as u64, attachment.size);
    }
});
