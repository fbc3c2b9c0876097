//! IMAP flags and keywords as the EAS properties a phone can see and change.
//!
//! `\Seen` is Read, `\Flagged` is an active follow-up flag, user keywords are Categories, and
//! `\Answered` / `$Forwarded` are the last verb executed. Keywords that are really client
//! bookkeeping (`$`-prefixed ones such as `$MDNSent`, `$Junk`, and the old unprefixed junk
//! markers) are not categories: a phone would show them as labels the user never chose.

/// The flag-derived state of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagState {
    /// `\Seen`.
    pub read: bool,
    /// `\Flagged`.
    pub flagged: bool,
    /// `\Answered`.
    pub answered: bool,
    /// `$Forwarded` (or the older unprefixed `Forwarded`).
    pub forwarded: bool,
    /// `\Draft`.
    pub draft: bool,
    /// User keywords, in the order IMAP listed them, without duplicates.
    pub categories: Vec<String>,
}

/// Unprefixed keywords that mail clients set for their own purposes.
const CLIENT_KEYWORDS: &[&str] = &["Junk", "NonJunk", "NotJunk", "Forwarded", "Redirected"];

impl FlagState {
    /// From the FLAGS of an IMAP FETCH (`\Seen`, `$Forwarded`, `Work`, ...).
    pub fn from_imap<S: AsRef<str>>(flags: &[S]) -> FlagState {
        let mut state = FlagState::default();
        for flag in flags {
            let flag = flag.as_ref().trim();
            if let Some(system) = flag.strip_prefix('\\') {
                match system.to_ascii_lowercase().as_str() {
                    "seen" => state.read = true,
                    "flagged" => state.flagged = true,
                    "answered" => state.answered = true,
                    "draft" => state.draft = true,
                    _ => {}
                }
            } else if flag.eq_ignore_ascii_case("$forwarded")
                || flag.eq_ignore_ascii_case("forwarded")
            {
                state.forwarded = true;
            } else if !flag.is_empty()
                && !flag.starts_with('$')
                && !CLIENT_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(flag))
                && !state.categories.iter().any(|c| c == flag)
            {
                state.categories.push(flag.to_owned());
            }
        }
        state
    }

    /// `email2:LastVerbExecuted`: 1 reply to sender, 3 forward. IMAP does not record "reply
    /// all" (2) apart from "reply", nor which came last, so a reply wins over a forward.
    pub fn last_verb(&self) -> Option<u8> {
        if self.answered {
            Some(1)
        } else if self.forwarded {
            Some(3)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn maps_system_flags_and_keywords() {
        let s = FlagState::from_imap(&[
            "\\Seen",
            "\\FLAGGED",
            "$Forwarded",
            "$MDNSent",
            "$Junk",
            "NonJunk",
            "Work",
            "Work",
            "\\Recent",
            "Family",
        ]);
        assert!(s.read && s.flagged && s.forwarded && !s.answered && !s.draft);
        assert_eq!(s.categories, ["Work", "Family"]);
        assert_eq!(s.last_verb(), Some(3));
        assert_eq!(FlagState::from_imap::<&str>(&[]).last_verb(), None);
    }
}
