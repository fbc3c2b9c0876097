//! The address book from the servers self-hosters run: GAL search and ResolveRecipients through
//! the real gateway over HTTP, with the directory in a private MariaDB (the seed guides'
//! `mailserver.virtual_users` table, queried as docs/directory-sources.md shows) and a
//! private OpenLDAP slapd (an `inetOrgPerson` tree), each alone, combined, and with one of
//! them down; and a shared address book on a private Radicale read by a service account
//! (found, resolved, refreshed after a change, kept while the server is down).

mod eas;
mod support;

use std::sync::OnceLock;

use eas::{Gateway, Phone, find_text};
use eas_gateway::config::Config;
use eas_gateway::dav::{DavClient, DavSettings, Kind, Write, http_client};
use eas_gateway::directory::carddav::DavDirectoryConfig;
use eas_gateway::directory::ldap::{Attributes, LdapConfig};
use eas_gateway::directory::sql::SqlConfig;
use eas_gateway::secret::Secret;
use eas_testbed::Postgres;
use eas_testbed::Radicale;
use eas_testbed::mariadb::MariaDb;
use eas_testbed::slapd::Slapd;
use eas_wbxml::Element;
use eas_wbxml::tags::{gal as g, resolverecipients as r, search as s};

const SUFFIX: &str = "dc=example,dc=com";
/// The query docs/directory-sources.md gives for the classic schema.
const VIRTUAL_USERS_QUERY: &str = "SELECT email, SUBSTRING_INDEX(email, '@', 1) AS alias \
     FROM virtual_users ORDER BY email";

fn mariadb() -> &'static MariaDb {
    static DB: OnceLock<Result<&'static MariaDb, String>> = OnceLock::new();
    let db = DB.get_or_init(|| {
        let db = MariaDb::start().map_err(|e| e.to_string())?;
        // The schema of the classic Postfix/Dovecot guides, and a read-only user for us.
        db.execute(
            "CREATE DATABASE mailserver;
             USE mailserver;
             CREATE TABLE virtual_domains (id INT NOT NULL AUTO_INCREMENT, name VARCHAR(50) NOT NULL,
               PRIMARY KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
             CREATE TABLE virtual_users (id INT NOT NULL AUTO_INCREMENT, domain_id INT NOT NULL,
               password VARCHAR(106) NOT NULL, email VARCHAR(120) NOT NULL, PRIMARY KEY (id),
               UNIQUE KEY email (email),
               FOREIGN KEY (domain_id) REFERENCES virtual_domains(id) ON DELETE CASCADE)
               ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
             INSERT INTO virtual_domains (name) VALUES ('example.com');
             INSERT INTO virtual_users (domain_id, password, email) VALUES
               (1, '{SHA512-CRYPT}x', 'sqlalice@example.com'),
               (1, '{SHA512-CRYPT}x', 'sqlbob@example.com'),
               (1, '{SHA512-CRYPT}x', 'sqlbobby@example.com');
             CREATE USER 'eas'@'127.0.0.1' IDENTIFIED BY 'eas-Secret-1';
             GRANT SELECT ON mailserver.* TO 'eas'@'127.0.0.1';",
        )
        .map_err(|e| e.to_string())?;
        Ok(db.leak_until_exit())
    });
    match db {
        Ok(db) => db,
        Err(e) => panic!("the test MariaDB could not be started: {e}"),
    }
}

/// A JPEG's first bytes, enough to tell it came through.
const PHOTO: [u8; 6] = [0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];

/// Lara's S/MIME certificate (DER), made once per test binary.
fn lara_certificate() -> &'static [u8] {
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    DER.get_or_init(|| {
        rcgen::generate_simple_self_signed(vec!["lara@example.com".into()])
            .unwrap()
            .cert
            .der()
            .to_vec()
    })
}

