//! `eas-gateway devices`: the admin's view of phones — list them, ask for a remote wipe,
//! forget one.

use std::io::Write;

use clap::Subcommand;

use crate::config::Config;
use crate::state::{DeviceKey, WipeState};

#[derive(Subcommand, Debug, Clone)]
pub enum Action {
    /// List devices (of one user, or all).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Ask a device to wipe itself at its next contact.
    Wipe {
        user: String,
        device_id: String,
        /// Remove only this account from the phone (EAS 16.1 devices; others are not wiped).
        #[arg(long)]
        account_only: bool,
    },
    /// Forget a device and its sync state (it starts over at its next contact).
    Remove { user: String, device_id: String },
}

pub fn run(config: &Config, action: Action, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = crate::state::open(&config.state.url)?;
    match action {
        Action::List { user } => {
            let user = user.map(|u| u.to_lowercase());
            for d in store.devices(user.as_deref())? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\tprovisioned={}\twipe={:?}\tlast_seen={}",
                    d.key.user,
                    d.key.device_id,
                    d.device_type,
                    d.info.model.as_deref().unwrap_or("-"),
                    d.policy_key.is_some(),
                    d.wipe,
                    d.last_seen
                )?;
            }
        }
        Action::Wipe {
            user,
            device_id,
            account_only,
        } => {
            let key = DeviceKey {
                user: user.to_lowercase(),
                device_id,
            };
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
            let key = DeviceKey {
                user: user.to_lowercase(),
                device_id,
            };
            if store.remove_device(&key)? {
                writeln!(out, "removed")?;
            } else {
                anyhow::bail!("no device {} for {}", key.device_id, key.user);
            }
        }
    }
    Ok(())
}
