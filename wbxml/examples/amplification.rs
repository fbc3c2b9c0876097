//! Writes a string-table amplification document: one large string-table entry referenced over
//! and over inside `<Sync><SyncKey>`, the probe behind the decoding budget (see `Limits`).
//! Without a budget it decodes to ENTRY_BYTES × REFERENCES bytes of text; the defaults (60,000
//! and 30,000) make the 120 KB file of issue 18 that asks for 1.8 GB.
//! `cargo run -p eas-wbxml --example amplification -- OUT [ENTRY_BYTES [REFERENCES]]`

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: amplification OUT [ENTRY_BYTES [REFERENCES]]";
    let out = args.next().expect(usage);
    let mut number = |default: usize| args.next().map_or(default, |n| n.parse().expect(usage));
    let entry_bytes = number(60_000);
    let references = number(30_000);

    let table_len = entry_bytes + 1;
    let mut doc = vec![0x03, 0x01, 0x6A];
    // mb_u_int32: seven bits a byte, most significant first, continuation bit on all but the last.
    let mut len = vec![(table_len & 0x7F) as u8];
    let mut rest = table_len >> 7;
    while rest > 0 {
        len.push((rest & 0x7F) as u8 | 0x80);
        rest >>= 7;
    }
    doc.extend(len.iter().rev());
    doc.extend(std::iter::repeat_n(b'A', entry_bytes));
    doc.push(0x00);
    // Sync and SyncKey with content, then STR_T to offset 0 as often as asked.
    doc.extend_from_slice(&[0x45, 0x4B]);
    doc.extend_from_slice(&[0x83, 0x00].repeat(references));
    doc.extend_from_slice(&[0x01, 0x01]);
    std::fs::write(&out, &doc).expect("cannot write OUT");
    eprintln!(
        "{out}: {} bytes, would decode to {} bytes of text",
        doc.len(),
        entry_bytes as u64 * references as u64
    );
}
