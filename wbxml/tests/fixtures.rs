//! The fixture table: every `fixtures/wbxml/*.xml` twin and its `.wbxml` bytes must describe the
//! same tree, in both directions, byte for byte.
//!
//! The `.wbxml` files are generated from the `.xml` twins by our encoder and then checked against
//! libwbxml (see `libwbxml.rs`), so a fixture is never "whatever our code produced". To rewrite
//! them after editing a twin, run `UPDATE_FIXTURES=1 cargo test -p eas-wbxml --test fixtures`;
//! the run rewrites the twin in canonical form too, so review the diff.

mod common;

use eas_wbxml::{Element, Tag, tags};

/// Each command the gateway implements and the root element its documents start with. Where a
/// successful response is an empty body (SendMail, SmartReply, SmartForward), the response
/// fixture shows the error shape.
const COMMANDS: &[(&str, Tag)] = &[
    ("provision", tags::provision::Provision),
    ("foldersync", tags::folderhierarchy::FolderSync),
    ("foldercreate", tags::folderhierarchy::FolderCreate),
    ("folderupdate", tags::folderhierarchy::FolderUpdate),
    ("folderdelete", tags::folderhierarchy::FolderDelete),
    ("sync", tags::airsync::Sync),
    ("getitemestimate", tags::getitemestimate::GetItemEstimate),
    ("ping", tags::ping::Ping),
    ("itemoperations", tags::itemoperations::ItemOperations),
    ("moveitems", tags::moveitems::MoveItems),
    ("search", tags::search::Search),
    ("find", tags::find::Find),
    ("sendmail", tags::composemail::SendMail),
    ("smartreply", tags::composemail::SmartReply),
    ("smartforward", tags::composemail::SmartForward),
    ("settings", tags::settings::Settings),
    (
        "resolverecipients",
        tags::resolverecipients::ResolveRecipients,
    ),
    ("meetingresponse", tags::meetingresponse::MeetingResponse),
    ("validatecert", tags::validatecert::ValidateCert),
];

fn updating() -> bool {
    std::env::var_os("UPDATE_FIXTURES").is_some()
}

#[test]
fn every_twin_round_trips_byte_exact() {
    let mut failures = Vec::new();
    for f in common::fixtures() {
        let text = std::fs::read_to_string(&f.xml).unwrap();
        let tree = match eas_wbxml::from_xml(&text) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{}: {e}", f.name));
                continue;
            }
        };
        let canonical_xml = eas_wbxml::to_xml(&tree);
        let bytes = tree.encode();
        if updating() {
            std::fs::write(&f.xml, &canonical_xml).unwrap();
            std::fs::write(&f.wbxml, &bytes).unwrap();
            continue;
        }
        if canonical_xml != text {
            failures.push(format!("{}.xml is not in canonical form", f.name));
        }
        let Ok(stored) = std::fs::read(&f.wbxml) else {
            failures.push(format!("{}.wbxml is missing", f.name));
            continue;
        };
        if stored != bytes {
            failures.push(format!("{}: encoding the twin differs from .wbxml", f.name));
        }
        match Element::decode(&stored) {
            Ok(decoded) if decoded == tree => {
                // WBXML -> tree -> WBXML and -> XML give back both files exactly.
                assert_eq!(decoded.encode(), stored, "{}", f.name);
                assert_eq!(eas_wbxml::to_xml(&decoded), text, "{}", f.name);
            }
            Ok(_) => failures.push(format!("{}: .wbxml decodes to another tree", f.name)),
            Err(e) => failures.push(format!("{}: .wbxml does not decode: {e}", f.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "fixture failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_wbxml_has_a_twin() {
    for entry in std::fs::read_dir(common::fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wbxml") {
            assert!(
                path.with_extension("xml").exists(),
                "{} has no .xml twin",
                path.display()
            );
        }
    }
}

#[test]
fn every_command_has_a_request_and_a_response_with_the_right_root() {
    let fixtures = common::fixtures();
    for &(command, root) in COMMANDS {
        for kind in ["request", "response"] {
            let prefix = format!("{command}.{kind}");
            let matching: Vec<_> = fixtures
                .iter()
                .filter(|f| f.name == prefix || f.name.starts_with(&format!("{prefix}.")))
                .collect();
            assert!(!matching.is_empty(), "no {prefix} fixture");
            for f in matching {
                let tree = eas_wbxml::from_xml(&std::fs::read_to_string(&f.xml).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", f.name));
                assert_eq!(tree.tag, root, "{} starts with the wrong element", f.name);
            }
        }
    }
    for f in &fixtures {
        let command = f.name.split('.').next().unwrap();
        assert!(
            COMMANDS.iter().any(|&(c, _)| c == command),
            "{} belongs to no known command",
            f.name
        );
    }
}
