//! A realistic large Sync response, shared by the criterion benchmark and the `sync_sample`
//! example (which writes it to a file for the libwbxml comparison script).
//!
//! [`ITEMS`] (200) email Adds by default, each with the properties a 14.1 server sends (addresses, dates, flags, two
//! attachments' metadata, conversation ids) and a 4 KB HTML body with some non-ASCII text.
//! Deterministic: the same bytes on every run.

use std::io::Write;

use eas_wbxml::tags::{airsync, airsyncbase, email, email2};
use eas_wbxml::{EncodeError, Writer};

pub const ITEMS: usize = 200;
pub const BODY_BYTES: usize = 4096;

/// Writes the whole response with the streaming writer.
pub fn write_sync_response<W: Write>(w: &mut Writer<W>, items: usize) -> Result<(), EncodeError> {
    w.start(airsync::Sync)?
        .start(airsync::Collections)?
        .start(airsync::Collection)?;
    w.text_element(airsync::SyncKey, "{8c0f3a52-77b1-4f0e-9a51-2f6c1d0e9b44}42")?;
    w.text_element(airsync::CollectionId, "2")?;
    w.text_element(airsync::Status, "1")?;
    w.empty(airsync::MoreAvailable)?;
    w.start(airsync::Commands)?;
    let mut body = String::with_capacity(BODY_BYTES + 64);
    for i in 0..items {
        w.start(airsync::Add)?;
        w.text_element(airsync::ServerId, &format!("2:{}", 48_000 - i))?;
        w.start(airsync::ApplicationData)?;
        w.text_element(
            email::To,
            "\"Jane Doe\" <jane@example.com>, team@example.com",
        )?;
        w.text_element(email::Cc, "\"Bob Müller\" <bob@example.org>")?;
        w.text_element(
            email::From,
            &format!("\"Sender {i}\" <sender{i}@example.net>"),
        )?;
        w.text_element(
            email::Subject,
            &format!("Re: Quarterly report #{i} – Grüße"),
        )?;
        w.text_element(
            email::DateReceived,
            &format!("2026-11-{:02}T10:{:02}:00.000Z", 1 + i % 28, i % 60),
        )?;
        w.text_element(email::DisplayTo, "Jane Doe; team@example.com")?;
        w.text_element(
            email::ThreadTopic,
            &format!("Quarterly report #{i} – Grüße"),
        )?;
        w.text_element(email::Importance, "1")?;
        w.text_element(email::Read, if i % 3 == 0 { "0" } else { "1" })?;
        w.start(airsyncbase::Attachments)?;
        for (n, name) in [(2, "report.pdf"), (3, "chart.png")] {
            w.start(airsyncbase::Attachment)?;
            w.text_element(airsyncbase::DisplayName, name)?;
            w.text_element(airsyncbase::FileReference, &format!("2:{}:{n}", 48_000 - i))?;
            w.text_element(airsyncbase::Method, "1")?;
            w.text_element(
                airsyncbase::EstimatedDataSize,
                &format!("{}", 48_213 + i * 7),
            )?;
            if n == 3 {
                w.text_element(airsyncbase::ContentId, &format!("chart{i}@example.net"))?;
                w.text_element(airsyncbase::IsInline, "1")?;
            }
            w.end()?;
        }
        w.end()?;
        w.start(airsyncbase::Body)?;
        w.text_element(airsyncbase::Type, "2")?;
        w.text_element(
            airsyncbase::EstimatedDataSize,
            &format!("{}", BODY_BYTES * 3),
        )?;
        w.text_element(airsyncbase::Truncated, "1")?;
        html_body(i, &mut body);
        w.text_element(airsyncbase::Data, &body)?;
        w.end()?;
        w.text_element(email::MessageClass, "IPM.Note")?;
        w.text_element(email::InternetCPID, "65001")?;
        w.text_element(email::ContentClass, "urn:content-classes:message")?;
        w.start(email::Flag)?;
        if i % 5 == 0 {
            w.text_element(email::FlagType, "Flag for follow up")?;
            w.text_element(email::Status, "2")?;
        }
        w.end()?;
        w.text_element(airsyncbase::NativeBodyType, "2")?;
        let id = (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C834);
        w.opaque_element(email2::ConversationId, &id.to_be_bytes())?;
        let mut index = [0u8; 22];
        index[1..17].copy_from_slice(&id.to_le_bytes());
        w.opaque_element(email2::ConversationIndex, &index)?;
        w.start(email::Categories)?;
        w.text_element(email::Category, "Work")?;
        w.end()?;
        w.end()?.end()?;
    }
    w.end()?.end()?.end()?.end()?;
    Ok(())
}

/// The encoded response with `items` emails.
pub fn sync_response(items: usize) -> Vec<u8> {
    let mut w = Writer::new(Vec::with_capacity(items * (BODY_BYTES + 1024))).unwrap();
    write_sync_response(&mut w, items).unwrap();
    w.finish().unwrap()
}

fn html_body(i: usize, out: &mut String) {
    out.clear();
    out.push_str("<html><body><p>Hello Jane,</p>");
    let words = [
        "quarterly",
        "numbers",
        "look",
        "good;",
        "see",
        "the",
        "attached",
        "chart",
        "für",
        "details",
        "and",
        "naïve",
        "estimates",
        "—",
        "regards",
        "日本",
        "team.",
    ];
    let mut n = i;
    while out.len() < BODY_BYTES - 40 {
        out.push_str(words[n % words.len()]);
        out.push(' ');
        n = n.wrapping_mul(31).wrapping_add(7);
        if n % 23 == 0 {
            out.push_str("</p><p>");
        }
    }
    out.push_str("</p></body></html>");
}
