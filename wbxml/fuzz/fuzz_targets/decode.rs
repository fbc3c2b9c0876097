//! Arbitrary bytes into the WBXML decoder. It must never panic, it must never hand out more
//! text and opaque bytes or more elements than the decoding budget allows (string-table
//! references counted at every use), and whatever it accepts must survive both encodings
//! unchanged.
#![no_main]

use eas_wbxml::{Element, Event, Limits, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_document: 1 << 20,
        max_depth: 32,
        max_opaque: 1 << 16,
        // Small enough that short inputs can reach it through the string table.
        max_decoded: 1 << 12,
        ..Limits::default()
    };
    let budget = limits.decoded_budget(data.len());
    if let Ok(mut reader) = Reader::with_limits(data, limits) {
        let (mut decoded, mut elements) = (0usize, 0usize);
        while let Ok(Some(event)) = reader.next() {
            match event {
                Event::Text(s) => decoded += s.len(),
                Event::Opaque(b) => decoded += b.len(),
                Event::Start(_) | Event::Empty(_) => elements += 1,
                Event::End(_) => {}
            }
            assert!(decoded <= budget, "{decoded} decoded bytes, budget {budget}");
            assert!(elements <= limits.max_elements);
        }
        assert_eq!(decoded, reader.decoded());
    }
    if let Ok(tree) = Element::decode_with(data, limits) {
        let bytes = tree.encode();
        assert_eq!(Element::decode(&bytes).unwrap(), tree);
        let xml = eas_wbxml::to_xml(&tree);
        assert_eq!(eas_wbxml::from_xml(&xml).unwrap(), tree);
    }
});
