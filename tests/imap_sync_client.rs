//! What an EAS Sync needs from the IMAP client, against the real private Dovecot: ENABLE
//! CONDSTORE/QRESYNC, SELECT/EXAMINE with HIGHESTMODSEQ, QRESYNC SELECT (VANISHED EARLIER and
//! changed flags), typed UID FETCH (flags, dates, sizes, whole messages, sections, partial
//! ranges, CHANGEDSINCE/VANISHED), UID SEARCH with ESEARCH, UID STORE/COPY/MOVE/EXPUNGE,
//! APPEND with APPENDUID, STATUS, and unsolicited responses kept as events.
//!
//! Every test uses a user of its own (see `support::USERS`), so they run in parallel.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use eas_gateway::imap::{
    Event, FetchQuery, Flag, ImapDate, ImapError, Qresync, SearchKey, Section, SequenceSet,
    StoreMode,
};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Appends messages with the given subjects to `mailbox`; returns their UIDs in order.
async fn fill(user: &str, mailbox: &str, subjects: &[&str]) -> Vec<u32> {
    let mut s = support::session(user).await;
    let mut uids = Vec::new();
    for subject in subjects {
        let msg = support::message(subject, &format!("body of {subject}"));
        let appended = s.append_message(mailbox, &[], &msg).await.unwrap();
        uids.push(appended.expect("APPENDUID").uid);
    }
    s.logout().await.unwrap();
    uids
}

#[tokio::test]
async fn enable_select_examine_and_qresync_resync() {
    let user = "kim";
    let uids = fill(user, "INBOX", &["a", "b", "c", "d"]).await;
    let mut s = support::session(user).await;
    assert!(!s.is_enabled("QRESYNC"));
    assert!(s.enable_qresync().await.unwrap());
    assert!(s.is_enabled("QRESYNC") && s.is_enabled("condstore"));
    // Asking again is harmless and sends nothing new.
    assert!(
        s.enable(&["QRESYNC", "NOT-A-THING"])
            .await
            .unwrap()
            .is_empty()
    );

    let examined = s.examine("INBOX").await.unwrap();
    assert!(examined.read_only);
    let before = s.select("INBOX").await.unwrap();
    assert!(!before.read_only);
    assert_eq!(before.exists, 4);
    assert_eq!(before.uid_next, Some(uids[3] + 1));
    let modseq = before.highest_modseq.expect("HIGHESTMODSEQ");
    assert_eq!(examined.uid_validity, before.uid_validity);

    // Changes behind the session's back: one flagged, one expunged.
    support::store(user, "INBOX", &uids[1].to_string(), "+FLAGS (\\Flagged)").await;
    support::expunge(user, "INBOX", &uids[2].to_string()).await;

    s.select("Sent").await.unwrap();
    let known = Qresync {
        uid_validity: before.uid_validity,
        modseq,
        known_uids: Some(uids.iter().collect()),
    };
    let (after, resync) = s.select_qresync("INBOX", &known).await.unwrap();
    assert_eq!(after.exists, 3);
    assert!(after.highest_modseq.unwrap() > modseq);
    assert_eq!(resync.vanished, SequenceSet::single(uids[2]));
    assert_eq!(resync.changed.len(), 1, "{resync:?}");
    assert_eq!(resync.changed[0].uid, uids[1]);
    assert!(resync.changed[0].has(&Flag::Flagged));
    assert!(resync.changed[0].modseq.unwrap() > modseq);

    // A stale UIDVALIDITY: the server ignores the parameters; the caller sees the new one.
    let stale = Qresync {
        uid_validity: before.uid_validity.wrapping_add(1),
        ..known
    };
    let (status, resync) = s.select_qresync("INBOX", &stale).await.unwrap();
    assert_ne!(status.uid_validity, stale.uid_validity);
    assert!(resync.vanished.is_empty() && resync.changed.is_empty());

    let info = s.mailbox_status("INBOX").await.unwrap();
    assert_eq!(info.messages, 3);
    assert_eq!(info.unseen, 3);
    assert_eq!(info.uid_validity, before.uid_validity);
    assert_eq!(info.uid_next, uids[3] + 1);
    assert_eq!(info.highest_modseq, after.highest_modseq);
    s.logout().await.unwrap();
}

