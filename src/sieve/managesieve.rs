//! A small ManageSieve client (RFC 5804): log in with SASL PLAIN, optionally after STARTTLS
//! or over implicit TLS, then LISTSCRIPTS, GETSCRIPT, CHECKSCRIPT, PUTSCRIPT, SETACTIVE,
//! DELETESCRIPT and LOGOUT — the commands out-of-office needs, nothing more.
//!
//! Written here rather than taken from a crate: the ManageSieve crates on crates.io are
//! unmaintained or synchronous-only (none speaks tokio with rustls), and the protocol part
//! needed is a line reader with IMAP-style strings and literals.

use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{SieveConfig, SieveError};

/// The longest script or response line accepted (a vacation section is a few KiB).
const MAX_LITERAL: usize = 1024 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A logged-in ManageSieve connection.
pub struct Client {
    io: BufReader<Box<dyn Io>>,
    timeout: Duration,
    /// The extensions the server's Sieve supports (the `SIEVE` capability).
    pub extensions: Vec<String>,
}

/// How a command ended.
#[derive(Debug)]
struct Done {
    ok: bool,
    /// The response code in parentheses (`QUOTA`, `NONEXISTENT`, …), if any.
    code: Option<String>,
    text: String,
    /// Strings and literals before the OK/NO line (GETSCRIPT's script, LISTSCRIPTS' lines).
    data: Vec<Vec<String>>,
}

impl Client {
    /// Connects, greets, upgrades to TLS as configured and logs in as the user.
    pub async fn login(
        config: &SieveConfig,
        user: &str,
        password: &str,
    ) -> Result<Client, SieveError> {
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        let tcp = tokio::time::timeout(
            timeout,
            TcpStream::connect((config.host.as_str(), config.port)),
        )
        .await
        .map_err(|_| SieveError::Timeout)?
        .map_err(SieveError::Connect)?;
        let io: Box<dyn Io> = if config.security == "tls" {
            Box::new(tls(tcp, config).await?)
        } else {
            Box::new(tcp)
        };
        let mut client = Client {
            io: BufReader::new(io),
            timeout,
            extensions: Vec::new(),
        };
        let greeting = client.finish().await?;
        client.capabilities(&greeting);
        if config.security == "starttls" {
            let done = client.command(b"STARTTLS\r\n").await?;
            if !done.ok {
                return Err(SieveError::Refused(format!("STARTTLS: {}", done.text)));
            }
            let Client { io, .. } = client;
            // Nothing is buffered: the server waits for the handshake after its OK.
            let raw = io.into_inner();
            let tls = tls(raw, config).await?;
            client = Client {
                io: BufReader::new(Box::new(tls)),
                timeout,
                extensions: Vec::new(),
            };
            let caps = client.finish().await?;
            client.capabilities(&caps);
        }
        let mut sasl = Vec::new();
        sasl.push(0);
        sasl.extend_from_slice(user.as_bytes());
        sasl.push(0);
        sasl.extend_from_slice(password.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&sasl);
        let done = client
            .command(format!("AUTHENTICATE \"PLAIN\" \"{b64}\"\r\n").as_bytes())
            .await?;
        if !done.ok {
            return Err(SieveError::Auth(done.text));
        }
        Ok(client)
    }

    fn capabilities(&mut self, greeting: &Done) {
        for line in &greeting.data {
            if line
                .first()
                .is_some_and(|c| c.eq_ignore_ascii_case("SIEVE"))
            {
                if let Some(list) = line.get(1) {
                    self.extensions = list
                        .split_whitespace()
                        .map(str::to_ascii_lowercase)
                        .collect();
                }
            }
        }
    }

    /// `(name, active)` for every script.
    pub async fn list(&mut self) -> Result<Vec<(String, bool)>, SieveError> {
        let done = self.command(b"LISTSCRIPTS\r\n").await?;
        check(&done, "LISTSCRIPTS")?;
        Ok(done
            .data
            .into_iter()
            .filter_map(|mut line| {
                if line.is_empty() {
                    return None;
                }
                let active = line
                    .get(1)
                    .is_some_and(|w| w.eq_ignore_ascii_case("ACTIVE"));
                Some((line.swap_remove(0), active))
            })
            .collect())
    }

    pub async fn get(&mut self, name: &str) -> Result<String, SieveError> {
        let done = self
            .command(format!("GETSCRIPT {}\r\n", string(name)).as_bytes())
            .await?;
        check(&done, "GETSCRIPT")?;
        Ok(done.data.into_iter().flatten().next().unwrap_or_default())
    }

    /// Asks the server to compile a script without storing it.
    pub async fn check_script(&mut self, script: &str) -> Result<(), SieveError> {
        let cmd = format!("CHECKSCRIPT {}\r\n", literal(script));
        let done = self.command(cmd.as_bytes()).await?;
        check(&done, "CHECKSCRIPT")
    }

    /// Stores a script (the server compiles it first and keeps the old one on any refusal).
    pub async fn put(&mut self, name: &str, script: &str) -> Result<(), SieveError> {
        let cmd = format!("PUTSCRIPT {} {}\r\n", string(name), literal(script));
        let done = self.command(cmd.as_bytes()).await?;
        check(&done, "PUTSCRIPT")
    }

    /// Makes a script the active one; `""` deactivates all.
    pub async fn set_active(&mut self, name: &str) -> Result<(), SieveError> {
        let done = self
            .command(format!("SETACTIVE {}\r\n", string(name)).as_bytes())
            .await?;
        check(&done, "SETACTIVE")
    }

