//! Property tests: random element trees over the real code pages survive both encodings, and no
//! byte string can make the decoder panic.

use eas_wbxml::{CodePage, Element, Limits, Tag};
use proptest::prelude::*;

fn any_tag() -> impl Strategy<Value = Tag> {
    let all: Vec<Tag> = CodePage::ALL
        .iter()
        .flat_map(|&p| p.entries().iter().map(move |&(t, _)| (p, t)))
        .map(|(p, t)| Tag::from_token(p, t).unwrap())
        .collect();
    proptest::sample::select(all)
}

/// Any text WBXML can carry (everything but NUL, which the writer drops).
fn any_text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,40}"
}

fn any_element() -> impl Strategy<Value = Element> {
    let leaf = prop_oneof![
        any_tag().prop_map(Element::new),
        (any_tag(), any_text()).prop_map(|(t, s)| Element::with_text(t, s)),
        (any_tag(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(t, b)| Element::with_opaque(t, b)),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        (any_tag(), proptest::collection::vec(inner, 1..8))
            .prop_map(|(t, children)| Element::with_children(t, children))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wbxml_round_trip(tree in any_element()) {
        let bytes = tree.encode();
        let back = Element::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &tree);
        // Canonical: re-encoding the decoded tree gives the same bytes.
        prop_assert_eq!(back.encode(), bytes);
    }

    /// Any element's children encoded ahead as a fragment and spliced in give the bytes the
    /// whole tree gives, whatever code pages the fragment starts and ends in.
    #[test]
    fn spliced_fragments_encode_like_the_tree(tree in any_element(), wrapper in any_tag()) {
        let whole = Element::with_children(wrapper, vec![tree.clone()]).encode();
        let mut w = eas_wbxml::Writer::new(Vec::new()).unwrap();
        w.start(wrapper).unwrap();
        match &tree.content {
            eas_wbxml::Content::Elements(children) => {
                let mut f = eas_wbxml::Writer::fragment();
                for c in children {
                    c.write(&mut f).unwrap();
                }
                let f = f.into_fragment().unwrap();
                w.start(tree.tag).unwrap();
                w.splice(&f).unwrap();
                w.end().unwrap();
            }
            _ => {
                let mut f = eas_wbxml::Writer::fragment();
                tree.write(&mut f).unwrap();
                w.splice(&f.into_fragment().unwrap()).unwrap();
            }
        }
        w.end().unwrap();
        prop_assert_eq!(w.finish().unwrap(), whole);
    }

    #[test]
    fn xml_round_trip(tree in any_element()) {
        let xml = eas_wbxml::to_xml(&tree);
        let back = eas_wbxml::from_xml(&xml).unwrap();
        prop_assert_eq!(&back, &tree);
        prop_assert_eq!(eas_wbxml::to_xml(&back), xml);
    }

    #[test]
    fn streaming_xml_matches_the_tree(tree in any_element()) {
        let bytes = tree.encode();
        prop_assert_eq!(
            eas_wbxml::xml::wbxml_to_xml(&bytes, Limits::default()).unwrap(),
            eas_wbxml::to_xml(&tree)
        );
    }

    #[test]
    fn text_then_element_is_mixed_content_in_both_renderings(tree in any_element()) {
        // <Sync>"x"<tree/></Sync>: the streaming renderer must refuse it as the tree does.
        let mut doc = vec![0x03, 0x01, 0x6A, 0x00, 0x45, 0x03, b'x', 0x00];
        doc.extend_from_slice(&tree.encode()[4..]);
        doc.extend_from_slice(&[0x00, 0x00, 0x01]);
        let tree_err = Element::decode(&doc).unwrap_err();
        let mixed = matches!(tree_err, eas_wbxml::DecodeError::MixedContent { .. });
        prop_assert!(mixed, "{:?}", tree_err);
        prop_assert_eq!(
            eas_wbxml::xml::wbxml_to_xml(&doc, Limits::default()).unwrap_err(),
            tree_err
        );
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Element::decode(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        let doc = [&eas_wbxml::HEADER[..], &body].concat();
        let limits = Limits { max_depth: 8, max_opaque: 64, max_document: 1024, ..Limits::default() };
        let streamed = eas_wbxml::xml::wbxml_to_xml(&doc, limits);
        match Element::decode_with(&doc, limits) {
            Ok(tree) => {
                // Whatever decodes must re-encode to something that decodes to the same tree,
                // and the streaming XML rendering must agree with the tree's.
                prop_assert_eq!(streamed.unwrap(), eas_wbxml::to_xml(&tree));
                prop_assert_eq!(Element::decode(&tree.encode()).unwrap(), tree);
            }
            Err(e) => prop_assert_eq!(streamed.unwrap_err(), e),
        }
    }

    #[test]
    fn mutated_documents_never_panic(
        tree in any_element(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = tree.encode();
        for (at, value) in flips {
            let i = at % bytes.len();
            bytes[i] = value;
        }
        let _ = Element::decode(&bytes);
    }

    #[test]
    fn random_text_never_panics_the_xml_reader(s in "\\PC{0,200}") {
        let _ = eas_wbxml::from_xml(&s);
    }
}