#[tokio::test]
async fn uid_fetch_is_typed_and_covers_sections_and_ranges() {
    let user = "lena";
    let mut s = support::session(user).await;
    let message = support::message("Typed", "Hello, typed world.");
    let appended = s
        .append_message(
            "INBOX",
            &[Flag::Seen, Flag::Keyword("$Forwarded".into())],
            &message,
        )
        .await
        .unwrap()
        .unwrap();
    let status = s.select("INBOX").await.unwrap();
    assert_eq!(appended.uid_validity, status.uid_validity);

    let subject = Section::HeaderFields(vec!["Subject".into()]);
    let query = FetchQuery::new()
        .flags()
        .internal_date()
        .size()
        .modseq()
        .body()
        .header()
        .section(Section::Text)
        .section(Section::Part(vec![1]))
        .section(subject.clone())
        .partial(Section::Full, 6, 6)
        .partial(Section::Text, 0, 5);
    let fetched = s
        .uid_fetch(&SequenceSet::single(appended.uid), &query)
        .await
        .unwrap();
    assert_eq!(fetched.len(), 1);
    let f = &fetched[0];
    assert_eq!(f.uid, appended.uid);
    assert_eq!(f.seq, 1);
    let flags = f.flags.as_ref().unwrap();
    assert!(flags.contains(&Flag::Seen), "{flags:?}");
    assert!(
        flags.contains(&Flag::Keyword("$Forwarded".into())),
        "{flags:?}"
    );
    assert_eq!(f.size, Some(message.len() as u64));
    assert!(f.modseq.unwrap() > 0);
    let date = f.internal_date.unwrap();
    assert!((date - now()).abs() < 120, "INTERNALDATE {date} is not now");
    assert_eq!(f.body(), Some(&message[..]));
    let header = f.header().unwrap();
    assert!(message.starts_with(header) && header.ends_with(b"\r\n\r\n"));
    assert_eq!(f.section(&Section::Text), Some(&message[header.len()..]));
    assert_eq!(
        f.section(&Section::Part(vec![1])),
        Some(&b"Hello, typed world.\r\n"[..])
    );
    assert_eq!(f.section(&subject), Some(&b"Subject: Typed\r\n\r\n"[..]));
    assert_eq!(f.partial(&Section::Full, 6), Some(&message[6..12]));
    assert_eq!(f.partial(&Section::Text, 0), Some(&b"Hello"[..]));
    // BODY.PEEK left \Seen alone; an unknown UID is simply missing.
    let none = s
        .uid_fetch(&SequenceSet::single(appended.uid + 100), &query)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(
        s.uid_fetch(&SequenceSet::new(), &query)
            .await
            .unwrap()
            .is_empty()
    );
    s.logout().await.unwrap();
}

#[tokio::test]
async fn large_messages_stream_one_at_a_time() {
    let user = "max";
    let mut big = support::message("big", "start");
    for i in 0..60_000u32 {
        big.extend_from_slice(format!("line {i} äöü \u{1F4EC}\r\n").as_bytes());
    }
    let mut s = support::session(user).await;
    let mut uids = Vec::new();
    for _ in 0..3 {
        uids.push(s.append("INBOX", &[], &big).await.unwrap().unwrap());
    }
    s.select("INBOX").await.unwrap();
    let all: SequenceSet = uids.iter().collect();
    let mut seen = Vec::new();
    for chunk in all.chunks(2) {
        s.uid_fetch_with(&chunk, &FetchQuery::new().size().body(), |mut f| {
            let body = f.take_section(&Section::Full).unwrap();
            assert_eq!(body.len() as u64, f.size.unwrap());
            assert!(body == big, "message {} differs", f.uid);
            seen.push(f.uid);
        })
        .await
        .unwrap();
    }
    assert_eq!(seen, uids);
    s.logout().await.unwrap();
}

