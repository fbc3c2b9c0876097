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
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

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
}

/// Submits one message. `login` is the user's credentials, used when `auth = "user"`.
pub async fn submit(
    config: &SmtpConfig,
    login: Option<(&str, &Secret<String>)>,
    envelope: &Envelope,
    message: &[u8],
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
    let transport = transport(config, login)?;
    transport
        .send_raw(&envelope, message)
        .await
        .map(|_| ())
        .map_err(classify)
}

/// Connects and greets (EHLO, STARTTLS when configured) without sending anything: what
/// `eas-gateway check` reports.
pub async fn check(config: &SmtpConfig) -> Result<(), SubmitError> {
    let transport = transport(config, None)?;
    match transport.test_connection().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(SubmitError::Unavailable("no answer to NOOP".into())),
        Err(e) => Err(classify(e)),
    }
}

fn transport(
    config: &SmtpConfig,
    login: Option<(&str, &Secret<String>)>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, SubmitError> {
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
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
        .port(config.port)
        .timeout(Some(config.timeout))
        .hello_name(ClientId::Domain(config.hello_name.clone()))
        .tls(tls);
    if let (SmtpAuth::User, Some((user, password))) = (config.auth, login) {
        builder = builder
            .credentials(Credentials::new(
                user.to_owned(),
                password.expose().to_owned(),
            ))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
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
