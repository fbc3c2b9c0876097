//! Account setup as phones do it, against the real Dovecot through real HTTP: OPTIONS,
//! Autodiscover, Provision (both phases), Settings, FolderSync, and the folder commands —
//! in the iOS order for 14.1 and 16.1, with plain and base64 query strings — plus what a
//! server must answer to bad input.

mod eas;
mod support;

use eas::{Gateway, Phone, QueryForm, find_text, folder_changes};
use eas_wbxml::tags::{folderhierarchy as fh, provision as p, settings as s};

async fn gateway() -> Gateway {
    Gateway::start(support::dovecot().imap_config(), |_| {}).await
}

fn phone(g: &Gateway, user: &str, device: &str) -> Phone {
    let (login, password) = support::credentials(user);
    Phone::new(g, &login, &password, device)
}

const AUTODISCOVER: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006">
  <Request>
    <EMailAddress>EMAIL</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006</AcceptableResponseSchema>
  </Request>
</Autodiscover>"#;

/// The iOS Mail sequence: Autodiscover, OPTIONS, Provision ×2, Settings, FolderSync 0, then a
/// FolderSync with the new key that reports nothing new.
async fn ios_setup(version: &'static str, form: QueryForm, user: &str, device: &str) {
    let g = gateway().await;
    let mut phone = phone(&g, user, device);
    phone.version = version;
    phone.form = form;

    let email = phone.login.clone();
    let r = phone
        .client
        .post(format!("{}/AutoDiscover/AutoDiscover.xml", g.base))
        .basic_auth(&phone.login, Some(&phone.password))
        .body(AUTODISCOVER.replace("EMAIL", &email))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("<Url>https://mail.example.com/Microsoft-Server-ActiveSync</Url>"),
        "{text}"
    );

    let o = phone.options().await;
    assert_eq!(o.status, 200);
    assert_eq!(
        o.headers["MS-ASProtocolVersions"],
        "12.1,14.0,14.1,16.0,16.1"
    );
    let commands = o.headers["MS-ASProtocolCommands"]
        .to_str()
        .unwrap()
        .to_owned();
    for c in [
        "Provision",
        "Settings",
        "FolderSync",
        "FolderCreate",
        "FolderUpdate",
        "FolderDelete",
        "SendMail",
        "SmartReply",
        "SmartForward",
        "MeetingResponse",
    ] {
        assert!(commands.split(',').any(|x| x == c), "{commands}");
    }
    assert!(
        !commands.split(',').any(|x| x == "ValidateCert"),
        "only implemented commands: {commands}"
    );

    // Before provisioning, 14.0+ devices get status 142 in the command's own body.
    let refused = phone.folder_sync("0").await;
    assert_eq!(find_text(&refused, fh::Status).as_deref(), Some("142"));

    let key = phone.provision().await;
    assert_ne!(key, 0);

    let settings = phone
        .send(
            "Settings",
            r#"<Settings xmlns="Settings:">
                 <UserInformation><Get/></UserInformation>
                 <DeviceInformation><Set><Model>iPhone15,2</Model><FriendlyName>Jane's iPhone</FriendlyName></Set></DeviceInformation>
               </Settings>"#,
        )
        .await
        .tree();
    assert_eq!(find_text(&settings, s::Status).as_deref(), Some("1"));
    assert_eq!(
        find_text(&settings, s::PrimarySmtpAddress),
        Some(email.to_lowercase())
    );

    let fs = phone.folder_sync("0").await;
    assert_eq!(find_text(&fs, fh::Status).as_deref(), Some("1"));
    let key1 = find_text(&fs, fh::SyncKey).unwrap();
    let (adds, updates, deletes) = folder_changes(&fs);
    assert!(updates.is_empty() && deletes.is_empty());
    for (kind, name) in [(2, "Inbox"), (3, "Drafts"), (4, "Trash"), (5, "Sent")] {
        let matching: Vec<_> = adds.iter().filter(|f| f.kind == kind).collect();
        assert_eq!(
            matching.len(),
            1,
            "exactly one folder of type {kind}: {adds:?}"
        );
        assert_eq!(matching[0].name, name);
        assert_eq!(matching[0].parent, "0");
    }
    assert!(adds.iter().any(|f| f.name == "Junk" && f.kind == 12));

    let again = phone.folder_sync(&key1).await;
    assert_eq!(find_text(&again, fh::SyncKey), Some(key1));
    assert_eq!(folder_changes(&again).0.len(), 0);

    // The device record carries what it told us.
    let stored = g
        .state
        .store
        .device(&eas_gateway::state::DeviceKey {
            user: phone.login.to_lowercase(),
            device_id: device.into(),
        })
        .unwrap()
        .unwrap();
    assert_eq!(stored.info.model.as_deref(), Some("iPhone15,2"));
    assert_eq!(stored.policy_key, Some(key));
}

