//! [`Capabilities`]: what the server says it can do (RFC 3501 §7.2.1).

/// The server's capability list. Names compare case-insensitively (`has("special-use")`).
///
/// The list changes with the connection state (STARTTLS, LOGIN), so the session replaces it
/// whenever the server sends a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    names: Vec<String>,
}

impl Capabilities {
    pub fn new(names: Vec<String>) -> Self {
        Capabilities { names }
    }

    /// Whether the server advertises `name` (e.g. `"CONDSTORE"`, `"AUTH=PLAIN"`).
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The capabilities as the server wrote them, in its order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// The SASL mechanisms from `AUTH=…` entries.
    pub fn auth_mechanisms(&self) -> impl Iterator<Item = &str> {
        self.names.iter().filter_map(|n| {
            n.get(..5)
                .filter(|p| p.eq_ignore_ascii_case("AUTH="))
                .map(|_| &n[5..])
        })
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case() {
        let caps = Capabilities::new(vec![
            "IMAP4rev1".into(),
            "SPECIAL-USE".into(),
            "AUTH=PLAIN".into(),
            "auth=login".into(),
        ]);
        assert!(caps.has("special-use"));
        assert!(caps.has("IMAP4REV1"));
        assert!(!caps.has("NOTIFY"));
        assert_eq!(
            caps.auth_mechanisms().collect::<Vec<_>>(),
            ["PLAIN", "login"]
        );
    }
}
