//! The WBXML decoding budget at the gateway: an authenticated phone that POSTs a string-table
//! amplification document (one large entry referenced over and over) gets 400 at once, the
//! gateway's memory does not follow what the document would decode to, and other phones are
//! answered as before. Real HTTP, real Dovecot.

#[path = "../benches/common/amplification.rs"]
mod amplification;
mod eas;
mod support;

use amplification::amplification;

use std::time::{Duration, Instant};

use eas::{Gateway, Phone, find_text, folder_changes};
use eas_wbxml::tags::folderhierarchy as fh;

async fn provisioned(g: &Gateway, user: &str, device: &str) -> Phone {
    let (login, password) = support::credentials(user);
    let mut phone = Phone::new(g, &login, &password, device);
    phone.provision().await;
    phone
}

/// A field of /proc/self/status in KiB: the gateway runs in this process.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_table_amplification_is_refused_and_other_phones_carry_on() {
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let attacker = provisioned(&g, "mallory", "AMPLIFIER").await;

    // 260 KB that would decode to 6 GB of text, as the body of both commands.
    let doc = amplification(60_000, 100_000);
    for cmd in ["Sync", "FolderSync"] {
        let started = Instant::now();
        let answer = attacker.post(cmd, doc.clone()).await;
        let took = started.elapsed();
        assert_eq!(answer.status, 400, "{cmd}");
        assert!(took < Duration::from_secs(2), "{cmd} took {took:?}");
    }

    // The probe (120 KB that would decode to 1.8 GB), 100 at once: the peak RSS of this
    // process (gateway and clients together) stays within 100 MiB of where it was, the issue's
    // target, where a single probe used to take the gateway past 2 GB. As FolderSyncs, which
    // the cap on Pings and Syncs under way per user does not count: this is about decoding.
    let probe = amplification(60_000, 30_000);
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS");
    let before = status_kib("VmRSS:");
    let attacker = std::sync::Arc::new(attacker);
    let posts: Vec<_> = (0..100)
        .map(|_| {
            let (phone, body) = (attacker.clone(), probe.clone());
            tokio::spawn(async move { phone.post("FolderSync", body).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for p in posts {
        statuses.push(p.await.unwrap());
    }
    let peak = status_kib("VmHWM:");
    assert!(statuses.iter().all(|&s| s == 400), "{statuses:?}");
    let grew_mib = peak.saturating_sub(before) / 1024;
    assert!(grew_mib < 100, "peak RSS grew by {grew_mib} MiB");

    // Another phone, and the attacker's own next honest request, are answered as before.
    let other = provisioned(&g, "peggy", "HONESTPHONE").await;
    let tree = other.folder_sync("0").await;
    assert_eq!(find_text(&tree, fh::Status).as_deref(), Some("1"));
    let (added, _, _) = folder_changes(&tree);
    assert!(added.iter().any(|f| f.kind == 2), "no Inbox in {added:?}");
    assert_eq!(attacker.folder_sync_raw_status().await, 200);
}
