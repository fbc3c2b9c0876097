//! Memory bounds of a request, against the real gateway and Dovecot: how many operations an
//! ItemOperations may hold, how much data its response may carry, the policy's attachment
//! limits enforced by the server, and messages longer than the gateway fetches whole (the
//! IMAP client's response cap).

#[path = "../benches/common/amplification.rs"]
mod amplification;
mod eas;
mod support;

use base64::Engine as _;
use eas::{Gateway, Phone, find_text, folder_changes};
use eas_gateway::config::Config;
use eas_gateway::imap::{FetchQuery, ImapError, SequenceSet};
use eas_wbxml::Element;
use eas_wbxml::tags::{airsync as a, airsyncbase as asb, itemoperations as io};

/// Deterministic bytes that do not compress to nothing.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A message with a short text and one attachment per entry of `sizes` (parts 2, 3, …).
fn with_attachments(subject: &str, sizes: &[usize]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut m = format!(
        "From: Sender <sender@example.com>\r\nTo: someone@example.com\r\nSubject: {subject}\r\n\
         Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <{}@example.com>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0undary\"\r\n\r\n\
         --b0undary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n",
        support::unique("att")
    );
    let mut files = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let data = noise(size, i as u32 + 7);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        m.push_str(&format!(
            "--b0undary\r\nContent-Type: application/octet-stream\r\n\
             Content-Disposition: attachment; filename=\"file{i}.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        ));
        for line in b64.as_bytes().chunks(76) {
            m.push_str(std::str::from_utf8(line).unwrap());
            m.push_str("\r\n");
        }
        files.push(data);
    }
    m.push_str("--b0undary--\r\n");
    (m.into_bytes(), files)
}

async fn gateway(tweak: impl FnOnce(&mut Config)) -> Gateway {
    Gateway::start(support::dovecot().imap_config(), tweak).await
}

/// A provisioned phone after FolderSync, and the Inbox's CollectionId.
async fn phone(g: &Gateway, user: &str) -> (Phone, String) {
    let (login, password) = support::credentials(user);
    let mut p = Phone::new(g, &login, &password, &format!("IOL{}", user.to_uppercase()));
    p.provision().await;
    let (adds, _, _) = folder_changes(&p.folder_sync("0").await);
    let inbox = adds.iter().find(|f| f.name == "Inbox").unwrap().id.clone();
    (p, inbox)
}

async fn item_operations(p: &Phone, ops: &str) -> Element {
    p.send(
        "ItemOperations",
        &format!(
            r#"<ItemOperations xmlns="ItemOperations:" xmlns:airsync="AirSync:" xmlns:airsyncbase="AirSyncBase:">{ops}</ItemOperations>"#
        ),
    )
    .await
    .tree()
}

fn fetch_attachment(reference: &str, range: Option<&str>) -> String {
    let options = range
        .map(|r| format!("<Options><Range>{r}</Range></Options>"))
        .unwrap_or_default();
    format!(
        "<Fetch><Store>Mailbox</Store><airsyncbase:FileReference>{reference}</airsyncbase:FileReference>{options}</Fetch>"
    )
}

/// (Status, decoded Data) of each operation of the response, in order.
fn answers(r: &Element) -> Vec<(String, Option<Vec<u8>>)> {
    assert_eq!(
        find_text(r, io::Status).as_deref(),
        Some("1"),
        "global status"
    );
    r.child(io::Response)
        .expect("Response")
        .children()
        .iter()
        .map(|op| {
            let status = op.child(io::Status).and_then(|s| s.text()).unwrap();
            let data = op
                .child(io::Properties)
                .and_then(|p| p.child(io::Data))
                .map(|d| {
                    base64::engine::general_purpose::STANDARD
                        .decode(d.text().unwrap_or(""))
                        .expect("Data is base64")
                });
            (status.to_owned(), data)
        })
        .collect()
}

/// The folder's items from key 0, with MIME bodies (Type 4) up to 4 MB: (ServerId, Body).
async fn sync_mime(p: &Phone, inbox: &str) -> Vec<(String, Element)> {
    let first = p
        .send(
            "Sync",
            &format!(
                r#"<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>0</SyncKey><CollectionId>{inbox}</CollectionId></Collection></Collections></Sync>"#
            ),
        )
        .await
        .tree();
    let key = find_text(&first, a::SyncKey).unwrap();
    let page = p
        .send(
            "Sync",
            &format!(
                r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{inbox}</CollectionId><GetChanges/><WindowSize>50</WindowSize>
                   <Options><airsyncbase:BodyPreference><airsyncbase:Type>4</airsyncbase:Type><airsyncbase:TruncationSize>4000000</airsyncbase:TruncationSize></airsyncbase:BodyPreference></Options></Collection></Collections></Sync>"#
            ),
        )
        .await
        .tree();
    let commands = page
        .child(a::Collections)
        .and_then(|c| c.child(a::Collection))
        .and_then(|c| c.child(a::Commands))
        .unwrap_or_else(|| panic!("no Commands in {}", eas_wbxml::to_xml(&page)));
    commands
        .children_with(a::Add)
        .map(|add| {
            let id = find_text(add, a::ServerId).unwrap();
            let body = add
                .child(a::ApplicationData)
                .and_then(|d| d.child(asb::Body))
                .unwrap()
                .clone();
            (id, body)
        })
        .collect()
}

/// The first line of an attachment's base64, as a mailer writes it.
fn first_line(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(&data[..57])
}

fn statuses(r: &Element) -> Vec<String> {
    answers(r).into_iter().map(|(s, _)| s).collect()
}

#[tokio::test]
async fn operations_past_the_limit_get_status_2_and_are_not_run() {
    let g = gateway(|c| c.limits.item_operations_per_request = 3).await;
    let (p, inbox) = phone(&g, "alice").await;
    let (raw, files) = with_attachments("Five asks", &[3000]);
    let uid = support::append("alice", "INBOX", &[], &raw).await;
    let reference = format!("{inbox}:{uid}:2");
    let five: String = (0..5).map(|_| fetch_attachment(&reference, None)).collect();
    let r = item_operations(&p, &five).await;
    let got = answers(&r);
    assert_eq!(
        got.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["1", "1", "1", "2", "2"]
    );
    for (_, data) in &got[..3] {
        assert_eq!(data.as_deref(), Some(&files[0][..]));
    }
    // The refused ones still say which operation they answer.
    let ops = r.child(io::Response).unwrap().children();
    assert_eq!(
        find_text(&ops[4], asb::FileReference).as_deref(),
        Some(reference.as_str())
    );
    assert!(ops[4].child(io::Properties).is_none());

    // An EmptyFolderContents past the limit is not run either.
    support::append("alice", "Trash", &[], &support::message("rubbish", "x")).await;
    let (adds, _, _) = folder_changes(&p.folder_sync("0").await);
    let trash = adds.iter().find(|f| f.name == "Trash").unwrap().id.clone();
    let three = fetch_attachment(&reference, None).repeat(3);
    let r = item_operations(
        &p,
        &format!(
            "{three}<EmptyFolderContents><airsync:CollectionId>{trash}</airsync:CollectionId></EmptyFolderContents>"
        ),
    )
    .await;
    assert_eq!(statuses(&r), ["1", "1", "1", "2"]);
    let mut s = support::session("alice").await;
    assert_eq!(
        s.select("Trash").await.unwrap().exists,
        1,
        "Trash untouched"
    );
    let _ = s.logout().await;
}

#[tokio::test]
async fn the_response_carries_at_most_its_budget_and_the_rest_is_asked_again() {
    // 64 KiB of response: one 40,000-byte attachment (53 KB in base64) fits, two do not.
    let g = gateway(|c| c.limits.item_operations_response_bytes = 64 * 1024).await;
    let (p, inbox) = phone(&g, "bob").await;
    let (raw, files) = with_attachments("Three files", &[40_000, 40_000, 40_000]);
    let uid = support::append("bob", "INBOX", &[], &raw).await;
    let reference = |part: u32| format!("{inbox}:{uid}:{part}");
    let r = item_operations(
        &p,
        &format!(
            "{}{}{}{}",
            fetch_attachment(&reference(2), None),
            fetch_attachment(&reference(3), None),
            // A small range still fits after the first file.
            fetch_attachment(&reference(4), Some("100-199")),
            fetch_attachment(&reference(4), None),
        ),
    )
    .await;
    let got = answers(&r);
    assert_eq!(
        got.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["1", "11", "1", "11"]
    );
    assert_eq!(got[0].1.as_deref(), Some(&files[0][..]));
    assert_eq!(got[2].1.as_deref(), Some(&files[2][100..200]));
    let ops = r.child(io::Response).unwrap().children();
    assert_eq!(find_text(&ops[2], io::Range).as_deref(), Some("100-199"));
    assert_eq!(find_text(&ops[2], io::Total).as_deref(), Some("40000"));
    assert!(r.encode().len() < 64 * 1024 + 1024, "{}", r.encode().len());

    // Asked for on its own, a refused file comes whole: the first fetch of a response is
    // always served, even when it is larger than the budget.
    let r = item_operations(&p, &fetch_attachment(&reference(3), None)).await;
    assert_eq!(answers(&r)[0].1.as_deref(), Some(&files[1][..]));
    let (raw, big) = with_attachments("Big one", &[100_000]);
    let uid = support::append("bob", "INBOX", &[], &raw).await;
    let big_ref = format!("{inbox}:{uid}:2");
    let r = item_operations(
        &p,
        &format!(
            "{}{}",
            fetch_attachment(&big_ref, None),
            fetch_attachment(&reference(2), None)
        ),
    )
    .await;
    let got = answers(&r);
    assert_eq!(got[0], ("1".to_owned(), Some(big[0].clone())));
    assert_eq!(got[1].0, "11");

    // Whole items count too: after a large attachment, an item fetch waits for its turn.
    let item = format!(
        "<Fetch><Store>Mailbox</Store><airsync:CollectionId>{inbox}</airsync:CollectionId>\
         <airsync:ServerId>{inbox}:{uid}</airsync:ServerId><Options><airsyncbase:BodyPreference>\
         <airsyncbase:Type>1</airsyncbase:Type></airsyncbase:BodyPreference></Options></Fetch>"
    );
    let r = item_operations(&p, &format!("{}{item}", fetch_attachment(&big_ref, None))).await;
    assert_eq!(statuses(&r), ["1", "11"]);
    let r = item_operations(&p, &item).await;
    assert_eq!(statuses(&r), ["1"]);
    assert_eq!(
        find_text(&r, eas_wbxml::tags::email::Subject).as_deref(),
        Some("Big one")
    );
}

#[tokio::test]
async fn the_policy_attachment_limit_is_enforced_by_the_server() {
    let g = gateway(|c| c.provision.policy.max_attachment_bytes = Some(20_000)).await;
    let (p, inbox) = phone(&g, "carol").await;
    let (raw, files) = with_attachments("Small and large", &[10_000, 30_000]);
    let uid = support::append("carol", "INBOX", &[], &raw).await;
    let small = format!("{inbox}:{uid}:2");
    let large = format!("{inbox}:{uid}:3");
    let r = item_operations(
        &p,
        &format!(
            "{}{}{}",
            fetch_attachment(&small, None),
            fetch_attachment(&large, None),
            // A range does not get round the limit: it is the attachment's size that counts.
            fetch_attachment(&large, Some("0-99")),
        ),
    )
    .await;
    let got = answers(&r);
    assert_eq!(got[0], ("1".to_owned(), Some(files[0].clone())));
    assert_eq!((got[1].0.as_str(), got[1].1.is_none()), ("11", true));
    assert_eq!((got[2].0.as_str(), got[2].1.is_none()), ("11", true));
    assert_eq!(
        find_text(
            &r.child(io::Response).unwrap().children()[1],
            asb::FileReference
        )
        .as_deref(),
        Some(large.as_str())
    );
    // Nor does a MIME body: it carries the small attachment, and of the large one only its
    // headers and size.
    let items = sync_mime(&p, &inbox).await;
    let mime = find_text(&items[0].1, asb::Data).unwrap();
    assert!(mime.contains("Subject: Small and large"));
    assert!(mime.contains(&first_line(&files[0])));
    assert!(!mime.contains(&first_line(&files[1])));
    assert!(mime.contains("filename=\"file1.bin\""));
    assert!(
        mime.len() < raw.len() / 2,
        "{} of {}",
        mime.len(),
        raw.len()
    );
}

#[tokio::test]
async fn attachments_forbidden_by_the_policy_are_refused() {
    let g = gateway(|c| c.provision.policy.allow_attachments = false).await;
    let (p, inbox) = phone(&g, "dave").await;
    let (raw, files) = with_attachments("Not for phones", &[2_000]);
    let uid = support::append("dave", "INBOX", &[], &raw).await;
    let r = item_operations(&p, &fetch_attachment(&format!("{inbox}:{uid}:2"), None)).await;
    let got = answers(&r);
    assert_eq!((got[0].0.as_str(), got[0].1.is_none()), ("6", true));
    let items = sync_mime(&p, &inbox).await;
    let mime = find_text(&items[0].1, asb::Data).unwrap();
    assert!(mime.contains("Subject: Not for phones"));
    assert!(!mime.contains(&first_line(&files[0])));
    assert_eq!(find_text(&items[0].1, asb::Truncated).as_deref(), Some("1"));
}

#[tokio::test]
async fn a_message_longer_than_the_gateway_fetches_is_shown_cut_and_its_attachments_refused() {
    let g = gateway(|c| c.limits.max_message_bytes = 1024 * 1024).await;
    let (p, inbox) = phone(&g, "erin").await;
    // About 2 MB of message: a 1.5 MB attachment in base64.
    let (raw, _) = with_attachments("Too long", &[1_500_000]);
    assert!(raw.len() > 1024 * 1024 + 100_000);
    let uid = support::append("erin", "INBOX", &[], &raw).await;
    let (small_raw, small) = with_attachments("Short", &[5_000]);
    let small_uid = support::append("erin", "INBOX", &[], &small_raw).await;

    // Sync shows it (from its first MiB) instead of failing on it again and again.
    let items = sync_mime(&p, &inbox).await;
    assert_eq!(items.len(), 2);
    let (_, body) = items
        .iter()
        .find(|(id, _)| *id == format!("{inbox}:{uid}"))
        .unwrap();
    // The MIME body is what was read, and says it is not all of the message.
    assert_eq!(find_text(body, asb::Truncated).as_deref(), Some("1"));
    assert_eq!(
        find_text(body, asb::EstimatedDataSize),
        Some(raw.len().to_string())
    );
    let data = find_text(body, asb::Data).unwrap();
    assert!(data.len() <= 1024 * 1024, "{}", data.len());
    assert!(data.contains("Subject: Too long"));

    // Its attachment is refused without being read; the next fetch in the same request is
    // served.
    let r = item_operations(
        &p,
        &format!(
            "{}{}",
            fetch_attachment(&format!("{inbox}:{uid}:2"), None),
            fetch_attachment(&format!("{inbox}:{small_uid}:2"), None)
        ),
    )
    .await;
    let got = answers(&r);
    assert_eq!((got[0].0.as_str(), got[0].1.is_none()), ("11", true));
    assert_eq!(got[1], ("1".to_owned(), Some(small[0].clone())));
}

/// Find (16.1) shows a message longer than the IMAP client takes whole (the cap plus 8 MiB)
/// from what was read, instead of failing the whole search.
#[tokio::test]
async fn find_lists_a_message_over_the_imap_cap() {
    let g = gateway(|c| c.limits.max_message_bytes = 1024 * 1024).await;
    let (mut p, _) = phone(&g, "kim").await;
    // About 13 MB of message: a 10 MB attachment in base64, over 1 MiB + 8 MiB.
    let (raw, _) = with_attachments("Far too long", &[10_000_000]);
    assert!(raw.len() > 9 * 1024 * 1024 + 100_000);
    support::append("kim", "INBOX", &[], &raw).await;
    p.version = "16.1";
    p.device_id = "FINDER".into();
    p.policy_key = None;
    p.provision().await;
    p.folder_sync("0").await;
    let found = p
        .send(
            "Find",
            r#"<Find xmlns="Find:" xmlns:airsync="AirSync:"><SearchId>F1</SearchId><ExecuteSearch><MailBoxSearchCriterion><Query><airsync:Class>Email</airsync:Class><FreeText>Far</FreeText></Query><Options><Range>0-9</Range></Options></MailBoxSearchCriterion></ExecuteSearch></Find>"#,
        )
        .await;
    assert_eq!(found.status, 200, "the whole Find failed");
    let tree = found.tree();
    let response = tree.child(eas_wbxml::tags::find::Response).unwrap();
    assert_eq!(
        find_text(response, eas_wbxml::tags::find::Status).as_deref(),
        Some("1"),
        "{}",
        found.xml()
    );
    assert!(found.xml().contains("Far too long"), "{}", found.xml());
}

#[tokio::test]
async fn the_imap_client_refuses_a_literal_over_its_cap_before_reading_it() {
    let (raw, _) = with_attachments("Over the cap", &[3_000_000]);
    let uid = support::append("frank", "INBOX", &[], &raw).await;
    let small = support::append("frank", "INBOX", &[], &support::message("fits", "x")).await;
    let mut s = support::session("frank").await;
    s.set_max_response_bytes(1024 * 1024);
    s.select("INBOX").await.unwrap();
    let fits = s
        .uid_fetch(&SequenceSet::single(small), &FetchQuery::new().body())
        .await
        .unwrap();
    assert_eq!(fits.len(), 1);
    let started = std::time::Instant::now();
    let e = s
        .uid_fetch(&SequenceSet::single(uid), &FetchQuery::new().body())
        .await
        .unwrap_err();
    assert!(
        matches!(e, ImapError::TooLarge { limit } if limit == 1024 * 1024),
        "{e:?}"
    );
    assert!(e.is_fatal(), "the rest of the literal is still on the wire");
    // Refused from the announcement: no waiting for 4 MB to arrive.
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // A partial fetch within the cap reads the same message's start.
    let mut s = support::session("frank").await;
    s.set_max_response_bytes(1024 * 1024);
    s.select("INBOX").await.unwrap();
    let mut f = s
        .uid_fetch(
            &SequenceSet::single(uid),
            &FetchQuery::new()
                .size()
                .partial(eas_gateway::imap::Section::Full, 0, 512 * 1024),
        )
        .await
        .unwrap();
    let head = f[0]
        .take_partial(&eas_gateway::imap::Section::Full, 0)
        .unwrap();
    assert_eq!(head, raw[..512 * 1024]);
    assert_eq!(f[0].size, Some(raw.len() as u64));
    let _ = s.logout().await;
}

/// The gateway's peak memory (VmHWM) while one phone fetches ten attachments in one
/// ItemOperations. Runs `eas-gateway serve` as a child process (its own RSS, not this
/// harness's) against this binary's Dovecot:
///
/// ```text
/// cargo build --release --bin eas-gateway
/// ITEMOPS_GATEWAY=target/release/eas-gateway ITEMOPS_MB=2 \
///   cargo test --test itemoperations_limits -- --ignored --nocapture peak_memory
/// ```
///
/// `ITEMOPS_MB` is each attachment's size in MB (default 2: 20 MB in all); `ITEMOPS_GATEWAY`
/// any build of the gateway (an older one measures the "before"); `ITEMOPS_BUDGET` sets
/// `limits.item_operations_response_bytes`. docs/benchmarks.md has the figures.
#[tokio::test]
#[ignore = "a measurement: run on its own with --ignored --nocapture"]
async fn peak_memory_of_a_ten_fetch_item_operations() {
    let binary = std::env::var("ITEMOPS_GATEWAY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_eas-gateway").to_owned());
    let mb: usize = std::env::var("ITEMOPS_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let user = "judy";
    let (login, password) = support::credentials(user);
    let mut references = Vec::new();
    let mut sizes = Vec::new();
    for i in 0..10 {
        let (raw, files) = with_attachments(&format!("File {i}"), &[mb * 1_000_000]);
        sizes.push(files[0].len());
        let uid = support::append(user, "INBOX", &[], &raw).await;
        references.push(uid);
    }

    // ITEMOPS_BUDGET: limits.item_operations_response_bytes (left out by default, so that
    // a gateway without the setting can be measured too).
    let extra = match std::env::var("ITEMOPS_BUDGET") {
        Ok(bytes) => format!("[limits]\nitem_operations_response_bytes = {bytes}\n"),
        Err(_) => String::new(),
    };
    let child =
        eas_testbed::ChildGateway::start(&binary, &[], &support::dovecot().imap_config(), &extra)
            .await
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
    let kib = |field: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", child.pid()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };

    let mut p = Phone {
        client: reqwest::Client::new(),
        base: child.base.clone(),
        login,
        password,
        device_id: "IOLMEMORY".into(),
        device_type: "iPhone".into(),
        version: "14.1",
        form: eas::QueryForm::Plain,
        policy_key: None,
    };
    p.provision().await;
    let (adds, _, _) = folder_changes(&p.folder_sync("0").await);
    let inbox = adds.iter().find(|f| f.name == "Inbox").unwrap().id.clone();
    let idle = kib("VmHWM");
    let ops: String = references
        .iter()
        .map(|uid| fetch_attachment(&format!("{inbox}:{uid}:2"), None))
        .collect();
    // ITEMOPS_AMPLIFY=N: meanwhile N string-table amplification documents (issue 18, point 1)
    // are POSTed at once by another device, for the combined figure.
    let amplify: usize = std::env::var("ITEMOPS_AMPLIFY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let attackers: Vec<_> = (0..amplify)
        .map(|i| {
            let mut a = p.clone();
            a.device_id = format!("AMPLIFY{i}");
            tokio::spawn(async move {
                a.post("FolderSync", amplification::amplification(60_000, 30_000))
                    .await
                    .status
            })
        })
        .collect();
    let t = std::time::Instant::now();
    let answer = p
        .send(
            "ItemOperations",
            &format!(
                r#"<ItemOperations xmlns="ItemOperations:" xmlns:airsync="AirSync:" xmlns:airsyncbase="AirSyncBase:">{ops}</ItemOperations>"#
            ),
        )
        .await;
    let took = t.elapsed();
    let mut refused = 0;
    for a in attackers {
        refused += usize::from(a.await.unwrap() == 400);
    }
    assert_eq!(refused, amplify, "every amplification document is refused");
    let bytes = answer.body.len();
    assert_eq!(answer.status, 200);
    // The response of the gateway before these limits is larger than a request may be.
    let tree = Element::decode_with(&answer.body, eas_wbxml::Limits::for_body(1 << 30)).unwrap();
    let got = answers(&tree);
    let served = got.iter().filter(|(s, _)| s == "1").count();
    for ((status, data), size) in got.iter().zip(&sizes) {
        if status == "1" {
            assert_eq!(data.as_ref().map(Vec::len), Some(*size));
        }
    }
    let peak = kib("VmHWM");
    let after = kib("VmRSS");
    println!(
        "{binary}: 10 fetches of {mb} MB attachments ({amplify} amplification POSTs meanwhile): {served} served ({} statuses {:?}), \
         response {:.1} MB in {:.2} s; gateway VmHWM before the request {:.1} MiB, peak \
         {:.1} MiB, VmRSS after {:.1} MiB",
        got.len(),
        got.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        after as f64 / 1024.0,
    );
    drop(child);
}

#[tokio::test]
async fn pages_computed_ahead_leave_out_attachments_over_the_policy_too() {
    let g = gateway(|c| c.provision.policy.max_attachment_bytes = Some(20_000)).await;
    let (p, inbox) = phone(&g, "grace").await;
    let mut files = Vec::new();
    for i in 0..4 {
        let (raw, f) = with_attachments(&format!("Paged {i}"), &[30_000 + i * 1000]);
        support::append("grace", "INBOX", &[], &raw).await;
        files.push(f.into_iter().next().unwrap());
    }
    let first = p
        .send(
            "Sync",
            &format!(
                r#"<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>0</SyncKey><CollectionId>{inbox}</CollectionId></Collection></Collections></Sync>"#
            ),
        )
        .await
        .tree();
    let mut key = find_text(&first, a::SyncKey).unwrap();
    let mut bodies = Vec::new();
    loop {
        let page = p
            .send(
                "Sync",
                &format!(
                    r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{inbox}</CollectionId><GetChanges/><WindowSize>1</WindowSize>
                       <Options><airsyncbase:BodyPreference><airsyncbase:Type>4</airsyncbase:Type></airsyncbase:BodyPreference></Options></Collection></Collections></Sync>"#
                ),
            )
            .await
            .tree();
        let c = page
            .child(a::Collections)
            .and_then(|c| c.child(a::Collection))
            .unwrap();
        if let Some(commands) = c.child(a::Commands) {
            for add in commands.children_with(a::Add) {
                bodies.push(find_text(add, asb::Data).unwrap());
            }
        }
        key = find_text(c, a::SyncKey).unwrap();
        if c.child(a::MoreAvailable).is_none() {
            break;
        }
    }
    assert_eq!(bodies.len(), 4);
    for body in &bodies {
        assert!(body.contains("Subject: Paged"));
        assert!(
            files.iter().all(|f| !body.contains(&first_line(f))),
            "an attachment over the limit in a MIME body"
        );
    }
    let used: u64 = g
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("eas_sync_read_ahead_total{event=\"page_used\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(used > 0, "pages were computed ahead");
}
