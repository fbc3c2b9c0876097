//! Deterministic, realistic messages for the benchmarks (`sync_load`, `render`): the same
//! bytes on every run and platform, so figures from different sessions compare.

#![allow(dead_code)] // each bench uses its own part of it

use std::io::Write as _;

use base64::Engine as _;

/// splitmix64: tiny, fast and the same on every platform and crate version.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }
}

pub const WORDS: &[&str] = &[
    "the",
    "meeting",
    "project",
    "update",
    "please",
    "review",
    "attached",
    "schedule",
    "tomorrow",
    "budget",
    "quarter",
    "release",
    "customer",
    "thanks",
    "regards",
    "invoice",
    "deadline",
    "server",
    "team",
    "report",
    "draft",
    "agenda",
    "notes",
    "follow",
    "up",
    "on",
    "we",
    "will",
    "need",
    "to",
    "discuss",
    "the",
    "plan",
    "for",
    "next",
    "week",
    "and",
    "a",
    "short",
    "summary",
    "of",
    "results",
    "is",
    "below",
    "let",
    "me",
    "know",
    "if",
    "you",
    "have",
    "any",
    "questions",
    "about",
    "this",
    "proposal",
    "contract",
    "shipping",
    "order",
];

pub const NAMES: &[&str] = &[
    "Alice Martin",
    "Bob Schmidt",
    "Carla Rossi",
    "David Chen",
    "Eva Novak",
    "Farid Haddad",
    "Grace Kim",
    "Hugo Lefebvre",
    "Ingrid Berg",
    "Jamal Okafor",
];

/// One generated message.
pub struct Generated {
    pub raw: Vec<u8>,
    pub seen: bool,
    pub flagged: bool,
    /// INTERNALDATE, unix seconds.
    pub date: i64,
}

/// The mix: 60 % text/plain, 35 % multipart/alternative (plain + HTML), both 2–20 KB; 5 %
/// multipart/mixed with an HTML body and one 100–500 KB (decoded) attachment. 70 % are
/// `\Seen`, 5 % `\Flagged`. Message `i` is dated 2020-09-13 plus 5 minutes per message and is
/// the same on every run.
pub struct Generator;

impl Generator {
    pub fn message(i: usize) -> Generated {
        let mut rng = Rng(0x5eed_0000 ^ (i as u64).wrapping_mul(0x1000_0001));
        let date = 1_600_000_000 + 300 * i as i64;
        let from = NAMES[rng.below(NAMES.len() as u64) as usize];
        let subject = format!(
            "{} {} #{i}",
            WORDS[rng.below(WORDS.len() as u64) as usize],
            WORDS[rng.below(WORDS.len() as u64) as usize]
        );
        let kind = rng.below(100);
        let text_len = rng.range(2_000, 20_000);
        let mut out = Vec::with_capacity(text_len * 2 + 1024);
        let email = from.to_lowercase().replace(' ', ".");
        write!(
            out,
            "Return-Path: <{email}@example.org>\n\
             Received: from mx.example.org (mx.example.org [192.0.2.7])\n\tby mail.example.com \
             with ESMTPS id {i:08x}; {date}\n\
             From: {from} <{email}@example.org>\n\
             To: Bench User <bench@example.com>\n\
             Subject: {subject}\n\
             Date: {date}\n\
             Message-ID: <{i}.{seed:x}@example.org>\n\
             MIME-Version: 1.0\n",
            date = rfc2822(date),
            seed = rng.next() & 0xffff_ffff,
        )
        .unwrap();
        if kind < 60 {
            out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\n\n");
            text(&mut rng, &mut out, text_len);
        } else if kind < 95 {
            let b = format!("alt-{i}");
            write!(
                out,
                "Content-Type: multipart/alternative; boundary=\"{b}\"\n\n--{b}\n\
                 Content-Type: text/plain; charset=utf-8\n\n"
            )
            .unwrap();
            text(&mut rng, &mut out, text_len / 3);
            write!(out, "\n--{b}\nContent-Type: text/html; charset=utf-8\n\n").unwrap();
            html(&mut rng, &mut out, text_len * 2 / 3);
            write!(out, "\n--{b}--\n").unwrap();
        } else {
            let b = format!("mix-{i}");
            write!(
                out,
                "Content-Type: multipart/mixed; boundary=\"{b}\"\n\n--{b}\n\
                 Content-Type: text/html; charset=utf-8\n\n"
            )
            .unwrap();
            html(&mut rng, &mut out, text_len);
            let size = rng.range(100_000, 500_000);
            let mut bytes = vec![0u8; size];
            for chunk in bytes.chunks_mut(8) {
                let r = rng.next().to_le_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
            write!(
                out,
                "\n--{b}\nContent-Type: application/pdf; name=\"report-{i}.pdf\"\n\
                 Content-Disposition: attachment; filename=\"report-{i}.pdf\"\n\
                 Content-Transfer-Encoding: base64\n\n"
            )
            .unwrap();
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            for line in encoded.as_bytes().chunks(76) {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            writeln!(out, "--{b}--").unwrap();
        }
        Generated {
            raw: out,
            seen: rng.below(100) < 70,
            flagged: rng.below(100) < 5,
            date,
        }
    }
}

pub fn text(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    let end = out.len() + len;
    let mut line = 0;
    while out.len() < end {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        line += w.len() + 1;
        if line > 70 {
            out.push(b'\n');
            line = 0;
        } else {
            out.push(b' ');
        }
    }
    out.push(b'\n');
}

pub fn html(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    let end = out.len() + len;
    out.extend_from_slice(b"<html><head><style>p{font-family:sans-serif}</style></head><body>\n");
    while out.len() < end {
        out.extend_from_slice(b"<p>");
        let n = rng.range(20, 60);
        for k in 0..n {
            let w = WORDS[rng.below(WORDS.len() as u64) as usize];
            if k % 9 == 4 {
                write!(out, "<b>{w}</b>").unwrap();
            } else {
                out.extend_from_slice(w.as_bytes());
            }
            out.push(if k % 10 == 9 { b'\n' } else { b' ' });
        }
        out.extend_from_slice(b"</p>\n");
    }
    out.extend_from_slice(b"</body></html>\n");
}

pub fn rfc2822(unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
