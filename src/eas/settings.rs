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
//! Out-of-office is a Sieve vacation section kept over ManageSieve ([`crate::sieve`];
//! docs/directory-and-oof.md says how each field maps). Without `[sieve] enabled`, Oof Get and Set
//! answer status 7 ("denied by policy"), the truthful "this server does not do that". A
//! DevicePassword (recovery password) is refused that way too, because storing it would put
//! a password on disk.

use eas_wbxml::Element;
use eas_wbxml::tags::settings as s;

use super::status::SettingsStatus;
use super::version::ProtocolVersion;
use super::{Context, EasError, Reply};
use crate::sieve::{self, Message, OutOfOffice, State, Update};
use crate::state::Device;

/// The longest reply text accepted (Sieve scripts are small; Dovecot's default script limit
/// is 1 MiB for everything).
const MAX_REPLY_BYTES: usize = 32 * 1024;

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let mut out = vec![Element::with_text(
        s::Status,
        SettingsStatus::Success.as_str(),
    )];
    for block in body.children() {
        let answer = match block.tag {
            s::Oof => oof(ctx, block).await,
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

fn oof_status(value: SettingsStatus) -> Element {
    Element::with_children(s::Oof, vec![status(value)])
}

/// Oof Get or Set (MS-ASCMD 2.2.3.122).
async fn oof(ctx: &Context<'_>, block: &Element) -> Element {
    let config = &ctx.config.sieve;
    if !config.enabled {
        return oof_status(SettingsStatus::DeniedByPolicy);
    }
    let account = sieve::Account {
        login: &ctx.user.login,
        password: ctx.user.password.expose(),
        email: &ctx.user.email,
    };
    if let Some(get) = block.child(s::Get) {
        let want_html = match get.child(s::BodyType).and_then(|b| b.text()).map(str::trim) {
            Some(t) if t.eq_ignore_ascii_case("html") => true,
            Some(t) if t.eq_ignore_ascii_case("text") => false,
            _ => return oof_status(SettingsStatus::ProtocolError),
        };
        return match sieve::get(config, &account).await {
            Ok(current) => Element::with_children(
                s::Oof,
                vec![
                    status(SettingsStatus::Success),
                    oof_get(&current, want_html),
                ],
            ),
            Err(e) => oof_status(failure(&e)),
        };
    }
    let Some(set) = block.child(s::Set) else {
        return oof_status(SettingsStatus::ProtocolError);
    };
    let update = match parse_set(set) {
        Ok(u) => u,
        Err(code) => return oof_status(code),
    };
    match sieve::set(config, &account, &update).await {
        Ok(()) => oof_status(SettingsStatus::Success),
        Err(e) => oof_status(failure(&e)),
    }
}

fn failure(e: &sieve::SieveError) -> SettingsStatus {
    tracing::warn!(error = %e, "out of office over ManageSieve failed");
    match e {
        e if e.is_unavailable() => SettingsStatus::ServerUnavailable,
        sieve::SieveError::Auth(_) => SettingsStatus::AccessDenied,
        sieve::SieveError::Unsupported(_) => SettingsStatus::DeniedByPolicy,
        _ => SettingsStatus::InvalidArguments,
    }
}

fn parse_set(set: &Element) -> Result<Update, SettingsStatus> {
    fn text(e: &Element, tag: eas_wbxml::Tag) -> Option<&str> {
        e.child(tag).and_then(|c| c.text()).map(str::trim)
    }
    let mut update = Update::default();
    let time = |tag| -> Result<Option<String>, SettingsStatus> {
        match text(set, tag) {
            None | Some("") => Ok(None),
            Some(t) => utc(t).map(Some).ok_or(SettingsStatus::InvalidArguments),
        }
    };
    let (start, end) = (time(s::StartTime)?, time(s::EndTime)?);
    update.state = match text(set, s::OofState) {
        None => None,
        Some("0") => Some(State::Disabled),
        Some("1") => Some(State::Global),
        Some("2") => match (start, end) {
            (Some(start), Some(end)) if start < end => Some(State::Scheduled { start, end }),
            (Some(_), Some(_)) => return Err(SettingsStatus::ConflictingArguments),
            _ => return Err(SettingsStatus::InvalidArguments),
        },
        Some(_) => return Err(SettingsStatus::InvalidArguments),
    };
    for m in set.children_with(s::OofMessage) {
        let slot = if m.child(s::AppliesToInternal).is_some() {
            &mut update.internal
        } else if m.child(s::AppliesToExternalKnown).is_some() {
            &mut update.known_external
        } else if m.child(s::AppliesToExternalUnknown).is_some() {
            &mut update.unknown_external
        } else {
            return Err(SettingsStatus::ProtocolError);
        };
        let enabled = match text(m, s::Enabled) {
            None | Some("0") => false,
            Some("1") => true,
            Some(_) => return Err(SettingsStatus::InvalidArguments),
        };
        // The text exactly as sent: leading and trailing white space is part of a message.
        let reply = m
            .child(s::ReplyMessage)
            .map(|r| r.text().unwrap_or("").to_owned());
        let html = match text(m, s::BodyType) {
            Some(t) if t.eq_ignore_ascii_case("html") => true,
            Some(t) if t.eq_ignore_ascii_case("text") => false,
            None if reply.is_none() => false,
            _ => return Err(SettingsStatus::InvalidArguments),
        };
        if reply
            .as_ref()
            .is_some_and(|r| r.len() > MAX_REPLY_BYTES || r.contains('\0'))
        {
            return Err(SettingsStatus::InvalidArguments);
        }
        *slot = Some(Message {
            enabled,
            html,
            text: reply.unwrap_or_default(),
        });
    }
    Ok(update)
}

/// `2026-12-01T08:00:00.000Z` (the EAS form; `Z` or no zone) as `2026-12-01T08:00:00`.
fn utc(t: &str) -> Option<String> {
    let t = t.strip_suffix('Z').unwrap_or(t);
    let base = t.get(..19)?;
    let frac = &t[19..];
    let frac_ok = frac.is_empty()
        || (frac.starts_with('.')
            && frac.len() > 1
            && frac[1..].bytes().all(|b| b.is_ascii_digit()));
    (sieve::is_plain_utc(base) && frac_ok).then(|| base.to_owned())
}

fn oof_get(o: &OutOfOffice, want_html: bool) -> Element {
    let mut get = Vec::new();
    let state = match &o.state {
        State::Disabled => "0",
        State::Global => "1",
        State::Scheduled { .. } => "2",
    };
    get.push(Element::with_text(s::OofState, state));
    if let State::Scheduled { start, end } = &o.state {
        get.push(Element::with_text(s::StartTime, format!("{start}.000Z")));
        get.push(Element::with_text(s::EndTime, format!("{end}.000Z")));
    }
    for (tag, m) in [
        (s::AppliesToInternal, &o.internal),
        (s::AppliesToExternalKnown, &o.known_external),
        (s::AppliesToExternalUnknown, &o.unknown_external),
    ] {
        let text = match (m.html, want_html) {
            (true, false) => html_to_text(&m.text),
            (false, true) => text_to_html(&m.text),
            _ => m.text.clone(),
        };
        get.push(Element::with_children(
            s::OofMessage,
            vec![
                Element::new(tag),
                Element::with_text(s::Enabled, if m.enabled { "1" } else { "0" }),
                Element::with_text(s::ReplyMessage, text),
                Element::with_text(s::BodyType, if want_html { "HTML" } else { "Text" }),
            ],
        ));
    }
    Element::with_children(s::Get, get)
}

fn text_to_html(t: &str) -> String {
    let escaped = t
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    format!(
        "<html><body>{}</body></html>",
        escaped.replace('\n', "<br>\n")
    )
}

/// The text of an HTML message: tags dropped (line breaks for `<br>` and block ends), the
/// common entities decoded.
fn html_to_text(h: &str) -> String {
    let mut out = String::with_capacity(h.len());
    let mut rest = h;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let Some(gt) = rest[lt..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[lt + 1..lt + gt].trim().to_ascii_lowercase();
        if tag.starts_with("br") || tag.starts_with("/p") || tag.starts_with("/div") {
            out.push('\n');
        }
        rest = &rest[lt + gt + 1..];
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .trim()
        .to_owned()
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
