//! The contacts store (`backend::contacts::ContactItems`, the Sync engine's `ItemStore` for
//! address books) against a private Radicale and a private Xandikos: listing, fetching and
//! rendering, a phone's Change merged so that what EAS does not carry survives, the 412 path
//! (the server wins), Add with a fresh UID, Delete, and a server that is down (retryable).

mod support;

use support::dav::{Server, client, dav};

use std::collections::BTreeMap;

use eas_gateway::backend::contacts::{ContactItems, ContactsToken};
use eas_gateway::backend::{
    AddContext, Added, BackendError, Changed, CollectionRef, ItemStore, RenderOptions, Snapshot,
    Token, kinds,
};
use eas_gateway::contacts::{self, Field};
use eas_gateway::dav::{DavClient, Kind, Write};
use eas_wbxml::tags::{airsync as a, contacts as c};
use eas_wbxml::{Element, Writer};
use reqwest::Url;

async fn new_book(c: &DavClient) -> Url {
    let d = c.discover(&[Kind::AddressBook]).await.unwrap();
    let home = d.addressbook_homes.first().unwrap().clone();
    let url = home.join(&format!("{}/", support::unique("book"))).unwrap();
    c.make_collection(&url, Kind::AddressBook, "Store test", &[])
        .await
        .unwrap();
    url
}

const RICH: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:rich\r\nFN:Jane Doe\r\nN:Doe;Jane;;;\r\n\
item1.EMAIL;TYPE=INTERNET:jane@example.org\r\nitem1.X-ABLabel:Private\r\n\
EMAIL:two@example.org\r\nEMAIL:three@example.org\r\nEMAIL:four@example.org\r\n\
TEL;TYPE=CELL:+1 555 0100\r\nX-FOO;X-P=1:keep me\r\nNOTE:A long note\r\nEND:VCARD\r\n";
const OLD: &str = "BEGIN:VCARD\r\nVERSION:2.1\r\nUID:old\r\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=C3=BCrgen\r\nFN;ENCODING=QUOTED-PRINTABLE;CHARSET=ISO-8859-1:J=FCrgen M=FCller\r\nTEL;HOME;VOICE:123\r\nEND:VCARD\r\n";

fn render() -> RenderOptions {
    RenderOptions {
        version: eas_gateway::mime::Version::V16_1,
        body_preferences: vec![eas_gateway::mime::BodyPreference::new(
            eas_gateway::mime::BodyType::Plain,
        )],
        mime_support: eas_gateway::mime::MimeSupport::Never,
        mime_truncation: None,
    }
}

fn context() -> AddContext<'static> {
    AddContext {
        version: eas_gateway::mime::Version::V16_1,
        email: "alice@example.com",
        now_unix: 0,
    }
}

/// The ApplicationData a phone would have received for `id`, read back as a contact.
fn on_phone(r: &eas_gateway::backend::Rendered, id: u32) -> contacts::Contact {
    let mut w = Writer::new(Vec::new()).unwrap();
    r.write(&mut w, id, false).unwrap();
    let tree = Element::decode(&w.finish().unwrap()).unwrap();
    contacts::parse_application_data(&tree).unwrap()
}

fn application_data(contact: &contacts::Contact) -> Element {
    let mut w = Writer::new(Vec::new()).unwrap();
    w.start(a::ApplicationData).unwrap();
    contacts::write_application_data(
        &mut w,
        contact,
        &contacts::RenderOptions {
            body_preferences: vec![],
            picture_max_bytes: contacts::DEFAULT_PICTURE_MAX_BYTES,
        },
    )
    .unwrap();
    w.end().unwrap();
    Element::decode(&w.finish().unwrap()).unwrap()
}

macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn radicale() {
                super::$body(super::Server::Radicale).await;
            }
            #[tokio::test]
            async fn xandikos() {
                super::$body(super::Server::Xandikos).await;
            }
        }
    };
}

