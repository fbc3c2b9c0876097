//! Contacts end to end: the simulated phone against the gateway (in process), with mail on
//! the private Dovecot and contacts on a private Radicale whose users are Dovecot's (the main
//! conversation runs again on a private Xandikos). The phone sees its address books in
//! FolderSync (the first as the default Contacts folder, type 9), syncs them, changes, adds and
//! deletes contacts, and the vCards on the server keep what EAS does not carry. A DAV server that is down keeps the folders and answers Sync with a
//! retryable error, never an empty folder.

mod eas;
mod support;

use support::dav::{Server, radicale};

use std::sync::Arc;
use std::time::Duration;

use eas::{Gateway, Phone, folder_changes};
use eas_gateway::dav::{DavClient, DavSettings, Kind, Write, http_client};
use eas_gateway::secret::Secret;
use eas_testbed::Radicale;
use eas_wbxml::Element;
use eas_wbxml::tags::{airsync as a, contacts as c};
use reqwest::Url;

const JANE: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:jane\r\nFN:Jane Doe\r\nN:Doe;Jane;;;\r\n\
EMAIL;TYPE=INTERNET:jane@example.org\r\nTEL;TYPE=CELL:+1 555 0100\r\n\
X-FOO;X-P=1:keep me\r\nEND:VCARD\r\n";
const BOB: &str = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:bob\r\nFN:Bob Roe\r\nN:Roe;Bob;;;\r\n\
BDAY:19800517\r\nEND:VCARD\r\n";

/// The user's address book with two contacts, and the gateway pointed at Radicale.
async fn setup(user: &str) -> (Gateway, Phone, DavClient, Url) {
    setup_on(Server::Radicale, user).await
}

/// The same on `server`. Xandikos serves one principal with a default address book; the
/// gateway reaches it through the user-name template, as a site with one DAV account per
/// gateway user would.
async fn setup_on(server: Server, user: &str) -> (Gateway, Phone, DavClient, Url) {
    let (login, password) = support::credentials(user);
    let d = support::dav::client(server, user);
    let disc = d.discover(&[Kind::AddressBook]).await.unwrap();
    let book = match server {
        Server::Radicale => {
            let book = disc.addressbook_homes[0].join("contacts/").unwrap();
            d.make_collection(&book, Kind::AddressBook, "Contacts", &[])
                .await
                .unwrap();
            book
        }
        Server::Xandikos => disc.addressbook_homes[0].join("addressbook/").unwrap(),
    };
    let ct = "text/vcard; charset=utf-8";
    d.put(
        &book.join("jane.vcf").unwrap(),
        ct,
        JANE.into(),
        Write::Create,
    )
    .await
    .unwrap();
    d.put(
        &book.join("bob.vcf").unwrap(),
        ct,
        BOB.into(),
        Write::Create,
    )
    .await
    .unwrap();
    let url = match server {
        Server::Radicale => radicale().url(),
        Server::Xandikos => support::dav::xandikos().url(),
    };
    let g = Gateway::start(support::dovecot().imap_config(), move |c| {
        c.dav.url = url;
        if let Server::Xandikos = server {
            c.dav.user_template = Some(support::dav::xandikos().user().to_owned());
        }
    })
    .await;
    let mut p = Phone::new(
        &g,
        &login,
        &password,
        &format!("CONTACTS{}", user.to_uppercase()),
    );
    p.provision().await;
    (g, p, d, book)
}

async fn sync(p: &Phone, coll: &str, key: &str, commands: &str) -> Element {
    let xml = format!(
        r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:" xmlns:contacts="Contacts:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{coll}</CollectionId><GetChanges/><WindowSize>100</WindowSize><Options><airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:TruncationSize>32768</airsyncbase:TruncationSize></airsyncbase:BodyPreference></Options>{commands}</Collection></Collections></Sync>"#
    );
    let answer = p.send("Sync", &xml).await;
    assert_eq!(answer.status, 200, "{}", answer.xml());
    answer.tree()
}

fn collection(tree: &Element) -> &Element {
    tree.child(a::Collections)
        .and_then(|c| c.child(a::Collection))
        .expect("a Collection")
}

fn key_of(tree: &Element) -> String {
    collection(tree)
        .child(a::SyncKey)
        .and_then(|k| k.text())
        .unwrap()
        .to_owned()
}

