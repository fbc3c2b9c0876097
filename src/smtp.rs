//! Mail submission over SMTP (lettre): the one way a message leaves the gateway.
//!
//! The interface is narrow on purpose: [`submit`] takes an envelope (sender and recipients,
//! decided by the caller) and the exact bytes to transmit, and either the server accepted
//! them for delivery or [`SubmitError`] says why not, classified by what the phone should
//! do about it (try again later, or give up). Nothing here knows EAS or parses MIME.
//!
//! Two ways to reach the server (`[smtp] auth`):
//! - `user`: AUTH PLAIN/LOGIN with the phone's own credentials on a submission port, so the
//!   server's own policy (Postfix `smtpd_sender_login_maps`, rate limits) applies per user;
//! - `relay`: no AUTH, for a server that trusts the gateway's address (`mynetworks`).
//!
//! One connection per message: credentials differ per user, so pooled connections could not
//! be shared, and phones send rarely. Passwords go only to lettre's AUTH exchange; errors
//! carry the server's reply text, which never contains them.

use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::secret::Secret;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain text (loopback only).
    None,
    /// Plain, then STARTTLS (required: a server without it is refused).
    StartTls,
    /// Implicit TLS from the first byte (port 465).
    Tls,
}

/// Whose authority the submission carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpAuth {
    /// AUTH with the requesting user's login and password.
    User,
    /// No AUTH: the server trusts the gateway.
    Relay,
}

/// Where and how to submit; built from `[smtp]` by [`crate::config::Config::smtp_config`].
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub tls_insecure: bool,
    pub auth: SmtpAuth,
    /// For connecting and for each command.
    pub timeout: Duration,
    /// The EHLO name.
    pub hello_name: String,
}

/// Who sends to whom: what SMTP's MAIL FROM and RCPT TO say, independent of the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub to: Vec<String>,
}

/// Why a message was not accepted for delivery. The variants are what a caller must tell
/// apart; the text is the server's reply (or the connection error) for the log.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The server could not be reached, timed out, broke the connection, or answered with a
    /// transient (4xx) failure. Nothing was accepted; the same message may be tried later.
    #[error("submission server unavailable: {0}")]
    Unavailable(String),
    /// The server refused the gateway's or the user's credentials (535, or no AUTH offered
    /// where `auth = "user"` needs it): a configuration problem, not the phone's.
    #[error("submission server refused authentication: {0}")]
    AuthRejected(String),
    /// A recipient was refused permanently (5.1.x: no such user, bad address).
    #[error("recipient refused: {0}")]
    RecipientRejected(String),
    /// The message is larger than the server accepts (552, 5.3.4).
    #[error("message too large: {0}")]
    TooLarge(String),
    /// Any other permanent (5xx) refusal, e.g. a content or sender policy.
    #[error("message refused: {0}")]
    Rejected(String),
    /// An envelope address is not a valid mailbox (caught before connecting).
    #[error("invalid envelope address {0:?}")]
    InvalidAddress(String),
    /// The caller withdrew the message before its data went out ([`submit_fenced`]); the
    /// server has nothing.
    #[error("withdrawn before the message was handed over")]
    Withdrawn,
}

/// Submits one message. `login` is the user's credentials, used when `auth = "user"`.
pub async fn submit(
    config: &SmtpConfig,
    login: Option<(&str, &Secret<String>)>,
    envelope: &Envelope,
    message: &[u8],
) -> Result<(), SubmitError> {
    submit_fenced(config, login, envelope, message, || true).await
}

