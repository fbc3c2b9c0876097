//! Search beyond plain words, Find, the GAL and ResolveRecipients, against the real Dovecot
//! and the sample directory `fixtures/directory/people.vcf`; and a search over a
//! 10,000-message folder whose memory stays bounded.

mod eas;
mod support;

use base64::Engine as _;
use eas::{Gateway, Phone, find_text, folder_changes};
use eas_gateway::mime::{MessageMeta, MessageView};
use eas_testbed::MaildirMessage;
use eas_wbxml::Element;
use eas_wbxml::tags::{
    airsync as a, email as em, find as f, gal as g, resolverecipients as r, search as s,
};

fn people() -> String {
    format!(
        "vcard:{}/fixtures/directory/people.vcf",
        env!("CARGO_MANIFEST_DIR")
    )
}

async fn gateway() -> Gateway {
    Gateway::start(support::dovecot().imap_config(), |c| {
        c.directory.source = people();
    })
    .await
}

/// A provisioned phone after its FolderSync, with (name, id) of the folders.
async fn phone(g: &Gateway, user: &str, version: &'static str) -> (Phone, Vec<(String, String)>) {
    let (login, password) = support::credentials(user);
    let mut p = Phone::new(
        g,
        &login,
        &password,
        &format!("SEARCH{}", user.to_uppercase()),
    );
    p.version = version;
    p.provision().await;
    let fs = p.folder_sync("0").await;
    let (adds, _, _) = folder_changes(&fs);
    (p, adds.into_iter().map(|f| (f.name, f.id)).collect())
}

fn id_of(folders: &[(String, String)], name: &str) -> String {
    folders
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no folder {name}"))
        .1
        .clone()
}

fn texts(e: &Element, tag: eas_wbxml::Tag) -> Vec<String> {
    let mut out = Vec::new();
    if e.tag == tag {
        out.extend(e.text().map(str::to_owned));
    }
    for c in e.children() {
        out.extend(texts(c, tag));
    }
    out
}

fn store(t: &Element) -> &Element {
    t.child(s::Response).unwrap().child(s::Store).unwrap()
}

fn gal_query(query: &str, options: &str) -> String {
    format!(
        r#"<Search xmlns="Search:"><Store><Name>GAL</Name><Query>{query}</Query><Options>{options}</Options></Store></Search>"#
    )
}