#[tokio::test]
async fn ios_setup_14_1_plain_query() {
    ios_setup("14.1", QueryForm::Plain, "alice", "ios141plain").await;
}

#[tokio::test]
async fn ios_setup_16_1_base64_query() {
    ios_setup("16.1", QueryForm::Base64, "alice", "ios161base64").await;
}

#[tokio::test]
async fn ios_setup_14_1_base64_and_16_1_plain() {
    ios_setup("14.1", QueryForm::Base64, "bob", "b141").await;
    ios_setup("16.1", QueryForm::Plain, "bob", "b161").await;
}

#[tokio::test]
async fn wrong_password_is_401_with_a_challenge() {
    let g = gateway().await;
    let mut phone = phone(&g, "alice", "wrongpw");
    phone.password = "not-the-password".into();
    let o = phone.options().await;
    assert_eq!(o.status, 401);
    assert!(
        o.headers["WWW-Authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let r = phone.folder_sync_raw_status().await;
    assert_eq!(r, 401);
    // No credentials at all.
    let r = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/Microsoft-Server-ActiveSync", g.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn policy_key_enforcement_per_version() {
    let g = gateway().await;
    // 12.1 learns it must provision from HTTP 449.
    let mut old = phone(&g, "alice", "v121");
    old.version = "12.1";
    let r = old
        .send(
            "FolderSync",
            r#"<FolderSync xmlns="FolderHierarchy:"><SyncKey>0</SyncKey></FolderSync>"#,
        )
        .await;
    assert_eq!(r.status, 449);
    old.provision().await;
    assert_eq!(
        find_text(&old.folder_sync("0").await, fh::Status).as_deref(),
        Some("1")
    );

    // 14.1 with a key we never issued: 144; after provisioning, the old key is refused too.
    let mut new = phone(&g, "alice", "v141");
    new.policy_key = Some(12345);
    assert_eq!(
        find_text(&new.folder_sync("0").await, fh::Status).as_deref(),
        Some("142")
    );
    let key = new.provision().await;
    new.policy_key = Some(key.wrapping_add(1));
    assert_eq!(
        find_text(&new.folder_sync("0").await, fh::Status).as_deref(),
        Some("144")
    );
    new.policy_key = Some(key);
    assert_eq!(
        find_text(&new.folder_sync("0").await, fh::Status).as_deref(),
        Some("1")
    );

    // Acknowledging a temporary key that was never handed out: policy status 5.
    let bad_ack = new
        .send(
            "Provision",
            r#"<Provision xmlns="Provision:"><Policies><Policy>
                 <PolicyType>MS-EAS-Provisioning-WBXML</PolicyType><PolicyKey>1</PolicyKey><Status>1</Status>
               </Policy></Policies></Provision>"#,
        )
        .await
        .tree();
    let policy = bad_ack
        .child(p::Policies)
        .unwrap()
        .child(p::Policy)
        .unwrap();
    assert_eq!(policy.child(p::Status).unwrap().text(), Some("5"));
}

#[tokio::test]
async fn unknown_hierarchy_key_is_status_9() {
    let g = gateway().await;
    let mut phone = phone(&g, "alice", "badkey");
    phone.provision().await;
    assert_eq!(
        find_text(&phone.folder_sync("77").await, fh::Status).as_deref(),
        Some("9")
    );
    assert_eq!(
        find_text(&phone.folder_sync("junk").await, fh::Status).as_deref(),
        Some("9")
    );
}

#[tokio::test]
async fn two_users_with_one_device_id_do_not_share_state() {
    let g = gateway().await;
    let mut a = phone(&g, "alice", "shared-device");
    let mut b = phone(&g, "bob", "shared-device");
    let key_a = a.provision().await;
    // Bob's phone presenting Alice's key is not provisioned.
    b.policy_key = Some(key_a);
    assert_eq!(
        find_text(&b.folder_sync("0").await, fh::Status).as_deref(),
        Some("142")
    );
    b.provision().await;
    let fs_a = a.folder_sync("0").await;
    let key = find_text(&fs_a, fh::SyncKey).unwrap();
    // Bob cannot continue from Alice's hierarchy key: his own state starts at 0.
    let fs_b = b.folder_sync(&key).await;
    assert_eq!(find_text(&fs_b, fh::Status).as_deref(), Some("9"));
    let devices = g.state.store.devices(None).unwrap();
    let users: Vec<_> = devices
        .iter()
        .filter(|d| d.key.device_id == "shared-device")
        .map(|d| d.key.user.clone())
        .collect();
    assert_eq!(users.len(), 2, "{users:?}");
}

#[tokio::test]
async fn bad_input_gets_its_status_and_changes_nothing() {
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.server.max_body_bytes = 64 * 1024;
    })
    .await;
    let mut phone = phone(&g, "alice", "badinput");
    phone.provision().await;
    let key = eas_gateway::state::DeviceKey {
        user: phone.login.to_lowercase(),
        device_id: "badinput".into(),
    };
    let before = g.state.store.device(&key).unwrap();
    let client = reqwest::Client::new();
    let post = |query: String, body: Vec<u8>| {
        client
            .post(format!("{}/Microsoft-Server-ActiveSync?{query}", g.base))
            .basic_auth(&phone.login, Some(&phone.password))
            .header("MS-ASProtocolVersion", "14.1")
            .header("X-MS-PolicyKey", phone.policy_key.unwrap().to_string())
            .body(body)
            .send()
    };
    let q = |cmd: &str| format!("Cmd={cmd}&User=x&DeviceId=badinput&DeviceType=iPhone");
    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        (
            "malformed WBXML",
            q("FolderSync"),
            vec![0x03, 0x01, 0x6A, 0x00, 0x56, 0x52, 0x03, b'0'],
            400,
        ),
        (
            "not WBXML at all",
            q("FolderSync"),
            b"<FolderSync/>".to_vec(),
            400,
        ),
        (
            "wrong root element",
            q("FolderSync"),
            vec![0x03, 0x01, 0x6A, 0x00, 0x45, 0x01],
            400,
        ),
        ("empty body", q("FolderSync"), vec![], 400),
        ("oversized body", q("FolderSync"), vec![0u8; 65 * 1024], 413),
        ("unknown command", q("Frobnicate"), vec![], 501),
        (
            "known but unimplemented command",
            q("ValidateCert"),
            vec![],
            501,
        ),
        (
            "missing DeviceId",
            "Cmd=FolderSync&DeviceType=iPhone".into(),
            vec![],
            400,
        ),
        (
            "missing DeviceType",
            "Cmd=FolderSync&DeviceId=badinput".into(),
            vec![],
            400,
        ),
        (
            "missing Cmd",
            "DeviceId=badinput&DeviceType=iPhone".into(),
            vec![],
            400,
        ),
        ("base64 garbage", "%%%%".into(), vec![], 400),
    ];
    for (what, query, body, expected) in cases {
        let r = post(query, body).await.unwrap();
        assert_eq!(r.status().as_u16(), expected, "{what}");
    }
    // A missing protocol version is a bad request too.
    let r = client
        .post(format!(
            "{}/Microsoft-Server-ActiveSync?{}",
            g.base,
            q("FolderSync")
        ))
        .basic_auth(&phone.login, Some(&phone.password))
        .body(vec![])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        g.state.store.device(&key).unwrap(),
        before,
        "state unchanged"
    );
    assert_eq!(g.state.store.latest_hierarchy_key(&key).unwrap(), None);

    // Autodiscover with XML it cannot read answers the schema's error, not a 500.
    let r = client
        .post(format!("{}/autodiscover/autodiscover.xml", g.base))
        .basic_auth(&phone.login, Some(&phone.password))
        .body("<Autodiscover><Request>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("<ErrorCode>600</ErrorCode>")
    );
    // GET on the EAS path is not a command.
    let r = client
        .get(format!("{}/Microsoft-Server-ActiveSync", g.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn remote_wipe_exchange() {
    let g = gateway().await;
    let mut phone = phone(&g, "alice", "lostphone");
    phone.provision().await;
    let key = eas_gateway::state::DeviceKey {
        user: phone.login.to_lowercase(),
        device_id: "lostphone".into(),
    };
    let mut out = Vec::new();
    eas_gateway::cli::devices::run(
        &g.state.config,
        eas_gateway::cli::devices::Action::Wipe {
            user: phone.login.clone(),
            device_id: "lostphone".into(),
            account_only: false,
        },
        &mut out,
    )
    .unwrap();
    // Every command now sends the device to Provision ...
    assert_eq!(
        find_text(&phone.folder_sync("0").await, fh::Status).as_deref(),
        Some("142")
    );
    // ... which carries the wipe directive instead of a policy.
    let r = phone
        .send(
            "Provision",
            r#"<Provision xmlns="Provision:"><Policies><Policy><PolicyType>MS-EAS-Provisioning-WBXML</PolicyType></Policy></Policies></Provision>"#,
        )
        .await
        .tree();
    assert!(
        r.child(p::RemoteWipe).is_some(),
        "{}",
        eas_wbxml::to_xml(&r)
    );
    assert!(r.child(p::Policies).is_none());
    let ack = phone
        .send("Provision", r#"<Provision xmlns="Provision:"><RemoteWipe><Status>1</Status></RemoteWipe></Provision>"#)
        .await
        .tree();
    assert_eq!(ack.child(p::Status).unwrap().text(), Some("1"));
    let device = g.state.store.device(&key).unwrap().unwrap();
    assert_eq!(
        device.wipe,
        eas_gateway::state::WipeState::Acknowledged {
            account_only: false,
            status: 1
        }
    );
}

/// The certificate the server presented on a fresh connection, as DER.
async fn served_certificate(g: &Gateway, roots: &[&rcgen::CertifiedKey]) -> Vec<u8> {
    let mut builder = reqwest::Client::builder()
        .tls_info(true)
        .resolve("localhost", g.addr);
    for r in roots {
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(r.cert.pem().as_bytes()).unwrap());
    }
    let client = builder.build().unwrap();
    let (login, password) = support::credentials("alice");
    let r = client
        .request(
            reqwest::Method::OPTIONS,
            format!(
                "https://localhost:{}/Microsoft-Server-ActiveSync",
                g.addr.port()
            ),
        )
        .basic_auth(&login, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("MS-ASProtocolVersions"));
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("peer certificate")
        .to_vec()
}

#[tokio::test]
async fn https_with_a_certificate_from_pem_files_reloaded_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, first.cert.pem()).unwrap();
    std::fs::write(&key_path, first.key_pair.serialize_pem()).unwrap();
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.server.tls_cert = Some(cert_path.clone());
        c.server.tls_key = Some(key_path.clone());
        c.server.tls_reload_secs = 1;
    })
    .await;
    assert_eq!(
        served_certificate(&g, &[&first]).await,
        first.cert.der().to_vec()
    );

    // A renewal (as certbot does it: new files in place) is picked up by new connections.
    let renewed = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&key_path, renewed.key_pair.serialize_pem()).unwrap();
    std::fs::write(&cert_path, renewed.cert.pem()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let served = served_certificate(&g, &[&first, &renewed]).await;
        if served == renewed.cert.der().to_vec() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "certificate not reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // A broken file keeps the working certificate in service.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        served_certificate(&g, &[&first, &renewed]).await,
        renewed.cert.der().to_vec()
    );
}