fn text(e: &Element, tag: eas_wbxml::Tag) -> Option<String> {
    e.child(tag).and_then(|t| t.text()).map(str::to_owned)
}

#[tokio::test]
async fn a_phone_reads_changes_adds_and_deletes_contacts_on_radicale() {
    reads_changes_adds_and_deletes(Server::Radicale, "kim").await;
}

#[tokio::test]
async fn a_phone_reads_changes_adds_and_deletes_contacts_on_xandikos() {
    reads_changes_adds_and_deletes(Server::Xandikos, "kim").await;
}

async fn reads_changes_adds_and_deletes(server: Server, user: &str) {
    let (g, p, d, book) = setup_on(server, user).await;
    let fs = p.folder_sync("0").await;
    let (folders, _, _) = folder_changes(&fs);
    let contacts = folders
        .iter()
        .find(|f| f.kind == 9)
        .unwrap_or_else(|| panic!("no Contacts folder in {folders:?}"));
    if let Server::Radicale = server {
        assert_eq!(contacts.name, "Contacts");
    }
    assert_eq!(folders.iter().filter(|f| f.kind == 2).count(), 1, "Inbox");
    let coll = contacts.id.clone();

    let first = sync(&p, &coll, "0", "").await;
    let key = key_of(&first);
    let got = sync(&p, &coll, &key, "").await;
    let col = collection(&got);
    let adds: Vec<&Element> = col
        .child(a::Commands)
        .map(|c| c.children_with(a::Add).collect())
        .unwrap_or_default();
    assert_eq!(adds.len(), 2, "{}", eas_wbxml::to_xml(&got));
    let data = |e: &Element| e.child(a::ApplicationData).unwrap().clone();
    let jane = adds
        .iter()
        .find(|e| text(&data(e), c::FirstName).as_deref() == Some("Jane"))
        .unwrap();
    let bob = adds
        .iter()
        .find(|e| text(&data(e), c::FirstName).as_deref() == Some("Bob"))
        .unwrap();
    assert_eq!(
        text(&data(bob), c::Birthday).as_deref(),
        Some("1980-05-17T00:00:00.000Z")
    );
    assert_eq!(
        text(&data(jane), c::MobilePhoneNumber).as_deref(),
        Some("+1 555 0100")
    );
    let jane_id = text(jane, a::ServerId).unwrap();
    let bob_id = text(bob, a::ServerId).unwrap();
    let key = key_of(&got);

    // Nothing new: nothing sent.
    let again = p.try_sync(&coll, &key, "").await.unwrap();
    assert!(again.empty || again.added.is_empty());

    // The phone renames Jane, adds Neo (twice the same ClientId in separate requests is the
    // engine's business) and deletes Bob.
    let change = format!(
        "<Commands><Change><ServerId>{jane_id}</ServerId><ApplicationData><contacts:FirstName>Janet</contacts:FirstName><contacts:LastName>Doe</contacts:LastName><contacts:FileAs>Janet Doe</contacts:FileAs><contacts:Email1Address>jane@example.org</contacts:Email1Address></ApplicationData></Change>\
<Add><ClientId>c1</ClientId><ApplicationData><contacts:FirstName>Neo</contacts:FirstName><contacts:Email1Address>neo@example.net</contacts:Email1Address></ApplicationData></Add>\
<Add><ClientId>c2</ClientId><ApplicationData><contacts:Birthday>not a date</contacts:Birthday></ApplicationData></Add>\
<Delete><ServerId>{bob_id}</ServerId></Delete></Commands>"
    );
    let done = sync(&p, &coll, &key, &change).await;
    let responses = collection(&done).child(a::Responses).expect("Responses");
    let add_status = |cid: &str| {
        responses
            .children_with(a::Add)
            .find(|r| text(r, a::ClientId).as_deref() == Some(cid))
            .and_then(|r| text(r, a::Status))
    };
    assert_eq!(
        add_status("c1").as_deref(),
        Some("1"),
        "{}",
        eas_wbxml::to_xml(&done)
    );
    assert_eq!(
        add_status("c2").as_deref(),
        Some("6"),
        "{}",
        eas_wbxml::to_xml(&done)
    );

    let stored = d.get(&book.join("jane.vcf").unwrap()).await.unwrap();
    let stored = stored.data.unwrap();
    assert!(stored.contains("Janet"), "{stored}");
    assert!(
        stored.to_lowercase().contains("x-foo;x-p=1:keep me"),
        "{stored}"
    );
    // The phone sent no mobile number: it deleted it.
    assert!(!stored.contains("555 0100"), "{stored}");
    assert!(matches!(
        d.get(&book.join("bob.vcf").unwrap()).await,
        Err(eas_gateway::dav::DavError::NotFound)
    ));
    let members = d.list(&book).await.unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    let neo = members
        .iter()
        .find(|m| !m.url.path().ends_with("jane.vcf"))
        .unwrap();
    assert!(
        d.get(&neo.url)
            .await
            .unwrap()
            .data
            .unwrap()
            .contains("neo@example.net")
    );

    // A change made on the server reaches the phone as a Change.
    let key = key_of(&done);
    let etag = d
        .get(&book.join("jane.vcf").unwrap())
        .await
        .unwrap()
        .etag
        .unwrap();
    let edited = stored.replace("Janet", "Janine");
    d.put(
        &book.join("jane.vcf").unwrap(),
        "text/vcard",
        edited,
        Write::Replace(&etag),
    )
    .await
    .unwrap();
    let news = sync(&p, &coll, &key, "").await;
    let changes: Vec<&Element> = collection(&news)
        .child(a::Commands)
        .map(|c| c.children_with(a::Change).collect())
        .unwrap_or_default();
    assert_eq!(changes.len(), 1, "{}", eas_wbxml::to_xml(&news));
    assert_eq!(
        text(&data(changes[0]), c::FirstName).as_deref(),
        Some("Janine")
    );

    // The gateway's requests to the DAV server are on /metrics by method.
    let metrics = g.metrics().await;
    for method in ["PROPFIND", "REPORT"] {
        let count = format!("eas_dav_round_trip_seconds_count{{method=\"{method}\"}} ");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&count) && !l.ends_with(" 0")),
            "{count} missing in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_dav_server_that_is_down_keeps_the_folders_and_asks_to_retry() {
    // A Radicale of this test's own, stopped half way.
    let (login, password) = support::credentials("lena");
    let own = Radicale::start(&[support::user("lena")]).unwrap();
    let mut s = DavSettings::new(Url::parse(&own.url()).unwrap());
    s.timeout = Duration::from_secs(5);
    let s = Arc::new(s);
    let d = DavClient::new(
        http_client(&s).unwrap(),
        s,
        &login,
        Secret::new(password.clone()),
    );
    let disc = d.discover(&[Kind::AddressBook]).await.unwrap();
    let book = disc.addressbook_homes[0].join("contacts/").unwrap();
    d.make_collection(&book, Kind::AddressBook, "Contacts", &[])
        .await
        .unwrap();
    d.put(
        &book.join("jane.vcf").unwrap(),
        "text/vcard",
        JANE.into(),
        Write::Create,
    )
    .await
    .unwrap();
    let url = own.url();
    let g = Gateway::start(support::dovecot().imap_config(), move |c| {
        c.dav.url = url;
        c.dav.timeout_secs = 5;
    })
    .await;
    let mut p = Phone::new(&g, &login, &password, "CONTACTSDOWN");
    p.provision().await;
    let fs = p.folder_sync("0").await;
    let (folders, _, _) = folder_changes(&fs);
    let contacts = folders.iter().find(|f| f.kind == 9).unwrap().clone();
    let key = eas::find_text(&fs, eas_wbxml::tags::folderhierarchy::SyncKey).unwrap();
    let first = sync(&p, &contacts.id, "0", "").await;
    let got = sync(&p, &contacts.id, &key_of(&first), "").await;
    let sync_key = key_of(&got);

    own.stop();
    // The folder stays: no FolderSync change would make the phone drop its contacts.
    let again = p.folder_sync(&key).await;
    let (added, updated, deleted) = folder_changes(&again);
    assert!(
        added.is_empty() && updated.is_empty() && deleted.is_empty(),
        "{}",
        eas_wbxml::to_xml(&again)
    );
    // A Sync is refused with a retryable status, never answered with an empty folder.
    let xml = format!(
        r#"<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>{sync_key}</SyncKey><CollectionId>{}</CollectionId><GetChanges/></Collection></Collections></Sync>"#,
        contacts.id
    );
    let answer = p
        .post("Sync", eas_wbxml::from_xml(&xml).unwrap().encode())
        .await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
}