fn slapd() -> &'static Slapd {
    static LDAP: OnceLock<Result<&'static Slapd, String>> = OnceLock::new();
    let ldap = LDAP.get_or_init(|| {
        use base64::Engine;
        let photo = base64::engine::general_purpose::STANDARD.encode(PHOTO);
        let cert = base64::engine::general_purpose::STANDARD.encode(lara_certificate());
        let ldif = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: uid=lara,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: lara\ncn: Lara Ldap\n\
             sn: Ldap\ngivenName: Lara\nmail: lara@example.com\ntelephoneNumber: +1 555 0199\n\
             mobile: +1 555 0198\no: Example Inc\ntitle: Directory (Keeper)\n\
             physicalDeliveryOfficeName: B-2\nuserPassword: lara-Secret-1\njpegPhoto:: {photo}\n\
             userCertificate;binary:: {cert}\n\n\
             dn: uid=larry,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: larry\n\
             cn: Larry Ldap\nsn: Ldap\nmail: larry@example.com\nuserPassword: larry-Secret-1\n\n\
             dn: uid=sqlalice,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: sqlalice\n\
             cn: Alice In Both\nsn: Both\nmail: sqlalice@example.com\n"
        );
        Slapd::start(SUFFIX, &ldif)
            .map(Slapd::leak_until_exit)
            .map_err(|e| e.to_string())
    });
    match ldap {
        Ok(l) => l,
        Err(e) => panic!("the test slapd could not be started: {e}"),
    }
}

fn sql_source(url: String) -> SqlConfig {
    SqlConfig {
        url,
        password_file: None,
        query: VIRTUAL_USERS_QUERY.into(),
        refresh_secs: 300,
        max_rows: 100_000,
    }
}

fn ldap_source(url: String, bind: &str) -> LdapConfig {
    LdapConfig {
        url,
        starttls: false,
        tls_insecure: false,
        base: format!("ou=people,{SUFFIX}"),
        filter: "(objectClass=inetOrgPerson)".into(),
        bind: bind.into(),
        bind_dn: String::new(),
        bind_password_file: None,
        user_dn: format!("uid={{local}},ou=people,{SUFFIX}"),
        page_size: 2,
        max_entries: 1000,
        attributes: Attributes::default(),
    }
}

async fn phone(g: &Gateway, user: &str) -> Phone {
    let (login, password) = support::credentials(user);
    let mut p = Phone::new(g, &login, &password, &format!("DIR{}", user.to_uppercase()));
    p.version = "14.1";
    p.provision().await;
    p
}

async fn gateway(tweak: impl FnOnce(&mut Config)) -> Gateway {
    Gateway::start(support::dovecot().imap_config(), tweak).await
}