    pub async fn delete(&mut self, name: &str) -> Result<(), SieveError> {
        let done = self
            .command(format!("DELETESCRIPT {}\r\n", string(name)).as_bytes())
            .await?;
        check(&done, "DELETESCRIPT")
    }

    pub async fn logout(mut self) {
        let _ = self.command(b"LOGOUT\r\n").await;
    }

    async fn command(&mut self, bytes: &[u8]) -> Result<Done, SieveError> {
        tokio::time::timeout(self.timeout, self.io.get_mut().write_all(bytes))
            .await
            .map_err(|_| SieveError::Timeout)?
            .map_err(SieveError::Io)?;
        self.finish().await
    }

    /// Reads response lines up to the one that starts with OK, NO or BYE.
    async fn finish(&mut self) -> Result<Done, SieveError> {
        let mut data = Vec::new();
        loop {
            let words = tokio::time::timeout(self.timeout, self.line())
                .await
                .map_err(|_| SieveError::Timeout)??;
            let first = words.first().map(|w| w.to_ascii_uppercase());
            match first.as_deref() {
                Some(end @ ("OK" | "NO" | "BYE")) => {
                    let mut rest = words[1..].to_vec();
                    let code = rest
                        .first()
                        .filter(|w| w.starts_with('('))
                        .map(|w| w.trim_matches(['(', ')']).to_owned());
                    if code.is_some() {
                        rest.remove(0);
                    }
                    if end == "BYE" {
                        return Err(SieveError::Refused(format!(
                            "server closed: {}",
                            rest.join(" ")
                        )));
                    }
                    return Ok(Done {
                        ok: end == "OK",
                        code,
                        text: rest.join(" "),
                        data,
                    });
                }
                _ => data.push(words),
            }
        }
    }

    /// One response line split into atoms, quoted strings and literals (`{n}` + n bytes).
    /// A parenthesised response code stays one word.
    async fn line(&mut self) -> Result<Vec<String>, SieveError> {
        let mut words = Vec::new();
        let mut raw = Vec::new();
        let n = (&mut self.io)
            .take(MAX_LITERAL as u64)
            .read_until(b'\n', &mut raw)
            .await
            .map_err(SieveError::Io)?;
        if n == 0 {
            return Err(SieveError::Refused(
                "the server closed the connection".into(),
            ));
        }
        let mut line = String::from_utf8_lossy(&raw)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        loop {
            let mut rest = line.as_str();
            let mut pending_literal = None;
            while !rest.is_empty() {
                rest = rest.trim_start();
                if rest.is_empty() {
                    break;
                }
                if let Some(r) = rest.strip_prefix('"') {
                    let mut v = String::new();
                    let mut chars = r.char_indices();
                    let mut end = r.len();
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some((_, n)) = chars.next() {
                                    v.push(n);
                                }
                            }
                            '"' => {
                                end = i + 1;
                                break;
                            }
                            c => v.push(c),
                        }
                    }
                    words.push(v);
                    rest = &r[end.min(r.len())..];
                } else if rest.starts_with('{') && rest.ends_with('}') {
                    let n: usize = rest
                        .trim_matches(['{', '}', '+'])
                        .parse()
                        .map_err(|_| SieveError::Protocol(format!("bad literal {rest:?}")))?;
                    if n > MAX_LITERAL {
                        return Err(SieveError::Protocol(format!("a literal of {n} bytes")));
                    }
                    pending_literal = Some(n);
                    rest = "";
                } else if rest.starts_with('(') {
                    let end = rest.find(')').map(|i| i + 1).unwrap_or(rest.len());
                    words.push(rest[..end].to_owned());
                    rest = &rest[end..];
                } else {
                    let end = rest.find(' ').unwrap_or(rest.len());
                    words.push(rest[..end].to_owned());
                    rest = &rest[end..];
                }
            }
            let Some(n) = pending_literal else { break };
            let mut buf = vec![0; n];
            self.io.read_exact(&mut buf).await.map_err(SieveError::Io)?;
            words.push(String::from_utf8_lossy(&buf).into_owned());
            // The rest of the line after the literal.
            let mut more = Vec::new();
            (&mut self.io)
                .take(MAX_LITERAL as u64)
                .read_until(b'\n', &mut more)
                .await
                .map_err(SieveError::Io)?;
            line = String::from_utf8_lossy(&more)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
        }
        Ok(words)
    }
}

fn check(done: &Done, what: &str) -> Result<(), SieveError> {
    if done.ok {
        return Ok(());
    }
    let text = match done.data.iter().flatten().next() {
        Some(more) if done.text.is_empty() => more.clone(),
        _ => done.text.clone(),
    };
    Err(match done.code.as_deref().map(str::to_ascii_uppercase) {
        Some(code) if code.starts_with("QUOTA") => SieveError::Quota(text),
        _ => SieveError::Refused(format!("{what}: {text}")),
    })
}

/// A quoted string; names with line breaks cannot be quoted and become literals.
fn string(s: &str) -> String {
    if s.contains(['\r', '\n', '"', '\\']) || s.len() > 1000 {
        literal(s)
    } else {
        format!("\"{s}\"")
    }
}

/// A non-synchronising literal (`{n+}` CRLF bytes), which Dovecot accepts without waiting.
fn literal(s: &str) -> String {
    format!("{{{}+}}\r\n{s}", s.len())
}

async fn tls<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    config: &SieveConfig,
) -> Result<tokio_rustls::client::TlsStream<S>, SieveError> {
    crate::imap::tls_handshake(io, &config.host, config.tls_insecure)
        .await
        .map_err(|e| SieveError::Tls(e.to_string()))
}
