//! Arbitrary bytes into the WBXML decoder. It must never panic, and whatever it accepts must
//! survive both encodings unchanged.
#![no_main]

use eas_wbxml::{Element, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_document: 1 << 20,
        max_depth: 32,
        max_opaque: 1 << 16,
    };
    if let Ok(tree) = Element::decode_with(data, limits) {
        let bytes = tree.encode();
        assert_eq!(Element::decode(&bytes).unwrap(), tree);
        let xml = eas_wbxml::to_xml(&tree);
        assert_eq!(eas_wbxml::from_xml(&xml).unwrap(), tree);
    }
});
