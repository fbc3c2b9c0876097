//! Provision (MS-ASPROV): hand out the device policy and the policy key, and deliver a remote
//! wipe an admin asked for.
//!
//! ```xml
//! <Provision xmlns="Provision:" xmlns:settings="Settings:">
//!   <settings:DeviceInformation><settings:Set>…</settings:Set></settings:DeviceInformation>
//!   <Policies><Policy><PolicyType>MS-EAS-Provisioning-WBXML</PolicyType></Policy></Policies>
//! </Provision>
//! ```
//! Phase 1 (no PolicyKey) answers with a temporary key and the EASProvisionDoc; phase 2
//! acknowledges that key (PolicyKey + Status) and gets the final key every later request
//! presents. With a wipe pending, the response carries `RemoteWipe` (or, for a 16.1 device and
//! an account-only wipe, `AccountOnlyRemoteWipe`) instead, and the device confirms it with
//! `RemoteWipe > Status`.

use eas_wbxml::Element;
use eas_wbxml::tags::provision as p;
use eas_wbxml::tags::settings as s;

use super::ids::PolicyKey;
use super::settings::apply_device_information;
use super::status::{PolicyStatus, ProvisionStatus, SettingsStatus};
use super::version::ProtocolVersion;
use super::{Context, EasError, Reply, child_text};
use crate::config::Policy;
use crate::state::WipeState;

/// The only policy type of EAS 12.0 and later.
pub const POLICY_TYPE: &str = "MS-EAS-Provisioning-WBXML";

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let device_info = body.child(s::DeviceInformation);
    if let Some(info) = device_info {
        // A DeviceInformation block we cannot read never fails the Provision.
        apply_device_information(&mut ctx.device, info);
    }
    // The device confirms a wipe directive.
    let ack = body
        .child(p::RemoteWipe)
        .or_else(|| body.child(p::AccountOnlyRemoteWipe));
    if let Some(ack) = ack {
        return Ok(acknowledge_wipe(ctx, ack));
    }
    let Some(policy) = body.child(p::Policies).and_then(|ps| ps.child(p::Policy)) else {
        return Ok(document(vec![status_el(ProvisionStatus::ProtocolError)]));
    };
    let mut response = vec![status_el(ProvisionStatus::Success)];
    if device_info.is_some() {
        response.push(Element::with_children(
            s::DeviceInformation,
            vec![Element::with_text(
                s::Status,
                SettingsStatus::Success.as_str(),
            )],
        ));
    }
    if let WipeState::Requested { account_only } = ctx.device.wipe {
        if let Some(directive) = wipe_directive(account_only, ctx.version) {
            tracing::warn!(account_only, "sending remote wipe directive");
            response.push(Element::new(directive));
            return Ok(document(response));
        }
    }
    let policy_type = child_text(policy, p::PolicyType).unwrap_or("").trim();
    response.push(if policy_type != POLICY_TYPE {
        policy_el(policy_type, PolicyStatus::UnknownPolicyType, None, None)
    } else {
        match child_text(policy, p::PolicyKey).map(str::trim) {
            None => send_policy(ctx),
            Some(key) => acknowledge_policy(ctx, key),
        }
    });
    Ok(document(response))
}

/// The device acknowledges a wipe directive: only the one we sent counts. An acknowledgement
/// out of the blue (or of the other kind of wipe) changes nothing, or a device could mark
/// itself wiped, or clear a pending whole-device wipe by acknowledging an account-only one.
fn acknowledge_wipe(ctx: &mut Context<'_>, ack: &Element) -> Reply {
    let account_only = ack.tag == p::AccountOnlyRemoteWipe;
    if ctx.device.wipe != (WipeState::Requested { account_only }) {
        tracing::info!(
            account_only,
            "wipe acknowledgement without that wipe pending"
        );
        return document(vec![status_el(ProvisionStatus::ProtocolError)]);
    }
    let status = child_text(ack, p::Status)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1);
    ctx.device.wipe = WipeState::Acknowledged {
        account_only,
        status,
    };
    ctx.device.policy_key = None;
    ctx.device.pending_policy_key = None;
    tracing::warn!(status, account_only, "device acknowledged remote wipe");
    document(vec![
        status_el(ProvisionStatus::Success),
        Element::new(ack.tag),
    ])
}

/// Phase 1: a temporary key and the policy document.
fn send_policy(ctx: &mut Context<'_>) -> Element {
    let temporary = PolicyKey::generate();
    ctx.device.pending_policy_key = Some(temporary.number());
    let doc = Element::with_children(p::Data, vec![provision_doc(&ctx.config.provision.policy)]);
    policy_el(
        POLICY_TYPE,
        PolicyStatus::Success,
        Some(temporary),
        Some(doc),
    )
}

/// Phase 2: the device applied (status 1) or partly applied (2) the policy and presents the
/// temporary key; it gets the final key every later request carries.
fn acknowledge_policy(ctx: &mut Context<'_>, key: &str) -> Element {
    let presented = PolicyKey::try_from(key).ok();
    let expected = ctx
        .device
        .pending_policy_key
        .and_then(PolicyKey::from_number);
    if presented.is_none() || presented != expected {
        return policy_el(POLICY_TYPE, PolicyStatus::WrongPolicyKey, None, None);
    }
    let final_key = PolicyKey::generate();
    ctx.device.policy_key = Some(final_key.number());
    ctx.device.pending_policy_key = None;
    ctx.device.policy_hash = Some(ctx.config.provision.policy.fingerprint());
    policy_el(POLICY_TYPE, PolicyStatus::Success, Some(final_key), None)
}

