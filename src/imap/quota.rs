//! QUOTA (RFC 2087, RFC 9208): how much a mailbox may still grow, so a command can refuse
//! work whose result would not fit (a sent message whose Sent copy cannot be stored) before
//! doing anything.

use super::command::Command;
use super::error::ImapError;
use super::response::Untagged;
use super::session::Session;

impl Session {
    /// Bytes the mailbox may still take under its STORAGE quotas (the tightest of its quota
    /// roots), or None when the server keeps no quota (no QUOTA capability, no STORAGE limit).
    pub async fn storage_room(&mut self, mailbox: &str) -> Result<Option<u64>, ImapError> {
        if !self.capabilities().has("QUOTA") {
            return Ok(None);
        }
        let mut room: Option<u64> = None;
        self.run_with(
            Command::new("GETQUOTAROOT").mailbox(mailbox),
            &mut |u| match u {
                Untagged::Other { name, rest, .. } if name.eq_ignore_ascii_case("QUOTA") => {
                    if let Some(r) = storage_room(&rest) {
                        room = Some(room.map_or(r, |old| old.min(r)));
                    }
                    None
                }
                u => Some(u),
            },
        )
        .await?;
        Ok(room)
    }
}

/// From the rest of `* QUOTA root (STORAGE used limit ...)`: (limit - used) in bytes; the
/// STORAGE resource counts KiB.
fn storage_room(rest: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(rest).ok()?;
    let list = &text[text.rfind('(')? + 1..text.rfind(')')?];
    let words: Vec<&str> = list.split_whitespace().collect();
    words.chunks(3).find_map(|c| match c {
        [name, used, limit] if name.eq_ignore_ascii_case("STORAGE") => {
            let (used, limit): (u64, u64) = (used.parse().ok()?, limit.parse().ok()?);
            Some(limit.saturating_sub(used).saturating_mul(1024))
        }
        _ => None,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn storage_room_from_a_quota_response() {
        assert_eq!(
            storage_room(b" \"User quota\" (STORAGE 10 512)"),
            Some(502 * 1024)
        );
        assert_eq!(
            storage_room(b" \"\" (MESSAGE 3 100 STORAGE 600 512)"),
            Some(0),
            "over quota"
        );
        assert_eq!(storage_room(b" \"User quota\" (MESSAGE 3 100)"), None);
        assert_eq!(storage_room(b" garbage"), None);
    }
}
