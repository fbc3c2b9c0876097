//! Every `Status` value the gateway sends, one enum per command family.
//!
//! Each command family numbers its statuses itself: "server error" is 5 in Sync, 6 in
//! FolderSync, 8 in Ping and 3 in Search, and 1 means success everywhere except MoveItems
//! (where it is "invalid source" and success is 3). A value therefore only means something
//! together with its enum, and the enums keep the families apart. The codes 101–177 are
//! MS-ASCMD's common statuses (section 2.2.2): a family that answers one of them has it as a
//! variant of its own, and [`Common`] holds those any command may get (the provisioning
//! gate, the device limit).
//!
//! Variants are documented with their MS-ASCMD (or, for Provision, MS-ASPROV) meaning; only
//! the statuses the gateway actually sends exist here. [`StatusCode`] is what every enum
//! offers: the number, and the same number as the text of a `Status` element.

use std::fmt;

/// A status of any family: its number on the wire.
pub trait StatusCode: Copy {
    /// The value as sent.
    fn code(self) -> u32;
    /// The value as the text of a `Status` element (`"1"`, `"142"`, …).
    fn as_str(self) -> &'static str;
}

/// Declares status enums: `#[repr(u32)]` with explicit codes, `code()`, `as_str()` (the code
/// as a static string, so writing one allocates nothing), [`StatusCode`] and `Display`.
macro_rules! statuses {
    ($(
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )+
        }
    )+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $code, )+
        }

        impl $name {
            /// Every variant (for tests over the whole family).
            #[cfg(test)]
            const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as sent.
            pub const fn code(self) -> u32 {
                self as u32
            }

            /// The value as the text of a `Status` element.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => stringify!($code), )+
                }
            }
        }

        impl StatusCode for $name {
            fn code(self) -> u32 {
                $name::code(self)
            }
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    )+};
}