fn gal_query(query: &str, options: &str) -> String {
    format!(
        r#"<Search xmlns="Search:"><Store><Name>GAL</Name><Query>{query}</Query><Options>{options}</Options></Store></Search>"#
    )
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

async fn gal(p: &Phone, query: &str) -> (String, Vec<String>) {
    let t = p
        .send("Search", &gal_query(query, "<Range>0-49</Range>"))
        .await
        .tree();
    let store = t.child(s::Response).unwrap().child(s::Store).unwrap();
    (
        find_text(store, s::Status).unwrap_or_default(),
        texts(store, g::EmailAddress),
    )
}

#[tokio::test]
async fn the_virtual_users_table_of_mariadb_is_the_gal() {
    let db = mariadb();
    let gw = gateway(|c| {
        c.directory.sql = vec![sql_source(db.url("eas", "eas-Secret-1", "mailserver"))];
    })
    .await;
    let p = phone(&gw, "alice").await;

    let (status, found) = gal(&p, "sqlbob").await;
    assert_eq!(status, "1");
    assert_eq!(found, vec!["sqlbob@example.com", "sqlbobby@example.com"]);
    let (_, one) = gal(&p, "sqlalice@ex").await;
    assert_eq!(one, vec!["sqlalice@example.com"]);

    // ResolveRecipients: an address resolves, the alias resolves exactly, a prefix is ambiguous.
    let rr = p
        .send(
            "ResolveRecipients",
            r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>sqlalice@example.com</To><To>sqlbob</To><To>sqlbo</To><To>nobody@example.com</To></ResolveRecipients>"#,
        )
        .await
        .tree();
    let statuses: Vec<String> = rr
        .children_with(r::Response)
        .map(|x| find_text(x, r::Status).unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec!["1", "1", "2", "4"],
        "{}",
        eas_wbxml::to_xml(&rr)
    );
    let second = rr.children_with(r::Response).nth(1).unwrap();
    assert_eq!(
        find_text(second, r::EmailAddress).as_deref(),
        Some("sqlbob@example.com")
    );

    // A new row is seen after the refresh interval, not before (the table is cached).
    db.execute("INSERT INTO mailserver.virtual_users (domain_id, password, email) VALUES (1, 'x', 'sqlcarl@example.com');")
        .unwrap();
    assert!(gal(&p, "sqlcarl").await.1.is_empty());
}

/// The same guide schema in PostgreSQL (the other database the seed guides use), read through
/// a `postgres://` URL: the one `sqlx` driver serves both.
#[tokio::test]
async fn the_virtual_users_table_of_postgresql_is_the_gal() {
    let pg = Postgres::shared();
    let url = pg.fresh_database().unwrap();
    let name = url.rsplit('/').next().unwrap().to_owned();
    pg.psql(
        &name,
        "CREATE TABLE virtual_domains (id SERIAL PRIMARY KEY, name VARCHAR(50) NOT NULL);
         CREATE TABLE virtual_users (id SERIAL PRIMARY KEY,
           domain_id INT NOT NULL REFERENCES virtual_domains(id) ON DELETE CASCADE,
           password VARCHAR(106) NOT NULL, email VARCHAR(120) NOT NULL UNIQUE,
           full_name VARCHAR(120));
         INSERT INTO virtual_domains (name) VALUES ('example.com');
         INSERT INTO virtual_users (domain_id, password, email, full_name) VALUES
           (1, '{SHA512-CRYPT}x', 'pgalice@example.com', 'Alice Postgres'),
           (1, '{SHA512-CRYPT}x', 'pgbob@example.com', NULL),
           (1, '{SHA512-CRYPT}x', 'pgbobby@example.com', NULL);",
    )
    .unwrap();
    let gw = gateway(|c| {
        c.directory.sql = vec![SqlConfig {
            query: "SELECT email, split_part(email, '@', 1) AS alias, full_name AS display_name \
                    FROM virtual_users ORDER BY email"
                .into(),
            ..sql_source(url)
        }];
    })
    .await;
    let p = phone(&gw, "alice").await;

    let (status, found) = gal(&p, "pgbob").await;
    assert_eq!(status, "1");
    assert_eq!(found, vec!["pgbob@example.com", "pgbobby@example.com"]);
    let (_, by_name) = gal(&p, "Postgres").await;
    assert_eq!(by_name, vec!["pgalice@example.com"]);

    let rr = p
        .send(
            "ResolveRecipients",
            r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>pgalice@example.com</To><To>pgbob</To><To>pgbo</To><To>nobody@example.com</To></ResolveRecipients>"#,
        )
        .await
        .tree();
    let statuses: Vec<String> = rr
        .children_with(r::Response)
        .map(|x| find_text(x, r::Status).unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec!["1", "1", "2", "4"],
        "{}",
        eas_wbxml::to_xml(&rr)
    );
    let first = rr.children_with(r::Response).next().unwrap();
    assert_eq!(
        find_text(first, r::DisplayName).as_deref(),
        Some("Alice Postgres")
    );
    let second = rr.children_with(r::Response).nth(1).unwrap();
    assert_eq!(
        find_text(second, r::EmailAddress).as_deref(),
        Some("pgbob@example.com")
    );
}

#[tokio::test]
async fn the_sql_source_connects_over_verified_tls() {
    let db = mariadb();
    // A user the server admits over TLS only: the GAL answering proves the connection was.
    db.execute(
        "CREATE USER 'eastls'@'127.0.0.1' IDENTIFIED BY 'eas-Tls-1' REQUIRE SSL;
         GRANT SELECT ON mailserver.* TO 'eastls'@'127.0.0.1';",
    )
    .unwrap();
    let ca = db.ca_path();
    let base = db.url("eastls", "eas-Tls-1", "mailserver");
    let verified = format!("{base}?ssl-mode=verify_identity&ssl-ca={}", ca.display());
    let gw = gateway(|c| c.directory.sql = vec![sql_source(verified)]).await;
    let p = phone(&gw, "alice").await;
    let (status, found) = gal(&p, "sqlbob").await;
    assert_eq!(status, "1");
    assert_eq!(found, vec!["sqlbob@example.com", "sqlbobby@example.com"]);

    // The same user without TLS is refused by the server: the directory is unavailable and
    // the search says so rather than answering an empty list as if nobody matched.
    let plain = format!("{base}?ssl-mode=disabled");
    let gw = gateway(|c| c.directory.sql = vec![sql_source(plain)]).await;
    let p = phone(&gw, "alice").await;
    let (status, found) = gal(&p, "sqlbob").await;
    assert_ne!(
        status, "1",
        "a refused connection must not look like an empty directory"
    );
    assert!(found.is_empty());
}

#[tokio::test]
async fn an_inet_org_person_tree_in_slapd_is_the_gal_in_pages_with_photos() {
    let ldap = slapd();
    let gw = gateway(|c| c.directory.ldap = vec![ldap_source(ldap.url(), "anonymous")]).await;
    let p = phone(&gw, "bob").await;

    // Page size 2: the three people come in two pages.
    let (status, found) = gal(&p, "l").await;
    assert_eq!(status, "1");
    assert_eq!(found, vec!["lara@example.com", "larry@example.com"]);
    let t = p
        .send("Search", &gal_query("lara ldap", "<Picture/>"))
        .await
        .tree();
    let store = t.child(s::Response).unwrap().child(s::Store).unwrap();
    let props = store
        .child(s::Result)
        .unwrap()
        .child(s::Properties)
        .unwrap();
    assert_eq!(
        find_text(props, g::DisplayName).as_deref(),
        Some("Lara Ldap")
    );
    assert_eq!(find_text(props, g::FirstName).as_deref(), Some("Lara"));
    assert_eq!(find_text(props, g::Phone).as_deref(), Some("+1 555 0199"));
    assert_eq!(
        find_text(props, g::MobilePhone).as_deref(),
        Some("+1 555 0198")
    );
    assert_eq!(find_text(props, g::Company).as_deref(), Some("Example Inc"));
    assert_eq!(
        find_text(props, g::Title).as_deref(),
        Some("Directory (Keeper)")
    );
    assert_eq!(find_text(props, g::Office).as_deref(), Some("B-2"));
    assert_eq!(find_text(props, g::Alias).as_deref(), Some("lara"));
    let picture = props.child(g::Picture).expect("a picture");
    assert_eq!(find_text(picture, g::Status).as_deref(), Some("1"));
    assert_eq!(
        picture.child(g::Data).unwrap().opaque().unwrap(),
        &PHOTO[..]
    );
    // Filter metacharacters are searched for, not obeyed.
    assert!(gal(&p, "*").await.1.is_empty());
    assert!(gal(&p, "l)(uid=*").await.1.is_empty());

    // ResolveRecipients over LDAP: by address and by name.
    let rr = p
        .send(
            "ResolveRecipients",
            r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>LARA@example.com</To><To>Larry Ldap</To></ResolveRecipients>"#,
        )
        .await
        .tree();
    let emails: Vec<String> = rr
        .children_with(r::Response)
        .map(|x| find_text(x, r::EmailAddress).unwrap_or_default())
        .collect();
    assert_eq!(emails, vec!["lara@example.com", "larry@example.com"]);
}

/// ResolveRecipients hands out the S/MIME certificate slapd holds in `userCertificate;binary`
/// (full with CertificateRetrieval 2, in MiniCertificate with 3), and status 7 only for a
/// person without one.
#[tokio::test]
async fn resolve_recipients_returns_the_certificate_from_ldap() {
    use base64::Engine;
    let ldap = slapd();
    let gw = gateway(|c| {
        c.directory.ldap = vec![ldap_source(ldap.url(), "anonymous")];
    })
    .await;
    let p = phone(&gw, "alice").await;
    let ask = |retrieval: u8| {
        format!(
            r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>lara@example.com</To><To>larry@example.com</To><Options><CertificateRetrieval>{retrieval}</CertificateRetrieval></Options></ResolveRecipients>"#
        )
    };
    let expected = base64::engine::general_purpose::STANDARD.encode(lara_certificate());

    for (retrieval, tag) in [(2, r::Certificate), (3, r::MiniCertificate)] {
        let rr = p.send("ResolveRecipients", &ask(retrieval)).await.tree();
        let xml = eas_wbxml::to_xml(&rr);
        let certs: Vec<&Element> = rr
            .children_with(r::Response)
            .map(|x| {
                x.child(r::Recipient)
                    .and_then(|c| c.child(r::Certificates))
                    .unwrap_or_else(|| panic!("no Certificates: {xml}"))
            })
            .collect();
        let (lara, larry) = (certs[0], certs[1]);
        assert_eq!(find_text(lara, r::Status).as_deref(), Some("1"), "{xml}");
        assert_eq!(find_text(lara, r::CertificateCount).as_deref(), Some("1"));
        assert_eq!(find_text(lara, r::RecipientCount).as_deref(), Some("1"));
        assert_eq!(texts(lara, tag), vec![expected.clone()], "{xml}");
        assert_eq!(find_text(larry, r::Status).as_deref(), Some("7"), "{xml}");
        assert_eq!(find_text(larry, r::CertificateCount).as_deref(), Some("0"));
        assert!(texts(larry, r::Certificate).is_empty());
        assert!(texts(larry, r::MiniCertificate).is_empty());
    }

    // Without CertificateRetrieval no certificate travels.
    let rr = p
        .send(
            "ResolveRecipients",
            r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>lara@example.com</To></ResolveRecipients>"#,
        )
        .await
        .tree();
    let xml = eas_wbxml::to_xml(&rr);
    assert!(!xml.contains("Certificate"), "{xml}");
}

#[tokio::test]
async fn binding_as_the_user_uses_the_phones_password() {
    let ldap = slapd();
    let gw = gateway(|c| c.directory.ldap = vec![ldap_source(ldap.url(), "user")]).await;
    // Lara's mail password is her directory password (support derives both from the name),
    // so her phone's search binds as uid=lara.
    let p = phone(&gw, "lara").await;
    let (status, found) = gal(&p, "larry").await;
    assert_eq!(status, "1");
    assert_eq!(found, vec!["larry@example.com"]);
    // Erin has mail but no directory entry: the bind fails, and the only source failing is
    // a server error, not an empty directory.
    let p = phone(&gw, "erin").await;
    let (status, found) = gal(&p, "larry").await;
    assert_eq!(status, "3");
    assert!(found.is_empty());
}

#[tokio::test]
async fn sources_combine_and_one_that_is_down_leaves_the_others_answering() {
    let db = mariadb();
    let ldap = slapd();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // A server that takes the connection and never answers.
    let silent_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = silent_listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent_listener.incoming() {
            held.push(conn);
        }
    });
    let gw = gateway(|c| {
        c.directory.sql = vec![sql_source(db.url("eas", "eas-Secret-1", "mailserver"))];
        c.directory.ldap = vec![
            ldap_source(ldap.url(), "anonymous"),
            ldap_source(format!("ldap://127.0.0.1:{closed}"), "anonymous"),
            ldap_source(format!("ldap://127.0.0.1:{silent}"), "anonymous"),
        ];
        c.directory.timeout_secs = 2;
    })
    .await;
    let p = phone(&gw, "carol").await;
    // sqlalice is in both: shown once (the SQL source comes first). Lara only in LDAP.
    let (status, found) = gal(&p, "sqlalice").await;
    assert_eq!(status, "1");
    assert_eq!(found, vec!["sqlalice@example.com"]);
    let t = p.send("Search", &gal_query("sqlalice", "")).await.tree();
    assert!(!eas_wbxml::to_xml(&t).contains("Alice In Both"));
    let started = std::time::Instant::now();
    let (_, lara) = gal(&p, "lara").await;
    assert_eq!(lara, vec!["lara@example.com"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the silent source is given up on at the deadline"
    );

    // Every source down: a retryable server error, never an empty answer.
    let gw_down = gateway(|c| {
        c.directory.ldap = vec![ldap_source(
            format!("ldap://127.0.0.1:{closed}"),
            "anonymous",
        )];
        c.directory.sql = vec![sql_source(format!(
            "mysql://eas:eas-Secret-1@127.0.0.1:{closed}/mailserver"
        ))];
        c.directory.timeout_secs = 3;
    })
    .await;
    let p = phone(&gw_down, "dave").await;
    let (status, found) = gal(&p, "lara").await;
    assert_eq!(status, "3", "Search's server error");
    assert!(found.is_empty());
}

