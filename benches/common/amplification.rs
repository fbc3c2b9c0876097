//! The WBXML string-table amplification document of issue 18, shared by the load tool
//! (`benches/abuse_probe.rs`) and the tests that send it to a gateway.

/// `<Sync><SyncKey>` holding `refs` STR_T references to one `entry`-byte string-table entry:
/// without a decoding budget it decodes to `entry × refs` bytes of text.
pub fn amplification(entry: usize, refs: usize) -> Vec<u8> {
    let table_len = entry + 1;
    let mut doc = vec![0x03, 0x01, 0x6A];
    // mb_u_int32: seven bits a byte, most significant first, continuation bit on all but last.
    let mut len = vec![(table_len & 0x7F) as u8];
    let mut rest = table_len >> 7;
    while rest > 0 {
        len.push((rest & 0x7F) as u8 | 0x80);
        rest >>= 7;
    }
    doc.extend(len.iter().rev());
    doc.extend(std::iter::repeat_n(b'A', entry));
    doc.extend_from_slice(&[0x00, 0x45, 0x4B]);
    doc.extend_from_slice(&[0x83, 0x00].repeat(refs));
    doc.extend_from_slice(&[0x01, 0x01]);
    doc
}
