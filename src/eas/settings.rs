//! Settings (MS-ASCMD 2.2.1.18): device information, the user's addresses, out-of-office and
//! the device recovery password.
//!
//! ```xml
//! <Settings xmlns="Settings:">
//!   <DeviceInformation><Set><Model>iPhone15,2</Model>…</Set></DeviceInformation>
//!   <UserInformation><Get/></UserInformation>
//! </Settings>
//! ```
//! Each block is answered in request order with its own Status; the top-level Status is 1
//! whenever the request could be read (failing Settings is known to break iOS account setup).
//! Out-of-office is not implemented: Oof Get and Set answer status 7 ("denied by policy"), the
//! truthful "this server does not do that". A DevicePassword (recovery password) is refused the
//! same way, because storing it would put a password on disk.

use eas_wbxml::Element;
use eas_wbxml::tags::settings as s;

use super::status::SettingsStatus;
use super::version::ProtocolVersion;
use super::{Context, EasError, Reply};
use crate::state::Device;

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let mut out = vec![Element::with_text(
        s::Status,
        SettingsStatus::Success.as_str(),
    )];
    for block in body.children() {
        let answer = match block.tag {
            s::Oof => Element::with_children(s::Oof, vec![status(SettingsStatus::DeniedByPolicy)]),
            s::DevicePassword => Element::with_children(
                s::DevicePassword,
                vec![status(SettingsStatus::DeniedByPolicy)],
            ),
            s::DeviceInformation => {
                let ok = block.child(s::Set).is_some();
                if ok {
                    apply_device_information(&mut ctx.device, block);
                }
                Element::with_children(
                    s::DeviceInformation,
                    vec![status(if ok {
                        SettingsStatus::Success
                    } else {
                        SettingsStatus::ProtocolError
                    })],
                )
            }
            s::UserInformation => user_information(ctx, block),
            s::RightsManagementInformation => Element::with_children(
                s::RightsManagementInformation,
                // No rights-management templates exist on this server.
                vec![status(SettingsStatus::Success), Element::new(s::Get)],
            ),
            _ => continue, // unknown blocks are skipped, as the spec asks of unknown elements
        };
        out.push(answer);
    }
    Ok(Reply::Document(Element::with_children(s::Settings, out)))
}

fn status(value: SettingsStatus) -> Element {
    Element::with_text(s::Status, value.as_str())
}

fn user_information(ctx: &Context<'_>, block: &Element) -> Element {
    if block.child(s::Get).is_none() {
        return Element::with_children(
            s::UserInformation,
            vec![status(SettingsStatus::ProtocolError)],
        );
    }
    let email = &ctx.user.email;
    let get = if ctx.version >= ProtocolVersion::V14_1 {
        let addresses = Element::with_children(
            s::EmailAddresses,
            vec![
                Element::with_text(s::SMTPAddress, email.as_str()),
                Element::with_text(s::PrimarySmtpAddress, email.as_str()),
            ],
        );
        let account = Element::with_children(s::Account, vec![addresses]);
        Element::with_children(
            s::Get,
            vec![Element::with_children(s::Accounts, vec![account])],
        )
    } else {
        Element::with_children(
            s::Get,
            vec![Element::with_children(
                s::EmailAddresses,
                vec![Element::with_text(s::SMTPAddress, email.as_str())],
            )],
        )
    };
    Element::with_children(
        s::UserInformation,
        vec![status(SettingsStatus::Success), get],
    )
}

/// Copies `DeviceInformation > Set` into the device record; unknown or empty fields are
/// ignored (a bad field must never fail Provision or Settings).
pub fn apply_device_information(device: &mut Device, block: &Element) {
    let Some(set) = block.child(s::Set) else {
        return;
    };
    for field in set.children() {
        let Some(value) = field.text().map(str::trim).filter(|v| !v.is_empty()) else {
            continue;
        };
        let value = Some(value.chars().take(256).collect::<String>());
        let info = &mut device.info;
        match field.tag {
            s::Model => info.model = value,
            s::IMEI => info.imei = value,
            s::FriendlyName => info.friendly_name = value,
            s::OS => info.os = value,
            s::OSLanguage => info.os_language = value,
            s::PhoneNumber => info.phone_number = value,
            s::UserAgent => info.user_agent = value,
            s::MobileOperator => info.mobile_operator = value,
            s::EnableOutboundSMS => info.enable_outbound_sms = value,
            _ => {}
        }
    }
}
