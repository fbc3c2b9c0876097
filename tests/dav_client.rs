//! The DAV client (`eas_gateway::dav`) against two real, independent servers: a private
//! Radicale (htpasswd users = the Dovecot test users) and a private Xandikos, both on
//! loopback, one of each per test binary. Every contract test runs against both.
//!
//! Covered: RFC 6764 discovery, extended MKCOL / MKCALENDAR / PROPPATCH, PUT with
//! `If-None-Match: *` and `If-Match` (and the 412 answers), DELETE with `If-Match`,
//! sync-collection with tokens, the ETag listing, multiget, and the errors for a wrong
//! password, a server that is down and one that does not answer (retryable).

mod support;

use support::dav::{Server, client, radicale};

use std::sync::Arc;
use std::time::Duration;

use eas_gateway::dav::{DavClient, DavError, DavSettings, Kind, Write, http_client};
use eas_gateway::secret::Secret;
use reqwest::Url;

/// A fresh address book of this test, made with extended MKCOL in the user's home.
async fn new_address_book(c: &DavClient, name: &str) -> Url {
    let d = c.discover(&[Kind::AddressBook]).await.unwrap();
    let home = d
        .addressbook_homes
        .first()
        .expect("an address book home")
        .clone();
    let slug: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
    let url = home.join(&format!("{}/", support::unique(&slug))).unwrap();
    c.make_collection(&url, Kind::AddressBook, name, &[])
        .await
        .unwrap();
    url
}

fn vcard(uid: &str, name: &str) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\nEMAIL:{uid}@example.com\r\nEND:VCARD\r\n"
    )
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

both!(discovery, discovery_finds_collections);
async fn discovery_finds_collections(server: Server) {
    let c = client(server, "alice");
    let book = new_address_book(&c, "Friends & Family").await;
    let d = c.discover(&[Kind::AddressBook]).await.unwrap();
    assert!(d.principal.is_some(), "{d:?}");
    let found = d
        .collections
        .iter()
        .find(|c| c.url == book)
        .unwrap_or_else(|| panic!("{book} not among {:?}", d.collections));
    assert_eq!(found.kind, Kind::AddressBook);
    assert_eq!(found.display_name.as_deref(), Some("Friends & Family"));
    assert!(
        found.sync_token.is_some() || found.ctag.is_some(),
        "{found:?}"
    );
    assert!(d.collections.iter().all(|c| c.kind == Kind::AddressBook));

    // A calendar restricted to tasks, then renamed.
    let d = c.discover(&[Kind::Calendar]).await.unwrap();
    let home = d.calendar_homes.first().expect("a calendar home").clone();
    let cal = home
        .join(&format!("{}/", support::unique("tasks")))
        .unwrap();
    c.make_collection(&cal, Kind::Calendar, "Tasks", &["VTODO"])
        .await
        .unwrap();
    c.rename(&cal, "Chores").await.unwrap();
    let d = c.discover(&[Kind::Calendar]).await.unwrap();
    let found = d.collections.iter().find(|c| c.url == cal).unwrap();
    assert_eq!(found.kind, Kind::Calendar);
    assert_eq!(found.display_name.as_deref(), Some("Chores"));
    // Xandikos keeps its default component set whatever MKCALENDAR asked for.
    assert!(found.components.contains(&"VTODO".to_owned()), "{found:?}");
    if let Server::Radicale = server {
        assert_eq!(found.components, vec!["VTODO".to_owned()]);
    }
    // Both kinds at once find both.
    let d = c
        .discover(&[Kind::AddressBook, Kind::Calendar])
        .await
        .unwrap();
    assert!(d.collections.iter().any(|c| c.url == book));
    assert!(d.collections.iter().any(|c| c.url == cal));
    // Deleting a collection.
    c.delete(&cal, None).await.unwrap();
    let d = c.discover(&[Kind::Calendar]).await.unwrap();
    assert!(!d.collections.iter().any(|c| c.url == cal));
}