both!(round_trip, read_change_add_delete);
async fn read_change_add_delete(server: Server) {
    let d = client(server, "heidi");
    let book = new_book(&d).await;
    let rich = book.join("rich.vcf").unwrap();
    let ct = "text/vcard; charset=utf-8";
    d.put(&rich, ct, RICH.into(), Write::Create).await.unwrap();
    d.put(
        &book.join("old.vcf").unwrap(),
        ct,
        OLD.into(),
        Write::Create,
    )
    .await
    .unwrap();

    let mut store = ContactItems::new(d.clone(), contacts::DEFAULT_PICTURE_MAX_BYTES);
    let at = CollectionRef {
        id: 7,
        locator: book.as_str(),
        kind: kinds::USER_CONTACTS,
    };
    let now = store.state(at).await.unwrap().expect("the book exists");
    assert_eq!(store.state(at).await.unwrap(), Some(now.clone()));
    assert!(now.unchanged(&now), "{now:?}");

    // First sync: everything is an add.
    let empty = Snapshot {
        token: ContactsToken::identity(&now),
        ..Snapshot::default()
    };
    let listing = store.changes(at, &empty, 0).await.unwrap();
    assert_eq!(listing.diff.adds.len(), 2);
    let ids = listing.diff.adds.clone();
    let rendered = store.fetch(at, &ids, &ids, &render()).await.unwrap();
    let mut phone: BTreeMap<u32, contacts::Contact> = ids
        .iter()
        .map(|id| (*id, on_phone(&rendered, *id)))
        .collect();
    let rich_id = *phone
        .iter()
        .find(|(_, c)| c.get(Field::FirstName) == Some("Jane"))
        .unwrap()
        .0;
    assert!(
        phone
            .values()
            .any(|c| c.get(Field::FileAs) == Some("Jürgen Müller"))
    );
    let mut snap = Snapshot {
        token: listing.token.clone(),
        items: ids
            .iter()
            .map(|id| (*id, rendered.fold_of(*id).unwrap()))
            .collect(),
        ..Snapshot::default()
    };

    // Nothing changed: the same token, an empty diff.
    assert!(
        snap.token
            .unchanged(&store.state(at).await.unwrap().unwrap())
    );
    assert!(store.changes(at, &snap, 0).await.unwrap().diff.is_empty());

    // The phone renames Jane and drops her mobile number.
    let mut edit = phone[&rich_id].clone();
    edit.set(Field::FirstName, "Janet");
    edit.fields.remove(&Field::MobilePhone);
    let old = snap.items[&rich_id];
    let fold = match store
        .change(at, rich_id, old, &application_data(&edit))
        .await
        .unwrap()
    {
        Changed::To(f) => f,
        Changed::Gone => panic!("gone"),
    };
    assert_ne!(fold, old);
    snap.items.insert(rich_id, fold);
    let stored = d.get(&rich).await.unwrap().data.unwrap();
    for kept in [
        "X-FOO;X-P=1:keep me",
        "item1.X-ABLabel:Private",
        "four@example.org",
        "UID:rich",
        "NOTE:A long note",
    ] {
        // Radicale writes property names in upper case (they are case-insensitive).
        assert!(
            stored.to_lowercase().contains(&kept.to_lowercase()),
            "{kept} lost:\n{stored}"
        );
    }
    assert!(stored.contains("N:Doe;Janet;;;"), "{stored}");
    assert!(stored.contains("FN:Janet Doe"), "{stored}");
    assert!(!stored.contains("555 0100"), "{stored}");
    // The phone's own change is not sent back to it.
    let after = store.changes(at, &snap, 0).await.unwrap();
    assert!(after.diff.is_empty(), "{:?}", after.diff);
    phone.insert(rich_id, edit.clone());

    // Someone else edits Jane on the server; the phone's edit made before it loses (412 or
    // a moved ETag) and the server's version reaches the phone as a Change.
    let etag = d.get(&rich).await.unwrap().etag.unwrap();
    let other = stored.replace("FN:Janet Doe", "FN:Janet D. (desk)");
    d.put(&rich, ct, other.clone(), Write::Replace(&etag))
        .await
        .unwrap();
    let mut late = edit.clone();
    late.set(Field::JobTitle, "CEO");
    let r = store
        .change(at, rich_id, snap.items[&rich_id], &application_data(&late))
        .await
        .unwrap();
    assert_eq!(r, Changed::To(snap.items[&rich_id]));
    assert_eq!(d.get(&rich).await.unwrap().data.unwrap(), other);
    let after = store.changes(at, &snap, 0).await.unwrap();
    assert_eq!(after.diff.changes, vec![rich_id]);

    // A new contact from the phone.
    let mut new = contacts::Contact::default();
    new.set(Field::FirstName, "Neo");
    new.set(Field::Email1, "neo@example.net");
    let (new_id, new_fold) = match store
        .add(at, &application_data(&new), context())
        .await
        .unwrap()
    {
        Added::Created(id, fold) => (id, fold),
        other => panic!("{other:?}"),
    };
    snap.items.insert(new_id, new_fold);
    let listed = d.list(&book).await.unwrap();
    assert_eq!(listed.len(), 3);
    let created = listed
        .iter()
        .find(|m| m.url != rich && !m.url.path().ends_with("old.vcf"))
        .unwrap();
    let text = d.get(&created.url).await.unwrap().data.unwrap();
    assert!(
        text.contains("UID:") && text.contains("neo@example.net"),
        "{text}"
    );
    // A malformed contact is refused, not stored.
    let bad = Element::with_children(
        a::ApplicationData,
        vec![Element::with_text(c::Birthday, "someday")],
    );
    assert_eq!(
        store.add(at, &bad, context()).await.unwrap(),
        Added::Refused
    );
    assert_eq!(d.list(&book).await.unwrap().len(), 3);

    // The phone deletes the new contact.
    store.delete(at, new_id, true).await.unwrap();
    assert!(matches!(
        d.get(&created.url).await,
        Err(eas_gateway::dav::DavError::NotFound)
    ));
    // And a change of a contact deleted on the server reports it gone.
    d.delete(&book.join("old.vcf").unwrap(), None)
        .await
        .unwrap();
    let old_id = *ids.iter().find(|i| **i != rich_id).unwrap();
    let mut fresh = ContactItems::new(d.clone(), contacts::DEFAULT_PICTURE_MAX_BYTES);
    assert_eq!(
        fresh
            .change(
                at,
                old_id,
                snap.items[&old_id],
                &application_data(&phone[&old_id])
            )
            .await
            .unwrap(),
        Changed::Gone
    );
}

#[tokio::test]
async fn a_server_that_is_down_is_an_error_not_an_empty_book() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}/");
    let mut store = ContactItems::new(dav(&base, "alice", "pw"), 1000);
    let book = format!("{base}alice/book/");
    let at = CollectionRef {
        id: 1,
        locator: &book,
        kind: kinds::CONTACTS,
    };
    let e = store.state(at).await.unwrap_err();
    assert!(
        matches!(&e, BackendError::Dav(d) if d.is_retryable()),
        "{e:?}"
    );
    let e = store
        .changes(at, &Snapshot::<ContactsToken>::default(), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, BackendError::Dav(d) if d.is_retryable()),
        "{e:?}"
    );
    // What the phone gets for it: a retryable HTTP 503, never an empty folder.
    let eas = eas_gateway::eas::EasError::from(e);
    assert!(
        matches!(eas, eas_gateway::eas::EasError::Unavailable(_)),
        "{eas:?}"
    );
}
