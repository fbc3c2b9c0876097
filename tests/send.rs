//! Sending against the real stack: a simulated phone talks EAS over HTTP to the gateway,
//! which submits to a private Postfix (submission with SASL checked by the test Dovecot)
//! that delivers over LMTP to that Dovecot, where the recipient's held Ping and Sync see it.

mod eas;
mod support;

use std::time::{Duration, Instant};

use eas::{Gateway, Phone, find_text, folder_changes};
use eas_wbxml::Element;
use eas_wbxml::tags::{airsync as a, airsyncbase as asb, composemail as cm, email, ping as p};

use eas_gateway::secret::Secret;
use eas_gateway::smtp::{self, Envelope, SmtpAuth, SmtpConfig, SmtpSecurity, SubmitError};

fn smtp_config(port: u16, auth: SmtpAuth) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        tls_insecure: false,
        auth,
        timeout: Duration::from_secs(10),
        hello_name: "gateway.example.com".into(),
    }
}

/// Waits until the user's INBOX holds a message whose header block contains `needle`;
/// returns the raw message.
async fn arrival(user: &str, needle: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut s = support::session(user).await;
        s.select("INBOX").await.expect("SELECT");
        let found = s
            .uid_search(&eas_gateway::imap::SearchKey::Header(
                "Subject".into(),
                needle.into(),
            ))
            .await
            .expect("SEARCH")
            .uids;
        if let Some(uid) = found.iter().next() {
            let q = eas_gateway::imap::FetchQuery::new().body();
            let mut f = s
                .uid_fetch(&eas_gateway::imap::SequenceSet::single(uid), &q)
                .await
                .expect("FETCH");
            let raw = f[0]
                .take_section(&eas_gateway::imap::Section::Full)
                .expect("body");
            let _ = s.logout().await;
            return raw;
        }
        let _ = s.logout().await;
        assert!(
            Instant::now() < deadline,
            "{needle:?} did not arrive for {user}; Postfix log:\n{}",
            std::fs::read_to_string(support::postfix().log_path()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn submission_as_the_user_and_through_the_relay_reaches_the_inbox() {
    let postfix = support::postfix();
    let (alice, password) = support::credentials("alice");
    let (bob, _) = support::credentials("bob");
    let subject = support::unique("Harness");
    let message =
        format!("From: {alice}\r\nTo: {bob}\r\nSubject: {subject}\r\n\r\nover Postfix\r\n");
    let env = Envelope {
        from: alice.clone(),
        to: vec![bob.clone()],
    };
    let config = smtp_config(postfix.submission_port(), SmtpAuth::User);
    let password = Secret::new(password);
    smtp::submit(&config, Some((&alice, &password)), &env, message.as_bytes())
        .await
        .expect("submission as alice");
    let raw = arrival("bob", &subject).await;
    assert!(String::from_utf8_lossy(&raw).contains("over Postfix"));

    // The submission port refuses a wrong password and anyone without AUTH.
    let wrong = Secret::new("wrong".to_string());
    let e = smtp::submit(&config, Some((&alice, &wrong)), &env, message.as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(e, SubmitError::AuthRejected(_)), "{e}");
    let e = smtp::submit(
        &smtp_config(postfix.submission_port(), SmtpAuth::Relay),
        None,
        &env,
        message.as_bytes(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, SubmitError::Rejected(_)), "{e}");

    // The relay port trusts loopback.
    let relayed = support::unique("Relayed");
    let message = format!("From: {alice}\r\nTo: {bob}\r\nSubject: {relayed}\r\n\r\nx\r\n");
    smtp::submit(
        &smtp_config(postfix.relay_port(), SmtpAuth::Relay),
        None,
        &env,
        message.as_bytes(),
    )
    .await
    .expect("relay");
    arrival("bob", &relayed).await;
    assert!(smtp::check(&config).await.is_ok());
}

/// A gateway that submits to the test Postfix's submission port as the user.
async fn gateway() -> Gateway {
    let submission = support::postfix().submission_port();
    gateway_with(|c| c.smtp.port = submission).await
}

async fn gateway_with(tweak: impl FnOnce(&mut eas_gateway::config::Config)) -> Gateway {
    Gateway::start(support::dovecot().imap_config(), |c| {
        c.smtp.host = "127.0.0.1".into();
        c.smtp.security = "none".into();
        c.smtp.auth = "user".into();
        c.smtp.timeout_secs = 10;
        c.push.min_heartbeat_secs = 2;
        tweak(c);
    })
    .await
}

/// A provisioned phone that has synced its Inbox to the end; returns it with the Inbox id,
/// the Inbox SyncKey and the Sent folder id.
struct Device {
    phone: Phone,
    inbox: String,
    key: String,
    sent: String,
}

async fn device(g: &Gateway, user: &str, id: &str, version: &'static str) -> Device {
    let (login, password) = support::credentials(user);
    let mut phone = Phone::new(g, &login, &password, id);
    phone.version = version;
    phone.provision().await;
    let (folders, _, _) = folder_changes(&phone.folder_sync("0").await);
    let inbox = folders.iter().find(|f| f.kind == 2).unwrap().id.clone();
    let sent = folders.iter().find(|f| f.kind == 5).unwrap().id.clone();
    let (key, _) = sync_all(&phone, &inbox, "0").await;
    Device {
        phone,
        inbox,
        key,
        sent,
    }
}

/// Syncs a folder until nothing is pending; returns the last key and every added item
/// (ServerId, ApplicationData).
async fn sync_all(ph: &Phone, coll: &str, from: &str) -> (String, Vec<(String, Element)>) {
    let mut key = from.to_owned();
    let mut adds = Vec::new();
    loop {
        let r = ph
            .send(
                "Sync",
                &format!(
                    r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{coll}</CollectionId><WindowSize>100</WindowSize><Options><airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type></airsyncbase:BodyPreference></Options></Collection></Collections></Sync>"#
                ),
            )
            .await;
        if r.body.is_empty() {
            return (key, adds);
        }
        let tree = r.tree();
        let c = tree
            .child(a::Collections)
            .unwrap()
            .child(a::Collection)
            .unwrap();
        if let Some(cmds) = c.child(a::Commands) {
            for add in cmds.children_with(a::Add) {
                let sid = add.child(a::ServerId).unwrap().text().unwrap().to_owned();
                adds.push((sid, add.child(a::ApplicationData).unwrap().clone()));
            }
        }
        let new = c.child(a::SyncKey).unwrap().text().unwrap().to_owned();
        let more = c.child(a::MoreAvailable).is_some();
        if new == key && !more {
            return (key, adds);
        }
        let was_initial = key == "0";
        key = new;
        if !more && !was_initial && c.child(a::Commands).is_none() {
            return (key, adds);
        }
    }
}

fn ping_xml(folder: &str) -> String {
    format!(
        r#"<Ping xmlns="Ping:"><HeartbeatInterval>30</HeartbeatInterval><Folders><Folder><Id>{folder}</Id><Class>Email</Class></Folder></Folders></Ping>"#
    )
}

/// A ComposeMail request in the readable form, with the MIME as opaque data.
fn compose(cmd: &str, inner: &str, mime: &[u8]) -> Element {
    let xml = format!(r#"<{cmd} xmlns="ComposeMail:">{inner}</{cmd}>"#);
    let mut tree = eas_wbxml::from_xml(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    tree.push(Element::with_opaque(cm::Mime, mime.to_vec()));
    tree
}

/// The ComposeMail Status of an answer, or None for the empty 200 of a success.
fn status(answer: &eas::Answer) -> Option<String> {
    assert_eq!(answer.status, 200, "HTTP status");
    if answer.body.is_empty() {
        return None;
    }
    Some(find_text(&answer.tree(), cm::Status).expect("a Status"))
}

/// Messages in a mailbox whose Subject contains `needle`: (UID, flags, raw bytes).
async fn messages(user: &str, mailbox: &str, needle: &str) -> Vec<(u32, Vec<String>, String)> {
    use eas_gateway::imap::{FetchQuery, SearchKey, Section, SequenceSet};
    let mut s = support::session(user).await;
    s.select(mailbox).await.expect("SELECT");
    let uids = s
        .uid_search(&SearchKey::Header("Subject".into(), needle.into()))
        .await
        .expect("SEARCH")
        .uids;
    let mut out = Vec::new();
    for uid in uids.iter() {
        let q = FetchQuery::new().flags().body();
        for mut f in s
            .uid_fetch(&SequenceSet::single(uid), &q)
            .await
            .expect("FETCH")
        {
            let raw = f.take_section(&Section::Full).unwrap_or_default();
            let flags = f
                .flags
                .unwrap_or_default()
                .iter()
                .map(|f| f.as_str().to_owned())
                .collect();
            out.push((f.uid, flags, String::from_utf8_lossy(&raw).into_owned()));
        }
    }
    let _ = s.logout().await;
    out
}

/// A two-part message: text and a small PDF attachment.
fn with_attachment(from: &str, to: &str, extra: &str, subject: &str, text: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\n{extra}Subject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"xyz\"\r\n\r\n\
         --xyz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --xyz\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJSBzbWFsbAo=\r\n--xyz--\r\n"
    )
    .into_bytes()
}

fn attachment_names(data: &Element) -> Vec<String> {
    data.child(asb::Attachments)
        .map(|atts| {
            atts.children_with(asb::Attachment)
                .filter_map(|x| x.child(asb::DisplayName).and_then(|d| d.text()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn sendmail_reaches_the_recipient_wakes_his_ping_and_is_sent_once() {
    let g = gateway().await;
    let alice = device(&g, "kim", "SEND-K", "14.1").await;
    let bob = device(&g, "lena", "SEND-L", "14.1").await;
    let (kim, _) = support::credentials("kim");
    let (lena, _) = support::credentials("lena");
    let (max, _) = support::credentials("max");
    let subject = support::unique("Quarterly");
    // The From claims someone else; Bcc goes to max.
    let mime = with_attachment(
        "The Boss <boss@example.org>",
        &lena,
        &format!("Bcc: {max}\r\n"),
        &subject,
        "Numbers attached.",
    );
    let request = compose(
        "SendMail",
        "<ClientId>c-4711</ClientId><SaveInSentItems/>",
        &mime,
    );

    let held_req = ping_xml(&bob.inbox);
    let held = bob.phone.send("Ping", &held_req);
    let act = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answer = alice.phone.post("SendMail", request.encode()).await;
        assert_eq!(status(&answer), None, "success is an empty 200");
        Instant::now()
    };
    let (pinged, sent_at) = tokio::join!(held, act);
    let pinged = pinged.tree();
    assert_eq!(find_text(&pinged, p::Status).as_deref(), Some("2"));
    assert!(sent_at.elapsed() < Duration::from_secs(15));

    // Lena's Sync shows it from Kim, with the attachment and without the Bcc.
    let (_, adds) = sync_all(&bob.phone, &bob.inbox, &bob.key).await;
    let (_, data) = adds
        .iter()
        .find(|(_, d)| d.child(email::Subject).and_then(|s| s.text()) == Some(subject.as_str()))
        .unwrap_or_else(|| panic!("{subject} not in Lena's Sync"));
    let from = data.child(email::From).unwrap().text().unwrap();
    assert!(from.contains(&kim) && !from.contains("boss@"), "{from}");
    assert!(
        data.child(email::To)
            .unwrap()
            .text()
            .unwrap()
            .contains(&lena)
    );
    assert_eq!(attachment_names(data), ["report.pdf"]);
    let delivered = messages("lena", "INBOX", &subject).await;
    assert_eq!(delivered.len(), 1);
    assert!(!delivered[0].2.contains("Bcc") && !delivered[0].2.contains(&max));
    assert!(delivered[0].2.contains(&format!("Return-Path: <{kim}>")));

    // The Bcc recipient got it; the Sent copy keeps the Bcc and is \Seen.
    let to_max = arrival("max", &subject).await;
    assert!(!String::from_utf8_lossy(&to_max).contains("Bcc:"));
    let sent = messages("kim", "Sent", &subject).await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0].1.iter().any(|f| f == "\\Seen"), "{:?}", sent[0].1);
    assert!(sent[0].2.contains(&format!("Bcc: {max}")));
    let (_, sent_items) = sync_all(&alice.phone, &alice.sent, "0").await;
    assert!(
        sent_items
            .iter()
            .any(|(_, d)| d.child(email::Subject).and_then(|s| s.text()) == Some(subject.as_str()))
    );

    // A retry with the same ClientId is answered 118 and not sent again.
    let again = alice.phone.post("SendMail", request.encode()).await;
    assert_eq!(status(&again).as_deref(), Some("118"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(messages("lena", "INBOX", &subject).await.len(), 1);
    assert_eq!(messages("kim", "Sent", &subject).await.len(), 1);

    // Requests the spec refuses: no recipient, no MIME.
    let none = compose(
        "SendMail",
        "<ClientId>c-4712</ClientId>",
        b"From: x@example.com\r\nSubject: nobody\r\n\r\nx\r\n",
    );
    let answer = alice.phone.post("SendMail", none.encode()).await;
    assert_eq!(status(&answer).as_deref(), Some("119"));
    let answer = alice
        .phone
        .send(
            "SendMail",
            r#"<SendMail xmlns="ComposeMail:"><ClientId>c-4713</ClientId></SendMail>"#,
        )
        .await;
    assert_eq!(status(&answer).as_deref(), Some("107"));
}

#[tokio::test]
async fn smart_reply_and_forward_add_the_original_and_flag_it() {
    let g = gateway().await;
    let (nora, _) = support::credentials("nora");
    let (oscar, _) = support::credentials("oscar");
    let (pia, _) = support::credentials("pia");
    let subject = support::unique("Offsite");
    let original = with_attachment(
        &format!("Oscar <{oscar}>"),
        &nora,
        &format!("Message-ID: <{subject}@example.com>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n"),
        &subject,
        "Where shall we go?",
    );
    support::deliver("nora", &original).await;
    let nora_phone = device(&g, "nora", "SMART-N", "14.1").await;
    let (_, adds) = sync_all(&nora_phone.phone, &nora_phone.inbox, "0").await;
    let (server_id, _) = adds
        .iter()
        .find(|(_, d)| d.child(email::Subject).and_then(|s| s.text()) == Some(subject.as_str()))
        .expect("the original in Nora's Sync")
        .clone();
    let inbox = &nora_phone.inbox;

    // SmartReply by FolderId + ItemId: the phone sends only its new text.
    let reply_subject = format!("Re: {subject}");
    let reply = format!(
        "From: {nora}\r\nTo: {oscar}\r\nSubject: {reply_subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe lake!\r\n"
    );
    let request = compose(
        "SmartReply",
        &format!(
            "<ClientId>r-1</ClientId><SaveInSentItems/><Source><FolderId>{inbox}</FolderId><ItemId>{server_id}</ItemId></Source>"
        ),
        reply.as_bytes(),
    );
    let answer = nora_phone.phone.post("SmartReply", request.encode()).await;
    assert_eq!(status(&answer), None);
    let got = arrival("oscar", &reply_subject).await;
    let text = String::from_utf8_lossy(&got).into_owned();
    let parsed = mail_parser::MessageParser::default().parse(&got).unwrap();
    let body = parsed.body_text(0).unwrap();
    assert!(body.starts_with("The lake!"), "{body}");
    assert!(body.contains("> Where shall we go?"), "{body}");
    assert!(
        text.contains(&format!("In-Reply-To: <{subject}@example.com>")),
        "{text}"
    );
    assert_eq!(
        parsed.attachment_count(),
        0,
        "a reply leaves attachments out"
    );
    let source = messages("nora", "INBOX", &subject).await;
    let original_flags = &source.iter().find(|m| !m.2.contains("The lake")).unwrap().1;
    assert!(
        original_flags.iter().any(|f| f == "\\Answered"),
        "{original_flags:?}"
    );

    // SmartForward by LongId: the original's attachment travels with it.
    let fwd_subject = format!("Fwd: {subject}");
    let forward = format!(
        "From: {nora}\r\nTo: {pia}\r\nSubject: {fwd_subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee below.\r\n"
    );
    let request = compose(
        "SmartForward",
        &format!("<ClientId>f-1</ClientId><Source><LongId>{server_id}</LongId></Source>"),
        forward.as_bytes(),
    );
    let answer = nora_phone
        .phone
        .post("SmartForward", request.encode())
        .await;
    assert_eq!(status(&answer), None);
    let got = arrival("pia", &fwd_subject).await;
    let parsed = mail_parser::MessageParser::default().parse(&got).unwrap();
    assert!(parsed.body_text(0).unwrap().contains("Where shall we go?"));
    let pia_phone = device(&g, "pia", "SMART-P", "14.1").await;
    let (_, items) = sync_all(&pia_phone.phone, &pia_phone.inbox, "0").await;
    let (_, data) = items
        .iter()
        .find(|(_, d)| d.child(email::Subject).and_then(|s| s.text()) == Some(fwd_subject.as_str()))
        .expect("the forward in Pia's Sync");
    assert_eq!(attachment_names(data), ["report.pdf"]);
    let source = messages("nora", "INBOX", &subject).await;
    assert!(source.iter().any(|m| m.1.iter().any(|f| f == "$Forwarded")));
    // Not asked to: no Sent copy of the forward.
    assert!(messages("nora", "Sent", &fwd_subject).await.is_empty());
    assert_eq!(messages("nora", "Sent", &reply_subject).await.len(), 1);

    // A source that does not exist: 150, nothing sent.
    let request = compose(
        "SmartReply",
        &format!(
            "<ClientId>r-2</ClientId><Source><FolderId>{inbox}</FolderId><ItemId>{inbox}:999999</ItemId></Source>"
        ),
        reply.as_bytes(),
    );
    let answer = nora_phone.phone.post("SmartReply", request.encode()).await;
    assert_eq!(status(&answer).as_deref(), Some("150"));
}

/// POSTs a raw message the 12.1 way: `Content-Type: message/rfc822`, parameters in the query.
async fn post_mime_12(ph: &Phone, cmd: &str, params: &str, mime: &[u8]) -> eas::Answer {
    let url = format!(
        "{}/Microsoft-Server-ActiveSync?Cmd={cmd}&User={}&DeviceId={}&DeviceType={}{params}",
        ph.base, ph.login, ph.device_id, ph.device_type
    );
    let mut req = ph
        .client
        .post(url)
        .basic_auth(&ph.login, Some(&ph.password))
        .header("Content-Type", "message/rfc822")
        .header("MS-ASProtocolVersion", "12.1")
        .body(mime.to_vec());
    if let Some(k) = ph.policy_key {
        req = req.header("X-MS-PolicyKey", k.to_string());
    }
    let r = req.send().await.unwrap();
    eas::Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

#[tokio::test]
async fn version_12_1_posts_raw_mime_with_query_parameters() {
    let g = gateway().await;
    let (quinn, _) = support::credentials("quinn");
    let (rosa, _) = support::credentials("rosa");
    let q = device(&g, "quinn", "OLD-Q", "12.1").await;
    let subject = support::unique("Legacy");
    let mime = format!(
        "From: {quinn}\r\nTo: {rosa}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.com>\r\n\r\nfrom an old phone\r\n"
    );
    let answer = post_mime_12(&q.phone, "SendMail", "&SaveInSent=T", mime.as_bytes()).await;
    assert_eq!((answer.status, answer.body.len()), (200, 0));
    let got = arrival("rosa", &subject).await;
    assert!(String::from_utf8_lossy(&got).contains("from an old phone"));
    assert_eq!(messages("quinn", "Sent", &subject).await.len(), 1);
    // The same message again (same Message-ID) is not sent twice; 12.x hears success.
    let again = post_mime_12(&q.phone, "SendMail", "&SaveInSent=T", mime.as_bytes()).await;
    assert_eq!(again.status, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(messages("rosa", "INBOX", &subject).await.len(), 1);

    // SmartReply with CollectionId + ItemId.
    support::deliver(
        "quinn",
        format!("From: {rosa}\r\nTo: {quinn}\r\nSubject: Ask {subject}\r\n\r\nAnything new?\r\n")
            .as_bytes(),
    )
    .await;
    let (_, adds) = sync_all(&q.phone, &q.inbox, &q.key).await;
    let (sid, _) = adds
        .iter()
        .find(|(_, d)| {
            d.child(email::Subject).and_then(|s| s.text())
                == Some(format!("Ask {subject}").as_str())
        })
        .expect("the question in Quinn's Sync")
        .clone();
    let reply =
        format!("From: {quinn}\r\nTo: {rosa}\r\nSubject: Re: Ask {subject}\r\n\r\nNothing.\r\n");
    let params = format!(
        "&CollectionId={}&ItemId={}",
        q.inbox,
        sid.replace(':', "%3A")
    );
    let answer = post_mime_12(&q.phone, "SmartReply", &params, reply.as_bytes()).await;
    assert_eq!(answer.status, 200);
    let got = arrival("rosa", &format!("Re: Ask {subject}")).await;
    let parsed = mail_parser::MessageParser::default().parse(&got).unwrap();
    assert!(parsed.body_text(0).unwrap().contains("> Anything new?"));
}

/// Forwards every connection on `listener` to `port` on loopback: the submission server
/// "comes back" on the address the gateway was configured with.
fn forward(listener: tokio::net::TcpListener, port: u16) {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

#[tokio::test]
async fn submission_down_answers_retry_files_nothing_and_the_retry_is_sent() {
    // A port nobody listens on, for now. The gateway submits through the relay (no AUTH).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let g = gateway_with(|c| {
        c.smtp.port = closed;
        c.smtp.auth = "relay".into();
    })
    .await;
    let (sam, _) = support::credentials("sam");
    let (tina, _) = support::credentials("tina");
    let s14 = device(&g, "sam", "DOWN-14", "14.1").await;
    let subject = support::unique("Stuck");
    let mime = format!("From: {sam}\r\nTo: {tina}\r\nSubject: {subject}\r\n\r\nx\r\n");
    let request = compose(
        "SendMail",
        "<ClientId>d-1</ClientId><SaveInSentItems/>",
        mime.as_bytes(),
    );
    let answer = s14.phone.post("SendMail", request.encode()).await;
    assert_eq!(status(&answer).as_deref(), Some("111"));
    let s12 = device(&g, "sam", "DOWN-12", "12.1").await;
    let answer = post_mime_12(&s12.phone, "SendMail", "&SaveInSent=T", mime.as_bytes()).await;
    assert_eq!(answer.status, 503);
    assert!(
        messages("sam", "Sent", &subject).await.is_empty(),
        "no Sent copy of an unsent message"
    );

    // The server comes back: the phone's retry with the same ClientId is sent (the failed
    // attempt did not use it up), through the relay, from Sam's address.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", closed))
        .await
        .expect("the closed port is still free");
    forward(listener, support::postfix().relay_port());
    let answer = s14.phone.post("SendMail", request.encode()).await;
    assert_eq!(status(&answer), None);
    let got = arrival("tina", &subject).await;
    assert!(String::from_utf8_lossy(&got).contains(&format!("Return-Path: <{sam}>")));
    assert_eq!(messages("sam", "Sent", &subject).await.len(), 1);
}

/// The bytes of `fixtures/wbxml/<name>.wbxml`, decoded.
fn fixture(name: &str) -> Element {
    let path = format!("{}/fixtures/wbxml/{name}.wbxml", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    Element::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    fixture(name).encode()
}

/// A fixture request with its Mime rewritten by `edit` (kept opaque unless `as_text`) and,
/// when given, another ClientId.
fn patched(
    name: &str,
    client_id: Option<&str>,
    as_text: bool,
    edit: impl Fn(String) -> String,
) -> Element {
    let request = fixture(name);
    let children = request
        .children()
        .iter()
        .map(|c| match c.tag {
            t if t == cm::ClientId && client_id.is_some() => {
                Element::with_text(cm::ClientId, client_id.unwrap())
            }
            t if t == cm::Mime => {
                let mime = edit(String::from_utf8(c.opaque().unwrap().to_vec()).unwrap());
                if as_text {
                    Element::with_text(cm::Mime, mime)
                } else {
                    Element::with_opaque(cm::Mime, mime.into_bytes())
                }
            }
            _ => c.clone(),
        })
        .collect();
    Element::with_children(request.tag, children)
}

#[tokio::test]
async fn the_compose_mail_fixtures_replayed() {
    let g = gateway().await;
    let (uma, _) = support::credentials("uma");
    let u = device(&g, "uma", "FIXTURES", "14.1").await;

    // SendMail as recorded: its To is in example.org, which the test Postfix refuses (it
    // delivers only example.com): the recorded 120, and nothing filed in Sent.
    let answer = u
        .phone
        .post("SendMail", fixture_bytes("sendmail.request"))
        .await;
    assert_eq!(answer.tree(), fixture("sendmail.response"));
    assert!(messages("uma", "Sent", "Q1 budget review").await.is_empty());

    // The phone retries with the same ClientId after fixing the address: the failure did not
    // use the ClientId up. From becomes the user's own; a second retry is the recorded 118.
    let local = |m: String| m.replace("@example.org", "@example.com");
    let fixed = patched("sendmail.request", None, false, local);
    let answer = u.phone.post("SendMail", fixed.encode()).await;
    assert_eq!(status(&answer), None);
    let sent = messages("uma", "Sent", "Q1 budget review").await;
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]
            .2
            .starts_with(&format!("From: \"Jane Doe\" <{uma}>")),
        "{}",
        sent[0].2
    );
    let again = u.phone.post("SendMail", fixed.encode()).await;
    assert_eq!(again.tree(), fixture("sendmail.response.previouslysent"));

    // iOS quirk: Mime as a string rather than opaque data.
    let quirk = patched("sendmail.request", Some("SendMail-quirk-1"), true, |m| {
        local(m).replace("Q1 budget review moved", "Room change for Q1 review")
    });
    let answer = u.phone.post("SendMail", quirk.encode()).await;
    assert_eq!(status(&answer), None);
    assert_eq!(messages("uma", "Sent", "Room change for Q1").await.len(), 1);

    // SmartReply to an item this device does not have: the recorded 150.
    let answer = u
        .phone
        .post("SmartReply", fixture_bytes("smartreply.request"))
        .await;
    assert_eq!(answer.tree(), fixture("smartreply.response"));

    // SmartForward with ReplaceMime: the phone's MIME is complete, so an unknown source
    // costs only its $Forwarded flag; the message (with its message/rfc822 part) is sent.
    let forward = patched("smartforward.request", None, false, local);
    let answer = u.phone.post("SmartForward", forward.encode()).await;
    assert_eq!(status(&answer), None);
    let fwd = messages("uma", "Sent", "Build 8841").await;
    assert_eq!(fwd.len(), 1);
    assert!(fwd[0].2.contains("Content-Type: message/rfc822"));

    // The submission server down: the recorded retry status.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = gateway_with(|c| c.smtp.port = closed).await;
    let d = device(&down, "uma", "FIXTURES-DOWN", "14.1").await;
    let answer = d
        .phone
        .post("SendMail", fixture_bytes("sendmail.request"))
        .await;
    assert_eq!(answer.tree(), fixture("sendmail.response.retry"));
}

#[tokio::test]
async fn a_sent_copy_that_would_exceed_the_quota_is_refused_before_sending() {
    use eas_testbed::{Dovecot, Tuning};
    let user = support::user("victor");
    let dovecot = Dovecot::start_tuned(
        std::slice::from_ref(&user),
        &Tuning {
            storage_quota_kib: Some(16),
            ..Tuning::default()
        },
    )
    .expect("a Dovecot with quota");
    // 12 KiB of the 16 are used.
    let mut s = eas_gateway::imap::Session::connect(&dovecot.imap_config())
        .await
        .unwrap();
    s.login(&user.login, &user.password).await.unwrap();
    let filler = support::message("Filler", &"x".repeat(12 * 1024));
    s.append("INBOX", &[], &filler)
        .await
        .expect("APPEND filler");
    let _ = s.logout().await;

    // No submission server: a message that got past the quota check would answer 111.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let g = Gateway::start(dovecot.imap_config(), |c| {
        c.smtp.host = "127.0.0.1".into();
        c.smtp.port = closed;
        c.smtp.security = "none".into();
    })
    .await;
    let mut ph = Phone::new(&g, &user.login, &user.password, "QUOTA");
    ph.provision().await;
    folder_changes(&ph.folder_sync("0").await);
    let big = support::message("Big one", &"y".repeat(6 * 1024));
    let with_copy = compose(
        "SendMail",
        "<ClientId>q-1</ClientId><SaveInSentItems/>",
        &big,
    );
    let answer = ph.post("SendMail", with_copy.encode()).await;
    assert_eq!(status(&answer).as_deref(), Some("113"));
    // Without a copy to file, the quota is no reason to refuse: it goes on to submission.
    let without = compose("SendMail", "<ClientId>q-2</ClientId>", &big);
    let answer = ph.post("SendMail", without.encode()).await;
    assert_eq!(status(&answer).as_deref(), Some("111"));
}

#[tokio::test]
async fn a_retry_while_the_first_attempt_is_still_submitting_is_not_sent_twice() {
    // A submission server that accepts connections and then says nothing.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = mute.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = mute.accept().await {
            held.push(socket);
        }
    });
    let g = gateway_with(|c| {
        c.smtp.port = port;
        c.smtp.timeout_secs = 20;
    })
    .await;
    let (walter, _) = support::credentials("walter");
    let w = device(&g, "walter", "INFLIGHT", "14.1").await;
    let mime = format!("From: {walter}\r\nTo: {walter}\r\nSubject: In flight\r\n\r\nx\r\n");
    let request = compose("SendMail", "<ClientId>i-1</ClientId>", mime.as_bytes());

    // The phone gives up on the first attempt after a second (the gateway is still waiting
    // for the server's greeting) and retries: told to try later, not sent a second time.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let first = impatient
        .post(format!(
            "{}/Microsoft-Server-ActiveSync?Cmd=SendMail&User={}&DeviceId=INFLIGHT&DeviceType=iPhone",
            w.phone.base, w.phone.login
        ))
        .basic_auth(&w.phone.login, Some(&w.phone.password))
        .header("Content-Type", "application/vnd.ms-sync.wbxml")
        .header("MS-ASProtocolVersion", "14.1")
        .header("X-MS-PolicyKey", w.phone.policy_key.unwrap().to_string())
        .body(request.encode())
        .send()
        .await;
    assert!(first.is_err(), "the first attempt must still be running");
    let retry = w.phone.post("SendMail", request.encode()).await;
    assert_eq!(status(&retry).as_deref(), Some("111"));
}