#[tokio::test]
async fn address_books_are_created_renamed_and_deleted_from_the_phone() {
    let (_g, p, d, _book) = setup("max").await;
    let fs = p.folder_sync("0").await;
    let key = eas::find_text(&fs, eas_wbxml::tags::folderhierarchy::SyncKey).unwrap();
    let (folders, _, _) = folder_changes(&fs);
    let default = folders.iter().find(|f| f.kind == 9).unwrap().clone();
    let fh = |body: String| body;
    let created = p
        .send(
            "FolderCreate",
            &fh(format!(
                r#"<FolderCreate xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ParentId>0</ParentId><DisplayName>Team &amp; Co</DisplayName><Type>14</Type></FolderCreate>"#
            )),
        )
        .await
        .tree();
    let t = |e: &Element, tag| eas::find_text(e, tag).unwrap_or_default();
    use eas_wbxml::tags::folderhierarchy as f;
    assert_eq!(
        t(&created, f::Status),
        "1",
        "{}",
        eas_wbxml::to_xml(&created)
    );
    let key = t(&created, f::SyncKey);
    let id = t(&created, f::ServerId);
    let books = d.discover(&[Kind::AddressBook]).await.unwrap().collections;
    assert!(
        books
            .iter()
            .any(|b| b.display_name.as_deref() == Some("Team & Co")),
        "{books:?}"
    );
    // The next FolderSync does not echo it back.
    let again = p.folder_sync(&key).await;
    let (added, updated, deleted) = folder_changes(&again);
    assert!(
        added.is_empty() && updated.is_empty() && deleted.is_empty(),
        "{}",
        eas_wbxml::to_xml(&again)
    );
    let key = t(&again, f::SyncKey);

    let renamed = p
        .send(
            "FolderUpdate",
            &format!(
                r#"<FolderUpdate xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ServerId>{id}</ServerId><ParentId>0</ParentId><DisplayName>Team</DisplayName></FolderUpdate>"#
            ),
        )
        .await
        .tree();
    assert_eq!(
        t(&renamed, f::Status),
        "1",
        "{}",
        eas_wbxml::to_xml(&renamed)
    );
    let key = t(&renamed, f::SyncKey);
    let books = d.discover(&[Kind::AddressBook]).await.unwrap().collections;
    assert!(
        books
            .iter()
            .any(|b| b.display_name.as_deref() == Some("Team"))
    );

    // The default Contacts folder cannot be deleted; the new one can.
    let refused = p
        .send(
            "FolderDelete",
            &format!(
                r#"<FolderDelete xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ServerId>{}</ServerId></FolderDelete>"#,
                default.id
            ),
        )
        .await
        .tree();
    assert_eq!(t(&refused, f::Status), "3");
    let deleted = p
        .send(
            "FolderDelete",
            &format!(
                r#"<FolderDelete xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ServerId>{id}</ServerId></FolderDelete>"#
            ),
        )
        .await
        .tree();
    assert_eq!(
        t(&deleted, f::Status),
        "1",
        "{}",
        eas_wbxml::to_xml(&deleted)
    );
    let books = d.discover(&[Kind::AddressBook]).await.unwrap().collections;
    assert!(
        !books
            .iter()
            .any(|b| b.display_name.as_deref() == Some("Team"))
    );
    assert_eq!(books.len(), 1);
}