#[tokio::test]
async fn check_reports_each_source_with_a_count_and_a_sample() {
    let db = mariadb();
    let ldap = slapd();
    let mut config = Config::default();
    config.directory.sql = vec![sql_source(db.url("eas", "eas-Secret-1", "mailserver"))];
    config.directory.ldap = vec![ldap_source(ldap.url(), "anonymous")];
    let mut out = Vec::new();
    let ok = eas_gateway::cli::check_directory::directory(&config, None, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("sql:mysql://eas@127.0.0.1"), "{text}");
    assert!(
        !text.contains("eas-Secret-1"),
        "the password is never shown: {text}"
    );
    assert!(text.contains("entries, e.g. "), "{text}");
    assert!(text.contains("ldap:ldap://127.0.0.1"), "{text}");
}

/// The service account the gateway reads shared address books as.
const GAL_READER: &str = "galreader";
const GAL_READER_PASSWORD: &str = "gal-Reader-Secret-1";

const DANA: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:dana\r\nFN:Dana Davbook\r\nN:Davbook;Dana;;;\r\n\
EMAIL;TYPE=INTERNET:dana@example.com\r\nTEL;TYPE=WORK:+1 555 0301\r\nTEL;TYPE=CELL:+1 555 0302\r\n\
ORG:Shared Co;Buying\r\nTITLE:Buyer\r\nX-OFFICE:C-3\r\nPHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQ\r\n\
END:VCARD\r\n";
const DARIO: &str = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:dario\r\nFN:Dario Davbook\r\n\
N:Davbook;Dario;;;\r\nEMAIL:dario@example.com\r\nEND:VCARD\r\n";

