//! What the integration tests share: where the fixtures are and how to list them.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};

use base64::Engine as _;
use eas_wbxml::{Content, Element};

/// `fixtures/wbxml/` at the workspace root.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wbxml")
}

/// One fixture: the readable twin and the WBXML bytes next to it.
pub struct Fixture {
    pub name: String,
    pub xml: PathBuf,
    pub wbxml: PathBuf,
}

/// Every `*.xml` fixture, sorted by name. Panics when there are none, so that a moved directory
/// cannot turn every fixture test into a test of nothing.
pub fn fixtures() -> Vec<Fixture> {
    let dir = fixture_dir();
    let mut out: Vec<Fixture> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .map(|xml| Fixture {
            name: xml.file_stem().unwrap().to_string_lossy().into_owned(),
            wbxml: xml.with_extension("wbxml"),
            xml,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

/// The tree with every opaque block replaced by its base64 text: how XML tools that do not mark
/// binary content (libwbxml among them) see it.
pub fn opaque_as_base64(e: &Element) -> Element {
    let content = match &e.content {
        Content::Elements(c) => Content::Elements(c.iter().map(opaque_as_base64).collect()),
        Content::Text(s) => Content::Text(s.clone()),
        Content::Opaque(b) => Content::Text(base64::engine::general_purpose::STANDARD.encode(b)),
    };
    Element {
        tag: e.tag,
        content,
    }
}
