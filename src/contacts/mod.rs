//! Contacts as EAS sees them (Contacts code page 1, Contacts2 page 12, AirSyncBase bodies) and
//! as CardDAV stores them (vCard 2.1, 3.0, 4.0, parsed and written with `calcard`).
//!
//! Owns the mapping both ways: [`from_vcard`] reads a stored vCard into a [`Contact`],
//! [`write_application_data`] renders that as a Sync/ItemOperations `ApplicationData`, and
//! [`parse_application_data`] reads what a phone sent. A phone edit is **merged** into the
//! stored vCard ([`merge`]): only the properties EAS carries are touched, and of those only the
//! ones whose value changed, so unknown and `X-` properties, parameters, groups, extra
//! addresses, e-mails and numbers beyond EAS's slots, and a photo EAS was not sent all survive.
//!
//! Pure: no I/O, no knowledge of DAV, folders or sync state (those are the backend's). Must not
//! use `eas`, `http`, `imap` or `dav`.

mod card;
mod wbxml;

use std::collections::BTreeMap;

use eas_wbxml::Tag;
use eas_wbxml::tags::{contacts as c, contacts2 as c2};

pub use card::{from_vcard, merge, new_vcard, parse_vcard, to_text};
pub use wbxml::{RenderOptions, parse_application_data, render, write_application_data};

/// The most picture bytes a phone may send (MS-ASCNTC 2.2.2.58: 48 KB of base64).
pub const MAX_PHONE_PICTURE_BASE64: usize = 48 * 1024;
/// The default limit of a photo sent to the phone: what fits in 48 KB of base64.
pub const DEFAULT_PICTURE_MAX_BYTES: usize = MAX_PHONE_PICTURE_BASE64 / 4 * 3;

/// Why a vCard or a phone's contact cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    /// The stored object is not a vCard calcard can read.
    #[error("not a readable vCard: {0}")]
    BadVCard(String),
    /// A phone's value is malformed (answer status 6 for that item).
    #[error("malformed {field} in the phone's contact")]
    BadValue { field: &'static str },
    /// The phone's picture is over the 48 KB the protocol allows (status 6).
    #[error("the phone's picture is larger than 48 KB")]
    PictureTooLarge,
}

/// The single-valued properties EAS carries, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    FileAs,
    Title,
    FirstName,
    MiddleName,
    LastName,
    Suffix,
    YomiFirstName,
    YomiLastName,
    NickName,
    CompanyName,
    YomiCompanyName,
    Department,
    JobTitle,
    OfficeLocation,
    Email1,
    Email2,
    Email3,
    HomePhone,
    Home2Phone,
    BusinessPhone,
    Business2Phone,
    MobilePhone,
    CarPhone,
    PagerNumber,
    RadioPhone,
    HomeFax,
    BusinessFax,
    AssistantPhone,
    CompanyMainPhone,
    Mms,
    HomeStreet,
    HomeCity,
    HomeState,
    HomePostalCode,
    HomeCountry,
    BusinessStreet,
    BusinessCity,
    BusinessState,
    BusinessPostalCode,
    BusinessCountry,
    OtherStreet,
    OtherCity,
    OtherState,
    OtherPostalCode,
    OtherCountry,
    Birthday,
    Anniversary,
    WebPage,
    Im1,
    Im2,
    Im3,
    Spouse,
    ManagerName,
    AssistantName,
    CustomerId,
    GovernmentId,
    AccountName,
}

impl Field {
    pub const ALL: [Field; 57] = {
        use Field::*;
        [
            FileAs,
            Title,
            FirstName,
            MiddleName,
            LastName,
            Suffix,
            YomiFirstName,
            YomiLastName,
            NickName,
            CompanyName,
            YomiCompanyName,
            Department,
            JobTitle,
            OfficeLocation,
            Email1,
            Email2,
            Email3,
            HomePhone,
            Home2Phone,
            BusinessPhone,
            Business2Phone,
            MobilePhone,
            CarPhone,
            PagerNumber,
            RadioPhone,
            HomeFax,
            BusinessFax,
            AssistantPhone,
            CompanyMainPhone,
            Mms,
            HomeStreet,
            HomeCity,
            HomeState,
            HomePostalCode,
            HomeCountry,
            BusinessStreet,
            BusinessCity,
            BusinessState,
            BusinessPostalCode,
            BusinessCountry,
            OtherStreet,
            OtherCity,
            OtherState,
            OtherPostalCode,
            OtherCountry,
            Birthday,
            Anniversary,
            WebPage,
            Im1,
            Im2,
            Im3,
            Spouse,
            ManagerName,
            AssistantName,
            CustomerId,
            GovernmentId,
            AccountName,
        ]
    };

