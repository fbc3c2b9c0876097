//! A recorded Sync session, replayed against the real gateway and Dovecot and compared with
//! the transcript recorded before: every answer must be the same tree (and so, the encoder
//! being canonical, the same bytes) — the proof that a change to the Sync engine changed no
//! behaviour.
//!
//! The session covers what the engine does: a new partnership, an initial sync in pages (with
//! read-ahead), server changes (flags, expunge, new mail), client Change/Delete/Fetch, an
//! identical retry answered from the memo, GetItemEstimate, a 16.1 draft Add, and an unknown
//! key. Only values that depend on the clock are blanked before comparing (`DateReceived`,
//! the time a message was appended).
//!
//! `EAS_RECORD_TRANSCRIPT=1 cargo test --test sync_transcript` writes the transcript anew
//! (run it on the build whose behaviour is the reference); without it the test compares.

mod eas;
mod support;

use eas::{Gateway, Phone, folder_changes};
use eas_wbxml::tags::email as em;
use eas_wbxml::{Content, Element};

const TRANSCRIPT: &str = "fixtures/transcripts/sync-mail.xml";

/// A message whose every byte is fixed (no clock, no counter).
fn message(n: u32) -> Vec<u8> {
    format!(
        "From: Sender {n} <sender{n}@example.com>\r\n\
         To: Golden <golden@example.com>\r\n\
         Subject: Message number {n}\r\n\
         Date: Mon, 2 Mar 2026 10:{n:02}:00 +0000\r\n\
         Message-ID: <golden-{n}@example.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Body of message {n}, with a line long enough to be cut by a small truncation size.\r\n"
    )
    .into_bytes()
}

/// Blanks what depends on the clock.
fn normalized(mut e: Element) -> Element {
    fn walk(e: &mut Element) {
        if e.tag == em::DateReceived {
            e.content = Content::Text("*".into());
            return;
        }
        if let Content::Elements(children) = &mut e.content {
            children.iter_mut().for_each(walk);
        }
    }
    walk(&mut e);
    e
}

struct Session {
    phone: Phone,
    log: String,
}

impl Session {
    /// Sends a request and records it with its (normalized) answer.
    async fn exchange(&mut self, step: &str, cmd: &str, xml: &str) -> Element {
        let answer = self.phone.send(cmd, xml).await;
        assert_eq!(answer.status, 200, "{step}: HTTP {}", answer.status);
        let tree = if answer.body.is_empty() {
            Element::new(eas_wbxml::tags::airsync::Sync)
        } else {
            normalized(answer.tree())
        };
        self.log.push_str(&format!(
            "<!-- {step}: {cmd} -->\n{}\n\n",
            eas_wbxml::to_xml(&tree)
        ));
        tree
    }
}

fn text(e: &Element, tag: eas_wbxml::Tag) -> String {
    eas::find_text(e, tag).unwrap_or_default()
}

fn sync_xml(key: &str, coll: &str, inner: &str) -> String {
    format!(
        r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:" xmlns:email="Email:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{coll}</CollectionId>{inner}</Collection></Collections></Sync>"#
    )
}

const OPTIONS: &str = "<DeletesAsMoves/><GetChanges/><WindowSize>4</WindowSize><Options><FilterType>0</FilterType><airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:TruncationSize>40</airsyncbase:TruncationSize></airsyncbase:BodyPreference></Options>";

