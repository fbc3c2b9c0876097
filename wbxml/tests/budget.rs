//! The decoding budget: a document may not decode to more text and opaque bytes, or hold more
//! elements, than its `Limits` allow, however it repeats its string-table references.

use eas_wbxml::{Budget, Content, DecodeError, Element, Event, Limits, Reader};
use proptest::prelude::*;

/// WBXML's mb_u_int32.
fn mb(mut value: usize, out: &mut Vec<u8>) {
    let mut bytes = vec![(value & 0x7F) as u8];
    value >>= 7;
    while value > 0 {
        bytes.push((value & 0x7F) as u8 | 0x80);
        value >>= 7;
    }
    bytes.reverse();
    out.extend_from_slice(&bytes);
}

/// A header whose string table holds `entries`, and the offset of each entry in the table.
fn header(entries: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut table = Vec::new();
    let mut offsets = Vec::new();
    for e in entries {
        offsets.push(table.len());
        table.extend_from_slice(e);
        table.push(0);
    }
    let mut doc = vec![0x03, 0x01, 0x6A];
    mb(table.len(), &mut doc);
    doc.extend_from_slice(&table);
    (doc, offsets)
}

/// `<Sync><SyncKey>` holding `references` STR_T references to one `entry_len`-byte entry.
fn amplification(entry_len: usize, references: usize) -> Vec<u8> {
    let (mut doc, _) = header(&[vec![b'A'; entry_len]]);
    doc.extend_from_slice(&[0x45, 0x4B]);
    doc.extend_from_slice(&[0x83, 0x00].repeat(references));
    doc.extend_from_slice(&[0x01, 0x01]);
    doc
}

/// Every event of a document: the outcome, the text and opaque bytes handed out and the
/// elements seen, up to the error if there is one.
fn drain(doc: &[u8], limits: Limits) -> (Result<(), DecodeError>, usize, usize) {
    let mut decoded = 0;
    let mut elements = 0;
    let mut reader = match Reader::with_limits(doc, limits) {
        Ok(r) => r,
        Err(e) => return (Err(e), 0, 0),
    };
    let outcome = loop {
        match reader.next() {
            Ok(Some(Event::Text(s))) => decoded += s.len(),
            Ok(Some(Event::Opaque(b))) => decoded += b.len(),
            Ok(Some(Event::Start(_) | Event::Empty(_))) => elements += 1,
            Ok(Some(Event::End(_))) => {}
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    (outcome, decoded, elements)
}

fn tree_decoded(e: &Element) -> usize {
    match &e.content {
        Content::Elements(children) => children.iter().map(tree_decoded).sum(),
        Content::Text(s) => s.len(),
        Content::Opaque(b) => b.len(),
    }
}

const UNBOUNDED: Limits = Limits {
    max_document: usize::MAX,
    max_depth: usize::MAX,
    max_opaque: usize::MAX,
    max_decoded: usize::MAX,
    max_expansion: usize::MAX,
    max_elements: usize::MAX,
};

#[test]
fn string_table_amplification_fails_fast_with_the_typed_error() {
    // 60 KB entry, 100,000 references: 260 KB that would decode to 6 GB.
    let doc = amplification(60_000, 100_000);
    let first_reference = doc.len() - 100_000 * 2 - 2;
    for limits in [Limits::default(), Limits::for_body(50 << 20)] {
        let budget = limits.decoded_budget(doc.len());
        assert!(budget < 2 << 20, "{budget}");
        let expected = DecodeError::BudgetExceeded {
            what: Budget::DecodedBytes,
            limit: budget,
            // The first reference that would go over, not the end of the document.
            offset: first_reference + 2 * (budget / 60_000),
        };
        assert_eq!(
            Element::decode_with(&doc, limits).unwrap_err(),
            expected.clone()
        );
        assert_eq!(
            eas_wbxml::xml::wbxml_to_xml(&doc, limits).unwrap_err(),
            expected.clone()
        );
        let (outcome, decoded, _) = drain(&doc, limits);
        assert_eq!(outcome, Err(expected));
        assert!(decoded <= budget);
    }
}

#[test]
fn string_table_reuse_within_the_budget_decodes() {
    // Twenty references to a 20-byte entry: four times the document is plenty.
    let doc = amplification(20, 20);
    let tree = Element::decode(&doc).unwrap();
    assert_eq!(tree_decoded(&tree), 400);
}

#[test]
fn a_flood_of_empty_elements_is_stopped_at_the_element_budget() {
    let mut doc = vec![0x03, 0x01, 0x6A, 0x00, 0x45];
    doc.extend(std::iter::repeat_n(0x13, 1_000_000));
    doc.push(0x01);
    let max = Limits::default().max_elements;
    assert_eq!(
        Element::decode(&doc).unwrap_err(),
        DecodeError::BudgetExceeded {
            what: Budget::Elements,
            limit: max,
            offset: 4 + max,
        }
    );
}

/// A generated document: the string table's entries and the root's children.
#[derive(Debug, Clone)]
struct Doc {
    entries: Vec<Vec<u8>>,
    children: Vec<Child>,
}

#[derive(Debug, Clone)]
enum Child {
    Empty,
    Text(Vec<Part>),
    Opaque(Vec<u8>),
    Container(Vec<Child>),
}

#[derive(Debug, Clone)]
enum Part {
    Inline(String),
    /// `n` references in a row to entry `index` (modulo the number of entries).
    References {
        index: usize,
        n: usize,
    },
}

impl Doc {
    fn encode(&self) -> Vec<u8> {
        let (mut doc, offsets) = header(&self.entries);
        doc.push(0x45);
        for c in &self.children {
            c.encode(&offsets, &mut doc);
        }
        doc.push(0x01);
        doc
    }
}

impl Child {
    fn encode(&self, offsets: &[usize], out: &mut Vec<u8>) {
        match self {
            Child::Empty => out.push(0x13),
            Child::Text(parts) => {
                out.push(0x4B);
                for p in parts {
                    match p {
                        Part::Inline(s) => {
                            out.push(0x03);
                            out.extend_from_slice(s.as_bytes());
                            out.push(0x00);
                        }
                        Part::References { index, n } => {
                            for _ in 0..*n {
                                out.push(0x83);
                                mb(offsets[index % offsets.len()], out);
                            }
                        }
                    }
                }
                out.push(0x01);
            }
            Child::Opaque(b) => {
                out.extend_from_slice(&[0x4B, 0xC3]);
                mb(b.len(), out);
                out.extend_from_slice(b);
                out.push(0x01);
            }
            Child::Container(children) => {
                out.push(0x45);
                for c in children {
                    c.encode(offsets, out);
                }
                out.push(0x01);
            }
        }
    }
}

fn any_entry() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[^\\x00]{0,40}".prop_map(String::into_bytes),
        // Long enough that a few dozen references pass the 64 KiB floor.
        proptest::collection::vec(b'a'..=b'z', 0..4000),
    ]
}

