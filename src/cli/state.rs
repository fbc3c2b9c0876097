//! `eas-gateway state migrate --from URL --to URL`: copies every device, folder id, SyncKey
//! and snapshot from one state store to another, so a gateway can move from SQLite (one node)
//! to PostgreSQL (several) without a phone noticing: its current SyncKeys are valid in the
//! new store, and keys go on from where they were.
//!
//! Owns the copy and its check; how each store reads and writes a device is the store's
//! (`StateStore::export_device` / `import_device`, one transaction per device in the target).
//! The gateways must be stopped during the copy (docs/deploy.md): a write to the source after
//! its device was copied would be lost.

use std::io::Write;

use clap::Subcommand;

use crate::state::{self, StateStore};

#[derive(Subcommand, Debug, Clone)]
pub enum Action {
    /// Copy all state from one store to another (empty) one, e.g. from
    /// sqlite:/var/lib/eas-gateway/state.db to postgres://eas@db.example.com/eas.
    Migrate {
        /// The store to copy from (left unchanged).
        #[arg(long)]
        from: String,
        /// The store to copy to: its schema is created; it must hold no device yet.
        #[arg(long)]
        to: String,
    },
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Devices (with any state; a device record or not).
    pub devices: usize,
    /// Collection snapshots (one per live SyncKey of a folder).
    pub collections: usize,
    /// Hierarchy snapshots (one per live FolderSync key).
    pub hierarchies: usize,
    /// Remembered SendMail ClientIds.
    pub client_ids: usize,
}

/// Why a copy was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("--from and --to name the same store")]
    SameStore,
    #[error("{which}: {source}")]
    Open {
        which: &'static str,
        source: state::StateError,
    },
    #[error(
        "the target already holds state for {devices} devices; copy into an empty database \
         (drop and create it again after a failed copy)"
    )]
    TargetNotEmpty { devices: usize },
    #[error("copying {user}/{device_id}: {source}")]
    Copy {
        user: String,
        device_id: String,
        source: state::StateError,
    },
    #[error(
        "{user}/{device_id} appeared in the target during the copy; is a gateway running on it?"
    )]
    Raced { user: String, device_id: String },
    #[error(
        "after the copy the target's devices differ from the source's ({0}); is a gateway running?"
    )]
    Mismatch(String),
}

pub fn run(action: Action, out: &mut dyn Write) -> anyhow::Result<()> {
    match action {
        Action::Migrate { from, to } => {
            let copied = migrate(&from, &to, out)?;
            writeln!(
                out,
                "copied {} devices: {} Sync snapshots, {} folder hierarchies, {} sent ClientIds; \
                 point state.url at {} and start the gateways",
                copied.devices,
                copied.collections,
                copied.hierarchies,
                copied.client_ids,
                state::redacted_url(&to)
            )?;
            Ok(())
        }
    }
}

/// Copies everything from `from` to `to` (opening both, which brings both schemas up to
/// date), then checks that the target lists the same devices. Progress goes to `out`.
pub fn migrate(from: &str, to: &str, out: &mut dyn Write) -> Result<Copied, MigrateError> {
    if from == to {
        return Err(MigrateError::SameStore);
    }
    let source = state::open(from).map_err(|source| MigrateError::Open {
        which: "--from",
        source,
    })?;
    let target = state::open(to).map_err(|source| MigrateError::Open {
        which: "--to",
        source,
    })?;
    copy(source.as_ref(), target.as_ref(), out)
}

/// [`migrate`] between two open stores.
pub fn copy(
    source: &dyn StateStore,
    target: &dyn StateStore,
    out: &mut dyn Write,
) -> Result<Copied, MigrateError> {
    let open_err = |which| move |source| MigrateError::Open { which, source };
    let already = target.device_keys().map_err(open_err("--to"))?;
    if !already.is_empty() {
        return Err(MigrateError::TargetNotEmpty {
            devices: already.len(),
        });
    }
    let keys = source.device_keys().map_err(open_err("--from"))?;
    let mut copied = Copied::default();
    for (i, key) in keys.iter().enumerate() {
        let failed = |source| MigrateError::Copy {
            user: key.user.clone(),
            device_id: key.device_id.clone(),
            source,
        };
        let export = source.export_device(key).map_err(failed)?;
        if !target.import_device(&export).map_err(failed)? {
            return Err(MigrateError::Raced {
                user: key.user.clone(),
                device_id: key.device_id.clone(),
            });
        }
        copied.devices += 1;
        copied.collections += export.collections.len();
        copied.hierarchies += export.hierarchies.len();
        copied.client_ids += export.client_ids.len();
        if (i + 1) % 1000 == 0 {
            // Progress only; a write error here must not abort a copy that is going well.
            let _ = writeln!(out, "{} of {} devices copied", i + 1, keys.len());
        }
    }
    let after = target.device_keys().map_err(open_err("--to"))?;
    if after != keys {
        return Err(MigrateError::Mismatch(format!(
            "{} in the source, {} in the target",
            keys.len(),
            after.len()
        )));
    }
    Ok(copied)
}
