//! `eas-gateway devices`: the admin's view of phones, like z-push-admin — list them, show one
//! with its folders, make it sync afresh, ask for a remote wipe, forget one.
//!
//! Owns the wording and the JSON shape; the records are the state store's. A running gateway
//! sees wipes and removals within a second (it polls the store's admin changes); a resync
//! needs no signal: the phone's next request presents a sync key the store no longer has.

use std::io::Write;

use clap::Subcommand;
use serde_json::json;

use crate::config::Config;
use crate::state::{Device, DeviceKey, StateStore, WipeState};

#[derive(Subcommand, Debug, Clone)]
pub enum Action {
    /// List devices (of one user, or all): last contact, model, user agent, protocol policy
    /// and wipe state.
    List {
        /// Only this user's devices (the log-in name, any case).
        #[arg(long)]
        user: Option<String>,
        /// One JSON object per device, an array in all, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show one device: its record and, per folder, the sync keys it holds.
    Show {
        /// The user the device belongs to.
        user: String,
        /// The DeviceId, as `devices list` prints it.
        device_id: String,
        /// As JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Make a device sync afresh at its next request: everything (folder list and every
    /// folder), or one folder. Mail stays on the server; the phone downloads it again.
    Resync {
        /// The user the device belongs to.
        user: String,
        /// The DeviceId, as `devices list` prints it.
        device_id: String,
        /// Only this folder: its ServerId (see `devices show`) or its IMAP name.
        #[arg(long)]
        folder: Option<String>,
    },
    /// Ask a device to wipe itself at its next contact.
    Wipe {
        /// The user the device belongs to.
        user: String,
        /// The DeviceId, as `devices list` prints it.
        device_id: String,
        /// Remove only this account from the phone (EAS 16.1 devices; others are not wiped).
        #[arg(long)]
        account_only: bool,
    },
    /// Forget a device and its sync state (it starts over at its next contact).
    Remove {
        /// The user the device belongs to.
        user: String,
        /// The DeviceId, as `devices list` prints it.
        device_id: String,
    },
}

pub fn run(config: &Config, action: Action, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = crate::state::open(&config.state.url)?;
    run_on(store.as_ref(), action, out)
}

/// [`run`] on an open store.
pub fn run_on(store: &dyn StateStore, action: Action, out: &mut dyn Write) -> anyhow::Result<()> {
    let key = |user: String, device_id: String| DeviceKey {
        user: user.to_lowercase(),
        device_id,
    };
    match action {
        Action::List { user, json } => {
            let user = user.map(|u| u.to_lowercase());
            let devices = store.devices(user.as_deref())?;
            if json {
                let list: Vec<_> = devices.iter().map(device_json).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else if devices.is_empty() {
                match user {
                    Some(u) => writeln!(out, "no devices for {u}")?,
                    None => writeln!(
                        out,
                        "no devices yet: a phone appears here after its first request"
                    )?,
                }
            } else {
                writeln!(
                    out,
                    "USER\tDEVICE ID\tTYPE\tMODEL\tUSER AGENT\tEAS\tLAST SEEN (UTC)\tPOLICY\tWIPE"
                )?;
                for d in &devices {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        d.key.user,
                        d.key.device_id,
                        d.device_type,
                        d.info.model.as_deref().unwrap_or("-"),
                        d.info.user_agent.as_deref().unwrap_or("-"),
                        d.protocol_version.as_deref().unwrap_or("-"),
                        when(d.last_seen),
                        policy(d),
                        wipe(d.wipe)
                    )?;
                }
            }
        }
        Action::Show {
            user,
            device_id,
            json,
        } => {
            let key = key(user, device_id);
            let device = store
                .device(&key)?
                .ok_or_else(|| anyhow::anyhow!("no device {} for {}", key.device_id, key.user))?;
            let folders = folders(store, &key)?;
            if json {
                let mut v = device_json(&device);
                v["folders"] = folders
                    .iter()
                    .map(|f| {
                        json!({"server_id": f.entry.id, "name": f.entry.display_name,
                               "imap_name": f.entry.imap_name, "type": f.entry.kind,
                               "sync_keys": f.keys, "last_new_key": f.last_new_key})
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                let i = &device.info;
                let lines = [
                    ("user", device.key.user.clone()),
                    ("device id", device.key.device_id.clone()),
                    ("type", device.device_type.clone()),
                    ("model", opt(&i.model)),
                    ("friendly name", opt(&i.friendly_name)),
                    ("os", opt(&i.os)),
                    ("user agent", opt(&i.user_agent)),
                    ("EAS version", opt(&device.protocol_version)),
                    ("first seen", when(device.first_seen)),
                    ("last seen", when(device.last_seen)),
                    ("policy", policy(&device).to_owned()),
                    ("wipe", wipe(device.wipe)),
                ];
                for (name, value) in lines {
                    writeln!(out, "{name:<14} {value}")?;
                }
                if folders.is_empty() {
                    writeln!(out, "folders        none synced yet (no FolderSync stored)")?;
                } else {
                    writeln!(
                        out,
                        "folders (ServerId, sync keys held, last new key (UTC), name):"
                    )?;
                    for f in &folders {
                        let keys = if f.keys.is_empty() {
                            "not synced".to_owned()
                        } else {
                            f.keys
                                .iter()
                                .map(u32::to_string)
                                .collect::<Vec<_>>()
                                .join(",")
                        };
                        let at = match f.last_new_key {
                            Some(at) => when(at),
                            None => "-".to_owned(),
                        };
                        writeln!(
                            out,
                            "  {:>4}  {:<12} {:<20} {}",
                            f.entry.id, keys, at, f.entry.display_name
                        )?;
                    }
                }
            }
        }
        Action::Resync {
            user,
            device_id,
            folder,
        } => {
            let key = key(user, device_id);
            if store.device(&key)?.is_none() {
                anyhow::bail!("no device {} for {}", key.device_id, key.user);
            }
            let folders = folders(store, &key)?;
            match folder {
                Some(wanted) => {
                    let f = folders
                        .iter()
                        .find(|f| f.entry.id.to_string() == wanted || f.entry.imap_name == wanted)
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "the device has no folder {wanted:?} (see `devices show`)"
                            )
                        })?;
                    store.reset_collection(&key, f.entry.id)?;
                    writeln!(
                        out,
                        "folder {} ({}) will sync afresh at the device's next Sync of it",
                        f.entry.id, f.entry.display_name
                    )?;
                }
                None => {
                    for f in &folders {
                        store.reset_collection(&key, f.entry.id)?;
                    }
                    store.reset_hierarchy(&key)?;
                    writeln!(
                        out,
                        "the device will fetch its folder list and every folder afresh at its \
                         next request"
                    )?;
                }
            }
        }
        Action::Wipe {
            user,
            device_id,
            account_only,
        } => {
            let key = key(user, device_id);
            if !store.set_wipe(&key, WipeState::Requested { account_only })? {
                anyhow::bail!("no device {} for {}", key.device_id, key.user);
            }
            writeln!(
                out,
                "wipe requested; a running gateway ends the device's waiting request within \
                 seconds and the device receives the wipe then, or at its next request{}",
                if account_only {
                    " (account-only: EAS 16.1 devices; an older device is blocked instead)"
                } else {
                    ""
                }
            )?;
        }
        Action::Remove { user, device_id } => {
            let key = key(user, device_id);
            if store.remove_device(&key)? {
                writeln!(out, "removed")?;
            } else {
                anyhow::bail!("no device {} for {}", key.device_id, key.user);
            }
        }
    }
    Ok(())
}

/// One folder of the device as `devices show` reports it.
struct Folder {
    entry: crate::state::FolderEntry,
    /// The sync keys stored for it (at most two live).
    keys: Vec<u32>,
    /// When the folder last got a new key (unix seconds); `None` when never, or before the
    /// gateway recorded it.
    last_new_key: Option<u64>,
}

/// The device's folders from its newest folder list.
fn folders(store: &dyn StateStore, key: &DeviceKey) -> anyhow::Result<Vec<Folder>> {
    let Some(latest) = store.latest_hierarchy_key(key)? else {
        return Ok(Vec::new());
    };
    let times: std::collections::HashMap<u32, u64> =
        store.collection_key_times(key)?.into_iter().collect();
    let mut out = Vec::new();
    for entry in store.hierarchy(key, latest)?.unwrap_or_default() {
        out.push(Folder {
            keys: store.collection_keys(key, entry.id)?,
            last_new_key: times.get(&entry.id).copied().filter(|at| *at > 0),
            entry,
        });
    }
    Ok(out)
}

fn device_json(d: &Device) -> serde_json::Value {
    let i = &d.info;
    json!({
        "user": d.key.user,
        "device_id": d.key.device_id,
        "device_type": d.device_type,
        "model": i.model,
        "friendly_name": i.friendly_name,
        "os": i.os,
        "user_agent": i.user_agent,
        "protocol_version": d.protocol_version,
        "first_seen": d.first_seen,
        "last_seen": d.last_seen,
        "provisioned": d.policy_key.is_some(),
        "wipe": wipe(d.wipe),
    })
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".to_owned())
}

fn policy(d: &Device) -> &'static str {
    match (d.policy_key, d.pending_policy_key) {
        (Some(_), _) => "provisioned",
        (None, Some(_)) => "provisioning",
        (None, None) => "not provisioned",
    }
}

fn wipe(w: WipeState) -> String {
    match w {
        WipeState::None => "none".into(),
        WipeState::Requested { account_only } => {
            format!(
                "requested{}",
                if account_only { " (account only)" } else { "" }
            )
        }
        WipeState::Acknowledged {
            account_only,
            status,
        } => format!(
            "{}{}",
            if status == 1 { "wiped" } else { "wipe failed" },
            if account_only { " (account only)" } else { "" }
        ),
    }
}

/// `2026-03-02 10:00:00` (UTC) for unix seconds; `never` for 0.
fn when(unix: u64) -> String {
    if unix == 0 {
        return "never".into();
    }
    let iso = crate::mime::date::eas_date(i64::try_from(unix).unwrap_or(i64::MAX));
    format!("{} {}", &iso[..10], &iso[11..19])
}
