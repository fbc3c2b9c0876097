//! A simulated phone for integration tests: speaks EAS over real HTTP to a gateway started in
//! this process, with either query form and any protocol version.

#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::sync::Arc;

use axum_server::Handle;
use base64::Engine as _;
use eas_gateway::config::Config;
use eas_gateway::http::{AppState, serve};
use eas_gateway::imap::ImapConfig;
use eas_wbxml::Element;

/// A gateway listening on a random loopback port, with its own state database.
pub struct Gateway {
    pub base: String,
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    handle: Handle,
    _dir: tempfile::TempDir,
}

impl Gateway {
    pub async fn start(imap: ImapConfig, tweak: impl FnOnce(&mut Config)) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.public_url = "https://mail.example.com".into();
        config.imap.host = imap.host.clone();
        config.imap.port = imap.port;
        config.imap.security = "none".into();
        config.state.url = format!("sqlite:{}", dir.path().join("state.db").display());
        tweak(&mut config);
        config.validate().unwrap();
        let state = Arc::new(AppState::new(config).unwrap());
        let handle = Handle::new();
        tokio::spawn(serve(state.clone(), handle.clone()));
        let addr = handle.listening().await.expect("gateway did not start");
        let scheme = if state.config.server.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        Gateway {
            base: format!("{scheme}://127.0.0.1:{}", addr.port()),
            addr,
            state,
            handle,
            _dir: dir,
        }
    }
}

impl Gateway {
    /// The `/metrics` text (answered to loopback clients).
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The state database as it is on disk, write-ahead log included.
    pub fn state_db_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for name in ["state.db", "state.db-wal"] {
            if let Ok(b) = std::fs::read(self._dir.path().join(name)) {
                bytes.extend_from_slice(&b);
            }
        }
        bytes
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// How the phone writes its request line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QueryForm {
    Plain,
    Base64,
}

/// The answer to one request.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The decoded WBXML body.
    pub fn tree(&self) -> Element {
        assert_eq!(self.status, 200, "HTTP status");
        Element::decode(&self.body).expect("response is WBXML")
    }

    /// The readable form, for assertions and failure messages.
    pub fn xml(&self) -> String {
        eas_wbxml::to_xml(&self.tree())
    }
}

#[derive(Clone)]
pub struct Phone {
    pub client: reqwest::Client,
    pub base: String,
    pub login: String,
    pub password: String,
    pub device_id: String,
    pub device_type: String,
    pub version: &'static str,
    pub form: QueryForm,
    pub policy_key: Option<u32>,
}

const COMMAND_CODES: &[(&str, u8)] = &[
    ("Sync", 0),
    ("SendMail", 1),
    ("SmartForward", 2),
    ("SmartReply", 3),
    ("GetAttachment", 4),
    ("FolderSync", 9),
    ("FolderCreate", 10),
    ("FolderDelete", 11),
    ("FolderUpdate", 12),
    ("MoveItems", 13),
    ("GetItemEstimate", 14),
    ("MeetingResponse", 15),
    ("Search", 16),
    ("Settings", 17),
    ("Ping", 18),
    ("ItemOperations", 19),
    ("Provision", 20),
    ("ResolveRecipients", 21),
    ("ValidateCert", 22),
    ("Find", 23),
];

impl Phone {
    pub fn new(gateway: &Gateway, login: &str, password: &str, device_id: &str) -> Phone {
        Phone {
            client: reqwest::Client::builder().build().unwrap(),
            base: gateway.base.clone(),
            login: login.into(),
            password: password.into(),
            device_id: device_id.into(),
            device_type: "iPhone".into(),
            version: "14.1",
            form: QueryForm::Plain,
            policy_key: None,
        }
    }

    fn url(&self, cmd: &str) -> String {
        match self.form {
            QueryForm::Plain => format!(
                "{}/Microsoft-Server-ActiveSync?Cmd={cmd}&User={}&DeviceId={}&DeviceType={}",
                self.base, self.login, self.device_id, self.device_type
            ),
            QueryForm::Base64 => {
                let version: u8 = (self.version.replace('.', "")).parse().unwrap();
                let code = COMMAND_CODES
                    .iter()
                    .find(|(n, _)| *n == cmd)
                    .map_or(99, |c| c.1);
                let mut raw = vec![version, code, 0x09, 0x04, self.device_id.len() as u8];
                raw.extend(self.device_id.as_bytes());
                match self.policy_key {
                    Some(k) => {
                        raw.push(4);
                        raw.extend(k.to_le_bytes());
                    }
                    None => raw.push(0),
                }
                raw.push(self.device_type.len() as u8);
                raw.extend(self.device_type.as_bytes());
                let q = base64::engine::general_purpose::STANDARD.encode(raw);
                format!(
                    "{}/Microsoft-Server-ActiveSync?{}",
                    self.base,
                    q.replace('+', "%2B")
                        .replace('/', "%2F")
                        .replace('=', "%3D")
                )
            }
        }
    }

