//! What the gateway spends per Sync item once IMAP has delivered the bytes: the attachment-free
//! skeleton, the parse, and the encoded item (properties, HTML body truncated at 32 KB, as an
//! iPhone asks). No Dovecot, no HTTP: this is the CPU share of `sync_load initial`, measured
//! on its own so changes to the MIME layer can be compared in seconds.
//!
//! ```text
//! cargo bench --bench render
//! ```
//!
//! `page` renders messages 0..100 of the `sync_load` mix (60 % plain text, 35 % plain + HTML,
//! 5 % HTML with a 100–500 KB attachment), one WBXML fragment each; `plain_to_html` and
//! `html_body` time the body conversion alone for a 12 KB plain-text and a 12 KB HTML message.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eas_gateway::mime::{
    self, BodyPreference, BodyType, ItemOptions, MessageMeta, MessageView, Version,
};
use eas_wbxml::Writer;

#[path = "common/mailgen.rs"]
mod mailgen;

fn meta(m: &mailgen::Generated) -> MessageMeta {
    let mut flags = Vec::new();
    if m.seen {
        flags.push("\\Seen".to_owned());
    }
    if m.flagged {
        flags.push("\\Flagged".to_owned());
    }
    MessageMeta {
        flags,
        internal_date: m.date,
        size: m.raw.len() as u64,
    }
}

fn render(m: &mailgen::Generated, prefs: &[BodyPreference], prefix: &str) -> usize {
    let options = ItemOptions::new(Version::V14_1, prefs, prefix);
    let mut w = Writer::fragment();
    let skeleton = mime::skeleton::skeleton(&m.raw);
    let view = MessageView::parse_with_skeleton(&m.raw, skeleton.as_deref(), meta(m));
    mime::write_application_data(&mut w, &view, &options).expect("renders");
    w.into_fragment().expect("a whole fragment").len()
}

fn benches(c: &mut Criterion) {
    let prefs = [BodyPreference {
        truncation_size: Some(32 * 1024),
        ..BodyPreference::new(BodyType::Html)
    }];
    let page: Vec<mailgen::Generated> = (0..100).map(mailgen::Generator::message).collect();
    let bytes: usize = page.iter().map(|m| m.raw.len()).sum();
    let mut g = c.benchmark_group("render");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("page", |b| {
        b.iter(|| page.iter().map(|m| render(m, &prefs, "2:1")).sum::<usize>())
    });
    g.finish();

    // Message 0 is plain text, 2 multipart/alternative (the mix is fixed by the seed).
    let kind = |m: &mailgen::Generated, what: &str| {
        let head = String::from_utf8_lossy(&m.raw[..m.raw.len().min(2048)]).into_owned();
        head.contains(what)
    };
    let plain = page
        .iter()
        .find(|m| kind(m, "Content-Type: text/plain"))
        .expect("a plain message");
    let alternative = page
        .iter()
        .find(|m| kind(m, "multipart/alternative"))
        .expect("an alternative message");
    let mut g = c.benchmark_group("body");
    for (name, m) in [("plain_to_html", plain), ("html_body", alternative)] {
        g.throughput(Throughput::Bytes(m.raw.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let view = MessageView::parse(&m.raw, meta(m));
                view.body(&prefs[0], Version::V14_1).estimated_size
            })
        });
    }
    g.finish();
}

criterion_group!(render_benches, benches);
criterion_main!(render_benches);
