//! GAL search through the gateway against the same lookup asked of the directory server
//! directly, side by side: MariaDB (the `virtual_users` table) and OpenLDAP slapd
//! (`inetOrgPerson`), each with `--people` entries.
//!
//! ```text
//! cargo bench --bench gal_directory -- [--people 2000] [--rounds 400]
//! ```
//!
//! Direct: one connection, kept open, asks the question a GAL search for `u12` means
//! (`SELECT … WHERE email LIKE 'u12%'`; an LDAP search with the prefix filter the gateway
//! builds). Gateway: a provisioned phone sends `Search` (Store GAL, Range 0-49) over HTTP on a
//! kept-alive connection; the answer is WBXML with every match's properties. Queries cycle
//! through `u100`…`u199` so each has about a dozen matches (of 2,000). Prints p50 and p90 of each.

use std::time::{Duration, Instant};

use eas_gateway::directory::ldap::{Attributes, LdapConfig};
use eas_gateway::directory::sql::SqlConfig;
use eas_testbed::mariadb::MariaDb;
use eas_testbed::slapd::Slapd;
use eas_testbed::{Dovecot, Gateway, Phone, TestUser};
use sqlx::Row;

const SUFFIX: &str = "dc=example,dc=com";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn report(name: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let p50 = quantile(&times, 0.5);
    println!(
        "{name:<34} p50 {:>8.3} ms   p90 {:>8.3} ms",
        p50.as_secs_f64() * 1e3,
        quantile(&times, 0.9).as_secs_f64() * 1e3
    );
    p50
}

fn gal_query(q: &str) -> String {
    format!(
        r#"<Search xmlns="Search:"><Store><Name>GAL</Name><Query>{q}</Query><Options><Range>0-49</Range></Options></Store></Search>"#
    )
}

#[tokio::main]
async fn main() {
    let people = arg("--people", 2000);
    let rounds = arg("--rounds", 400);
    let queries: Vec<String> = (100..200).map(|i| format!("u{i}")).collect();

    let db = MariaDb::start().expect("MariaDB");
    let mut sql = String::from(
        "CREATE DATABASE mailserver; USE mailserver;
         CREATE TABLE virtual_users (id INT NOT NULL AUTO_INCREMENT, domain_id INT NOT NULL,
           password VARCHAR(106) NOT NULL, email VARCHAR(120) NOT NULL, PRIMARY KEY (id),
           UNIQUE KEY email (email)) DEFAULT CHARSET=utf8mb4;
         CREATE USER 'eas'@'127.0.0.1' IDENTIFIED BY 'bench';
         GRANT SELECT ON mailserver.* TO 'eas'@'127.0.0.1';
         INSERT INTO virtual_users (domain_id, password, email) VALUES ",
    );
    let rows: Vec<String> = (0..people)
        .map(|i| format!("(1, 'x', 'u{i}@example.com')"))
        .collect();
    sql.push_str(&rows.join(","));
    sql.push(';');
    db.execute(&sql).expect("schema");

    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n"
    );
    for i in 0..people {
        ldif.push_str(&format!(
            "dn: uid=u{i},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: u{i}\ncn: User {i}\n\
             sn: Number{i}\ngivenName: User\nmail: u{i}@example.com\ntelephoneNumber: +1 555 {i}\n\n"
        ));
    }
    let ldap = Slapd::start(SUFFIX, &ldif).expect("slapd");
    let user = TestUser::new("bench@example.com", "bench-Secret-1");
    let dovecot = Dovecot::start(std::slice::from_ref(&user)).expect("Dovecot");

    println!("{people} people, {rounds} lookups each, queries u100..u199\n");

    let sql_source = SqlConfig {
        url: db.url("eas", "bench", "mailserver"),
        password_file: None,
        query: "SELECT email, SUBSTRING_INDEX(email, '@', 1) AS alias FROM virtual_users".into(),
        refresh_secs: 3600,
        max_rows: 100_000,
    };
    // The directory layer alone, in process: what the source adds to a GAL search.
    let dc = eas_gateway::config::DirectoryConfig {
        sql: vec![sql_source.clone()],
        ..Default::default()
    };
    let directory = dc.build().unwrap();
    directory.search("u1", None).await.unwrap();
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = Instant::now();
        let found = directory
            .search(&queries[i % queries.len()], None)
            .await
            .unwrap();
        times.push(t.elapsed());
        assert!(!found.is_empty());
    }
    report("Directory::search alone (SQL)", times);

    // MariaDB directly, one connection, side by side with the gateway on the SQL source.
    use sqlx::Connection;
    let mut conn = sqlx::MySqlConnection::connect(&db.url("eas", "bench", "mailserver"))
        .await
        .expect("MariaDB connection");
    let sql_gw = Gateway::start(dovecot.imap_config(), |c| {
        c.directory.sql = vec![sql_source];
    })
    .await;
    let [sql_direct, sql_phone, sql_lean] =
        side_by_side(&sql_gw, &user, &queries, rounds, async |q: &str| {
            let rows = sqlx::query(
                "SELECT email, SUBSTRING_INDEX(email, '@', 1) AS alias FROM virtual_users \
                 WHERE email LIKE ? ORDER BY email",
            )
            .bind(format!("{q}%"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let found: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
            assert!(!found.is_empty());
        })
        .await;
    let sql_direct = report("MariaDB direct (LIKE, 1 conn)", sql_direct);
    let sql_phone = report("gateway GAL search (SQL), phone", sql_phone);
    let sql_via = report("gateway GAL search (SQL), lean", sql_lean);

    // slapd directly, one connection, the filter the gateway builds.
    let (c, mut l) = ldap3::LdapConnAsync::new(&ldap.url()).await.unwrap();
    ldap3::drive!(c);
    let ldap_gw = Gateway::start(dovecot.imap_config(), |c| {
        c.directory.ldap = vec![LdapConfig {
            url: ldap.url(),
            starttls: false,
            tls_insecure: false,
            base: format!("ou=people,{SUFFIX}"),
            filter: "(objectClass=inetOrgPerson)".into(),
            bind: "anonymous".into(),
            bind_dn: String::new(),
            bind_password_file: None,
            user_dn: String::new(),
            page_size: 200,
            max_entries: 1000,
            attributes: Attributes::default(),
        }];
    })
    .await;
    let [ldap_direct, ldap_phone, ldap_lean] =
        side_by_side(&ldap_gw, &user, &queries, rounds, async |w: &str| {
            let filter = format!(
                "(&(objectClass=inetOrgPerson)(|(displayName={w}*)(cn={w}*)(givenName={w}*)(sn={w}*)(uid={w}*)(mail={w}*)(displayName=* {w}*)(cn=* {w}*)))"
            );
            let (entries, _) = l
                .search(
                    &format!("ou=people,{SUFFIX}"),
                    ldap3::Scope::Subtree,
                    &filter,
                    vec![
                        "displayName",
                        "cn",
                        "givenName",
                        "sn",
                        "mail",
                        "uid",
                        "telephoneNumber",
                    ],
                )
                .await
                .unwrap()
                .success()
                .unwrap();
            assert!(!entries.is_empty());
        })
        .await;
    let ldap_direct = report("slapd direct (same filter, 1 conn)", ldap_direct);
    let ldap_phone = report("gateway GAL search (LDAP), phone", ldap_phone);
    let ldap_via = report("gateway GAL search (LDAP), lean", ldap_lean);

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "\np50 ratio gateway/direct: SQL {:.2}x, LDAP {:.2}x (target <= 1.3x); \
         with the test phone's client: SQL {:.2}x, LDAP {:.2}x",
        ratio(sql_via, sql_direct),
        ratio(ldap_via, ldap_direct),
        ratio(sql_phone, sql_direct),
        ratio(ldap_phone, ldap_direct)
    );
}

