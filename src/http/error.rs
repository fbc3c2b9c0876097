//! The one place errors become HTTP responses.
//!
//! Every failure of a request ends as an [`HttpError`]; `into_response` picks the status the
//! spec asks for (MS-ASHTTP 2.2.2.1.1), and the message goes to the log, never to the client
//! (it could carry server details).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::eas::EasError;
use crate::eas::version::Command;
use crate::http::auth::AuthError;
use crate::http::query::QueryError;
use crate::imap::ImapError;

/// Why a request gets no EAS document.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No or wrong credentials: 401 with a Basic challenge, so the phone asks for the password.
    #[error("authentication required")]
    Unauthorized,
    /// The request line, headers or body are malformed: 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A command we do not implement (or do not know): 501.
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// The body is larger than `server.max_body_bytes`: 413.
    #[error("request body too large")]
    TooLarge,
    /// A 12.x device must run Provision first: 449.
    #[error("device must provision")]
    NeedsProvisioning,
    /// A 12.x device an admin cut off (wiped, or an account-only wipe it cannot receive): 403.
    #[error("device blocked")]
    Forbidden,
    /// Neither EAS path nor Autodiscover: 404.
    #[error("no such path")]
    NotFound,
    /// Wrong method for the path: 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The IMAP server is down or unreachable: 503 with Retry-After, so the phone backs off.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A limit refuses the request for now (log-ins locked out, too many held requests): 503
    /// with Retry-After. Not 401, which makes a phone ask its user for a password that may
    /// well be right; not 429, which MS-ASHTTP does not know and phones treat as a failure.
    #[error("refused for now: {reason}")]
    Busy {
        reason: &'static str,
        retry_after: u64,
    },
    /// The request body stalled (`limits.body_timeout_secs`): 408.
    #[error("request body timed out")]
    RequestTimeout,
    /// Anything else: 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl HttpError {
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::Unauthorized => StatusCode::UNAUTHORIZED,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            HttpError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::NeedsProvisioning => {
                StatusCode::from_u16(449).expect("449 is a valid status code")
            }
            HttpError::Forbidden => StatusCode::FORBIDDEN,
            HttpError::NotFound => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::Unavailable(_) | HttpError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        let headers = response.headers_mut();
        match self {
            HttpError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"eas-gateway\""),
                );
            }
            HttpError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            }
            HttpError::Busy { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            }
            HttpError::RequestTimeout => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            HttpError::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("OPTIONS, POST"));
            }
            _ => {}
        }
        response
    }
}

impl From<crate::state::StateError> for HttpError {
    /// A database that is away (restarting, unreachable) passes: 503 with Retry-After, so the
    /// phone comes back rather than showing an error; anything else is a 500.
    fn from(e: crate::state::StateError) -> Self {
        if e.is_unavailable() {
            HttpError::Unavailable(e.to_string())
        } else {
            HttpError::Internal(e.to_string())
        }
    }
}

impl From<QueryError> for HttpError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::UnknownCommand(c) => HttpError::NotImplemented(c),
            other => HttpError::BadRequest(other.to_string()),
        }
    }
}

impl From<AuthError> for HttpError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Rejected => HttpError::Unauthorized,
            AuthError::Throttled {
                reason,
                retry_after,
            } => HttpError::Busy {
                reason,
                retry_after: retry_after.as_secs().max(1),
            },
            AuthError::Backend(e) => HttpError::Unavailable(e.to_string()),
        }
    }
}

impl From<EasError> for HttpError {
    fn from(e: EasError) -> Self {
        match e {
            EasError::Malformed(m) => HttpError::BadRequest(m),
            EasError::NotImplemented(c) => HttpError::NotImplemented(command_name(c)),
            EasError::NeedsProvisioning => HttpError::NeedsProvisioning,
            EasError::Blocked => HttpError::Forbidden,
            EasError::State(e) => e.into(),
            // The password was accepted when it was cached and is not any more (changed since):
            // like any wrong password, 401, so the phone asks for the new one. The request
            // path forgets the cached one (`http::post`).
            EasError::Imap(ImapError::LoginRejected) => HttpError::Unauthorized,
            EasError::Imap(e) if e.is_connection_failure() => HttpError::Unavailable(e.to_string()),
            EasError::Imap(e) => HttpError::Internal(e.to_string()),
            EasError::NotSent {
                status,
                retry: true,
            } => HttpError::Unavailable(format!("message not sent, status {status}")),
            EasError::NotSent { status, .. } => {
                HttpError::Internal(format!("message not sent, status {status}"))
            }
            EasError::Unavailable(e) => HttpError::Unavailable(e),
            EasError::Internal(e) => HttpError::Internal(e),
        }
    }
}

fn command_name(c: Command) -> String {
    c.name().to_owned()
}

#[cfg(test)]
mod test {
    use super::*;

    /// A database that is away passes: the phone is told to come back, not that it failed.
    #[test]
    fn a_state_database_away_is_503_with_retry_after() {
        use crate::state::StateError;
        let r = HttpError::from(EasError::State(StateError::Unavailable("down".into())))
            .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        let r = HttpError::from(StateError::Database("constraint".into())).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_login_rejected_inside_a_command_asks_for_the_password() {
        let e = HttpError::from(EasError::Imap(ImapError::LoginRejected));
        assert!(matches!(e, HttpError::Unauthorized));
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        // Other IMAP refusals stay server errors.
        let e = HttpError::from(EasError::Imap(ImapError::No {
            code: None,
            text: "x".into(),
        }));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn refusals_for_now_say_when_to_come_back() {
        let r = HttpError::Busy {
            reason: "test",
            retry_after: 120,
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "120");
        assert_eq!(
            HttpError::RequestTimeout.into_response().status(),
            StatusCode::REQUEST_TIMEOUT
        );
    }
}