both!(writes, create_change_delete_with_preconditions);
async fn create_change_delete_with_preconditions(server: Server) {
    let c = client(server, "bob");
    let book = new_address_book(&c, "Writes").await;
    let card = book.join("one.vcf").unwrap();
    let ct = "text/vcard; charset=utf-8";
    c.put(&card, ct, vcard("one", "First"), Write::Create)
        .await
        .unwrap();
    // Created again: the precondition fails, nothing is overwritten.
    let again = c.put(&card, ct, vcard("one", "Other"), Write::Create).await;
    assert!(
        matches!(again, Err(DavError::PreconditionFailed)),
        "{again:?}"
    );
    let got = c.get(&card).await.unwrap();
    assert!(got.data.as_deref().unwrap().contains("FN:First"));
    let etag1 = got.etag.expect("GET gives an ETag");

    c.put(&card, ct, vcard("one", "Second"), Write::Replace(&etag1))
        .await
        .unwrap();
    let etag2 = c.get(&card).await.unwrap().etag.unwrap();
    assert_ne!(etag1, etag2);
    // A write or delete on the old ETag is refused: the server changed meanwhile.
    let stale = c
        .put(&card, ct, vcard("one", "Third"), Write::Replace(&etag1))
        .await;
    assert!(
        matches!(stale, Err(DavError::PreconditionFailed)),
        "{stale:?}"
    );
    let stale = c.delete(&card, Some(&etag1)).await;
    assert!(
        matches!(stale, Err(DavError::PreconditionFailed)),
        "{stale:?}"
    );
    assert!(
        c.get(&card)
            .await
            .unwrap()
            .data
            .unwrap()
            .contains("FN:Second")
    );
    c.delete(&card, Some(&etag2)).await.unwrap();
    assert!(matches!(c.get(&card).await, Err(DavError::NotFound)));
    assert!(matches!(
        c.delete(&card, None).await,
        Err(DavError::NotFound)
    ));
}

both!(sync, sync_collection_listing_and_multiget);
async fn sync_collection_listing_and_multiget(server: Server) {
    let c = client(server, "carol");
    let book = new_address_book(&c, "Sync").await;
    let start = c.sync_collection(&book, None).await.unwrap();
    assert!(start.changed.is_empty() && start.removed.is_empty());
    let token = start.token.expect("a sync token");
    assert_eq!(
        c.sync_token(&book).await.unwrap().as_deref(),
        Some(token.as_str())
    );

    let ct = "text/vcard; charset=utf-8";
    let mut urls = Vec::new();
    for i in 0..3 {
        let url = book.join(&format!("c{i}.vcf")).unwrap();
        c.put(
            &url,
            ct,
            vcard(&format!("c{i}"), &format!("Card {i}")),
            Write::Create,
        )
        .await
        .unwrap();
        urls.push(url);
    }
    let changes = c.sync_collection(&book, Some(&token)).await.unwrap();
    let mut changed: Vec<_> = changes.changed.iter().map(|m| m.url.clone()).collect();
    changed.sort();
    assert_eq!(changed, urls);
    assert!(changes.changed.iter().all(|m| m.etag.is_some()));
    let token2 = changes.token.unwrap();
    assert_ne!(token2, token);
    assert_ne!(c.sync_token(&book).await.unwrap(), Some(token.clone()));

    // Multiget returns data and the same ETags.
    let got = c.multiget(&book, Kind::AddressBook, &urls).await.unwrap();
    assert_eq!(got.len(), 3);
    for m in &got {
        let listed = changes.changed.iter().find(|x| x.url == m.url).unwrap();
        assert_eq!(m.etag, listed.etag);
        assert!(m.data.as_deref().unwrap().contains("BEGIN:VCARD"));
    }

    // A delete shows as removed; the listing fallback agrees.
    let etag = got.iter().find(|m| m.url == urls[0]).unwrap().etag.clone();
    c.delete(&urls[0], etag.as_deref()).await.unwrap();
    let changes = c.sync_collection(&book, Some(&token2)).await.unwrap();
    assert_eq!(changes.removed, vec![urls[0].clone()]);
    assert!(changes.changed.is_empty());
    let mut listed: Vec<_> = c
        .list(&book)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.url)
        .collect();
    listed.sort();
    assert_eq!(listed, urls[1..].to_vec());
    // A member gone since the listing is left out of a multiget, not an error.
    let got = c.multiget(&book, Kind::AddressBook, &urls).await.unwrap();
    assert_eq!(got.len(), 2);

    // A token the server never gave is refused in a way the caller can recover from.
    let bogus = c
        .sync_collection(&book, Some("http://example.invalid/sync/nonsense"))
        .await;
    assert!(
        matches!(
            bogus,
            Err(DavError::InvalidSyncToken | DavError::Forbidden | DavError::Status { .. })
        ),
        "{bogus:?}"
    );
}