/// Each round asks the same query three ways, one after the other, so that the machine's
/// load (2 shared cores) weighs on all three alike: `direct` (the directory server over one
/// kept connection), the gateway with the test phone (reqwest: its pool, its connection task,
/// the XML encoded per request), and the gateway with [`RawHttp`], a client as lean as the
/// direct side's.
async fn side_by_side(
    gw: &Gateway,
    user: &TestUser,
    queries: &[String],
    rounds: usize,
    mut direct: impl AsyncFnMut(&str),
) -> [Vec<Duration>; 3] {
    let mut phone = Phone::new(gw, &user.login, &user.password, "BENCHGAL");
    phone.version = "14.1";
    phone.provision().await;
    // Warm: the first search loads the SQL table and opens the LDAP connection.
    phone.send("Search", &gal_query("u1")).await;
    direct(&queries[0]).await;
    let requests: Vec<Vec<u8>> = queries
        .iter()
        .map(|q| {
            let body = eas_wbxml::from_xml(&gal_query(q)).unwrap().encode();
            RawHttp::request_bytes(&phone.request("Search", body).build().unwrap())
        })
        .collect();
    let mut raw = RawHttp::connect(gw.addr).await;
    let mut times: [Vec<Duration>; 3] = Default::default();
    for i in 0..rounds {
        let query = &queries[i % queries.len()];
        let t = Instant::now();
        direct(query).await;
        times[0].push(t.elapsed());

        let body = gal_query(query);
        let t = Instant::now();
        let answer = phone.send("Search", &body).await;
        times[1].push(t.elapsed());
        assert!(!answer.xml().is_empty());

        let t = Instant::now();
        let answer = raw.exchange(&requests[i % requests.len()]).await;
        let tree = eas_wbxml::Element::decode(&answer).expect("a WBXML answer");
        times[2].push(t.elapsed());
        assert!(!tree.children().is_empty());
    }
    times
}

/// One kept-alive HTTP/1.1 connection written and read by hand. The direct side asks over
/// one connection with a client that adds next to nothing; the test phone's reqwest adds
/// its pool and a connection task of its own (another wake-up per request), which on this
/// 2-core machine is a sizeable share of a 0.1 ms exchange and none of it the gateway's.
struct RawHttp {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawHttp {
    async fn connect(addr: std::net::SocketAddr) -> RawHttp {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        RawHttp {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// The request as bytes on the wire, from the phone's own request (same URL and headers).
    fn request_bytes(req: &reqwest::Request) -> Vec<u8> {
        let url = req.url();
        let body = req.body().and_then(|b| b.as_bytes()).unwrap_or_default();
        let mut out = format!(
            "{} {}?{} HTTP/1.1\r\nHost: {}:{}\r\nContent-Length: {}\r\n",
            req.method(),
            url.path(),
            url.query().unwrap_or(""),
            url.host_str().unwrap(),
            url.port().unwrap(),
            body.len()
        )
        .into_bytes();
        for (name, value) in req.headers() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }

    /// Sends `request`, returns the answer's body (which must have a Content-Length).
    async fn exchange(&mut self, request: &[u8]) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(request).await.unwrap();
        self.buf.clear();
        let (head_len, body_len) = loop {
            let n = self.stream.read_buf(&mut self.buf).await.unwrap();
            assert!(n > 0, "the gateway closed the connection");
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap();
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .expect("an answer with a Content-Length");
                break (end + 4, len);
            }
        };
        while self.buf.len() < head_len + body_len {
            let n = self.stream.read_buf(&mut self.buf).await.unwrap();
            assert!(n > 0, "the gateway closed the connection");
        }
        self.buf[head_len..head_len + body_len].to_vec()
    }
}
