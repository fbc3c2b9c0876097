//! Sending against the real stack: a private Postfix (submission with SASL checked by the
//! test Dovecot) delivering over LMTP to that Dovecot.

mod support;

use std::time::{Duration, Instant};

use eas_gateway::secret::Secret;
use eas_gateway::smtp::{self, Envelope, SmtpAuth, SmtpConfig, SmtpSecurity, SubmitError};

fn smtp_config(port: u16, auth: SmtpAuth) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        tls_insecure: false,
        auth,
        timeout: Duration::from_secs(10),
        hello_name: "gateway.example.com".into(),
    }
}

/// Waits until the user's INBOX holds a message whose header block contains `needle`;
/// returns the raw message.
async fn arrival(user: &str, needle: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut s = support::session(user).await;
        s.select("INBOX").await.expect("SELECT");
        let found = s
            .uid_search(&eas_gateway::imap::SearchKey::Header(
                "Subject".into(),
                needle.into(),
            ))
            .await
            .expect("SEARCH")
            .uids;
        if let Some(uid) = found.iter().next() {
            let q = eas_gateway::imap::FetchQuery::new().body();
            let mut f = s
                .uid_fetch(&eas_gateway::imap::SequenceSet::single(uid), &q)
                .await
                .expect("FETCH");
            let raw = f[0]
                .take_section(&eas_gateway::imap::Section::Full)
                .expect("body");
            let _ = s.logout().await;
            return raw;
        }
        let _ = s.logout().await;
        assert!(
            Instant::now() < deadline,
            "{needle:?} did not arrive for {user}; Postfix log:\n{}",
            std::fs::read_to_string(support::postfix().log_path()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn submission_as_the_user_and_through_the_relay_reaches_the_inbox() {
    let postfix = support::postfix();
    let (alice, password) = support::credentials("alice");
    let (bob, _) = support::credentials("bob");
    let subject = support::unique("Harness");
    let message =
        format!("From: {alice}\r\nTo: {bob}\r\nSubject: {subject}\r\n\r\nover Postfix\r\n");
    let env = Envelope {
        from: alice.clone(),
        to: vec![bob.clone()],
    };
    let config = smtp_config(postfix.submission_port(), SmtpAuth::User);
    let password = Secret::new(password);
    smtp::submit(&config, Some((&alice, &password)), &env, message.as_bytes())
        .await
        .expect("submission as alice");
    let raw = arrival("bob", &subject).await;
    assert!(String::from_utf8_lossy(&raw).contains("over Postfix"));

    // The submission port refuses a wrong password and anyone without AUTH.
    let wrong = Secret::new("wrong".to_string());
    let e = smtp::submit(&config, Some((&alice, &wrong)), &env, message.as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(e, SubmitError::AuthRejected(_)), "{e}");
    let e = smtp::submit(
        &smtp_config(postfix.submission_port(), SmtpAuth::Relay),
        None,
        &env,
        message.as_bytes(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, SubmitError::Rejected(_)), "{e}");

    // The relay port trusts loopback.
    let relayed = support::unique("Relayed");
    let message = format!("From: {alice}\r\nTo: {bob}\r\nSubject: {relayed}\r\n\r\nx\r\n");
    smtp::submit(
        &smtp_config(postfix.relay_port(), SmtpAuth::Relay),
        None,
        &env,
        message.as_bytes(),
    )
    .await
    .expect("relay");
    arrival("bob", &relayed).await;
    assert!(smtp::check(&config).await.is_ok());
}
