//! The EAS code pages: every tag token of pages 0–25 as EAS 16.1 defines them.
//!
//! Owns the one table that maps `(code page, token)` to a tag name and back. Names follow the
//! MS-ASWBXML spelling; where other implementations (libwbxml, z-push) spell a tag differently the
//! token is what counts on the wire, and the differential tests keep an explicit list of those
//! spellings. Tokens marked "old" in a comment exist only in protocol versions we do not speak
//! (2.5/12.0) but are kept so that decoding a document that carries them names them instead of
//! failing.
//!
//! [`Tag`] values can only be obtained from this table (the constants in [`tags`], or
//! [`Tag::from_token`] / [`Tag::from_name`]), so every `Tag` in the program is a real EAS tag.

use std::fmt;

/// A tag of one EAS code page: the page plus the 6-bit token (0x05–0x3F).
///
/// Construct it through [`tags`], [`Tag::from_token`] or [`Tag::from_name`]; the fields are
/// private so that an invalid `(page, token)` pair cannot exist.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    page: CodePage,
    token: u8,
}

impl Tag {
    /// The tag for `token` on `page`, if that page defines it.
    pub fn from_token(page: CodePage, token: u8) -> Option<Tag> {
        let names = page.names();
        let name = names.get(usize::from(token)).copied().flatten();
        name.map(|_| Tag { page, token })
    }

    /// The tag called `name` on `page` (exact, case-sensitive match).
    pub fn from_name(page: CodePage, name: &str) -> Option<Tag> {
        page.entries()
            .iter()
            .find(|(_, n)| *n == name)
            .map(|&(token, _)| Tag { page, token })
    }

    /// The tag called `name` on `page`, also accepting the other spellings in [`ALIASES`].
    ///
    /// Used when reading XML written by other tools (libwbxml, older spec revisions); the
    /// encoder and [`Tag::name`] always use the spec spelling.
    pub fn from_name_or_alias(page: CodePage, name: &str) -> Option<Tag> {
        Self::from_name(page, name).or_else(|| {
            ALIASES
                .iter()
                .find(|(p, alias, _)| *p == page && *alias == name)
                .map(|&(page, _, token)| Tag { page, token })
        })
    }

    /// The code page this tag lives on.
    pub fn page(self) -> CodePage {
        self.page
    }

    /// The token without the content bit (0x05–0x3F).
    pub fn token(self) -> u8 {
        self.token
    }

    /// The tag's name as the spec spells it, e.g. `"SyncKey"`.
    pub fn name(self) -> &'static str {
        // Every Tag was checked against the table when it was made.
        self.page.names()[usize::from(self.token)].unwrap_or("?")
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.page.name(), self.name())
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Builds the token-indexed name array of one page at compile time.
const fn index(entries: &[(u8, &'static str)]) -> [Option<&'static str>; 64] {
    let mut out = [None; 64];
    let mut i = 0;
    while i < entries.len() {
        out[entries[i].0 as usize] = Some(entries[i].1);
        i += 1;
    }
    out
}

macro_rules! code_pages {
    ($( $num:literal $page:ident $module:ident { $( $token:literal $name:ident ),* $(,)? } )*) => {
        /// One of the 26 EAS code pages. The discriminant is the page number on the wire.
        #[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        #[repr(u8)]
        pub enum CodePage {
            $( #[doc = concat!("Code page ", stringify!($num), ".")] $page = $num, )*
        }

        impl CodePage {
            /// Every page, in page-number order.
            pub const ALL: &'static [CodePage] = &[$( CodePage::$page, )*];

            /// The page with this number, if EAS defines one.
            pub fn from_number(n: u8) -> Option<CodePage> {
                match n {
                    $( $num => Some(CodePage::$page), )*
                    _ => None,
                }
            }

            /// The page number as written after SWITCH_PAGE.
            pub fn number(self) -> u8 {
                self as u8
            }

            /// The page's name, e.g. `"AirSyncBase"`.
            pub fn name(self) -> &'static str {
                match self {
                    $( CodePage::$page => stringify!($page), )*
                }
            }

            /// `(token, name)` pairs of this page, in token order.
            pub fn entries(self) -> &'static [(u8, &'static str)] {
                match self {
                    $( CodePage::$page => tags::$module::ENTRIES, )*
                }
            }

            fn names(self) -> &'static [Option<&'static str>; 64] {
                match self {
                    $( CodePage::$page => &tags::$module::NAMES, )*
                }
            }
        }

        /// Constants for every tag, one module per code page (`tags::airsync::SyncKey`).
        ///
        /// The constants keep the spec's spelling so handlers read like the spec.
        #[allow(non_upper_case_globals)]
        pub mod tags {
            use super::{CodePage, Tag};
            $(
                #[doc = concat!("Code page ", stringify!($num), ": ", stringify!($page), ".")]
                pub mod $module {
                    use super::{CodePage, Tag};
                    pub(crate) const ENTRIES: &[(u8, &str)] = &[$( ($token, stringify!($name)), )*];
                    pub(crate) static NAMES: [Option<&str>; 64] = super::super::index(ENTRIES);
                    $(
                        #[doc = concat!("`", stringify!($page), ":", stringify!($name), "` (token ", stringify!($token), ")")]
                        pub const $name: Tag = Tag { page: CodePage::$page, token: $token };
                    )*
                }
            )*
        }
    };
}