fn card(uid: &str, name: &str) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nEMAIL:{uid}@example.com\r\nEND:VCARD\r\n"
    )
}

/// A DAV client as `user` on `radicale` (to fill the address book as its owner would).
fn dav_client(radicale: &Radicale, user: &str, password: &str) -> DavClient {
    let mut s = DavSettings::new(reqwest::Url::parse(&radicale.url()).unwrap());
    s.timeout = std::time::Duration::from_secs(10);
    let s = std::sync::Arc::new(s);
    DavClient::new(
        http_client(&s).unwrap(),
        s,
        user,
        Secret::new(password.to_owned()),
    )
}

/// Makes the address book `name` in `owner`'s home and puts `cards` (file name, vCard) in it.
async fn address_book(d: &DavClient, name: &str, cards: &[(&str, &str)]) -> reqwest::Url {
    let disc = d.discover(&[Kind::AddressBook]).await.unwrap();
    let book = disc.addressbook_homes[0].join(&format!("{name}/")).unwrap();
    d.make_collection(&book, Kind::AddressBook, name, &[])
        .await
        .unwrap();
    for (file, text) in cards {
        d.put(
            &book.join(file).unwrap(),
            "text/vcard",
            (*text).to_owned(),
            Write::Create,
        )
        .await
        .unwrap();
    }
    book
}