#[tokio::test]
async fn a_recorded_sync_session_replays_identically() {
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let user = "golden";
    let (login, password) = support::credentials(user);
    for n in 1..=10 {
        let flags: &[&str] = if n % 3 == 0 { &["\\Seen"] } else { &[] };
        support::append(user, "INBOX", flags, &message(n)).await;
    }
    let mut phone = Phone::new(&g, &login, &password, "GOLDEN1");
    phone.version = "14.1";
    phone.provision().await;
    let fs = phone.folder_sync("0").await;
    let (folders, _, _) = folder_changes(&fs);
    let id = |name: &str| {
        folders
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no {name} in {folders:?}"))
            .id
            .clone()
    };
    let inbox = id("Inbox");
    let drafts = id("Drafts");
    let mut s = Session {
        phone,
        log: String::new(),
    };

    // A new partnership, then the initial sync in pages of 4.
    let r = s
        .exchange("partnership", "Sync", &sync_xml("0", &inbox, ""))
        .await;
    let mut key = text(&r, eas_wbxml::tags::airsync::SyncKey);
    for page in 1..=3 {
        let r = s
            .exchange(
                &format!("initial page {page}"),
                "Sync",
                &sync_xml(&key, &inbox, OPTIONS),
            )
            .await;
        key = text(&r, eas_wbxml::tags::airsync::SyncKey);
    }

    // Nothing new: an empty answer.
    s.exchange("no news", "Sync", &sync_xml(&key, &inbox, OPTIONS))
        .await;

    // Changes on the server: a flag, an expunge, a new message.
    support::store(user, "INBOX", "1", "+FLAGS (\\Flagged)").await;
    support::expunge(user, "INBOX", "2").await;
    support::append(user, "INBOX", &[], &message(11)).await;
    let r = s
        .exchange("server changes", "Sync", &sync_xml(&key, &inbox, OPTIONS))
        .await;
    key = text(&r, eas_wbxml::tags::airsync::SyncKey);

    // The phone's own commands: read, delete (to Trash), fetch, and one for an unknown item.
    let commands = format!(
        "{OPTIONS}<Commands>\
           <Change><ServerId>{inbox}:3</ServerId><ApplicationData><email:Read>0</email:Read></ApplicationData></Change>\
           <Delete><ServerId>{inbox}:4</ServerId></Delete>\
           <Fetch><ServerId>{inbox}:5</ServerId></Fetch>\
           <Change><ServerId>{inbox}:999</ServerId><ApplicationData><email:Read>1</email:Read></ApplicationData></Change>\
         </Commands>"
    );
    let request = sync_xml(&key, &inbox, &commands);
    let r = s.exchange("client commands", "Sync", &request).await;
    let after_commands = text(&r, eas_wbxml::tags::airsync::SyncKey);
    // The same request again (its answer lost): the same answer, nothing applied twice.
    s.exchange("identical retry", "Sync", &request).await;
    key = after_commands;

    // What the next Sync would carry.
    support::append(user, "INBOX", &[], &message(12)).await;
    s.exchange(
        "estimate",
        "GetItemEstimate",
        &format!(
            r#"<GetItemEstimate xmlns="GetItemEstimate:" xmlns:airsync="AirSync:"><Collections><Collection><airsync:SyncKey>{key}</airsync:SyncKey><CollectionId>{inbox}</CollectionId><airsync:Options><airsync:FilterType>0</airsync:FilterType></airsync:Options></Collection></Collections></GetItemEstimate>"#
        ),
    )
    .await;
    s.exchange("after estimate", "Sync", &sync_xml(&key, &inbox, OPTIONS))
        .await;

    // A key the gateway never handed out.
    s.exchange("unknown key", "Sync", &sync_xml("7777", &inbox, OPTIONS))
        .await;

    // A 16.1 phone adds a draft; Adds anywhere else are refused.
    let mut p16 = Phone::new(&g, &login, &password, "GOLDEN16");
    p16.version = "16.1";
    p16.provision().await;
    p16.folder_sync("0").await;
    s.phone = p16;
    let r = s
        .exchange("drafts partnership", "Sync", &sync_xml("0", &drafts, ""))
        .await;
    let dkey = text(&r, eas_wbxml::tags::airsync::SyncKey);
    let add = |client: &str| {
        format!(
            "<Commands><Add><ClientId>{client}</ClientId><ApplicationData>\
               <email:To>someone@example.com</email:To><email:Subject>Draft</email:Subject>\
               <airsyncbase:Body><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:Data>Hello</airsyncbase:Data></airsyncbase:Body>\
             </ApplicationData></Add></Commands>"
        )
    };
    s.exchange(
        "draft add",
        "Sync",
        &sync_xml(
            &dkey,
            &drafts,
            &format!("<GetChanges>0</GetChanges>{}", add("c1")),
        ),
    )
    .await;
    let r = s
        .exchange("inbox partnership 16.1", "Sync", &sync_xml("0", &inbox, ""))
        .await;
    let ikey = text(&r, eas_wbxml::tags::airsync::SyncKey);
    s.exchange(
        "add refused outside Drafts",
        "Sync",
        &sync_xml(
            &ikey,
            &inbox,
            &format!("<GetChanges>0</GetChanges>{}", add("c2")),
        ),
    )
    .await;

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(TRANSCRIPT);
    if std::env::var_os("EAS_RECORD_TRANSCRIPT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &s.log).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (record it with EAS_RECORD_TRANSCRIPT=1)",
            path.display()
        )
    });
    for (i, (want, got)) in recorded.split("\n\n").zip(s.log.split("\n\n")).enumerate() {
        assert_eq!(got, want, "exchange {i} differs from {TRANSCRIPT}");
    }
    assert_eq!(s.log, recorded);
}