#[tokio::test]
async fn gal_search_pages_through_the_directory_with_photos_under_the_limits() {
    let gw = gateway().await;
    let (p, _) = phone(&gw, "alice", "14.1").await;

    let all = p
        .send("Search", &gal_query("al", "<Range>0-9</Range>"))
        .await
        .tree();
    let st = store(&all);
    assert_eq!(find_text(st, s::Status).as_deref(), Some("1"));
    assert_eq!(
        texts(st, g::DisplayName),
        vec!["Albert Cole", "Alice Andersen", "Alicia Berg"],
        "{}",
        eas_wbxml::to_xml(&all)
    );
    assert_eq!(find_text(st, s::Total).as_deref(), Some("3"));
    assert_eq!(find_text(st, s::Range).as_deref(), Some("0-2"));
    // Every property the card has, in the GAL's own names.
    let alice = st.children_with(s::Result).nth(1).unwrap();
    let props = alice.child(s::Properties).unwrap();
    assert_eq!(
        find_text(props, g::EmailAddress).as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        find_text(props, g::MobilePhone).as_deref(),
        Some("+45 2222 0001")
    );
    assert_eq!(
        find_text(props, g::Office).as_deref(),
        Some("Copenhagen 3.14")
    );
    assert_eq!(find_text(props, g::Company).as_deref(), Some("Example A/S"));
    assert_eq!(find_text(props, g::Alias).as_deref(), Some("alice"));
    assert!(props.child(g::Picture).is_none(), "no photo unless asked");

    let page = p
        .send("Search", &gal_query("al", "<Range>1-1</Range>"))
        .await
        .tree();
    assert_eq!(texts(store(&page), g::DisplayName), vec!["Alice Andersen"]);
    assert_eq!(find_text(store(&page), s::Range).as_deref(), Some("1-1"));
    assert_eq!(find_text(store(&page), s::Total).as_deref(), Some("3"));

    // Two words narrow it down; a word nobody has finds nobody.
    let two = p.send("Search", &gal_query("alice and", "")).await.tree();
    assert_eq!(texts(store(&two), g::DisplayName), vec!["Alice Andersen"]);
    let none = p.send("Search", &gal_query("zebra", "")).await.tree();
    assert_eq!(find_text(store(&none), s::Total).as_deref(), Some("0"));
    assert!(store(&none).child(s::Result).is_none());

    // Photos: the one card with a photo gets it, the others say they have none.
    let card = std::fs::read_to_string(people().trim_start_matches("vcard:")).unwrap();
    let b64: String = card
        .split("PHOTO;ENCODING=b;TYPE=JPEG:")
        .nth(1)
        .unwrap()
        .split("\r\nEND:VCARD")
        .next()
        .unwrap()
        .replace("\r\n ", "");
    let photo = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let pics = p
        .send(
            "Search",
            &gal_query(
                "al",
                "<Range>0-9</Range><Picture><MaxPictures>5</MaxPictures></Picture>",
            ),
        )
        .await
        .tree();
    let statuses: Vec<String> = store(&pics)
        .children_with(s::Result)
        .map(|res| {
            find_text(
                res.child(s::Properties).unwrap().child(g::Picture).unwrap(),
                g::Status,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(statuses, vec!["173", "1", "173"]);
    let data = store(&pics)
        .children_with(s::Result)
        .nth(1)
        .unwrap()
        .child(s::Properties)
        .unwrap()
        .child(g::Picture)
        .unwrap()
        .child(g::Data)
        .unwrap()
        .opaque()
        .unwrap()
        .to_vec();
    assert_eq!(data, photo);
    let small = p
        .send(
            "Search",
            &gal_query("alice", "<Picture><MaxSize>10</MaxSize></Picture>"),
        )
        .await
        .tree();
    assert_eq!(texts(store(&small), g::Status), vec!["174"]);
    // iOS sends an empty Picture: no limits.
    let empty_pic = p
        .send("Search", &gal_query("alice", "<Picture/>"))
        .await
        .tree();
    assert_eq!(texts(store(&empty_pic), g::Status), vec!["1"]);

    // An empty query is a bad request, not "everybody".
    let empty = p.send("Search", &gal_query("", "")).await.tree();
    assert_eq!(find_text(store(&empty), s::Status).as_deref(), Some("2"));
}

#[tokio::test]
async fn without_a_directory_the_gal_and_resolve_recipients_truthfully_find_nobody() {
    let gw = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let (p, _) = phone(&gw, "bob", "14.1").await;
    let t = p.send("Search", &gal_query("alice", "")).await.tree();
    assert_eq!(find_text(store(&t), s::Status).as_deref(), Some("1"));
    assert_eq!(find_text(store(&t), s::Total).as_deref(), Some("0"));
    let rr = p
        .send("ResolveRecipients", r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>alice@example.com</To></ResolveRecipients>"#)
        .await
        .tree();
    assert_eq!(find_text(&rr, r::Status).as_deref(), Some("1"));
    let resp = rr.child(r::Response).unwrap();
    assert_eq!(find_text(resp, r::Status).as_deref(), Some("4"));
    assert_eq!(find_text(resp, r::RecipientCount).as_deref(), Some("0"));
}

#[tokio::test]
async fn resolve_recipients_answers_unique_ambiguous_and_unknown_names() {
    let gw = gateway().await;
    let (p, _) = phone(&gw, "carol", "14.1").await;
    let rr = p
        .send(
            "ResolveRecipients",
            r#"<ResolveRecipients xmlns="ResolveRecipients:">
                 <To>Alice Andersen &lt;ALICE@example.com&gt;</To><To>al</To><To>bert</To><To>nobody@example.org</To>
                 <Options><CertificateRetrieval>2</CertificateRetrieval><MaxAmbiguousRecipients>2</MaxAmbiguousRecipients>
                   <Availability><StartTime>2026-12-01T08:00:00.000Z</StartTime><EndTime>2026-12-01T10:00:00.000Z</EndTime></Availability>
                 </Options></ResolveRecipients>"#,
        )
        .await
        .tree();
    assert_eq!(
        find_text(&rr, r::Status).as_deref(),
        Some("1"),
        "{}",
        eas_wbxml::to_xml(&rr)
    );
    let responses: Vec<&Element> = rr.children_with(r::Response).collect();
    assert_eq!(responses.len(), 4);
    let status = |e: &Element| find_text(e, r::Status).unwrap();

    // An address in the directory: one GAL recipient, no certificate, free/busy unknown.
    let unique = responses[0];
    assert_eq!(status(unique), "1");
    assert_eq!(
        find_text(unique, r::To).as_deref(),
        Some("Alice Andersen <ALICE@example.com>")
    );
    let rec = unique.child(r::Recipient).unwrap();
    assert_eq!(find_text(rec, r::Type).as_deref(), Some("1"));
    assert_eq!(
        find_text(rec, r::DisplayName).as_deref(),
        Some("Alice Andersen")
    );
    assert_eq!(
        find_text(rec, r::EmailAddress).as_deref(),
        Some("alice@example.com")
    );
    let certs = rec.child(r::Certificates).unwrap();
    assert_eq!(find_text(certs, r::Status).as_deref(), Some("7"));
    assert_eq!(find_text(certs, r::CertificateCount).as_deref(), Some("0"));
    let avail = rec.child(r::Availability).unwrap();
    assert_eq!(find_text(avail, r::MergedFreeBusy).as_deref(), Some("4444"));

    // Three people start with "al": two suggestions shown, the count says three.
    let ambiguous = responses[1];
    assert_eq!(status(ambiguous), "3");
    assert_eq!(
        find_text(ambiguous, r::RecipientCount).as_deref(),
        Some("3")
    );
    assert_eq!(ambiguous.children_with(r::Recipient).count(), 2);
    assert!(
        ambiguous
            .children_with(r::Recipient)
            .all(|x| x.child(r::Certificates).is_none())
    );

    // A nickname resolves; an outside address is not resolved.
    assert_eq!(status(responses[2]), "1");
    assert_eq!(
        find_text(responses[2], r::EmailAddress).as_deref(),
        Some("albert@example.com")
    );
    assert_eq!(status(responses[3]), "4");
    assert_eq!(
        find_text(responses[3], r::RecipientCount).as_deref(),
        Some("0")
    );

    // Protocol errors: too many names, a free/busy span without a start.
    let many = format!(
        r#"<ResolveRecipients xmlns="ResolveRecipients:">{}</ResolveRecipients>"#,
        "<To>bob</To>".repeat(101)
    );
    assert_eq!(
        find_text(&p.send("ResolveRecipients", &many).await.tree(), r::Status).as_deref(),
        Some("5")
    );
    let no_start = r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>bob</To><Options><Availability><EndTime>2026-12-01T10:00:00.000Z</EndTime></Availability></Options></ResolveRecipients>"#;
    assert_eq!(
        find_text(
            &p.send("ResolveRecipients", no_start).await.tree(),
            r::Status
        )
        .as_deref(),
        Some("5")
    );
}

fn mail_with(subject: &str, body: &str, headers: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.com>\r\nTo: Dana <dana@example.com>\r\nCc: Eve <eve@example.com>\r\n\
         Subject: {subject}\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n{headers}MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn find_searches_the_mailbox_and_the_gal_in_its_own_shape() {
    let gw = gateway().await;
    let folder = support::unique("Projects");
    support::create("dave", &folder).await;
    support::append(
        "dave",
        "INBOX",
        &["\\Seen"],
        &mail_with(
            "Pineapple plan",
            "the pineapple budget",
            "Message-ID: <p1@example.com>\r\n",
        ),
    )
    .await;
    support::append(
        "dave",
        &folder,
        &[],
        &mail_with(
            "Status",
            "pineapple again",
            "Message-ID: <p2@example.com>\r\n",
        ),
    )
    .await;
    support::append(
        "dave",
        "INBOX",
        &[],
        &mail_with("Other", "nothing", "Message-ID: <p3@example.com>\r\n"),
    )
    .await;
    let (p, folders) = phone(&gw, "dave", "16.1").await;
    let inbox = id_of(&folders, "Inbox");

    let find = |criterion: String| {
        let p = &p;
        async move {
            p.send(
                "Find",
                &format!(
                    r#"<Find xmlns="Find:" xmlns:airsync="AirSync:" xmlns:gal="GAL:"><SearchId>6C1D5C33-7D7B-4B60-9E8D-0C5F4B6A1E11</SearchId><ExecuteSearch>{criterion}</ExecuteSearch></Find>"#
                ),
            )
            .await
            .tree()
        }
    };
    let all = find(r#"<MailBoxSearchCriterion><Query><airsync:Class>Email</airsync:Class><FreeText>pineapple</FreeText></Query><Options><Range>0-9</Range></Options></MailBoxSearchCriterion>"#.into()).await;
    let resp = all.child(f::Response).unwrap();
    assert_eq!(
        find_text(resp, f::Status).as_deref(),
        Some("1"),
        "{}",
        eas_wbxml::to_xml(&all)
    );
    assert_eq!(find_text(resp, f::Total).as_deref(), Some("2"));
    let results: Vec<&Element> = resp.children_with(f::Result).collect();
    assert_eq!(results.len(), 2);
    let subjects: Vec<String> = results
        .iter()
        .map(|r| find_text(r, em::Subject).unwrap())
        .collect();
    assert!(
        subjects.contains(&"Pineapple plan".to_owned()) && subjects.contains(&"Status".to_owned())
    );
    let plan = results
        .iter()
        .find(|r| find_text(r, em::Subject).as_deref() == Some("Pineapple plan"))
        .unwrap();
    assert_eq!(find_text(plan, a::CollectionId), Some(inbox.clone()));
    assert!(
        find_text(plan, a::ServerId)
            .unwrap()
            .starts_with(&format!("{inbox}:"))
    );
    let props = plan.child(f::Properties).unwrap();
    assert_eq!(find_text(props, em::Read).as_deref(), Some("1"));
    assert_eq!(find_text(props, em::DisplayTo).as_deref(), Some("Dana"));
    assert_eq!(find_text(props, f::DisplayCc).as_deref(), Some("Eve"));
    assert_eq!(
        find_text(props, f::Preview).as_deref(),
        Some("the pineapple budget")
    );
    assert_eq!(find_text(props, f::HasAttachments).as_deref(), Some("0"));

    // Only the Inbox when the query names it.
    let one = find(format!(r#"<MailBoxSearchCriterion><Query><airsync:Class>Email</airsync:Class><airsync:CollectionId>{inbox}</airsync:CollectionId><FreeText>pineapple</FreeText></Query><Options><Range>0-9</Range></Options></MailBoxSearchCriterion>"#)).await;
    assert_eq!(
        find_text(one.child(f::Response).unwrap(), f::Total).as_deref(),
        Some("1")
    );

    // Find's ranges start at 0; an unknown folder asks for a FolderSync.
    let bad_range = find(r#"<MailBoxSearchCriterion><Query><FreeText>pineapple</FreeText></Query><Options><Range>1-9</Range></Options></MailBoxSearchCriterion>"#.into()).await;
    assert_eq!(
        find_text(bad_range.child(f::Response).unwrap(), f::Status).as_deref(),
        Some("4")
    );
    let unknown = find(r#"<MailBoxSearchCriterion><Query><airsync:CollectionId>999</airsync:CollectionId><FreeText>pineapple</FreeText></Query></MailBoxSearchCriterion>"#.into()).await;
    assert_eq!(
        find_text(unknown.child(f::Response).unwrap(), f::Status).as_deref(),
        Some("3")
    );

    // The GAL part.
    let gal = find(r#"<GalSearchCriterion><Query><FreeText>bob</FreeText></Query><Options><Range>0-9</Range></Options></GalSearchCriterion>"#.into()).await;
    let resp = gal.child(f::Response).unwrap();
    assert_eq!(texts(resp, g::DisplayName), vec!["Bob Dahl"]);
    assert_eq!(
        find_text(resp, g::HomePhone).as_deref(),
        Some("+45 3333 0002")
    );
    assert_eq!(find_text(resp, f::Total).as_deref(), Some("1"));

    // Find is a 16.1 command.
    let (old, _) = phone(&gw, "dave", "14.1").await;
    let t = old
        .send("Find", r#"<Find xmlns="Find:"><SearchId>x</SearchId><ExecuteSearch><GalSearchCriterion><Query><FreeText>bob</FreeText></Query></GalSearchCriterion></ExecuteSearch></Find>"#)
        .await
        .tree();
    assert_eq!(find_text(&t, f::Status).as_deref(), Some("2"));
}

fn mailbox_search(query: &str) -> String {
    format!(
        r#"<Search xmlns="Search:" xmlns:airsync="AirSync:" xmlns:email2="Email2:"><Store><Name>Mailbox</Name><Query>{query}</Query><Options><Range>0-9</Range><RebuildResults/><DeepTraversal/></Options></Store></Search>"#
    )
}

#[tokio::test]
async fn search_by_conversation_and_alternative_words() {
    let gw = gateway().await;
    let root = mail_with(
        "Kiwi harvest",
        "first kiwi note",
        "Message-ID: <root-kiwi@example.com>\r\n",
    );
    support::append("erin", "INBOX", &[], &root).await;
    support::append("erin", "INBOX", &[], &mail_with("Re: Kiwi harvest", "a reply", "Message-ID: <reply-kiwi@example.com>\r\nIn-Reply-To: <root-kiwi@example.com>\r\nReferences: <root-kiwi@example.com>\r\n")).await;
    support::append("erin", "Sent", &[], &mail_with("Re: Kiwi harvest", "my reply", "Message-ID: <sent-kiwi@example.com>\r\nReferences: <root-kiwi@example.com> <reply-kiwi@example.com>\r\n")).await;
    support::append(
        "erin",
        "INBOX",
        &[],
        &mail_with(
            "Mango",
            "mango only, mentions root-kiwi@example.com in text",
            "Message-ID: <mango@example.com>\r\n",
        ),
    )
    .await;
    support::append(
        "erin",
        "Archive",
        &[],
        b"From: Zoltan Quimby <zq@example.net>\r\nTo: erin@example.com\r\nSubject: Hello\r\n\
          Message-ID: <zq@example.net>\r\n\r\nplain words\r\n",
    )
    .await;
    let (p, _) = phone(&gw, "erin", "14.1").await;

    let id = MessageView::parse(
        &root,
        MessageMeta {
            flags: vec![],
            internal_date: 0,
            size: root.len() as u64,
        },
    )
    .conversation_id();
    let b64 = base64::engine::general_purpose::STANDARD.encode(id);
    let t = p
        .send("Search", &mailbox_search(&format!(r#"<And><airsync:Class>Email</airsync:Class><ConversationId opaque="base64">{b64}</ConversationId></And>"#)))
        .await
        .tree();
    let st = store(&t);
    assert_eq!(
        find_text(st, s::Status).as_deref(),
        Some("1"),
        "{}",
        eas_wbxml::to_xml(&t)
    );
    assert_eq!(
        find_text(st, s::Total).as_deref(),
        Some("3"),
        "root, reply and sent reply: {}",
        eas_wbxml::to_xml(&t)
    );
    assert!(
        texts(st, em::Subject)
            .iter()
            .all(|x| x.contains("Kiwi harvest"))
    );

    // An id nobody has: no results, not an error.
    let nobody = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
    let t = p
        .send(
            "Search",
            &mailbox_search(&format!(
                r#"<ConversationId opaque="base64">{nobody}</ConversationId>"#
            )),
        )
        .await
        .tree();
    assert_eq!(find_text(store(&t), s::Total).as_deref(), Some("0"));

    // Or of words: either one.
    let t = p
        .send(
            "Search",
            &mailbox_search(
                "<And><Or><FreeText>mango</FreeText><FreeText>first kiwi</FreeText></Or></And>",
            ),
        )
        .await
        .tree();
    let mut subjects = texts(store(&t), em::Subject);
    subjects.sort();
    assert_eq!(subjects, vec!["Kiwi harvest", "Mango"]);
    // A sender's name, in another folder than the INBOX.
    let t = p
        .send(
            "Search",
            &mailbox_search("<And><FreeText>quimby</FreeText></And>"),
        )
        .await
        .tree();
    assert_eq!(texts(store(&t), em::Subject), vec!["Hello"]);
    assert_eq!(
        texts(store(&t), em::From),
        vec!["\"Zoltan Quimby\" <zq@example.net>"]
    );
    // An Or over dates is more than IMAP can express for us: "too complex".
    let t = p
        .send("Search", &mailbox_search(r#"<Or><FreeText>a</FreeText><GreaterThan><email:DateReceived xmlns:email="Email:"/><Value>2025-01-01T00:00:00.000Z</Value></GreaterThan></Or>"#))
        .await
        .tree();
    assert_eq!(find_text(store(&t), s::Status).as_deref(), Some("8"));
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_ten_thousand_messages_holds_only_the_page() {
    const N: usize = 10_000;
    const BODY: usize = 16 * 1024;
    let gw = gateway().await;
    let (login, _) = support::credentials("frank");
    // 10,000 messages of 16 KiB (160 MiB) that all match: loading the folder would show.
    let filler = "lorem ipsum dolor sit amet ".repeat(BODY / 27);
    let messages = (0..N).map(|i| MaildirMessage {
        raw: format!(
            "From: x@example.com\r\nTo: frank@example.com\r\nSubject: Haystack {i}\r\nMessage-ID: <h{i}@example.com>\r\n\
             Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n\r\nhaystack {filler}\r\n"
        )
        .into_bytes(),
        date: 1_700_000_000 + i as i64 * 60,
        seen: false,
        flagged: false,
    });
    support::dovecot().write_inbox(&login, messages).unwrap();
    let (p, _) = phone(&gw, "frank", "14.1").await;

    let before = rss_kib();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let ans = p
        .send(
            "Search",
            r#"<Search xmlns="Search:" xmlns:airsync="AirSync:"><Store><Name>Mailbox</Name><Query><And><airsync:Class>Email</airsync:Class><FreeText>haystack</FreeText></And></Query><Options><Range>0-9</Range></Options></Store></Search>"#,
        )
        .await;
    if ans.status != 200 {
        let log = std::fs::read_to_string(support::dovecot().log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        panic!("HTTP {}; Dovecot's log ends with {tail:#?}", ans.status);
    }
    let t = ans.tree();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let st = store(&t);
    assert_eq!(find_text(st, s::Total).as_deref(), Some("10000"));
    assert_eq!(find_text(st, s::Range).as_deref(), Some("0-9"));
    let subjects = texts(st, em::Subject);
    let expected: Vec<String> = (N - 10..N).rev().map(|i| format!("Haystack {i}")).collect();
    assert_eq!(subjects, expected, "newest first");
    let grown_mib = (peak.load(std::sync::atomic::Ordering::Relaxed) - before) / 1024;
    assert!(
        grown_mib < 48,
        "searching 160 MiB grew the process by {grown_mib} MiB"
    );
}
