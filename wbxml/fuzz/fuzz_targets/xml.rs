//! Arbitrary text into the readable-XML reader: it must never panic, and whatever it accepts
//! must encode to WBXML that decodes to the same tree.
#![no_main]

use eas_wbxml::Element;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tree) = eas_wbxml::from_xml(text) {
        assert_eq!(Element::decode(&tree.encode()).unwrap(), tree);
    }
});