fn reader_password_file() -> std::path::PathBuf {
    static FILE: OnceLock<std::path::PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("easgw-dir-galreader-{}.secret", std::process::id()));
        std::fs::write(&path, format!("{GAL_READER_PASSWORD}\n")).unwrap();
        path
    })
    .clone()
}

fn dav_source(book: &reqwest::Url, refresh_secs: u64) -> DavDirectoryConfig {
    DavDirectoryConfig {
        url: book.to_string(),
        user: GAL_READER.into(),
        password_file: reader_password_file(),
        refresh_secs,
        timeout_secs: 5,
        tls_insecure: false,
    }
}

/// One Radicale for the binary where every authenticated user may read every collection
/// (`[rights] type = authenticated`): erin keeps the shared address book in her home, the
/// gateway reads it as the service account.
async fn shared_book() -> &'static reqwest::Url {
    static BOOK: tokio::sync::OnceCell<reqwest::Url> = tokio::sync::OnceCell::const_new();
    BOOK.get_or_init(|| async {
        let (owner, owner_password) = support::credentials("erin");
        let radicale = Radicale::start_with_rights(
            &[
                support::user("erin"),
                eas_testbed::TestUser::new(GAL_READER, GAL_READER_PASSWORD),
            ],
            "authenticated",
        )
        .unwrap_or_else(|e| panic!("the test Radicale could not be started: {e}"))
        .leak_until_exit();
        let d = dav_client(radicale, &owner, &owner_password);
        address_book(
            &d,
            "shared-gal",
            &[("dana.vcf", DANA), ("dario.vcf", DARIO)],
        )
        .await
    })
    .await
}

