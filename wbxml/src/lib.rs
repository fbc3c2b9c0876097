//! `eas-wbxml`: the WBXML codec with every Exchange ActiveSync code page.
//!
//! A pure crate over byte slices: no I/O beyond `std::io::Write` sinks, no async, and no knowledge
//! of the gateway that uses it.
//!
//! Module map:
//! - [`codepage`]: the 26 EAS code pages (0 AirSync … 25 Find); [`Tag`] and the [`tags`] constants.
//! - [`reader`]: the pull decoder ([`Reader`], [`Event`], [`Limits`]); strict, never panics.
//! - [`writer`]: the streaming encoder ([`Writer`]) that emits the canonical EAS form.
//! - [`tree`]: the in-memory element tree ([`Element`], [`Content`]).
//! - [`xml`]: the readable, namespace-qualified XML form of a tree ([`to_xml`], [`from_xml`]).
//! - [`error`]: one error enum per direction.
//!
//! ```
//! use eas_wbxml::{Element, Writer, tags::airsync};
//!
//! let mut w = Writer::new(Vec::new()).unwrap();
//! w.start(airsync::Sync).unwrap();
//! w.text_element(airsync::SyncKey, "1").unwrap();
//! w.end().unwrap();
//! let bytes = w.finish().unwrap();
//! assert_eq!(bytes, [0x03, 0x01, 0x6A, 0x00, 0x45, 0x4B, 0x03, b'1', 0x00, 0x01, 0x01]);
//!
//! let tree = Element::decode(&bytes).unwrap();
//! assert_eq!(tree.child(airsync::SyncKey).and_then(|k| k.text()), Some("1"));
//! assert!(eas_wbxml::to_xml(&tree).contains("<SyncKey>1</SyncKey>"));
//! ```

pub mod codepage;
pub mod error;
pub mod reader;
pub mod tree;
pub mod writer;
pub mod xml;

pub use codepage::{CodePage, Tag, tags};
pub use error::{Budget, DecodeError, EncodeError, XmlError};
pub use reader::{Event, Header, Limits, PublicId, Reader};
pub use tree::{Content, Element};
pub use writer::{Fragment, HEADER, Writer};
pub use xml::{from_xml, to_xml};
