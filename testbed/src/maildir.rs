//! Filling a testbed user's INBOX by writing Maildir files directly, for tests and benchmarks
//! that need thousands of messages: 10,000 APPENDs take tens of seconds, writing the files
//! takes about one, and Dovecot indexes them on the next SELECT.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, chown, fchown};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::Dovecot;

/// One message to write: its bytes, INTERNALDATE (unix seconds) and flags.
pub struct MaildirMessage {
    pub raw: Vec<u8>,
    pub date: i64,
    pub seen: bool,
    pub flagged: bool,
}

impl Dovecot {
    /// Writes `messages` into the INBOX of `login` (a user of this Dovecot whose INBOX has
    /// not been opened yet, so no index disagrees), owned like the rest of the mail. File
    /// names follow Dovecot's form (`<time>.M<n>P1Q<n>.<host>,S=<size>,W=<CRLF size>:2,<flags>`)
    /// and each file's mtime is the message's INTERNALDATE. Returns the bytes written.
    pub fn write_inbox(
        &self,
        login: &str,
        messages: impl Iterator<Item = MaildirMessage>,
    ) -> std::io::Result<u64> {
        let (local, domain) = login.split_once('@').unwrap_or((login, ""));
        let mail = self.dir().join("mail");
        write_maildir(&mail, &mail.join(domain).join(local), messages)
    }
}

fn write_maildir(
    mail: &Path,
    root: &Path,
    messages: impl Iterator<Item = MaildirMessage>,
) -> std::io::Result<u64> {
    let meta = std::fs::metadata(mail)?;
    let (uid, gid) = (meta.uid(), meta.gid());
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut p = root.to_path_buf();
    while p != mail {
        dirs.push(p.clone());
        p = match p.parent() {
            Some(parent) => parent.to_path_buf(),
            None => {
                return Err(std::io::Error::other("maildir outside the mail directory"));
            }
        };
    }
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(sub))?;
        dirs.push(root.join(sub));
    }
    for d in &dirs {
        chown(d, Some(uid), Some(gid))?;
    }
    let cur = root.join("cur");
    let mut total = 0u64;
    for (i, m) in messages.enumerate() {
        // W= is the size with CRLF line ends: only bare LFs grow.
        let bare_lf = m
            .raw
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' && (i == 0 || m.raw[i - 1] != b'\r'))
            .count();
        let vsize = m.raw.len() + bare_lf;
        let mut flags = String::new();
        if m.flagged {
            flags.push('F');
        }
        if m.seen {
            flags.push('S');
        }
        let name = format!(
            "{}.M{i}P1Q{i}.testbed,S={},W={vsize}:2,{flags}",
            m.date,
            m.raw.len()
        );
        let mut f = std::fs::File::create(cur.join(name))?;
        f.write_all(&m.raw)?;
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(m.date.max(0) as u64))?;
        fchown(&f, Some(uid), Some(gid))?;
        total += m.raw.len() as u64;
    }
    Ok(total)
}