/// Issue 18's wipe tests share this: a provisioned phone that knows its folders, and the
/// INBOX's ServerId to Ping on.
async fn provisioned_phone(
    g: &Gateway,
    user: &str,
    device: &str,
    version: &'static str,
) -> (Phone, String) {
    let mut phone = phone(g, user, device);
    phone.version = version;
    phone.provision().await;
    let fs = phone.folder_sync("0").await;
    let (adds, _, _) = folder_changes(&fs);
    let inbox = adds.iter().find(|f| f.kind == 2).expect("INBOX").id.clone();
    (phone, inbox)
}

fn held_ping(
    phone: &Phone,
    inbox: &str,
) -> tokio::task::JoinHandle<(eas::Answer, std::time::Duration)> {
    let phone = phone.clone();
    let xml = format!(
        r#"<Ping xmlns="Ping:"><HeartbeatInterval>300</HeartbeatInterval><Folders><Folder><Id>{inbox}</Id><Class>Email</Class></Folder></Folders></Ping>"#
    );
    tokio::spawn(async move {
        let start = std::time::Instant::now();
        let answer = phone.send("Ping", &xml).await;
        (answer, start.elapsed())
    })
}

fn admin(g: &Gateway, action: eas_gateway::cli::devices::Action) {
    let mut out = Vec::new();
    eas_gateway::cli::devices::run(&g.state.config, action, &mut out).unwrap();
}