statuses! {
    /// MS-ASCMD common statuses (section 2.2.2) that any command may be answered with instead
    /// of running: the provisioning gate and the per-user device limit. Sent in the command's
    /// top-level Status to 14.0+ devices; 12.x gets an HTTP status instead.
    pub enum Common {
        /// DeviceIsBlockedForThisUser: an administrator blocked this device.
        DeviceIsBlockedForThisUser = 129,
        /// DeviceNotProvisioned: the device must run Provision before anything else.
        DeviceNotProvisioned = 142,
        /// PolicyRefresh: the policy changed since the device provisioned; provision again.
        PolicyRefresh = 143,
        /// InvalidPolicyKey: the policy key presented is not the current one; provision again.
        InvalidPolicyKey = 144,
        /// MaximumDevicesReached: the user already has as many device partnerships as allowed.
        MaximumDevicesReached = 177,
    }

    /// Status (Sync), MS-ASCMD 2.2.3.177.17: of the request (top level), of a collection, or of
    /// one Add, Change, Delete or Fetch in Responses.
    pub enum SyncStatus {
        /// Success.
        Success = 1,
        /// Invalid synchronization key: the client starts the collection over with SyncKey 0.
        InvalidSyncKey = 3,
        /// Protocol error: the request does not follow the protocol.
        ProtocolError = 4,
        /// Server error: a transient failure; the client retries.
        ServerError = 5,
        /// Error in client/server conversion: the item the client sent was not accepted.
        ConversionError = 6,
        /// Object not found: the item of a Change, Delete or Fetch does not exist.
        ObjectNotFound = 8,
        /// The folder hierarchy has changed (the collection is unknown): run FolderSync.
        FolderHierarchyChanged = 12,
        /// The request is not complete: an empty or partial Sync with no earlier request cached.
        IncompleteRequest = 13,
        /// Invalid Wait or HeartbeatInterval value; `Limit` carries the allowed bound.
        InvalidWaitOrHeartbeat = 14,
    }

    /// Status (FolderSync), MS-ASCMD 2.2.3.177.5, and Status (FolderCreate), (FolderUpdate)
    /// and (FolderDelete): the hierarchy commands share one numbering.
    pub enum FolderStatus {
        /// Success.
        Success = 1,
        /// A folder with that name already exists (FolderCreate, FolderUpdate).
        AlreadyExists = 2,
        /// The folder is a special system folder and cannot be changed or deleted (FolderUpdate,
        /// FolderDelete); for FolderCreate, the parent is one.
        SpecialFolder = 3,
        /// The folder does not exist (FolderUpdate, FolderDelete).
        NotFound = 4,
        /// The parent folder does not exist (FolderCreate, FolderUpdate).
        ParentNotFound = 5,
        /// An error occurred on the server.
        ServerError = 6,
        /// Synchronization key mismatch or invalid: the client runs FolderSync with key 0.
        InvalidSyncKey = 9,
        /// Incorrectly formatted request.
        Malformed = 10,
    }

    /// Status (Ping), MS-ASCMD.
    pub enum PingStatus {
        /// The heartbeat interval expired before any changes occurred.
        NoChanges = 1,
        /// Changes occurred in at least one of the monitored folders (listed in `Folders`).
        Changes = 2,
        /// The request omitted required parameters and none are cached: send them all.
        MissingParameters = 3,
        /// Syntax error in the Ping request.
        SyntaxError = 4,
        /// The heartbeat interval is outside the allowed range (`HeartbeatInterval` holds it).
        HeartbeatOutOfRange = 5,
        /// More folders than allowed to monitor (`MaxFolders` holds the limit).
        TooManyFolders = 6,
        /// Folder hierarchy sync required: run FolderSync.
        FolderSyncRequired = 7,
        /// An error occurred on the server; the client retries.
        ServerError = 8,
    }

    /// Status (Provision), MS-ASPROV 2.2.2.54.2: the top-level status of a Provision response
    /// (also of the answer to a remote-wipe acknowledgement).
    pub enum ProvisionStatus {
        /// Success.
        Success = 1,
        /// Protocol error: the request is not a Provision the server can read.
        ProtocolError = 2,
    }

    /// Status (Policy), MS-ASPROV 2.2.2.54.1: the status of the one Policy in a Provision
    /// response.
    pub enum PolicyStatus {
        /// Success.
        Success = 1,
        /// Unknown PolicyType value.
        UnknownPolicyType = 3,
        /// The client is acknowledging the wrong policy key.
        WrongPolicyKey = 5,
    }

    /// Status (ItemOperations), MS-ASCMD 2.2.3.177.8: of the request, and of each Fetch,
    /// EmptyFolderContents and Move.
    pub enum ItemOperationsStatus {
        /// Success.
        Success = 1,
        /// Protocol error: protocol violation or XML validation error.
        ProtocolError = 2,
        /// The object was not found or access denied.
        NotFound = 6,
        /// The byte range is invalid or too large.
        InvalidRange = 8,
        /// The store is unknown or unsupported.
        UnknownStore = 9,
        /// The requested data size is too large.
        DataTooLarge = 11,
        /// The attachment or attachment ID (FileReference) is invalid.
        AttachmentInvalid = 15,
        /// Action not supported (ItemOperations' own meaning of 156, for a Move).
        ActionNotSupported = 156,
    }

    /// Status (Search), MS-ASCMD 2.2.3.177.13: of the request (1 or 3 at the top level) and of
    /// the Store searched.
    pub enum SearchStatus {
        /// Success.
        Success = 1,
        /// The request was invalid: one or more search parameters are invalid.
        InvalidRequest = 2,
        /// An error occurred on the server.
        ServerError = 3,
        /// The query was too complex.
        QueryTooComplex = 8,
        /// The search timed out.
        TimedOut = 10,
        /// The folder hierarchy is out of date: run FolderSync.
        FolderSyncRequired = 11,
    }

    /// Status (Find), MS-ASCMD 2.2.3.177.2: of the request (Find element) and of the search
    /// (Response element).
    pub enum FindStatus {
        /// Success.
        Success = 1,
        /// The request was invalid: the search failed to validate.
        InvalidRequest = 2,
        /// FolderSync required: the folder hierarchy is out of date.
        FolderSyncRequired = 3,
        /// StartWithRangeZero: the requested Range does not begin with 0.
        StartWithRangeZero = 4,
        /// Common status ServerErrorRetryLater: a transient server failure; retry later.
        ServerErrorRetryLater = 111,
    }

    /// Status (MoveItems), MS-ASCMD 2.2.3.177.10: of each Move. Success is 3, not 1.
    pub enum MoveItemsStatus {
        /// Invalid source collection ID or invalid source item ID.
        InvalidSource = 1,
        /// Invalid destination collection ID.
        InvalidDestination = 2,
        /// Success.
        Success = 3,
        /// Source and destination collection IDs are the same.
        SameFolder = 4,
        /// The move failed (in MS-ASCMD: more than one item at a time, or an item was locked).
        Failed = 5,
    }

    /// Status (GetItemEstimate), MS-ASCMD: of each collection's Response.
    pub enum GetItemEstimateStatus {
        /// Success.
        Success = 1,
        /// A collection was invalid or one of the specified collection IDs was invalid.
        InvalidCollection = 2,
        /// The synchronization state has not been primed (SyncKey 0: run Sync first).
        NotPrimed = 3,
        /// The specified synchronization key was invalid.
        InvalidSyncKey = 4,
    }

    /// Status (Settings), MS-ASCMD 2.2.3.177.15: of the request and of each Oof,
    /// DevicePassword, DeviceInformation, UserInformation and RightsManagementInformation block
    /// (DeviceInformation inside Provision too).
    pub enum SettingsStatus {
        /// Success.
        Success = 1,
        /// Protocol error.
        ProtocolError = 2,
        /// Access denied (the mail server refused the user's log-in).
        AccessDenied = 3,
        /// Server unavailable (a backend is down; retry later).
        ServerUnavailable = 4,
        /// Invalid arguments.
        InvalidArguments = 5,
        /// Conflicting arguments.
        ConflictingArguments = 6,
        /// Denied by policy.
        DeniedByPolicy = 7,
    }

    /// Status (SendMail), (SmartReply) and (SmartForward), MS-ASCMD: these commands answer
    /// with MS-ASCMD's common statuses (section 2.2.2) only.
    pub enum ComposeMailStatus {
        /// InvalidMIME: the MIME content is not a valid message.
        InvalidMime = 107,
        /// ServerError: a failure on the server that retrying will not fix.
        ServerError = 110,
        /// ServerErrorRetryLater: a transient server failure; retry later.
        ServerErrorRetryLater = 111,
        /// MailboxQuotaExceeded: the mailbox is full.
        MailboxQuotaExceeded = 113,
        /// SendQuotaExceeded: the message exceeds what the user may send.
        SendQuotaExceeded = 115,
        /// MessagePreviouslySent: a message with this ClientId was already sent.
        MessagePreviouslySent = 118,
        /// MessageHasNoRecipient: the message names no recipient.
        MessageHasNoRecipient = 119,
        /// MailSubmissionFailed: the submission server did not take the message.
        MailSubmissionFailed = 120,
        /// ItemNotFound: the item a SmartReply or SmartForward refers to does not exist.
        ItemNotFound = 150,
    }

    /// Status (MeetingResponse), MS-ASCMD 2.2.3.177.9: of each Result.
    pub enum MeetingResponseStatus {
        /// Success.
        Success = 1,
        /// Invalid meeting request: not a meeting this user can answer (unknown item, no
        /// calendar part, a cancellation, the user's own meeting, a bad UserResponse or
        /// InstanceId). Not transient.
        InvalidMeetingRequest = 2,
        /// An error occurred on the server mailbox: the mail, calendar or submission server
        /// is down or failing for now. Transient: the phone retries.
        MailboxError = 3,
    }

    /// Status (ResolveRecipients), MS-ASCMD: of the request, of each Response (one per `To`),
    /// of Availability and of Certificates; one numbering for all of them.
    pub enum ResolveRecipientsStatus {
        /// Success: the request ran; a Response's recipient resolved to one entry; the
        /// Availability could be answered.
        Success = 1,
        /// The recipient was ambiguous; the suggestions are all listed.
        Ambiguous = 2,
        /// The recipient was ambiguous; only part of the suggestions are listed.
        AmbiguousPartial = 3,
        /// The recipient was not resolved.
        NotResolved = 4,
        /// Protocol error: the request is malformed.
        ProtocolError = 5,
        /// An error occurred on the server.
        ServerError = 6,
        /// The recipient has no valid S/MIME certificate (Certificates).
        NoValidCertificate = 7,
        /// Availability: the free/busy data could not be retrieved for now (the calendar
        /// server is down or slow); the client asks again.
        FreeBusyRetry = 162,
        /// Availability: free/busy data could not be retrieved for this recipient (their
        /// calendars are not readable on the user's calendar server).
        NoFreeBusyData = 163,
    }

    /// Status of a contact photo (gal:Picture in Search and Find, Picture in
    /// ResolveRecipients): success or one of MS-ASCMD's common statuses 173–175.
    pub enum PictureStatus {
        /// Success: the photo is in `Data`.
        Success = 1,
        /// NoPicture: the contact has no photo.
        NoPicture = 173,
        /// PictureTooLarge: the photo is larger than the request's MaxSize.
        PictureTooLarge = 174,
        /// PictureLimitReached: the response already holds the request's MaxPictures photos.
        PictureLimitReached = 175,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn text_is_code<S: StatusCode + fmt::Display + fmt::Debug>(all: &[S]) {
        for s in all {
            assert_eq!(s.as_str().parse::<u32>().ok(), Some(s.code()), "{s:?}");
            assert_eq!(s.to_string(), s.as_str());
        }
    }

    #[test]
    fn every_status_reads_as_its_own_number() {
        text_is_code(Common::ALL);
        text_is_code(SyncStatus::ALL);
        text_is_code(FolderStatus::ALL);
        text_is_code(PingStatus::ALL);
        text_is_code(ProvisionStatus::ALL);
        text_is_code(PolicyStatus::ALL);
        text_is_code(ItemOperationsStatus::ALL);
        text_is_code(SearchStatus::ALL);
        text_is_code(FindStatus::ALL);
        text_is_code(MoveItemsStatus::ALL);
        text_is_code(GetItemEstimateStatus::ALL);
        text_is_code(SettingsStatus::ALL);
        text_is_code(ComposeMailStatus::ALL);
        text_is_code(ResolveRecipientsStatus::ALL);
        text_is_code(MeetingResponseStatus::ALL);
        text_is_code(PictureStatus::ALL);
    }

    #[test]
    fn families_number_alike_things_differently() {
        // The reason for one enum per family: the same meaning, different numbers.
        assert_eq!(SyncStatus::ServerError.code(), 5);
        assert_eq!(FolderStatus::ServerError.code(), 6);
        assert_eq!(PingStatus::ServerError.code(), 8);
        assert_eq!(SearchStatus::ServerError.code(), 3);
        assert_eq!(ComposeMailStatus::ServerError.code(), 110);
        assert_eq!(MoveItemsStatus::Success.code(), 3);
    }
}