/// [`submit`], asking `go_on` at the last moment nothing has been handed over: the server
/// took the envelope and said 354 to DATA, the message's bytes are next. Up to there the
/// server discards everything when the transaction is abandoned; from there, once the final
/// dot is out, the message may be accepted even if its answer never arrives. A caller that
/// must send a message at most once records the handover in `go_on` (and says no when it
/// may not send it any more); nothing is sent then ([`SubmitError::Withdrawn`]).
pub async fn submit_fenced(
    config: &SmtpConfig,
    login: Option<(&str, &Secret<String>)>,
    envelope: &Envelope,
    message: &[u8],
    go_on: impl FnOnce() -> bool,
) -> Result<(), SubmitError> {
    let parse = |a: &str| {
        a.parse::<lettre::Address>()
            .map_err(|_| SubmitError::InvalidAddress(a.to_owned()))
    };
    let from = parse(&envelope.from)?;
    let to = envelope
        .to
        .iter()
        .map(|a| parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envelope = lettre::address::Envelope::new(Some(from), to)
        .map_err(|e| SubmitError::InvalidAddress(e.to_string()))?;
    let mut conn = connect(config, login).await?;
    let outcome = transaction(&mut conn, &envelope, message, go_on).await;
    match &outcome {
        Ok(()) => {
            let _ = conn.quit().await;
        }
        Err(_) => conn.abort().await,
    }
    outcome
}

/// MAIL, RCPT, DATA, then (if `go_on` agrees) the message, as lettre's transport sends it,
/// with the extensions its bytes need.
async fn transaction(
    conn: &mut AsyncSmtpConnection,
    envelope: &lettre::address::Envelope,
    message: &[u8],
    go_on: impl FnOnce() -> bool,
) -> Result<(), SubmitError> {
    let mut options = Vec::new();
    let info = conn.server_info();
    let non_ascii = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii {
        if !info.supports_feature(Extension::SmtpUtfEight) {
            return Err(SubmitError::Rejected(
                "non-ASCII addresses and no SMTPUTF8 on the server".into(),
            ));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() {
        if !info.supports_feature(Extension::EightBitMime) {
            return Err(SubmitError::Rejected(
                "8-bit message and no 8BITMIME on the server".into(),
            ));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    conn.command(Mail::new(envelope.from().cloned(), options))
        .await
        .map_err(classify)?;
    for to in envelope.to() {
        conn.command(Rcpt::new(to.clone(), Vec::new()))
            .await
            .map_err(classify)?;
    }
    conn.command(Data).await.map_err(classify)?;
    if !go_on() {
        return Err(SubmitError::Withdrawn);
    }
    conn.message(message).await.map(|_| ()).map_err(classify)
}

/// A connection greeted, secured as configured and (with `auth = "user"`) logged in.
async fn connect(
    config: &SmtpConfig,
    login: Option<(&str, &Secret<String>)>,
) -> Result<AsyncSmtpConnection, SubmitError> {
    let hello = ClientId::Domain(config.hello_name.clone());
    let tls = || {
        TlsParameters::builder(config.host.clone())
            .dangerous_accept_invalid_certs(config.tls_insecure)
            .build_rustls()
            .map_err(|e| SubmitError::Unavailable(format!("TLS setup: {e}")))
    };
    let wrapper = match config.security {
        SmtpSecurity::Tls => Some(tls()?),
        _ => None,
    };
    let address = (config.host.as_str(), config.port);
    let mut conn =
        AsyncSmtpConnection::connect_tokio1(address, Some(config.timeout), &hello, wrapper, None)
            .await
            .map_err(classify)?;
    if config.security == SmtpSecurity::StartTls {
        if !conn.can_starttls() {
            conn.abort().await;
            return Err(SubmitError::Unavailable(
                "the server does not offer STARTTLS".into(),
            ));
        }
        if let Err(e) = conn.starttls(tls()?, &hello).await {
            conn.abort().await;
            return Err(classify(e));
        }
    }
    if let (SmtpAuth::User, Some((user, password))) = (config.auth, login) {
        let credentials = Credentials::new(user.to_owned(), password.expose().to_owned());
        if let Err(e) = conn
            .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
            .await
        {
            conn.abort().await;
            return Err(classify(e));
        }
    }
    Ok(conn)
}

/// Connects and greets (EHLO, STARTTLS when configured) without sending anything: what
/// `eas-gateway check` reports.
pub async fn check(config: &SmtpConfig) -> Result<(), SubmitError> {
    let transport = transport(config)?;
    match transport.test_connection().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(SubmitError::Unavailable("no answer to NOOP".into())),
        Err(e) => Err(classify(e)),
    }
}

fn transport(config: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, SubmitError> {
    let tls = || {
        TlsParameters::builder(config.host.clone())
            .dangerous_accept_invalid_certs(config.tls_insecure)
            .build_rustls()
            .map_err(|e| SubmitError::Unavailable(format!("TLS setup: {e}")))
    };
    let tls = match config.security {
        SmtpSecurity::None => Tls::None,
        SmtpSecurity::StartTls => Tls::Required(tls()?),
        SmtpSecurity::Tls => Tls::Wrapper(tls()?),
    };
    let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
        .port(config.port)
        .timeout(Some(config.timeout))
        .hello_name(ClientId::Domain(config.hello_name.clone()))
        .tls(tls);
    Ok(builder.build())
}

/// Sorts lettre's error into what the caller must tell apart.
fn classify(e: lettre::transport::smtp::Error) -> SubmitError {
    let text = e.to_string();
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    if e.is_permanent() {
        // Enhanced status codes (RFC 3463) say more than the basic reply code.
        if code == "535" || text.contains("5.7.8") {
            SubmitError::AuthRejected(text)
        } else if code == "552" || text.contains("5.3.4") || text.contains("5.2.3") {
            SubmitError::TooLarge(text)
        } else if text.contains("5.1.") || code == "553" {
            SubmitError::RecipientRejected(text)
        } else {
            SubmitError::Rejected(text)
        }
    } else if e.is_client() && text.contains("authentication") {
        // The server offered no mechanism we may use.
        SubmitError::AuthRejected(text)
    } else {
        // 4xx, timeouts, refused connections, TLS failures, a dropped line: all "later".
        SubmitError::Unavailable(text)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_unavailable_and_bad_addresses_never_connect() {
        // Bind and drop: the port is (almost certainly) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::None,
            tls_insecure: false,
            auth: SmtpAuth::Relay,
            timeout: Duration::from_secs(2),
            hello_name: "gw.example.com".into(),
        };
        let env = Envelope {
            from: "a@example.com".into(),
            to: vec!["b@example.com".into()],
        };
        let e = submit(&config, None, &env, b"Subject: x\r\n\r\nx\r\n")
            .await
            .unwrap_err();
        assert!(matches!(e, SubmitError::Unavailable(_)), "{e}");
        assert!(matches!(
            check(&config).await,
            Err(SubmitError::Unavailable(_))
        ));
        let bad = Envelope {
            from: "a@example.com".into(),
            to: vec!["not an address".into()],
        };
        let e = submit(&config, None, &bad, b"x").await.unwrap_err();
        assert!(matches!(e, SubmitError::InvalidAddress(_)), "{e}");
    }
}