    pub async fn options(&self) -> Answer {
        let r = self
            .client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/Microsoft-Server-ActiveSync", self.base),
            )
            .basic_auth(&self.login, Some(&self.password))
            .send()
            .await
            .unwrap();
        answer(r).await
    }

    /// POSTs raw bytes for a command.
    pub async fn post(&self, cmd: &str, body: Vec<u8>) -> Answer {
        let mut req = self
            .client
            .post(self.url(cmd))
            .basic_auth(&self.login, Some(&self.password))
            .header("Content-Type", "application/vnd.ms-sync.wbxml")
            .header("User-Agent", "Apple-iPhone15C2/2104.112")
            .body(body);
        if self.form == QueryForm::Plain {
            req = req.header("MS-ASProtocolVersion", self.version);
            if let Some(k) = self.policy_key {
                req = req.header("X-MS-PolicyKey", k.to_string());
            }
        }
        answer(req.send().await.unwrap()).await
    }

    /// POSTs a command written in the readable XML form.
    pub async fn send(&self, cmd: &str, xml: &str) -> Answer {
        let tree = eas_wbxml::from_xml(xml).unwrap_or_else(|e| panic!("test XML: {e}\n{xml}"));
        self.post(cmd, tree.encode()).await
    }

    /// The two-phase Provision exchange; remembers the final key.
    pub async fn provision(&mut self) -> u32 {
        let phase1 = self
            .send(
                "Provision",
                r#"<Provision xmlns="Provision:" xmlns:settings="Settings:">
                     <settings:DeviceInformation><settings:Set>
                       <settings:Model>iPhone15,2</settings:Model>
                       <settings:OS>iOS 17.4</settings:OS>
                       <settings:UserAgent>Apple-iPhone15C2/2104.112</settings:UserAgent>
                     </settings:Set></settings:DeviceInformation>
                     <Policies><Policy><PolicyType>MS-EAS-Provisioning-WBXML</PolicyType></Policy></Policies>
                   </Provision>"#,
            )
            .await
            .tree();
        let temporary = policy_key(&phase1).expect("phase 1 hands out a key");
        let ack = format!(
            r#"<Provision xmlns="Provision:"><Policies><Policy>
                 <PolicyType>MS-EAS-Provisioning-WBXML</PolicyType>
                 <PolicyKey>{temporary}</PolicyKey><Status>1</Status>
               </Policy></Policies></Provision>"#
        );
        let phase2 = self.send("Provision", &ack).await.tree();
        let key = policy_key(&phase2).expect("phase 2 hands out the final key");
        self.policy_key = Some(key);
        key
    }

    /// The HTTP status of a FolderSync with key 0.
    pub async fn folder_sync_raw_status(&self) -> u16 {
        self.send(
            "FolderSync",
            r#"<FolderSync xmlns="FolderHierarchy:"><SyncKey>0</SyncKey></FolderSync>"#,
        )
        .await
        .status
    }

    /// FolderSync; returns the response tree.
    pub async fn folder_sync(&self, key: &str) -> Element {
        self.send(
            "FolderSync",
            &format!(
                r#"<FolderSync xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey></FolderSync>"#
            ),
        )
        .await
        .tree()
    }
}

async fn answer(r: reqwest::Response) -> Answer {
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

/// `Policies > Policy > PolicyKey` of a Provision response.
pub fn policy_key(provision: &Element) -> Option<u32> {
    use eas_wbxml::tags::provision as p;
    provision
        .child(p::Policies)?
        .child(p::Policy)?
        .child(p::PolicyKey)?
        .text()?
        .parse()
        .ok()
}

/// Text of the first descendant with this tag (depth first).
pub fn find_text(e: &Element, tag: eas_wbxml::Tag) -> Option<String> {
    if e.tag == tag {
        return e.text().map(str::to_owned);
    }
    e.children().iter().find_map(|c| find_text(c, tag))
}

/// A folder of a FolderSync response: (ServerId, ParentId, DisplayName, Type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub id: String,
    pub parent: String,
    pub name: String,
    pub kind: u8,
}

/// The Add, Update and Delete entries of a FolderSync response.
pub fn folder_changes(fs: &Element) -> (Vec<Folder>, Vec<Folder>, Vec<String>) {
    use eas_wbxml::tags::folderhierarchy as fh;
    let changes = fs.child(fh::Changes).expect("Changes");
    let folder = |e: &Element| Folder {
        id: e.child(fh::ServerId).unwrap().text().unwrap().into(),
        parent: e.child(fh::ParentId).unwrap().text().unwrap().into(),
        name: e.child(fh::DisplayName).unwrap().text().unwrap().into(),
        kind: e.child(fh::Type).unwrap().text().unwrap().parse().unwrap(),
    };
    let count: usize = changes
        .child(fh::Count)
        .unwrap()
        .text()
        .unwrap()
        .parse()
        .unwrap();
    let adds: Vec<_> = changes.children_with(fh::Add).map(folder).collect();
    let updates: Vec<_> = changes.children_with(fh::Update).map(folder).collect();
    let deletes: Vec<_> = changes
        .children_with(fh::Delete)
        .map(|d| d.child(fh::ServerId).unwrap().text().unwrap().to_owned())
        .collect();
    assert_eq!(count, adds.len() + updates.len() + deletes.len(), "Count");
    (adds, updates, deletes)
}

/// Syncs a folder until nothing more is pending; returns the last key.
pub async fn sync_to_end(ph: &Phone, coll: &str, from: &str) -> String {
    let mut key = from.to_owned();
    loop {
        let r = ph
            .send(
                "Sync",
                &format!(
                    r#"<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{coll}</CollectionId><WindowSize>100</WindowSize></Collection></Collections></Sync>"#
                ),
            )
            .await
            .tree();
        let c = r
            .child(eas_wbxml::tags::airsync::Collections)
            .unwrap()
            .child(eas_wbxml::tags::airsync::Collection)
            .unwrap();
        let new = c
            .child(eas_wbxml::tags::airsync::SyncKey)
            .unwrap()
            .text()
            .unwrap()
            .to_owned();
        let more = c.child(eas_wbxml::tags::airsync::MoreAvailable).is_some();
        if new == key && !more {
            return key;
        }
        key = new;
        if key != "0" && !more {
            // One more round confirms nothing is left.
            continue;
        }
    }
}
