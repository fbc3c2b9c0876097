//! The codec's error types, one enum per direction. Every variant says which situation it
//! describes; decode errors carry the byte offset where the problem was seen so a bad request can
//! be diagnosed from a log line without logging the request itself.

use crate::codepage::Tag;

/// Why a byte string is not an EAS WBXML document we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended in the middle of the header, a token, a string or an open element.
    #[error("document truncated at byte {offset}")]
    Truncated { offset: usize },
    /// The version byte is not WBXML 1.0–1.3.
    #[error("unsupported WBXML version byte {0:#04x}")]
    UnsupportedVersion(u8),
    /// The charset is not UTF-8 (IANA MIBenum 106), the only one EAS uses.
    #[error("unsupported charset {0} (only UTF-8, 106, is accepted)")]
    UnsupportedCharset(u32),
    /// A multi-byte integer is longer than five bytes or does not fit in 32 bits.
    #[error("malformed multi-byte integer at byte {offset}")]
    BadInteger { offset: usize },
    /// SWITCH_PAGE named a page EAS does not define.
    #[error("unknown code page {page} at byte {offset}")]
    UnknownCodePage { page: u8, offset: usize },
    /// A tag token that the current code page does not define.
    #[error("unknown tag token {token:#04x} on code page {page} at byte {offset}")]
    UnknownTag { page: u8, token: u8, offset: usize },
    /// A tag with the attribute bit, or an attribute token: EAS never uses attributes.
    #[error("attributes are not used by EAS (byte {offset})")]
    Attributes { offset: usize },
    /// ENTITY, PI, LITERAL or EXT_* token: legal WBXML that EAS never uses.
    #[error("token {token:#04x} is not used by EAS (byte {offset})")]
    UnsupportedToken { token: u8, offset: usize },
    /// END with no element open.
    #[error("END without an open element at byte {offset}")]
    UnbalancedEnd { offset: usize },
    /// An inline string that runs to the end of the input without its NUL terminator.
    #[error("unterminated string at byte {offset}")]
    UnterminatedString { offset: usize },
    /// A string (inline or from the string table) that is not valid UTF-8.
    #[error("invalid UTF-8 in string at byte {offset}")]
    InvalidUtf8 { offset: usize },
    /// STR_T or a string-table public id that points outside the string table.
    #[error("string table reference {index} out of range at byte {offset}")]
    BadStringReference { index: u32, offset: usize },
    /// Text or opaque data outside the root element.
    #[error("content outside the root element at byte {offset}")]
    ContentOutsideRoot { offset: usize },
    /// Bytes after the root element was closed.
    #[error("trailing data after the root element at byte {offset}")]
    TrailingData { offset: usize },
    /// A header but no root element.
    #[error("document has no root element")]
    NoRootElement,
    /// Elements nested deeper than the configured limit.
    #[error("elements nested deeper than {limit}")]
    TooDeep { limit: usize },
    /// The whole document is larger than the configured limit.
    #[error("document of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// One OPAQUE block is larger than the configured limit.
    #[error("opaque data of {len} bytes exceeds the limit of {limit} (byte {offset})")]
    OpaqueTooLarge {
        len: u64,
        limit: usize,
        offset: usize,
    },
    /// The document decodes to more text and opaque bytes, or more elements, than the
    /// [`Limits`](crate::Limits) allow; reported where the budget ran out, before the data that
    /// would exceed it is handed out.
    #[error("document decodes to more than {limit} {what} (byte {offset})")]
    BudgetExceeded {
        what: Budget,
        limit: usize,
        offset: usize,
    },
    /// An element holds both child elements and text/opaque data, or text and opaque data
    /// together: EAS elements hold one kind of content, so the element tree rejects it.
    #[error("element {tag} mixes child elements, text and opaque data")]
    MixedContent { tag: Tag },
}

/// Which part of the decoding budget a document exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Text and opaque bytes, string-table references counted at every use.
    DecodedBytes,
    /// Elements, empty ones included.
    Elements,
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Budget::DecodedBytes => "decoded bytes",
            Budget::Elements => "elements",
        })
    }
}

/// Why the streaming writer could not produce a document.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The underlying sink failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// `end` was called with no element open.
    #[error("end() without an open element")]
    UnbalancedEnd,
    /// Text or opaque data was written outside any element.
    #[error("content written outside an element")]
    ContentOutsideElement,
    /// A second root element was started after the first one was closed.
    #[error("a document has exactly one root element")]
    SecondRoot,
    /// `finish` was called while elements were still open (or before any element).
    #[error("document finished with {open} element(s) still open")]
    Unclosed { open: usize },
    /// Opaque data longer than WBXML's 32-bit length field.
    #[error("opaque data of {0} bytes does not fit a WBXML length")]
    OpaqueTooLarge(usize),
}

/// Why a readable-XML document could not be turned into an element tree.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// The XML itself is malformed.
    #[error("XML syntax error at byte {offset}: {message}")]
    Syntax { offset: u64, message: String },
    /// An element's namespace is not one of the EAS code pages.
    #[error("element <{name}> has unknown namespace {namespace:?}")]
    UnknownNamespace { name: String, namespace: String },
    /// An element without a namespace (EAS tags always belong to a code page).
    #[error("element <{name}> has no namespace")]
    NoNamespace { name: String },
    /// A name that the element's code page does not define.
    #[error("unknown tag {namespace}{name}")]
    UnknownTag { namespace: String, name: String },
    /// An attribute other than the namespace declarations and `opaque="base64"`.
    #[error("unexpected attribute {name:?} on <{element}>")]
    UnexpectedAttribute { element: String, name: String },
    /// `opaque="base64"` on an element whose text is not base64.
    #[error("opaque content of <{element}> is not valid base64")]
    BadBase64 { element: String },
    /// An element that mixes child elements with non-whitespace text.
    #[error("element <{element}> mixes child elements and text")]
    MixedContent { element: String },
    /// The document has no root element, or text outside it, or two roots.
    #[error("document must hold exactly one root element")]
    BadDocument,
}