fn device_key(phone: &Phone) -> eas_gateway::state::DeviceKey {
    eas_gateway::state::DeviceKey {
        user: phone.login.to_lowercase(),
        device_id: phone.device_id.clone(),
    }
}

const PROVISION: &str = r#"<Provision xmlns="Provision:"><Policies><Policy><PolicyType>MS-EAS-Provisioning-WBXML</PolicyType></Policy></Policies></Provision>"#;

/// The lost wipe of issue 18: a wipe asked for while the phone holds a Ping (300 s heartbeat)
/// ends that Ping within seconds with "provision" (142), survives the Ping's own write-back,
/// and is delivered by the next Provision; once acknowledged, the device stays blocked (129),
/// Provision included, until the admin removes it.
#[tokio::test]
async fn wipe_during_a_held_ping_is_delivered_at_once_and_then_blocks() {
    use eas_wbxml::tags::ping as pg;
    let g = gateway().await;
    let (phone, inbox) = provisioned_phone(&g, "grace", "held-wipe", "14.1").await;
    let ping = held_ping(&phone, &inbox);
    // The Ping is registered and waiting before the admin acts.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!ping.is_finished(), "the Ping was answered before the wipe");
    admin(
        &g,
        eas_gateway::cli::devices::Action::Wipe {
            user: phone.login.clone(),
            device_id: phone.device_id.clone(),
            account_only: false,
        },
    );
    let (answer, waited) = tokio::time::timeout(std::time::Duration::from_secs(20), ping)
        .await
        .expect("the held Ping was not ended by the wipe")
        .unwrap();
    assert!(waited < std::time::Duration::from_secs(20));
    assert_eq!(answer.status, 200);
    assert_eq!(
        find_text(&answer.tree(), pg::Status).as_deref(),
        Some("142")
    );
    let device = g.state.store.device(&device_key(&phone)).unwrap().unwrap();
    assert_eq!(
        device.wipe,
        eas_gateway::state::WipeState::Requested {
            account_only: false
        },
        "the Ping's write-back undid the wipe"
    );
    assert!(
        device.policy_key.is_some(),
        "the Ping reverted the policy key"
    );

    let r = phone.send("Provision", PROVISION).await.tree();
    assert!(
        r.child(p::RemoteWipe).is_some(),
        "{}",
        eas_wbxml::to_xml(&r)
    );
    let ack = phone
        .send("Provision", r#"<Provision xmlns="Provision:"><RemoteWipe><Status>1</Status></RemoteWipe></Provision>"#)
        .await
        .tree();
    assert_eq!(ack.child(p::Status).unwrap().text(), Some("1"));

    // Wiped: blocked, and no way back through Provision (no 142 → Provision loop either).
    assert_eq!(
        find_text(&phone.folder_sync("0").await, fh::Status).as_deref(),
        Some("129")
    );
    let again = phone.send("Provision", PROVISION).await.tree();
    assert_eq!(again.child(p::Status).unwrap().text(), Some("129"));
    assert!(again.child(p::RemoteWipe).is_none() && again.child(p::Policies).is_none());

    // The admin removes it: the phone may set the account up again.
    admin(
        &g,
        eas_gateway::cli::devices::Action::Remove {
            user: phone.login.clone(),
            device_id: phone.device_id.clone(),
        },
    );
    let mut phone = phone;
    phone.policy_key = None;
    phone.provision().await;
    assert_eq!(
        find_text(&phone.folder_sync("0").await, fh::Status).as_deref(),
        Some("1")
    );
}

/// A device removed while it holds a Ping: the Ping ends at once, and its end writes nothing
/// back: no device row, no memo, no snapshot. The phone starts over (provisions again).
#[tokio::test]
async fn remove_during_a_held_ping_stays_removed() {
    use eas_wbxml::tags::ping as pg;
    let g = gateway().await;
    let (phone, inbox) = provisioned_phone(&g, "heidi", "held-remove", "16.1").await;
    let ping = held_ping(&phone, &inbox);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!ping.is_finished());
    admin(
        &g,
        eas_gateway::cli::devices::Action::Remove {
            user: phone.login.clone(),
            device_id: phone.device_id.clone(),
        },
    );
    let (answer, _) = tokio::time::timeout(std::time::Duration::from_secs(20), ping)
        .await
        .expect("the held Ping was not ended by the removal")
        .unwrap();
    // Provisioning is required: the device, now unknown, is sent to Provision.
    assert_eq!(
        find_text(&answer.tree(), pg::Status).as_deref(),
        Some("142")
    );
    let key = device_key(&phone);
    assert_eq!(
        g.state.store.device(&key).unwrap(),
        None,
        "the Ping brought the device back"
    );
    assert_eq!(g.state.store.latest_hierarchy_key(&key).unwrap(), None);
    assert_eq!(g.state.store.memo(&key, "ping.last").unwrap(), None);
}

