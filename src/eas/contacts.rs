//! Opening the user's contacts store ([`ContactItems`]) for the Sync engine: the DAV client
//! with the phone's credentials and the `[dav]` settings. The engine's dispatch
//! (`eas::sync::Stores`) runs contacts collections (folder types 9 and 14) on it.

use std::sync::{Arc, OnceLock};

use super::sync::engine::{self, BoxFuture};
use super::{Context, EasError};
use crate::backend::contacts::ContactItems;
use crate::dav::{DavClient, DavSettings, http_client};
use crate::secret::Secret;
use crate::state::FolderEntry;

/// The DAV settings and the HTTP client (one connection pool for all users), made once.
fn shared(ctx: &Context<'_>) -> Result<(Arc<DavSettings>, reqwest::Client), EasError> {
    static SHARED: OnceLock<Result<(Arc<DavSettings>, reqwest::Client), String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let settings = ctx
                .config
                .dav_settings()
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "no [dav] url configured".to_owned())?;
            let http = http_client(&settings).map_err(|e| e.to_string())?;
            Ok((Arc::new(settings), http))
        })
        .clone()
        .map_err(EasError::Internal)
}

fn open_with(
    settings: Arc<DavSettings>,
    http: reqwest::Client,
    login: &str,
    password: Secret<String>,
    picture_max_bytes: usize,
) -> ContactItems {
    ContactItems::new(
        DavClient::new(http, settings, login, password),
        picture_max_bytes,
    )
}

impl engine::Store for ContactItems {
    async fn open(ctx: &Context<'_>, _hierarchy: &[FolderEntry]) -> Result<ContactItems, EasError> {
        let (settings, http) = shared(ctx)?;
        Ok(open_with(
            settings,
            http,
            &ctx.user.login,
            ctx.user.password.clone(),
            ctx.config.dav.photo_max_bytes,
        ))
    }

    fn opener(
        ctx: &Context<'_>,
    ) -> impl FnOnce() -> BoxFuture<Option<ContactItems>> + Send + 'static {
        let shared = shared(ctx).ok();
        let login = ctx.user.login.clone();
        let password = ctx.user.password.clone();
        let picture = ctx.config.dav.photo_max_bytes;
        move || {
            Box::pin(async move {
                let (settings, http) = shared?;
                Some(open_with(settings, http, &login, password, picture))
            })
        }
    }
}