    /// The element this field is on the wire.
    pub fn tag(self) -> Tag {
        use Field::*;
        match self {
            FileAs => c::FileAs,
            Title => c::Title,
            FirstName => c::FirstName,
            MiddleName => c::MiddleName,
            LastName => c::LastName,
            Suffix => c::Suffix,
            YomiFirstName => c::YomiFirstName,
            YomiLastName => c::YomiLastName,
            NickName => c2::NickName,
            CompanyName => c::CompanyName,
            YomiCompanyName => c::YomiCompanyName,
            Department => c::Department,
            JobTitle => c::JobTitle,
            OfficeLocation => c::OfficeLocation,
            Email1 => c::Email1Address,
            Email2 => c::Email2Address,
            Email3 => c::Email3Address,
            HomePhone => c::HomePhoneNumber,
            Home2Phone => c::Home2PhoneNumber,
            BusinessPhone => c::BusinessPhoneNumber,
            Business2Phone => c::Business2PhoneNumber,
            MobilePhone => c::MobilePhoneNumber,
            CarPhone => c::CarPhoneNumber,
            PagerNumber => c::PagerNumber,
            RadioPhone => c::RadioPhoneNumber,
            HomeFax => c::HomeFaxNumber,
            BusinessFax => c::BusinessFaxNumber,
            AssistantPhone => c::AssistantPhoneNumber,
            CompanyMainPhone => c2::CompanyMainPhone,
            Mms => c2::MMS,
            HomeStreet => c::HomeAddressStreet,
            HomeCity => c::HomeAddressCity,
            HomeState => c::HomeAddressState,
            HomePostalCode => c::HomeAddressPostalCode,
            HomeCountry => c::HomeAddressCountry,
            BusinessStreet => c::BusinessAddressStreet,
            BusinessCity => c::BusinessAddressCity,
            BusinessState => c::BusinessAddressState,
            BusinessPostalCode => c::BusinessAddressPostalCode,
            BusinessCountry => c::BusinessAddressCountry,
            OtherStreet => c::OtherAddressStreet,
            OtherCity => c::OtherAddressCity,
            OtherState => c::OtherAddressState,
            OtherPostalCode => c::OtherAddressPostalCode,
            OtherCountry => c::OtherAddressCountry,
            Birthday => c::Birthday,
            Anniversary => c::Anniversary,
            WebPage => c::WebPage,
            Im1 => c2::IMAddress,
            Im2 => c2::IMAddress2,
            Im3 => c2::IMAddress3,
            Spouse => c::Spouse,
            ManagerName => c2::ManagerName,
            AssistantName => c::AssistantName,
            CustomerId => c2::CustomerId,
            GovernmentId => c2::GovernmentId,
            AccountName => c2::AccountName,
        }
    }

    pub fn from_tag(tag: Tag) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.tag() == tag)
    }

    /// The element's name, for error messages.
    pub fn name(self) -> &'static str {
        self.tag().name()
    }
}

/// A contact in EAS's terms. Empty values are never stored: absent means "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    pub fields: BTreeMap<Field, String>,
    pub categories: Vec<String>,
    pub children: Vec<String>,
    /// The notes, plain text, whole.
    pub body: Option<String>,
    /// The photo's bytes (JPEG, PNG, … as stored).
    pub picture: Option<Vec<u8>>,
}

impl Contact {
    pub fn get(&self, f: Field) -> Option<&str> {
        self.fields.get(&f).map(String::as_str)
    }

    /// Sets `f`; an empty or blank value removes it.
    pub fn set(&mut self, f: Field, value: impl Into<String>) {
        let value = value.into();
        if value.trim().is_empty() {
            self.fields.remove(&f);
        } else {
            self.fields.insert(f, value);
        }
    }
}

/// How a phone's edit is merged ([`merge`]).
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    /// The tags the phone declared in `Supported` for this folder (ghosting, MS-ASCMD
    /// 2.2.3.168): a property outside it that the phone did not send is left as it is. `None`:
    /// the phone supports everything, and a property it leaves out is deleted.
    pub supported: Option<Vec<Tag>>,
    /// The photo size the phone was sent pictures up to: a stored photo larger than this (or
    /// not inline) never reached the phone, so its absence in the edit does not delete it.
    pub picture_max_bytes: usize,
    /// The notes the phone holds were truncated: a body that is a prefix of the stored notes
    /// (or no body) leaves them as they are.
    pub body_truncated: bool,
}

impl MergeOptions {
    fn supports(&self, tag: Tag) -> bool {
        self.supported.as_ref().is_none_or(|s| s.contains(&tag))
    }
}

#[cfg(test)]
mod tests;