#[tokio::test]
async fn flag_listings_and_changes_since_a_modseq() {
    let user = "nora";
    let uids = fill(user, "INBOX", &["1", "2", "3", "4", "5"]).await;
    let mut s = support::session(user).await;
    assert!(s.enable_qresync().await.unwrap());
    let status = s.select("INBOX").await.unwrap();
    let listing = s.uid_fetch_flags(&SequenceSet::all()).await.unwrap();
    assert_eq!(listing.iter().map(|m| m.uid).collect::<Vec<_>>(), uids);
    assert!(
        listing
            .iter()
            .all(|m| m.flags.is_empty() && m.modseq.is_some()),
        "{listing:?}"
    );
    let modseq = status.highest_modseq.unwrap();

    s.uid_store_flags_silent(&SequenceSet::single(uids[0]), StoreMode::Add, &[Flag::Seen])
        .await
        .unwrap();
    support::expunge(user, "INBOX", &uids[3].to_string()).await;
    // The session learns of the expunge (as VANISHED, QRESYNC being on) at its next command.
    s.noop().await.unwrap();
    let events = s.take_events();
    assert!(
        events.contains(&Event::Vanished(SequenceSet::single(uids[3]))),
        "{events:?}"
    );
    let changes = s
        .uid_fetch_changes(&SequenceSet::all(), modseq)
        .await
        .unwrap();
    assert_eq!(changes.changed.len(), 1, "{changes:?}");
    assert_eq!(changes.changed[0].uid, uids[0]);
    assert_eq!(changes.changed[0].flags, vec![Flag::Seen]);
    assert_eq!(changes.vanished, SequenceSet::single(uids[3]));
    // Nothing changed since the newest mod-sequence.
    let newest = changes.changed[0].modseq.unwrap();
    let none = s
        .uid_fetch_changes(&SequenceSet::all(), newest + 10)
        .await
        .unwrap();
    assert!(none.changed.is_empty(), "{none:?}");
    s.logout().await.unwrap();
}