/// The wipe element for this device, or `None` when an account-only wipe cannot be expressed
/// (before 16.1 only a whole-device wipe exists, and we never escalate to that). Such a device
/// never gets here: the gate in `eas::dispatch` answers it "blocked" (129) instead.
fn wipe_directive(account_only: bool, version: ProtocolVersion) -> Option<eas_wbxml::Tag> {
    match (account_only, version >= ProtocolVersion::V16_1) {
        (false, _) => Some(p::RemoteWipe),
        (true, true) => Some(p::AccountOnlyRemoteWipe),
        (true, false) => {
            tracing::warn!("account-only wipe needs EAS 16.1; not sent to this device");
            None
        }
    }
}

fn document(children: Vec<Element>) -> Reply {
    Reply::Document(Element::with_children(p::Provision, children))
}

fn status_el(status: ProvisionStatus) -> Element {
    Element::with_text(p::Status, status.as_str())
}

fn policy_el(
    kind: &str,
    status: PolicyStatus,
    key: Option<PolicyKey>,
    data: Option<Element>,
) -> Element {
    let mut children = vec![
        Element::with_text(p::PolicyType, kind),
        Element::with_text(p::Status, status.as_str()),
    ];
    if let Some(key) = key {
        children.push(Element::with_text(p::PolicyKey, key.to_string()));
    }
    children.extend(data);
    Element::with_children(
        p::Policies,
        vec![Element::with_children(p::Policy, children)],
    )
}

/// The EASProvisionDoc for a policy (every element of 12.1 and later, in token order).
pub fn provision_doc(policy: &Policy) -> Element {
    let b = |v: bool| if v { "1" } else { "0" };
    let n = |v: u32| v.to_string();
    let mut children = vec![
        (
            p::DevicePasswordEnabled,
            b(policy.require_password).to_owned(),
        ),
        (
            p::AlphanumericDevicePasswordRequired,
            b(policy.alphanumeric_password).to_owned(),
        ),
        (
            p::RequireStorageCardEncryption,
            b(policy.require_encryption).to_owned(),
        ),
        (p::PasswordRecoveryEnabled, "0".into()),
        (
            p::AttachmentsEnabled,
            b(policy.allow_attachments).to_owned(),
        ),
        (p::MinDevicePasswordLength, n(policy.min_password_length)),
        (
            p::MaxInactivityTimeDeviceLock,
            n(policy.max_inactivity_secs),
        ),
        (
            p::MaxDevicePasswordFailedAttempts,
            n(policy.max_failed_attempts),
        ),
    ]
    .into_iter()
    .map(|(tag, v)| Element::with_text(tag, v))
    .collect::<Vec<_>>();
    children.push(match policy.max_attachment_bytes {
        Some(max) => Element::with_text(p::MaxAttachmentSize, max.to_string()),
        None => Element::new(p::MaxAttachmentSize),
    });
    let rest = [
        (
            p::AllowSimpleDevicePassword,
            b(!policy.alphanumeric_password),
        ),
        (p::DevicePasswordExpiration, "0"),
        (p::DevicePasswordHistory, "0"),
        (p::AllowStorageCard, "1"),
        (p::AllowCamera, "1"),
        (p::RequireDeviceEncryption, b(policy.require_encryption)),
        (p::AllowUnsignedApplications, "1"),
        (p::AllowUnsignedInstallationPackages, "1"),
        (p::MinDevicePasswordComplexCharacters, "1"),
        (p::AllowWiFi, "1"),
        (p::AllowTextMessaging, "1"),
        (p::AllowPOPIMAPEmail, "1"),
        (p::AllowBluetooth, "2"),
        (p::AllowIrDA, "1"),
        (p::RequireManualSyncWhenRoaming, "0"),
        (p::AllowDesktopSync, "1"),
        (p::MaxCalendarAgeFilter, "0"),
        (p::AllowHTMLEmail, "1"),
        (p::MaxEmailAgeFilter, "0"),
        (p::MaxEmailBodyTruncationSize, "-1"),
        (p::MaxEmailHTMLBodyTruncationSize, "-1"),
        (p::RequireSignedSMIMEMessages, "0"),
        (p::RequireEncryptedSMIMEMessages, "0"),
        (p::RequireSignedSMIMEAlgorithm, "0"),
        (p::RequireEncryptionSMIMEAlgorithm, "0"),
        (p::AllowSMIMEEncryptionAlgorithmNegotiation, "2"),
        (p::AllowSMIMESoftCerts, "1"),
        (p::AllowBrowser, "1"),
        (p::AllowConsumerEmail, "1"),
        (p::AllowRemoteDesktop, "1"),
        (p::AllowInternetSharing, "1"),
    ];
    children.extend(rest.into_iter().map(|(tag, v)| Element::with_text(tag, v)));
    children.push(Element::new(p::UnapprovedInROMApplicationList));
    children.push(Element::new(p::ApprovedApplicationList));
    Element::with_children(p::EASProvisionDoc, children)
}
