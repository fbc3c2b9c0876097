//! A simulated phone: speaks EAS to a gateway over real HTTP (reqwest), with either query form
//! (plain parameters or the base64-encoded one) and any protocol version. The integration
//! tests (`tests/eas`) and the load benchmarks (`benches/sync_load.rs`, `benches/push_load.rs`)
//! all drive the gateway through it.
//!
//! Two flavours of each exchange: the plain names (`post`, `send`, `provision`,
//! `folder_sync`) panic on anything unexpected, which is what a test wants; the `try_` ones
//! return a [`PhoneError`], for the benchmarks, which count failures under load instead of
//! stopping.

use base64::Engine as _;
use eas_wbxml::Element;
use eas_wbxml::tags::{airsync as a, folderhierarchy as fh, provision as pv};

use crate::gateway::Gateway;

/// How the phone writes its request line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QueryForm {
    /// `?Cmd=…&User=…&DeviceId=…&DeviceType=…`, the version and policy key in headers.
    Plain,
    /// The base64-encoded binary query of MS-ASHTTP 2.2.1.1.1.1, which carries the version
    /// and the policy key itself.
    Base64,
}

/// The answer to one request.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The decoded WBXML body; panics unless the status is 200 and the body WBXML.
    pub fn tree(&self) -> Element {
        assert_eq!(self.status, 200, "HTTP status");
        Element::decode(&self.body).expect("response is WBXML")
    }

    /// The readable form, for assertions and failure messages.
    pub fn xml(&self) -> String {
        eas_wbxml::to_xml(&self.tree())
    }

    /// The decoded WBXML body of an HTTP 200 answer to `cmd`.
    fn try_tree(&self, cmd: &str) -> Result<Element, PhoneError> {
        if self.status != 200 {
            return Err(PhoneError::Status {
                cmd: cmd.into(),
                status: self.status,
            });
        }
        Element::decode(&self.body).map_err(|source| PhoneError::Decode {
            cmd: cmd.into(),
            source,
        })
    }
}

/// Why an exchange of the phone failed.
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    /// The request was not sent or its answer not read (the URL left out of the message, so
    /// failures of different devices read alike).
    #[error("{cmd}: {source}")]
    Request { cmd: String, source: reqwest::Error },
    /// The gateway answered with another HTTP status than 200.
    #[error("{cmd}: HTTP {status}")]
    Status { cmd: String, status: u16 },
    /// The answer is not a WBXML document.
    #[error("{cmd}: undecodable answer ({source})")]
    Decode {
        cmd: String,
        source: eas_wbxml::DecodeError,
    },
    /// The request written in XML does not encode.
    #[error("request XML: {0}")]
    Xml(#[from] eas_wbxml::XmlError),
    /// The answer decodes but lacks what the exchange needs, or carries a failure status.
    #[error("{cmd}: {what}")]
    Answer { cmd: String, what: String },
}

impl PhoneError {
    fn request(cmd: &str, source: reqwest::Error) -> PhoneError {
        PhoneError::Request {
            cmd: cmd.into(),
            source: source.without_url(),
        }
    }

    fn answer(cmd: &str, what: impl Into<String>) -> PhoneError {
        PhoneError::Answer {
            cmd: cmd.into(),
            what: what.into(),
        }
    }
}

/// One simulated device of one user.
#[derive(Clone)]
pub struct Phone {
    pub client: reqwest::Client,
    /// Where the gateway is, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    pub login: String,
    pub password: String,
    pub device_id: String,
    pub device_type: String,
    /// MS-ASProtocolVersion, e.g. `"14.1"`.
    pub version: &'static str,
    pub form: QueryForm,
    /// Sent with every request once [`Phone::provision`] has one.
    pub policy_key: Option<u32>,
}