#[tokio::test]
async fn search_by_text_dates_flags_and_uids() {
    let user = "oscar";
    let mut s = support::session(user).await;
    let mut uids = Vec::new();
    for (subject, body) in [
        ("Quarterly report", "numbers"),
        ("Grüße aus Köln", "Straße"),
        ("lunch?", "pizza \"quoted\" (parens) {5}\r\nA1 LOGOUT"),
    ] {
        let msg = support::message(subject, body);
        uids.push(
            s.append_message("INBOX", &[], &msg)
                .await
                .unwrap()
                .unwrap()
                .uid,
        );
    }
    s.select("INBOX").await.unwrap();
    assert!(s.capabilities().has("ESEARCH"));

    let all = s.uid_search(&SearchKey::All).await.unwrap();
    assert_eq!(all.uids, uids.iter().collect());
    assert_eq!(
        (all.count, all.min, all.max),
        (3, Some(uids[0]), Some(uids[2]))
    );

    let cases: Vec<(SearchKey, Vec<u32>)> = vec![
        (SearchKey::Subject("report".into()), vec![uids[0]]),
        (SearchKey::Subject("köln".into()), vec![uids[1]]),
        (SearchKey::Body("Straße".into()), vec![uids[1]]),
        (
            SearchKey::Text("\"quoted\" (parens) {5}".into()),
            vec![uids[2]],
        ),
        (SearchKey::From("sender@example.com".into()), uids.clone()),
        (
            SearchKey::or(
                SearchKey::Subject("lunch".into()),
                SearchKey::Subject("report".into()),
            ),
            vec![uids[0], uids[2]],
        ),
        (!SearchKey::Subject("lunch".into()), vec![uids[0], uids[1]]),
        (
            SearchKey::And(vec![
                SearchKey::Uid(SequenceSet::range(uids[1], uids[2])),
                !SearchKey::Deleted,
            ]),
            vec![uids[1], uids[2]],
        ),
        (
            SearchKey::Since(ImapDate::from_unix(now() - 3 * 86_400)),
            uids.clone(),
        ),
        (
            SearchKey::Before(ImapDate::new(2000, 1, 1).unwrap()),
            vec![],
        ),
        (
            SearchKey::Header("Subject".into(), "Quarterly".into()),
            vec![uids[0]],
        ),
        (SearchKey::Larger(10_000_000), vec![]),
    ];
    for (key, want) in cases {
        let got = s.uid_search(&key).await.unwrap();
        assert_eq!(got.uids, want.iter().collect(), "{key:?}");
        assert_eq!(got.count as usize, want.len(), "{key:?}");
    }

    s.uid_store_flags_silent(
        &SequenceSet::single(uids[1]),
        StoreMode::Add,
        &[Flag::Deleted, Flag::Keyword("$Work".into())],
    )
    .await
    .unwrap();
    for (key, want) in [
        (SearchKey::Deleted, vec![uids[1]]),
        (SearchKey::Keyword("$Work".into()), vec![uids[1]]),
        (SearchKey::Unkeyword("$Work".into()), vec![uids[0], uids[2]]),
        (SearchKey::Unseen, uids.clone()),
    ] {
        let got = s.uid_search(&key).await.unwrap();
        assert_eq!(got.uids, want.iter().collect::<SequenceSet>(), "{key:?}");
    }
    s.logout().await.unwrap();
}