code_pages! {
    0 AirSync airsync {
        0x05 Sync, 0x06 Responses, 0x07 Add, 0x08 Change, 0x09 Delete, 0x0A Fetch, 0x0B SyncKey,
        0x0C ClientId, 0x0D ServerId, 0x0E Status, 0x0F Collection, 0x10 Class, 0x11 Version,
        0x12 CollectionId, 0x13 GetChanges, 0x14 MoreAvailable, 0x15 WindowSize, 0x16 Commands,
        0x17 Options, 0x18 FilterType, 0x19 Truncation, 0x1A RTFTruncation, 0x1B Conflict,
        0x1C Collections, 0x1D ApplicationData, 0x1E DeletesAsMoves, 0x1F NotifyGUID,
        0x20 Supported, 0x21 SoftDelete, 0x22 MIMESupport, 0x23 MIMETruncation, 0x24 Wait,
        0x25 Limit, 0x26 Partial, 0x27 ConversationMode, 0x28 MaxItems, 0x29 HeartbeatInterval,
    }
    1 Contacts contacts {
        0x05 Anniversary, 0x06 AssistantName, 0x07 AssistantPhoneNumber, 0x08 Birthday,
        0x09 Body, 0x0A BodySize, 0x0B BodyTruncated, 0x0C Business2PhoneNumber,
        0x0D BusinessAddressCity, 0x0E BusinessAddressCountry, 0x0F BusinessAddressPostalCode,
        0x10 BusinessAddressState, 0x11 BusinessAddressStreet, 0x12 BusinessFaxNumber,
        0x13 BusinessPhoneNumber, 0x14 CarPhoneNumber, 0x15 Categories, 0x16 Category,
        0x17 Children, 0x18 Child, 0x19 CompanyName, 0x1A Department, 0x1B Email1Address,
        0x1C Email2Address, 0x1D Email3Address, 0x1E FileAs, 0x1F FirstName,
        0x20 Home2PhoneNumber, 0x21 HomeAddressCity, 0x22 HomeAddressCountry,
        0x23 HomeAddressPostalCode, 0x24 HomeAddressState, 0x25 HomeAddressStreet,
        0x26 HomeFaxNumber, 0x27 HomePhoneNumber, 0x28 JobTitle, 0x29 LastName, 0x2A MiddleName,
        0x2B MobilePhoneNumber, 0x2C OfficeLocation, 0x2D OtherAddressCity,
        0x2E OtherAddressCountry, 0x2F OtherAddressPostalCode, 0x30 OtherAddressState,
        0x31 OtherAddressStreet, 0x32 PagerNumber, 0x33 RadioPhoneNumber, 0x34 Spouse,
        0x35 Suffix, 0x36 Title, 0x37 WebPage, 0x38 YomiCompanyName, 0x39 YomiFirstName,
        0x3A YomiLastName, 0x3B CompressedRTF, 0x3C Picture, 0x3D Alias, 0x3E WeightedRank,
    }
    2 Email email {
        0x05 Attachment, 0x06 Attachments, 0x07 AttName, 0x08 AttSize, 0x09 Att0Id,
        0x0A AttMethod, 0x0B AttRemoved, 0x0C Body, 0x0D BodySize, 0x0E BodyTruncated,
        0x0F DateReceived, 0x10 DisplayName, 0x11 DisplayTo, 0x12 Importance, 0x13 MessageClass,
        0x14 Subject, 0x15 Read, 0x16 To, 0x17 Cc, 0x18 From, 0x19 ReplyTo, 0x1A AllDayEvent,
        0x1B Categories, 0x1C Category, 0x1D DtStamp, 0x1E EndTime, 0x1F InstanceType,
        0x20 BusyStatus, 0x21 Location, 0x22 MeetingRequest, 0x23 Organizer, 0x24 RecurrenceId,
        0x25 Reminder, 0x26 ResponseRequested, 0x27 Recurrences, 0x28 Recurrence, 0x29 Type,
        0x2A Until, 0x2B Occurrences, 0x2C Interval, 0x2D DayOfWeek, 0x2E DayOfMonth,
        0x2F WeekOfMonth, 0x30 MonthOfYear, 0x31 StartTime, 0x32 Sensitivity, 0x33 TimeZone,
        0x34 GlobalObjId, 0x35 ThreadTopic, 0x36 MIMEData, 0x37 MIMETruncated, 0x38 MIMESize,
        0x39 InternetCPID, 0x3A Flag, 0x3B Status, 0x3C ContentClass, 0x3D FlagType,
        0x3E CompleteTime, 0x3F DisallowNewTimeProposal,
    }
    3 AirNotify airnotify {
        0x05 Notify, 0x06 Notification, 0x07 Version, 0x08 LifeTime, 0x09 DeviceInfo,
        0x0A Enable, 0x0B Folder, 0x0C ServerId, 0x0D DeviceAddress, 0x0E ValidCarrierProfiles,
        0x0F CarrierProfile, 0x10 Status, 0x11 Responses, 0x12 Devices, 0x13 Device, 0x14 Id,
        0x15 Expiry, 0x16 NotifyGUID, 0x17 DeviceFriendlyName,
    }
    4 Calendar calendar {
        0x05 Timezone, 0x06 AllDayEvent, 0x07 Attendees, 0x08 Attendee, 0x09 Email, 0x0A Name,
        0x0B Body, 0x0C BodyTruncated, 0x0D BusyStatus, 0x0E Categories, 0x0F Category,
        0x10 CompressedRTF, 0x11 DtStamp, 0x12 EndTime, 0x13 Exception, 0x14 Exceptions,
        0x15 Deleted, 0x16 ExceptionStartTime, 0x17 Location, 0x18 MeetingStatus,
        0x19 OrganizerEmail, 0x1A OrganizerName, 0x1B Recurrence, 0x1C Type, 0x1D Until,
        0x1E Occurrences, 0x1F Interval, 0x20 DayOfWeek, 0x21 DayOfMonth, 0x22 WeekOfMonth,
        0x23 MonthOfYear, 0x24 Reminder, 0x25 Sensitivity, 0x26 Subject, 0x27 StartTime,
        0x28 UID, 0x29 AttendeeStatus, 0x2A AttendeeType, 0x2B Attachment, 0x2C Attachments,
        0x2D AttName, 0x2E AttSize, 0x2F AttOid, 0x30 AttMethod, 0x31 AttRemoved,
        0x32 DisplayName, 0x33 DisallowNewTimeProposal, 0x34 ResponseRequested,
        0x35 AppointmentReplyTime, 0x36 ResponseType, 0x37 CalendarType, 0x38 IsLeapMonth,
        0x39 FirstDayOfWeek, 0x3A OnlineMeetingConfLink, 0x3B OnlineMeetingExternalLink,
        0x3C ClientUid,
    }
    5 Move moveitems {
        0x05 MoveItems, 0x06 Move, 0x07 SrcMsgId, 0x08 SrcFldId, 0x09 DstFldId, 0x0A Response,
        0x0B Status, 0x0C DstMsgId,
    }
    6 GetItemEstimate getitemestimate {
        0x05 GetItemEstimate, 0x06 Version, 0x07 Collections, 0x08 Collection, 0x09 Class,
        0x0A CollectionId, 0x0B DateTime, 0x0C Estimate, 0x0D Response, 0x0E Status,
    }
    7 FolderHierarchy folderhierarchy {
        0x05 Folders, 0x06 Folder, 0x07 DisplayName, 0x08 ServerId, 0x09 ParentId, 0x0A Type,
        0x0B Response, 0x0C Status, 0x0D ContentClass, 0x0E Changes, 0x0F Add, 0x10 Delete,
        0x11 Update, 0x12 SyncKey, 0x13 FolderCreate, 0x14 FolderDelete, 0x15 FolderUpdate,
        0x16 FolderSync, 0x17 Count, 0x18 Version,
    }
    8 MeetingResponse meetingresponse {
        0x05 CalendarId, 0x06 CollectionId, 0x07 MeetingResponse, 0x08 RequestId, 0x09 Request,
        0x0A Result, 0x0B Status, 0x0C UserResponse, 0x0D Version, 0x0E InstanceId,
        0x10 ProposedStartTime, 0x11 ProposedEndTime, 0x12 SendResponse,
    }
    9 Tasks tasks {
        0x05 Body, 0x06 BodySize, 0x07 BodyTruncated, 0x08 Categories, 0x09 Category,
        0x0A Complete, 0x0B DateCompleted, 0x0C DueDate, 0x0D UtcDueDate, 0x0E Importance,
        0x0F Recurrence, 0x10 Type, 0x11 Start, 0x12 Until, 0x13 Occurrences, 0x14 Interval,
        0x15 DayOfMonth, 0x16 DayOfWeek, 0x17 WeekOfMonth, 0x18 MonthOfYear, 0x19 Regenerate,
        0x1A DeadOccur, 0x1B ReminderSet, 0x1C ReminderTime, 0x1D Sensitivity, 0x1E StartDate,
        0x1F UtcStartDate, 0x20 Subject, 0x21 CompressedRTF, 0x22 OrdinalDate,
        0x23 SubOrdinalDate, 0x24 CalendarType, 0x25 IsLeapMonth, 0x26 FirstDayOfWeek,
    }
    10 ResolveRecipients resolverecipients {
        0x05 ResolveRecipients, 0x06 Response, 0x07 Status, 0x08 Type, 0x09 Recipient,
        0x0A DisplayName, 0x0B EmailAddress, 0x0C Certificates, 0x0D Certificate,
        0x0E MiniCertificate, 0x0F Options, 0x10 To, 0x11 CertificateRetrieval,
        0x12 RecipientCount, 0x13 MaxCertificates, 0x14 MaxAmbiguousRecipients,
        0x15 CertificateCount, 0x16 Availability, 0x17 StartTime, 0x18 EndTime,
        0x19 MergedFreeBusy, 0x1A Picture, 0x1B MaxSize, 0x1C Data, 0x1D MaxPictures,
    }
    11 ValidateCert validatecert {
        0x05 ValidateCert, 0x06 Certificates, 0x07 Certificate, 0x08 CertificateChain,
        0x09 CheckCRL, 0x0A Status,
    }
    12 Contacts2 contacts2 {
        0x05 CustomerId, 0x06 GovernmentId, 0x07 IMAddress, 0x08 IMAddress2, 0x09 IMAddress3,
        0x0A ManagerName, 0x0B CompanyMainPhone, 0x0C AccountName, 0x0D NickName, 0x0E MMS,
    }
    13 Ping ping {
        0x05 Ping, 0x06 AutdState, 0x07 Status, 0x08 HeartbeatInterval, 0x09 Folders,
        0x0A Folder, 0x0B Id, 0x0C Class, 0x0D MaxFolders, 0x0E Version,
    }
    14 Provision provision {
        0x05 Provision, 0x06 Policies, 0x07 Policy, 0x08 PolicyType, 0x09 PolicyKey, 0x0A Data,
        0x0B Status, 0x0C RemoteWipe, 0x0D EASProvisionDoc, 0x0E DevicePasswordEnabled,
        0x0F AlphanumericDevicePasswordRequired, 0x10 RequireStorageCardEncryption,
        0x11 PasswordRecoveryEnabled, 0x12 DocumentBrowseEnabled, 0x13 AttachmentsEnabled,
        0x14 MinDevicePasswordLength, 0x15 MaxInactivityTimeDeviceLock,
        0x16 MaxDevicePasswordFailedAttempts, 0x17 MaxAttachmentSize,
        0x18 AllowSimpleDevicePassword, 0x19 DevicePasswordExpiration,
        0x1A DevicePasswordHistory, 0x1B AllowStorageCard, 0x1C AllowCamera,
        0x1D RequireDeviceEncryption, 0x1E AllowUnsignedApplications,
        0x1F AllowUnsignedInstallationPackages, 0x20 MinDevicePasswordComplexCharacters,
        0x21 AllowWiFi, 0x22 AllowTextMessaging, 0x23 AllowPOPIMAPEmail, 0x24 AllowBluetooth,
        0x25 AllowIrDA, 0x26 RequireManualSyncWhenRoaming, 0x27 AllowDesktopSync,
        0x28 MaxCalendarAgeFilter, 0x29 AllowHTMLEmail, 0x2A MaxEmailAgeFilter,
        0x2B MaxEmailBodyTruncationSize, 0x2C MaxEmailHTMLBodyTruncationSize,
        0x2D RequireSignedSMIMEMessages, 0x2E RequireEncryptedSMIMEMessages,
        0x2F RequireSignedSMIMEAlgorithm, 0x30 RequireEncryptionSMIMEAlgorithm,
        0x31 AllowSMIMEEncryptionAlgorithmNegotiation, 0x32 AllowSMIMESoftCerts,
        0x33 AllowBrowser, 0x34 AllowConsumerEmail, 0x35 AllowRemoteDesktop,
        0x36 AllowInternetSharing, 0x37 UnapprovedInROMApplicationList, 0x38 ApplicationName,
        0x39 ApprovedApplicationList, 0x3A Hash, 0x3B AccountOnlyRemoteWipe,
    }
    15 Search search {
        0x05 Search, 0x07 Store, 0x08 Name, 0x09 Query, 0x0A Options, 0x0B Range, 0x0C Status,
        0x0D Response, 0x0E Result, 0x0F Properties, 0x10 Total, 0x11 EqualTo, 0x12 Value,
        0x13 And, 0x14 Or, 0x15 FreeText, 0x17 DeepTraversal, 0x18 LongId, 0x19 RebuildResults,
        0x1A LessThan, 0x1B GreaterThan, 0x1C Schema, 0x1D Supported, 0x1E UserName,
        0x1F Password, 0x20 ConversationId, 0x21 Picture, 0x22 MaxSize, 0x23 MaxPictures,
    }
    16 GAL gal {
        0x05 DisplayName, 0x06 Phone, 0x07 Office, 0x08 Title, 0x09 Company, 0x0A Alias,
        0x0B FirstName, 0x0C LastName, 0x0D HomePhone, 0x0E MobilePhone, 0x0F EmailAddress,
        0x10 Picture, 0x11 Status, 0x12 Data,
    }
    17 AirSyncBase airsyncbase {
        0x05 BodyPreference, 0x06 Type, 0x07 TruncationSize, 0x08 AllOrNone, 0x0A Body,
        0x0B Data, 0x0C EstimatedDataSize, 0x0D Truncated, 0x0E Attachments, 0x0F Attachment,
        0x10 DisplayName, 0x11 FileReference, 0x12 Method, 0x13 ContentId,
        0x14 ContentLocation, 0x15 IsInline, 0x16 NativeBodyType, 0x17 ContentType,
        0x18 Preview, 0x19 BodyPartPreference, 0x1A BodyPart, 0x1B Status, 0x1C Add,
        0x1D Delete, 0x1E ClientId, 0x1F Content, 0x20 Location, 0x21 Annotation, 0x22 Street,
        0x23 City, 0x24 State, 0x25 Country, 0x26 PostalCode, 0x27 Latitude, 0x28 Longitude,
        0x29 Accuracy, 0x2A Altitude, 0x2B AltitudeAccuracy, 0x2C LocationUri, 0x2D InstanceId,
    }
    18 Settings settings {
        0x05 Settings, 0x06 Status, 0x07 Get, 0x08 Set, 0x09 Oof, 0x0A OofState, 0x0B StartTime,
        0x0C EndTime, 0x0D OofMessage, 0x0E AppliesToInternal, 0x0F AppliesToExternalKnown,
        0x10 AppliesToExternalUnknown, 0x11 Enabled, 0x12 ReplyMessage, 0x13 BodyType,
        0x14 DevicePassword, 0x15 Password, 0x16 DeviceInformation, 0x17 Model, 0x18 IMEI,
        0x19 FriendlyName, 0x1A OS, 0x1B OSLanguage, 0x1C PhoneNumber, 0x1D UserInformation,
        0x1E EmailAddresses, 0x1F SMTPAddress, 0x20 UserAgent, 0x21 EnableOutboundSMS,
        0x22 MobileOperator, 0x23 PrimarySmtpAddress, 0x24 Accounts, 0x25 Account,
        0x26 AccountId, 0x27 AccountName, 0x28 UserDisplayName, 0x29 SendDisabled,
        0x2B RightsManagementInformation,
    }
    19 DocumentLibrary documentlibrary {
        0x05 LinkId, 0x06 DisplayName, 0x07 IsFolder, 0x08 CreationDate, 0x09 LastModifiedDate,
        0x0A IsHidden, 0x0B ContentLength, 0x0C ContentType,
    }
    20 ItemOperations itemoperations {
        0x05 ItemOperations, 0x06 Fetch, 0x07 Store, 0x08 Options, 0x09 Range, 0x0A Total,
        0x0B Properties, 0x0C Data, 0x0D Status, 0x0E Response, 0x0F Version, 0x10 Schema,
        0x11 Part, 0x12 EmptyFolderContents, 0x13 DeleteSubFolders, 0x14 UserName,
        0x15 Password, 0x16 Move, 0x17 DstFldId, 0x18 ConversationId, 0x19 MoveAlways,
    }
    21 ComposeMail composemail {
        0x05 SendMail, 0x06 SmartForward, 0x07 SmartReply, 0x08 SaveInSentItems,
        0x09 ReplaceMime, 0x0A Type, 0x0B Source, 0x0C FolderId, 0x0D ItemId, 0x0E LongId, 0x0F InstanceId,
        0x10 Mime, 0x11 ClientId, 0x12 Status, 0x13 AccountId, 0x15 Forwardees, 0x16 Forwardee,
        0x17 ForwardeeName, 0x18 ForwardeeEmail,
    }
    22 Email2 email2 {
        0x05 UmCallerID, 0x06 UmUserNotes, 0x07 UmAttDuration, 0x08 UmAttOrder,
        0x09 ConversationId, 0x0A ConversationIndex, 0x0B LastVerbExecuted,
        0x0C LastVerbExecutionTime, 0x0D ReceivedAsBcc, 0x0E Sender, 0x0F CalendarType,
        0x10 IsLeapMonth, 0x11 AccountId, 0x12 FirstDayOfWeek, 0x13 MeetingMessageType,
        0x15 IsDraft, 0x16 Bcc, 0x17 Send,
    }
    23 Notes notes {
        0x05 Subject, 0x06 MessageClass, 0x07 LastModifiedDate, 0x08 Categories, 0x09 Category,
    }
    24 RightsManagement rightsmanagement {
        0x05 RightsManagementSupport, 0x06 RightsManagementTemplates,
        0x07 RightsManagementTemplate, 0x08 RightsManagementLicense, 0x09 EditAllowed,
        0x0A ReplyAllowed, 0x0B ReplyAllAllowed, 0x0C ForwardAllowed,
        0x0D ModifyRecipientsAllowed, 0x0E ExtractAllowed, 0x0F PrintAllowed,
        0x10 ExportAllowed, 0x11 ProgrammaticAccessAllowed, 0x12 Owner, 0x13 ContentExpiryDate,
        0x14 TemplateID, 0x15 TemplateName, 0x16 TemplateDescription, 0x17 ContentOwner,
        0x18 RemoveRightsManagementDistribution,
    }
    25 Find find {
        0x05 Find, 0x06 SearchId, 0x07 ExecuteSearch, 0x08 MailBoxSearchCriterion, 0x09 Query,
        0x0A Status, 0x0B FreeText, 0x0C Options, 0x0D Range, 0x0E DeepTraversal,
        0x11 Response, 0x12 Result, 0x13 Properties, 0x14 Preview, 0x15 HasAttachments,
        0x16 Total, 0x17 DisplayCc, 0x18 DisplayBcc, 0x19 GalSearchCriterion, 0x20 MaxPictures,
        0x21 MaxSize, 0x22 Picture,
    }
}