fn any_part() -> impl Strategy<Value = Part> {
    prop_oneof![
        "[^\\x00]{0,40}".prop_map(Part::Inline),
        (any::<usize>(), 1..64usize).prop_map(|(index, n)| Part::References { index, n }),
    ]
}

fn any_child() -> impl Strategy<Value = Child> {
    let leaf = prop_oneof![
        Just(Child::Empty),
        proptest::collection::vec(any_part(), 0..6).prop_map(Child::Text),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Child::Opaque),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(Child::Container)
    })
}

fn any_doc() -> impl Strategy<Value = Doc> {
    (
        proptest::collection::vec(any_entry(), 1..4),
        proptest::collection::vec(any_child(), 0..8),
    )
        .prop_map(|(entries, children)| Doc { entries, children })
}

fn any_limits() -> impl Strategy<Value = Limits> {
    (
        prop_oneof![0..5_000usize, Just(usize::MAX)],
        0..8usize,
        prop_oneof![1..60usize, Just(usize::MAX)],
    )
        .prop_map(|(max_decoded, max_expansion, max_elements)| Limits {
            max_decoded,
            max_expansion,
            max_elements,
            ..Limits::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A well-formed document decodes exactly when what it decodes to fits the budget; when it
    /// does not, decoding stops with the typed error before handing out more than the budget,
    /// and the tree and the XML renderer stop at the same place.
    #[test]
    fn documents_decode_within_the_budget_or_fail_with_the_budget_error(
        doc in any_doc(),
        limits in any_limits(),
    ) {
        let bytes = doc.encode();
        let (full, total, count) = drain(&bytes, UNBOUNDED);
        prop_assert_eq!(full, Ok(()));
        let budget = limits.decoded_budget(bytes.len());

        let (outcome, decoded, elements) = drain(&bytes, limits);
        prop_assert!(decoded <= budget, "{} > {}", decoded, budget);
        prop_assert!(elements <= limits.max_elements);
        let fits = total <= budget && count <= limits.max_elements;
        match &outcome {
            Ok(()) => prop_assert!(fits),
            Err(e) => {
                let typed = matches!(e, DecodeError::BudgetExceeded { .. });
                prop_assert!(typed && !fits, "{:?}", e);
            }
        }
        match Element::decode_with(&bytes, limits) {
            Ok(tree) => {
                prop_assert_eq!(outcome, Ok(()));
                prop_assert_eq!(tree_decoded(&tree), total);
            }
            Err(e) => prop_assert_eq!(outcome, Err(e)),
        }
    }

    /// Whatever bytes follow a header with a string table, the reader hands out no more than
    /// the budget.
    #[test]
    fn random_bodies_never_decode_past_the_budget(
        entries in proptest::collection::vec(any_entry(), 0..3),
        body in proptest::collection::vec(any::<u8>(), 0..1024),
        limits in any_limits(),
    ) {
        let (mut doc, _) = header(&entries);
        doc.extend_from_slice(&body);
        let (_, decoded, elements) = drain(&doc, limits);
        prop_assert!(decoded <= limits.decoded_budget(doc.len()));
        prop_assert!(elements <= limits.max_elements);
    }
}