#[tokio::test]
async fn store_copy_move_and_expunge_by_uid() {
    let user = "pia";
    let uids = fill(user, "INBOX", &["s1", "s2", "s3", "s4", "s5", "s6"]).await;
    let mut s = support::session(user).await;
    s.enable_qresync().await.unwrap();
    s.select("INBOX").await.unwrap();

    // STORE: the new flags come back typed, with their mod-sequence.
    let first_two: SequenceSet = uids[..2].iter().collect();
    let stored = s
        .uid_store_flags(
            &first_two,
            StoreMode::Add,
            &[Flag::Flagged, Flag::Keyword("$label1".into())],
        )
        .await
        .unwrap();
    assert_eq!(stored.iter().map(|m| m.uid).collect::<Vec<_>>(), uids[..2]);
    assert!(
        stored
            .iter()
            .all(|m| m.has(&Flag::Flagged) && m.modseq.is_some())
    );
    let removed = s
        .uid_store_flags(&first_two, StoreMode::Remove, &[Flag::Flagged])
        .await
        .unwrap();
    assert!(
        removed
            .iter()
            .all(|m| m.flags == [Flag::Keyword("$label1".into())]),
        "{removed:?}"
    );
    let replaced = s
        .uid_store_flags(
            &SequenceSet::single(uids[0]),
            StoreMode::Replace,
            &[Flag::Answered],
        )
        .await
        .unwrap();
    assert_eq!(replaced[0].flags, [Flag::Answered]);
    let refused = s
        .uid_store_flags(&first_two, StoreMode::Add, &[Flag::Keyword("a b".into())])
        .await;
    assert!(
        matches!(refused, Err(ImapError::InvalidArgument(_))),
        "{refused:?}"
    );

    // COPY: the COPYUID pairs each source UID with its copy.
    let archive = s.mailbox_status("Archive").await.unwrap();
    let copied = s.uid_copy(&first_two, "Archive").await.unwrap().unwrap();
    assert_eq!(copied.uid_validity, archive.uid_validity);
    assert_eq!(copied.source, first_two);
    let pairs: Vec<(u32, u32)> = copied.pairs().collect();
    assert_eq!(pairs.len(), 2);
    assert_eq!(copied.dest_of(uids[1]), Some(pairs[1].1));
    assert_eq!(
        s.uid_fetch_flags(&SequenceSet::all()).await.unwrap().len(),
        6
    );

    // MOVE: gone here (reported as VANISHED), there in the destination with its flags.
    s.take_events();
    let moved = s
        .uid_move(&SequenceSet::single(uids[0]), "Trash")
        .await
        .unwrap()
        .unwrap();
    let (_, trash_uid) = moved.pairs().next().unwrap();
    let events = s.take_events();
    assert!(
        events.contains(&Event::Vanished(SequenceSet::single(uids[0]))),
        "{events:?}"
    );
    // The fallback (COPY, \Deleted, UID EXPUNGE) does the same.
    let fallback = s
        .move_by_copy(&SequenceSet::single(uids[1]), "Trash")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fallback.source, SequenceSet::single(uids[1]));
    let left = s.uid_fetch_flags(&SequenceSet::all()).await.unwrap();
    assert_eq!(left.iter().map(|m| m.uid).collect::<Vec<_>>(), uids[2..]);

    // UID EXPUNGE removes only the UIDs named, even if others are \Deleted too.
    s.uid_store_flags_silent(
        &uids[2..4].iter().collect(),
        StoreMode::Add,
        &[Flag::Deleted],
    )
    .await
    .unwrap();
    s.uid_expunge(&SequenceSet::single(uids[2])).await.unwrap();
    let left = s.uid_fetch_flags(&SequenceSet::all()).await.unwrap();
    assert_eq!(left.iter().map(|m| m.uid).collect::<Vec<_>>(), uids[3..]);
    assert!(left[0].has(&Flag::Deleted));

    s.select("Trash").await.unwrap();
    let trash = s
        .uid_fetch(
            &SequenceSet::single(trash_uid),
            &FetchQuery::new().flags().body(),
        )
        .await
        .unwrap();
    assert_eq!(trash[0].flags.as_deref(), Some(&[Flag::Answered][..]));
    assert!(
        trash[0]
            .body()
            .unwrap()
            .windows(10)
            .any(|w| w == b"body of s1")
    );
    s.logout().await.unwrap();
}

#[tokio::test]
async fn unsolicited_responses_become_events_and_do_not_break_commands() {
    let user = "quinn";
    let uids = fill(user, "INBOX", &["u1", "u2"]).await;
    let mut s = support::session(user).await;
    s.select("INBOX").await.unwrap();
    assert!(
        s.take_events().is_empty(),
        "SELECT's own responses are not events"
    );

    // Another client delivers and flags while we are about to FETCH.
    support::deliver(user, &support::message("new", "mail")).await;
    support::store(user, "INBOX", &uids[0].to_string(), "+FLAGS (\\Flagged)").await;
    let fetched = s
        .uid_fetch(&SequenceSet::single(uids[1]), &FetchQuery::new().flags())
        .await
        .unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].uid, uids[1]);
    s.noop().await.unwrap();
    let events = s.take_events();
    assert!(events.contains(&Event::Exists(3)), "{events:?}");
    let flagged = events.iter().any(|e| match e {
        Event::Fetch(f) => {
            f.seq == 1
                && f.flags
                    .as_ref()
                    .is_some_and(|fl| fl.contains(&Flag::Flagged))
        }
        _ => false,
    });
    assert!(flagged, "{events:?}");
    assert!(s.take_events().is_empty());

    // Without QRESYNC, an expunge elsewhere arrives as EXPUNGE with a sequence number.
    support::expunge(user, "INBOX", &uids[0].to_string()).await;
    s.noop().await.unwrap();
    assert!(s.take_events().contains(&Event::Expunge(1)));
    s.logout().await.unwrap();
}