#[tokio::test]
async fn a_shared_carddav_address_book_is_the_gal_and_resolves_recipients() {
    let book = shared_book().await;
    let gw = gateway(|c| c.directory.dav = vec![dav_source(book, 300)]).await;
    let p = phone(&gw, "frank").await;

    let (status, found) = gal(&p, "davbook").await;
    assert_eq!(status, "1");
    assert_eq!(found, vec!["dana@example.com", "dario@example.com"]);
    let t = p
        .send("Search", &gal_query("dana", "<Picture/>"))
        .await
        .tree();
    let store = t.child(s::Response).unwrap().child(s::Store).unwrap();
    let props = store
        .child(s::Result)
        .unwrap()
        .child(s::Properties)
        .unwrap();
    assert_eq!(
        find_text(props, g::DisplayName).as_deref(),
        Some("Dana Davbook")
    );
    assert_eq!(find_text(props, g::FirstName).as_deref(), Some("Dana"));
    assert_eq!(find_text(props, g::LastName).as_deref(), Some("Davbook"));
    assert_eq!(find_text(props, g::Phone).as_deref(), Some("+1 555 0301"));
    assert_eq!(
        find_text(props, g::MobilePhone).as_deref(),
        Some("+1 555 0302")
    );
    assert_eq!(find_text(props, g::Company).as_deref(), Some("Shared Co"));
    assert_eq!(find_text(props, g::Title).as_deref(), Some("Buyer"));
    assert_eq!(find_text(props, g::Office).as_deref(), Some("C-3"));
    let picture = props.child(g::Picture).expect("a picture");
    assert_eq!(find_text(picture, g::Status).as_deref(), Some("1"));
    assert_eq!(
        picture.child(g::Data).unwrap().opaque().unwrap(),
        &PHOTO[..]
    );
    // The request's photo limits hold for this source too.
    let t = p
        .send(
            "Search",
            &gal_query("dana", "<Picture><MaxSize>3</MaxSize></Picture>"),
        )
        .await
        .tree();
    let xml = eas_wbxml::to_xml(&t);
    let store = t.child(s::Response).unwrap().child(s::Store).unwrap();
    let picture = store
        .child(s::Result)
        .and_then(|r| r.child(s::Properties))
        .and_then(|p| p.child(g::Picture))
        .unwrap_or_else(|| panic!("no picture status: {xml}"));
    assert_eq!(
        find_text(picture, g::Status).as_deref(),
        Some("174"),
        "{xml}"
    );

    let rr = p
        .send(
            "ResolveRecipients",
            r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>DANA@example.com</To><To>Dario Davbook</To><To>davbook</To></ResolveRecipients>"#,
        )
        .await
        .tree();
    let xml = eas_wbxml::to_xml(&rr);
    let answers: Vec<(String, String)> = rr
        .children_with(r::Response)
        .map(|x| {
            (
                find_text(x, r::Status).unwrap_or_default(),
                find_text(x, r::EmailAddress).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(answers[0], ("1".into(), "dana@example.com".into()), "{xml}");
    assert_eq!(
        answers[1],
        ("1".into(), "dario@example.com".into()),
        "{xml}"
    );
    // Two people named "davbook": ambiguous, both offered.
    assert_eq!(answers[2].0, "2", "{xml}");
}

#[tokio::test]
async fn check_reports_the_carddav_source_with_a_count_and_a_sample() {
    let book = shared_book().await;
    let mut config = Config::default();
    config.directory.dav = vec![dav_source(book, 300)];
    let mut out = Vec::new();
    let ok = eas_gateway::cli::check_directory::directory(&config, None, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("directory dav:http://127.0.0.1:"), "{text}");
    assert!(
        text.contains(" as galreader: ok, 2 entries, e.g. "),
        "{text}"
    );
    assert!(text.contains("<dana@example.com>"), "{text}");
    assert!(
        !text.contains(GAL_READER_PASSWORD),
        "the password is never shown: {text}"
    );

    // A wrong password is a problem the check names, without the password.
    let wrong = std::env::temp_dir().join(format!("easgw-dir-wrong-{}.secret", std::process::id()));
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    config.directory.dav[0].password_file = wrong;
    let mut out = Vec::new();
    let ok = eas_gateway::cli::check_directory::directory(&config, None, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!ok, "{text}");
    assert!(text.contains("problem") && text.contains("401"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
}

/// Asks until `query` finds `expected` (the refresh runs in the background, after the lookup
/// that found the copy due), for at most 30 s.
async fn gal_until(p: &Phone, query: &str, expected: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, found) = gal(p, query).await;
        if status == "1" && found == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{query:?} still finds {found:?} (status {status}), not {expected:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn a_change_on_the_carddav_server_shows_after_the_refresh_and_an_outage_keeps_the_gal() {
    // A Radicale of this test's own, since it is stopped half way; the book in the service
    // account's own home (`owner_only`).
    let radicale =
        Radicale::start(&[eas_testbed::TestUser::new(GAL_READER, GAL_READER_PASSWORD)]).unwrap();
    let d = dav_client(&radicale, GAL_READER, GAL_READER_PASSWORD);
    let book = address_book(&d, "people", &[("olga.vcf", &card("olga", "Olga Refresh"))]).await;
    let gw = gateway(|c| {
        c.directory.dav = vec![dav_source(&book, 1)];
        c.directory.timeout_secs = 3;
    })
    .await;
    let p = phone(&gw, "grace").await;
    assert_eq!(
        gal(&p, "refresh").await,
        ("1".into(), vec!["olga@example.com".into()])
    );

    // Added and removed on the server: seen after the next token check.
    d.put(
        &book.join("otto.vcf").unwrap(),
        "text/vcard",
        card("otto", "Otto Refresh"),
        Write::Create,
    )
    .await
    .unwrap();
    gal_until(&p, "refresh", &["olga@example.com", "otto@example.com"]).await;
    d.delete(&book.join("olga.vcf").unwrap(), None)
        .await
        .unwrap();
    gal_until(&p, "refresh", &["otto@example.com"]).await;

    // The server goes away: past several refresh intervals the last copy still answers,
    // GAL search and ResolveRecipients alike.
    radicale.pause();
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        assert_eq!(
            gal(&p, "otto").await,
            ("1".into(), vec!["otto@example.com".into()])
        );
    }
    let rr = p
        .send(
            "ResolveRecipients",
            r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>Otto Refresh</To></ResolveRecipients>"#,
        )
        .await
        .tree();
    let xml = eas_wbxml::to_xml(&rr);
    let response = rr.child(r::Response).unwrap();
    assert_eq!(
        find_text(response, r::Status).as_deref(),
        Some("1"),
        "{xml}"
    );
    assert_eq!(
        find_text(response, r::EmailAddress).as_deref(),
        Some("otto@example.com")
    );

    // Back: the next check reads it again, and a change shows.
    radicale.resume().unwrap();
    d.put(
        &book.join("olga.vcf").unwrap(),
        "text/vcard",
        card("olga", "Olga Refresh"),
        Write::Create,
    )
    .await
    .unwrap();
    gal_until(&p, "refresh", &["olga@example.com", "otto@example.com"]).await;

    // A gateway that never read the book while the server is down: a retryable server
    // error, never an empty GAL.
    radicale.pause();
    let gw_down = gateway(|c| {
        c.directory.dav = vec![dav_source(&book, 1)];
        c.directory.timeout_secs = 3;
    })
    .await;
    let p = phone(&gw_down, "heidi").await;
    let (status, found) = gal(&p, "refresh").await;
    assert_eq!(status, "3", "Search's server error");
    assert!(found.is_empty());
    radicale.stop();
}

/// Waits until the source has finished `n` refreshes (the ones after the first run in the
/// background), for at most 30 s; then its count of full reads.
async fn reads_after(source: &eas_gateway::directory::carddav::DavSource, n: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (refreshes, reads) = source.refreshes_and_reads();
        if refreshes >= n {
            assert_eq!(refreshes, n, "one refresh per interval");
            return reads;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refresh {n} never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unchanged_sync_token_spares_the_full_read() {
    let radicale =
        Radicale::start(&[eas_testbed::TestUser::new(GAL_READER, GAL_READER_PASSWORD)]).unwrap();
    let d = dav_client(&radicale, GAL_READER, GAL_READER_PASSWORD);
    let book = address_book(&d, "people", &[("pia.vcf", &card("pia", "Pia Token"))]).await;
    let mut config = Config::default();
    config.directory.dav = vec![dav_source(&book, 1)];
    let directory = config.directory.build().unwrap();
    let eas_gateway::directory::Backend::Dav(source) = &directory.sources()[0] else {
        panic!("not the CardDAV source");
    };
    let names = |found: Vec<eas_gateway::directory::Entry>| {
        found
            .into_iter()
            .map(|e| e.display_name)
            .collect::<Vec<_>>()
    };

    assert_eq!(
        names(directory.search("token", None).await.unwrap()),
        ["Pia Token"]
    );
    assert_eq!(
        reads_after(source, 1).await,
        1,
        "the first lookup reads the book"
    );
    // Unchanged: the interval's check asks for the token and reads nothing more.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    directory.search("token", None).await.unwrap();
    assert_eq!(
        reads_after(source, 2).await,
        1,
        "the token alone was asked for"
    );
    // Changed: the next check reads the book again, and the lookup after it sees the change.
    d.put(
        &book.join("paul.vcf").unwrap(),
        "text/vcard",
        card("paul", "Paul Token"),
        Write::Create,
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    directory.search("token", None).await.unwrap();
    assert_eq!(reads_after(source, 3).await, 2);
    assert_eq!(
        names(directory.search("token", None).await.unwrap()),
        ["Paul Token", "Pia Token"]
    );
    radicale.stop();
}