/// Other spellings of tags, as `(page, name, token)`: names used by libwbxml 0.11 (`wbxml2xml`),
/// z-push/grommunio and earlier revisions of MS-ASWBXML. Accepted on input only.
pub const ALIASES: &[(CodePage, &str, u8)] = &[
    // libwbxml (and z-push) use short names for the contact address and phone tags.
    (CodePage::Contacts, "AssistantTelephoneNumber", 0x07),
    (CodePage::Contacts, "BusinessCity", 0x0D),
    (CodePage::Contacts, "BusinessCountry", 0x0E),
    (CodePage::Contacts, "BusinessPostalCode", 0x0F),
    (CodePage::Contacts, "BusinessState", 0x10),
    (CodePage::Contacts, "BusinessStreet", 0x11),
    (CodePage::Contacts, "HomeCity", 0x21),
    (CodePage::Contacts, "HomeCountry", 0x22),
    (CodePage::Contacts, "HomePostalCode", 0x23),
    (CodePage::Contacts, "HomeState", 0x24),
    (CodePage::Contacts, "HomeStreet", 0x25),
    (CodePage::Contacts, "OtherCity", 0x2D),
    (CodePage::Contacts, "OtherCountry", 0x2E),
    (CodePage::Contacts, "OtherPostalCode", 0x2F),
    (CodePage::Contacts, "OtherState", 0x30),
    (CodePage::Contacts, "OtherStreet", 0x31),
    // libwbxml spells the 2.5 attachment id with a letter O; the spec with a digit zero.
    (CodePage::Email, "AttOId", 0x09),
    // Earlier spec revisions and libwbxml prefix recurrence children with `Recurrence_`.
    (CodePage::Email, "Recurrence_Type", 0x29),
    (CodePage::Email, "Recurrence_Until", 0x2A),
    (CodePage::Email, "Recurrence_Occurrences", 0x2B),
    (CodePage::Email, "Recurrence_Interval", 0x2C),
    (CodePage::Email, "Recurrence_DayOfWeek", 0x2D),
    (CodePage::Email, "Recurrence_DayOfMonth", 0x2E),
    (CodePage::Email, "Recurrence_WeekOfMonth", 0x2F),
    (CodePage::Email, "Recurrence_MonthOfYear", 0x30),
    // libwbxml and z-push write `Reply-To`.
    (CodePage::Email, "Reply-To", 0x19),
    (CodePage::Email, "DTStamp", 0x1D),
    // z-push and libwbxml call the flag status `FlagStatus`.
    (CodePage::Email, "FlagStatus", 0x3B),
    (CodePage::Calendar, "TimeZone", 0x05),
    (CodePage::Calendar, "Attendee_Email", 0x09),
    (CodePage::Calendar, "Attendee_Name", 0x0A),
    (CodePage::Calendar, "Compressed_RTF", 0x10),
    (CodePage::Calendar, "DTStamp", 0x11),
    (CodePage::Calendar, "Exception_Deleted", 0x15),
    (CodePage::Calendar, "Exception_StartTime", 0x16),
    (CodePage::Calendar, "Organizer_Email", 0x19),
    (CodePage::Calendar, "Organizer_Name", 0x1A),
    (CodePage::Calendar, "Recurrence_Type", 0x1C),
    (CodePage::Calendar, "Recurrence_Until", 0x1D),
    (CodePage::Calendar, "Recurrence_Occurrences", 0x1E),
    (CodePage::Calendar, "Recurrence_Interval", 0x1F),
    (CodePage::Calendar, "Recurrence_DayOfWeek", 0x20),
    (CodePage::Calendar, "Recurrence_DayOfMonth", 0x21),
    (CodePage::Calendar, "Recurrence_WeekOfMonth", 0x22),
    (CodePage::Calendar, "Recurrence_MonthOfYear", 0x23),
    (CodePage::Calendar, "Attendee_Status", 0x29),
    (CodePage::Calendar, "Attendee_Type", 0x2A),
    (CodePage::Tasks, "UTCDueDate", 0x0D),
    (CodePage::Tasks, "UTCStartDate", 0x1F),
    (CodePage::Tasks, "Recurrence_Type", 0x10),
    (CodePage::Tasks, "Recurrence_Start", 0x11),
    (CodePage::Tasks, "Recurrence_Until", 0x12),
    (CodePage::Tasks, "Recurrence_Occurrences", 0x13),
    (CodePage::Tasks, "Recurrence_Interval", 0x14),
    (CodePage::Tasks, "Recurrence_DayOfMonth", 0x15),
    (CodePage::Tasks, "Recurrence_DayOfWeek", 0x16),
    (CodePage::Tasks, "Recurrence_WeekOfMonth", 0x17),
    (CodePage::Tasks, "Recurrence_MonthOfYear", 0x18),
    (CodePage::Tasks, "Recurrence_Regenerate", 0x19),
    (CodePage::Tasks, "Recurrence_DeadOccur", 0x1A),
    // The 12.0 name of the token that later revisions call RequireStorageCardEncryption.
    (CodePage::Provision, "DeviceEncryptionEnabled", 0x10),
    // MS-ASCMD prose and libwbxml write SmtpAddress; the code page table SMTPAddress.
    (CodePage::Settings, "SmtpAddress", 0x1F),
    // libwbxml 0.11 drops the first letters of this name (a typo in its table).
    (CodePage::Settings, "ihsManagementInformation", 0x2B),
    // libwbxml: MIME; the spec: Mime.
    (CodePage::ComposeMail, "MIME", 0x10),
    // grommunio's names for the Forwardee children.
    (CodePage::ComposeMail, "Name", 0x17),
    (CodePage::ComposeMail, "Email", 0x18),
    // libwbxml's names on the RightsManagement page; MS-ASRM's schema says Protection.
    (CodePage::RightsManagement, "RMOwner", 0x12),
    (
        CodePage::RightsManagement,
        "RemoveRightsManagementProtection",
        0x18,
    ),
];

