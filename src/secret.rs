//! [`Secret`]: a value (a password) that must never reach a log line or the disk.

use std::fmt;

/// Wraps a secret; `Debug` and `Display` print nothing of it, so a span or error that carries
/// one by mistake still does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The secret itself, for the one place that needs it (an IMAP LOGIN, a hash).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod test {
    #[test]
    fn never_printed() {
        let s = super::Secret::new("hunter2".to_string());
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