/// An account-only wipe cannot be said to a 14.1 device; it used to loop between 142 and
/// Provision. Now the device is blocked (129), Provision included, while a 16.1 device gets
/// the account-only directive.
#[tokio::test]
async fn account_only_wipe_blocks_an_old_device_and_reaches_a_new_one() {
    let g = gateway().await;
    let (old, _) = provisioned_phone(&g, "ivan", "old-phone", "14.1").await;
    let (new, _) = provisioned_phone(&g, "ivan", "new-phone", "16.1").await;
    for phone in [&old, &new] {
        admin(
            &g,
            eas_gateway::cli::devices::Action::Wipe {
                user: phone.login.clone(),
                device_id: phone.device_id.clone(),
                account_only: true,
            },
        );
    }
    assert_eq!(
        find_text(&old.folder_sync("0").await, fh::Status).as_deref(),
        Some("129")
    );
    let r = old.send("Provision", PROVISION).await.tree();
    assert_eq!(r.child(p::Status).unwrap().text(), Some("129"));

    assert_eq!(
        find_text(&new.folder_sync("0").await, fh::Status).as_deref(),
        Some("142")
    );
    let r = new.send("Provision", PROVISION).await.tree();
    assert!(
        r.child(p::AccountOnlyRemoteWipe).is_some(),
        "{}",
        eas_wbxml::to_xml(&r)
    );
    // A whole-device acknowledgement does not settle an account-only wipe.
    let wrong = new
        .send("Provision", r#"<Provision xmlns="Provision:"><RemoteWipe><Status>1</Status></RemoteWipe></Provision>"#)
        .await
        .tree();
    assert_eq!(wrong.child(p::Status).unwrap().text(), Some("2"));
    let ack = new
        .send("Provision", r#"<Provision xmlns="Provision:"><AccountOnlyRemoteWipe><Status>1</Status></AccountOnlyRemoteWipe></Provision>"#)
        .await
        .tree();
    assert_eq!(ack.child(p::Status).unwrap().text(), Some("1"));
    assert_eq!(
        find_text(&new.folder_sync("0").await, fh::Status).as_deref(),
        Some("129")
    );
}

/// A wipe acknowledgement with no wipe pending is refused and changes nothing; a 12.1 device
/// that is blocked gets HTTP 403 (12.x has no status in the body).
#[tokio::test]
async fn stray_wipe_acknowledgement_and_blocked_12_1_device() {
    let g = gateway().await;
    let (phone, _) = provisioned_phone(&g, "judy", "stray-ack", "14.1").await;
    let r = phone
        .send("Provision", r#"<Provision xmlns="Provision:"><RemoteWipe><Status>1</Status></RemoteWipe></Provision>"#)
        .await
        .tree();
    assert_eq!(r.child(p::Status).unwrap().text(), Some("2"));
    let device = g.state.store.device(&device_key(&phone)).unwrap().unwrap();
    assert_eq!(device.wipe, eas_gateway::state::WipeState::None);
    assert!(device.policy_key.is_some());
    assert_eq!(
        find_text(&phone.folder_sync("0").await, fh::Status).as_deref(),
        Some("1")
    );

    let (old, _) = provisioned_phone(&g, "judy", "old-12", "12.1").await;
    admin(
        &g,
        eas_gateway::cli::devices::Action::Wipe {
            user: old.login.clone(),
            device_id: old.device_id.clone(),
            account_only: true,
        },
    );
    assert_eq!(old.folder_sync_raw_status().await, 403);
}