#[tokio::test]
async fn wrong_password_is_unauthorized() {
    let u = support::user("dave");
    let c = support::dav::dav(&radicale().url(), &u.login, "not-the-password");
    let e = c.discover(&[Kind::AddressBook]).await.unwrap_err();
    assert!(matches!(e, DavError::Unauthorized), "{e:?}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn user_name_template_reaches_the_server() {
    // Radicale knows `erin@example.com`; the template rebuilds it from the local part.
    let u = support::user("erin");
    let local = u.login.split('@').next().unwrap().to_owned();
    let mut s = DavSettings::new(Url::parse(&radicale().url()).unwrap());
    s.user_template = Some("%l@example.com".into());
    let s = Arc::new(s);
    let c = DavClient::new(
        http_client(&s).unwrap(),
        s,
        &local,
        Secret::new(u.password.clone()),
    );
    assert_eq!(c.user(), u.login);
    let p = c.principal(&[Kind::AddressBook]).await.unwrap();
    assert!(p.path().contains("erin"), "{p}");
}

#[tokio::test]
async fn a_server_that_is_down_is_retryable() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = support::dav::dav(&format!("http://127.0.0.1:{port}/"), "alice", "pw");
    let e = c.discover(&[Kind::AddressBook]).await.unwrap_err();
    assert!(matches!(e, DavError::Unreachable(_)), "{e:?}");
    assert!(e.is_retryable());
    assert!(!e.to_string().contains("pw"));

    // A server that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut s = DavSettings::new(Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap());
    s.timeout = Duration::from_millis(300);
    let s = Arc::new(s);
    let c = DavClient::new(
        http_client(&s).unwrap(),
        s,
        "alice",
        Secret::new("pw".into()),
    );
    let book = Url::parse(&format!("http://127.0.0.1:{port}/alice/book/")).unwrap();
    let e = c.sync_collection(&book, None).await.unwrap_err();
    assert!(matches!(e, DavError::Timeout), "{e:?}");
    assert!(e.is_retryable());
    drop(silent);
}

#[tokio::test]
async fn answers_over_the_bound_are_refused() {
    let u = support::user("frank");
    let mut s = DavSettings::new(Url::parse(&radicale().url()).unwrap());
    s.max_response_bytes = 64;
    let s = Arc::new(s);
    let c = DavClient::new(
        http_client(&s).unwrap(),
        s,
        &u.login,
        Secret::new(u.password.clone()),
    );
    let e = c.discover(&[Kind::AddressBook]).await.unwrap_err();
    assert!(matches!(e, DavError::TooLarge { limit: 64 }), "{e:?}");
}

#[tokio::test]
async fn check_reports_what_discovery_finds() {
    let u = support::user("grace");
    let c = client(Server::Radicale, "grace");
    new_address_book(&c, "Check Book").await;
    let mut config = eas_gateway::config::Config::default();
    config.dav.url = radicale().url();
    let login = eas_gateway::cli::check::Login {
        user: u.login.clone(),
        password: u.password.clone(),
    };
    let mut out = Vec::new();
    let ok = eas_gateway::cli::check_dav::run(&config, Some(&login), &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("principal "), "{text}");
    assert!(text.contains("address book \"Check Book\""), "{text}");
    assert!(!text.contains(&u.password), "{text}");
    let wrong = eas_gateway::cli::check::Login {
        user: u.login.clone(),
        password: "wrong".into(),
    };
    let mut out = Vec::new();
    assert!(
        !eas_gateway::cli::check_dav::run(&config, Some(&wrong), &mut out)
            .await
            .unwrap()
    );
    assert!(String::from_utf8(out).unwrap().contains("401"));
    // Nothing configured is not a problem: the phone gets mail only.
    config.dav.url = String::new();
    let mut out = Vec::new();
    assert!(
        eas_gateway::cli::check_dav::run(&config, Some(&login), &mut out)
            .await
            .unwrap()
    );
}