/// The command codes of the base64 query form (MS-ASHTTP 2.2.1.1.1.1.2).
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
    /// An iPhone speaking 14.1 with the plain query form to `gateway`, on a client of its own.
    pub fn new(gateway: &Gateway, login: &str, password: &str, device_id: &str) -> Phone {
        Phone::with_client(
            reqwest::Client::builder().build().unwrap(),
            &gateway.base,
            login,
            password,
            device_id,
        )
    }

    /// The same phone for a gateway at `base` (perhaps another process), on `client` (which
    /// many phones may share, with its connection pool and timeouts).
    pub fn with_client(
        client: reqwest::Client,
        base: &str,
        login: &str,
        password: &str,
        device_id: &str,
    ) -> Phone {
        Phone {
            client,
            base: base.into(),
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

    /// The POST of `body` for `cmd`, built but not sent: for callers that time the round trip
    /// themselves or read the answer their own way.
    pub fn request(&self, cmd: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
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
        req
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
        answer(r).await.unwrap()
    }

    /// POSTs raw bytes for a command; any HTTP status is an answer.
    pub async fn try_post(&self, cmd: &str, body: Vec<u8>) -> Result<Answer, reqwest::Error> {
        answer(self.request(cmd, body).send().await?).await
    }

    /// [`Phone::try_post`], panicking when the exchange fails.
    pub async fn post(&self, cmd: &str, body: Vec<u8>) -> Answer {
        self.try_post(cmd, body).await.unwrap()
    }

    /// POSTs a command written in the readable XML form.
    pub async fn try_send(&self, cmd: &str, xml: &str) -> Result<Answer, PhoneError> {
        let body = eas_wbxml::from_xml(xml)?.encode();
        self.try_post(cmd, body)
            .await
            .map_err(|e| PhoneError::request(cmd, e))
    }

    /// [`Phone::try_send`], panicking when the XML does not encode or the exchange fails.
    pub async fn send(&self, cmd: &str, xml: &str) -> Answer {
        let tree = eas_wbxml::from_xml(xml).unwrap_or_else(|e| panic!("test XML: {e}\n{xml}"));
        self.post(cmd, tree.encode()).await
    }

    /// The two-phase Provision exchange; remembers the final key.
    pub async fn try_provision(&mut self) -> Result<u32, PhoneError> {
        const CMD: &str = "Provision";
        let phase1 = self
            .try_send(
                CMD,
                r#"<Provision xmlns="Provision:" xmlns:settings="Settings:">
                     <settings:DeviceInformation><settings:Set>
                       <settings:Model>iPhone15,2</settings:Model>
                       <settings:OS>iOS 17.4</settings:OS>
                       <settings:UserAgent>Apple-iPhone15C2/2104.112</settings:UserAgent>
                     </settings:Set></settings:DeviceInformation>
                     <Policies><Policy><PolicyType>MS-EAS-Provisioning-WBXML</PolicyType></Policy></Policies>
                   </Provision>"#,
            )
            .await?
            .try_tree(CMD)?;
        let temporary = policy_key(&phase1)
            .ok_or_else(|| PhoneError::answer(CMD, "phase 1 handed out no PolicyKey"))?;
        let ack = format!(
            r#"<Provision xmlns="Provision:"><Policies><Policy>
                 <PolicyType>MS-EAS-Provisioning-WBXML</PolicyType>
                 <PolicyKey>{temporary}</PolicyKey><Status>1</Status>
               </Policy></Policies></Provision>"#
        );
        let phase2 = self.try_send(CMD, &ack).await?.try_tree(CMD)?;
        let key = policy_key(&phase2)
            .ok_or_else(|| PhoneError::answer(CMD, "phase 2 handed out no PolicyKey"))?;
        self.policy_key = Some(key);
        Ok(key)
    }

    /// [`Phone::try_provision`], panicking when it fails.
    pub async fn provision(&mut self) -> u32 {
        self.try_provision().await.unwrap_or_else(|e| panic!("{e}"))
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

    /// FolderSync from `key`; the response tree.
    pub async fn try_folder_sync(&self, key: &str) -> Result<Element, PhoneError> {
        self.try_send(
            "FolderSync",
            &format!(
                r#"<FolderSync xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey></FolderSync>"#
            ),
        )
        .await?
        .try_tree("FolderSync")
    }

    /// [`Phone::try_folder_sync`], panicking when it fails.
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

    /// FolderSync from 0; the Inbox's CollectionId (the folder of Type 2).
    pub async fn try_inbox(&self) -> Result<String, PhoneError> {
        let fs = self.try_folder_sync("0").await?;
        let changes = fs
            .child(fh::Changes)
            .ok_or_else(|| PhoneError::answer("FolderSync", "no Changes"))?;
        changes
            .children_with(fh::Add)
            .find(|f| f.child(fh::Type).and_then(|t| t.text()) == Some("2"))
            .and_then(|f| f.child(fh::ServerId)?.text().map(str::to_owned))
            .ok_or_else(|| PhoneError::answer("FolderSync", "no Inbox"))
    }

    /// One Sync of one collection from `key`; `extra` is written into the `Collection` after
    /// the CollectionId (e.g. `<WindowSize>100</WindowSize><Options>…</Options>`, with the
    /// `airsyncbase:` prefix declared).
    pub async fn try_sync(
        &self,
        collection: &str,
        key: &str,
        extra: &str,
    ) -> Result<SyncPage, PhoneError> {
        const CMD: &str = "Sync";
        let xml = format!(
            r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{collection}</CollectionId>{extra}</Collection></Collections></Sync>"#
        );
        let answer = self.try_send(CMD, &xml).await?;
        if answer.status == 200 && answer.body.is_empty() {
            // Nothing changed: the key stays.
            return Ok(SyncPage {
                empty: true,
                key: key.to_owned(),
                ..SyncPage::default()
            });
        }
        let tree = answer.try_tree(CMD)?;
        let c = tree
            .child(a::Collections)
            .and_then(|c| c.child(a::Collection))
            .ok_or_else(|| PhoneError::answer(CMD, "no Collection in the answer"))?;
        let added = c.child(a::Commands).map_or_else(Vec::new, |commands| {
            commands
                .children_with(a::Add)
                .filter_map(|add| add.child(a::ServerId)?.text().map(str::to_owned))
                .collect()
        });
        Ok(SyncPage {
            empty: false,
            status: c
                .child(a::Status)
                .and_then(|s| s.text())
                .unwrap_or("")
                .to_owned(),
            key: c
                .child(a::SyncKey)
                .and_then(|k| k.text())
                .unwrap_or("")
                .to_owned(),
            more: c.child(a::MoreAvailable).is_some(),
            added,
        })
    }
}

/// What the phone reads of one collection's Sync answer.
#[derive(Debug, Default, Clone)]
pub struct SyncPage {
    /// The answer had no body (nothing changed); `key` is then the request's.
    pub empty: bool,
    /// The collection's Status (empty when there is none).
    pub status: String,
    /// The new SyncKey (empty when there is none, as in some failure answers).
    pub key: String,
    /// MoreAvailable was set.
    pub more: bool,
    /// The ServerIds of the Adds.
    pub added: Vec<String>,
}

async fn answer(r: reqwest::Response) -> Result<Answer, reqwest::Error> {
    Ok(Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await?.to_vec(),
    })
}

/// `Policies > Policy > PolicyKey` of a Provision response.
pub fn policy_key(provision: &Element) -> Option<u32> {
    provision
        .child(pv::Policies)?
        .child(pv::Policy)?
        .child(pv::PolicyKey)?
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

/// The Add, Update and Delete entries of a FolderSync response; panics on a malformed one
/// (and when Count disagrees with them).
pub fn folder_changes(fs: &Element) -> (Vec<Folder>, Vec<Folder>, Vec<String>) {
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

/// Syncs a collection with WindowSize 100 until a round changes nothing (the key comes back
/// as sent, without MoreAvailable); returns the last key. Panics when a Sync fails.
pub async fn sync_to_end(ph: &Phone, coll: &str, from: &str) -> String {
    let mut key = from.to_owned();
    loop {
        let page = ph
            .try_sync(coll, &key, "<WindowSize>100</WindowSize>")
            .await
            .unwrap_or_else(|e| panic!("Sync of {coll} from {key}: {e}"));
        assert!(
            !page.key.is_empty(),
            "Sync of {coll} from {key}: no SyncKey (status {:?})",
            page.status
        );
        if page.key == key && !page.more {
            return key;
        }
        key = page.key;
    }
}

#[cfg(test)]
mod tests {
    /// `try_sync` declares the `airsyncbase:` prefix for callers' options; a declaration no
    /// element uses adds no byte, so the tests' plain Syncs go out as they always did.
    #[test]
    fn an_unused_namespace_declaration_changes_no_byte() {
        let body = "<Collections><Collection><SyncKey>0</SyncKey><CollectionId>1</CollectionId><WindowSize>100</WindowSize></Collection></Collections></Sync>";
        let plain = eas_wbxml::from_xml(&format!(r#"<Sync xmlns="AirSync:">{body}"#)).unwrap();
        let declared = eas_wbxml::from_xml(&format!(
            r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:">{body}"#
        ))
        .unwrap();
        assert_eq!(plain.encode(), declared.encode());
    }
}