#[tokio::test]
async fn paging_a_large_address_book_misses_nothing_changed_meanwhile_on_radicale() {
    paging_misses_nothing(Server::Radicale, "pia").await;
}

#[tokio::test]
async fn paging_a_large_address_book_misses_nothing_changed_meanwhile_on_xandikos() {
    paging_misses_nothing(Server::Xandikos, "pia").await;
}

/// Pages of three: the first page's request lists the book and hands the listing to the
/// pager computing the next pages, so changes made on the server while the phone pages
/// must still reach it — at the latest at the Sync after the last page — with every
/// contact exactly once at the end.
async fn paging_misses_nothing(server: Server, user: &str) {
    use std::collections::BTreeMap;
    // A book of its own (Xandikos's one principal is shared by the tests of this binary).
    let (login, password) = support::credentials(user);
    let d = support::dav::client(server, user);
    let disc = d.discover(&[Kind::AddressBook]).await.unwrap();
    let book = disc.addressbook_homes[0]
        .join(&format!("paging-{user}/"))
        .unwrap();
    d.make_collection(&book, Kind::AddressBook, "Paging", &[])
        .await
        .unwrap();
    let url = match server {
        Server::Radicale => radicale().url(),
        Server::Xandikos => support::dav::xandikos().url(),
    };
    let _g = Gateway::start(support::dovecot().imap_config(), move |c| {
        c.dav.url = url;
        if let Server::Xandikos = server {
            c.dav.user_template = Some(support::dav::xandikos().user().to_owned());
        }
    })
    .await;
    let mut p = Phone::new(
        &_g,
        &login,
        &password,
        &format!("PAGING{}", user.to_uppercase()),
    );
    p.provision().await;
    let ct = "text/vcard; charset=utf-8";
    let card = |uid: &str, name: &str| {
        format!(
            "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name} X\r\nN:X;{name};;;\r\nEND:VCARD\r\n"
        )
    };
    for (i, name) in ["Jane", "Bob"].iter().enumerate() {
        d.put(
            &book.join(&format!("n{i}.vcf")).unwrap(),
            ct,
            card(&format!("n{i}"), name),
            Write::Create,
        )
        .await
        .unwrap();
    }
    for i in 0..9 {
        let uid = format!("page{i}");
        d.put(
            &book.join(&format!("{uid}.vcf")).unwrap(),
            ct,
            card(&uid, &format!("Page{i}")),
            Write::Create,
        )
        .await
        .unwrap();
    }
    let fs = p.folder_sync("0").await;
    let (folders, _, _) = folder_changes(&fs);
    let coll = folders
        .iter()
        .find(|f| f.name == "Paging")
        .unwrap_or_else(|| panic!("no Paging folder in {folders:?}"))
        .id
        .clone();
    let window = |key: &str| {
        format!(
            r#"<Sync xmlns="AirSync:" xmlns:contacts="Contacts:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{coll}</CollectionId><GetChanges/><WindowSize>3</WindowSize></Collection></Collections></Sync>"#
        )
    };
    // What the phone holds: ServerId → first name.
    let mut phone: BTreeMap<String, String> = BTreeMap::new();
    let mut apply = |tree: &Element| -> (String, bool) {
        let col = collection(tree);
        if let Some(cmds) = col.child(a::Commands) {
            for cmd in cmds.children() {
                let id = text(cmd, a::ServerId).unwrap();
                let name = cmd
                    .child(a::ApplicationData)
                    .and_then(|d| text(d, c::FirstName));
                match cmd.tag {
                    t if t == a::Add => {
                        let old = phone.insert(id.clone(), name.unwrap());
                        assert!(old.is_none(), "{id} added twice");
                    }
                    t if t == a::Change => {
                        assert!(phone.contains_key(&id), "change of unknown {id}");
                        phone.insert(id, name.unwrap());
                    }
                    t if t == a::Delete || t == a::SoftDelete => {
                        assert!(phone.remove(&id).is_some(), "delete of unknown {id}");
                    }
                    _ => {}
                }
            }
        }
        (key_of(tree), col.child(a::MoreAvailable).is_some())
    };
    let first = sync(&p, &coll, "0", "").await;
    let mut key = key_of(&first);
    let answer = p.send("Sync", &window(&key)).await;
    assert_eq!(answer.status, 200);
    let (k, more) = apply(&answer.tree());
    assert!(more, "eleven contacts in pages of three");
    key = k;

    // Meanwhile on the server: one new, one renamed, one gone.
    d.put(
        &book.join("late.vcf").unwrap(),
        ct,
        card("late", "Late"),
        Write::Create,
    )
    .await
    .unwrap();
    let page3 = book.join("page3.vcf").unwrap();
    let etag = d.get(&page3).await.unwrap().etag.unwrap();
    d.put(&page3, ct, card("page3", "Renamed"), Write::Replace(&etag))
        .await
        .unwrap();
    let page5 = book.join("page5.vcf").unwrap();
    let etag = d.get(&page5).await.unwrap().etag;
    d.delete(&page5, etag.as_deref()).await.unwrap();

    // To the last page (no MoreAvailable): the pages come from the listing the first page
    // made, so the changes above are not in them.
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 20, "paging does not end");
        let answer = p.send("Sync", &window(&key)).await;
        assert_eq!(answer.status, 200);
        assert!(!answer.body.is_empty(), "paging ended without a last page");
        let tree = answer.tree();
        let status = collection(&tree)
            .child(a::Status)
            .and_then(|s| s.text())
            .map(str::to_owned);
        assert_eq!(status.as_deref(), Some("1"), "{}", eas_wbxml::to_xml(&tree));
        let (k, more) = apply(&tree);
        key = k;
        if !more {
            break;
        }
    }
    // A pushing phone goes to Ping with the key of the last page: the state that key
    // records is the one the listing was made at, so the Ping answers at once with the
    // folder (long before its heartbeat or the DAV check interval) and the Sync that
    // follows brings the changes.
    let ping = format!(
        r#"<Ping xmlns="Ping:"><HeartbeatInterval>300</HeartbeatInterval><Folders><Folder><Id>{coll}</Id><Class>Contacts</Class></Folder></Folders></Ping>"#
    );
    let asked = std::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(20), p.send("Ping", &ping))
        .await
        .expect("the Ping after the paging answers at once");
    let xml = eas_wbxml::to_xml(&answer.tree());
    assert!(
        xml.contains("<Status>2</Status>") && xml.contains(&format!("<Folder>{coll}</Folder>")),
        "Ping after the paging, {:?}: {xml}",
        asked.elapsed()
    );
    loop {
        rounds += 1;
        assert!(rounds < 30, "syncing the changes does not end");
        let answer = p.send("Sync", &window(&key)).await;
        assert_eq!(answer.status, 200);
        if answer.body.is_empty() {
            break;
        }
        let tree = answer.tree();
        let (k, more) = apply(&tree);
        let nothing = collection(&tree).child(a::Commands).is_none();
        if nothing && !more {
            break;
        }
        key = k;
    }
    let mut held: Vec<String> = phone.values().cloned().collect();
    held.sort();
    let mut want: Vec<String> = (0..9)
        .filter(|i| *i != 5)
        .map(|i| {
            if i == 3 {
                "Renamed".to_owned()
            } else {
                format!("Page{i}")
            }
        })
        .chain(["Jane", "Bob", "Late"].map(str::to_owned))
        .collect();
    want.sort();
    assert_eq!(held, want, "what the phone holds after paging");
}