impl CodePage {
    /// The namespace URI used by the readable XML form, e.g. `"AirSync:"`.
    pub fn namespace(self) -> String {
        format!("{}:", self.name())
    }

    /// The page whose readable-XML namespace is `ns`.
    ///
    /// Lenient on purpose: case is ignored and the trailing colon is optional, so `airsync`,
    /// `AirSync:` and libwbxml's spelling all resolve; the historical `POOM*` names resolve too.
    pub fn from_namespace(ns: &str) -> Option<CodePage> {
        let ns = ns.strip_suffix(':').unwrap_or(ns);
        let alias = match ns.to_ascii_uppercase().as_str() {
            "POOMCONTACTS" => Some(CodePage::Contacts),
            "POOMMAIL" => Some(CodePage::Email),
            "POOMCAL" => Some(CodePage::Calendar),
            "POOMTASKS" => Some(CodePage::Tasks),
            "POOMCONTACTS2" => Some(CodePage::Contacts2),
            "POOMMAIL2" => Some(CodePage::Email2),
            _ => None,
        };
        alias.or_else(|| {
            CodePage::ALL
                .iter()
                .copied()
                .find(|p| p.name().eq_ignore_ascii_case(ns))
        })
    }

    /// The prefix the readable XML form gives this page when it is not the default namespace.
    pub fn prefix(self) -> String {
        self.name().to_ascii_lowercase()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn every_page_is_numbered_in_order_and_names_are_unique() {
        for (i, page) in CodePage::ALL.iter().enumerate() {
            assert_eq!(usize::from(page.number()), i);
            let entries = page.entries();
            for (j, (token, name)) in entries.iter().enumerate() {
                assert!((0x05..=0x3F).contains(token), "{page:?} token {token:#x}");
                assert!(
                    entries[j + 1..].iter().all(|(t, n)| t > token && n != name),
                    "{page:?}: {name} out of order or repeated"
                );
                let tag = Tag::from_token(*page, *token).unwrap();
                assert_eq!(tag.name(), *name);
                assert_eq!(Tag::from_name(*page, name), Some(tag));
            }
        }
        assert_eq!(CodePage::ALL.len(), 26);
    }

    #[test]
    fn aliases_name_real_tokens_and_never_shadow_spec_names() {
        for &(page, alias, token) in ALIASES {
            assert!(Tag::from_token(page, token).is_some(), "{alias}");
            assert_eq!(Tag::from_name(page, alias), None, "{alias} is a spec name");
            assert_eq!(Tag::from_name_or_alias(page, alias).unwrap().token(), token);
        }
    }

    #[test]
    fn constants_match_the_table() {
        assert_eq!(tags::airsync::Sync.token(), 0x05);
        assert_eq!(tags::airsyncbase::Body.token(), 0x0A);
        assert_eq!(tags::find::Picture.token(), 0x22);
        assert_eq!(tags::email2::ConversationId.page(), CodePage::Email2);
        assert_eq!(Tag::from_token(CodePage::AirSync, 0x04), None);
        assert_eq!(Tag::from_token(CodePage::AirSyncBase, 0x09), None);
        assert_eq!(Tag::from_token(CodePage::Find, 0x1A), None);
    }

    #[test]
    fn namespaces_resolve_leniently() {
        assert_eq!(
            CodePage::from_namespace("AirSync:"),
            Some(CodePage::AirSync)
        );
        assert_eq!(
            CodePage::from_namespace("airsyncbase"),
            Some(CodePage::AirSyncBase)
        );
        assert_eq!(CodePage::from_namespace("POOMMAIL:"), Some(CodePage::Email));
        assert_eq!(CodePage::from_namespace("Nope:"), None);
    }
}