/// An address book deleted on the server after the phone learned of it: the phone's Sync
/// gets status 12 (learn the folders again) — at its first page, since a new partnership
/// does not ask the server — never a server error or an empty folder.
#[tokio::test]
async fn an_address_book_deleted_on_the_server_asks_for_a_folder_sync() {
    let (_g, p, d, book) = setup_on(Server::Radicale, "quinn").await;
    let other = book.join("../doomed/").unwrap();
    d.make_collection(&other, Kind::AddressBook, "Doomed", &[])
        .await
        .unwrap();
    let fs = p.folder_sync("0").await;
    let (folders, _, _) = folder_changes(&fs);
    let doomed = folders
        .iter()
        .find(|f| f.name == "Doomed")
        .unwrap_or_else(|| panic!("no Doomed folder in {folders:?}"))
        .id
        .clone();
    d.delete(&other, None).await.unwrap();
    let first = sync(&p, &doomed, "0", "").await;
    let status = |t: &Element| {
        collection(t)
            .child(a::Status)
            .and_then(|s| s.text())
            .map(str::to_owned)
    };
    if status(&first).as_deref() == Some("12") {
        return;
    }
    assert_eq!(
        status(&first).as_deref(),
        Some("1"),
        "{}",
        eas_wbxml::to_xml(&first)
    );
    let next = sync(&p, &doomed, &key_of(&first), "").await;
    assert_eq!(
        status(&next).as_deref(),
        Some("12"),
        "{}",
        eas_wbxml::to_xml(&next)
    );
}
