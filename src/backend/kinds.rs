//! EAS folder types (MS-ASCMD 2.2.3.186.3, FolderSync `Type`): which class of items a
//! collection holds and whether it is one of the defaults. Here rather than in `eas` because
//! the stores decide by them (a draft is added only to Drafts, a delete becomes a move only
//! outside the wastebasket) and build their folder lists with them.

pub const USER_GENERIC: u8 = 1;
pub const INBOX: u8 = 2;
pub const DRAFTS: u8 = 3;
pub const DELETED_ITEMS: u8 = 4;
pub const SENT_ITEMS: u8 = 5;
pub const OUTBOX: u8 = 6;
pub const TASKS: u8 = 7;
pub const CALENDAR: u8 = 8;
pub const CONTACTS: u8 = 9;
pub const NOTES: u8 = 10;
pub const JOURNAL: u8 = 11;
pub const USER_MAIL: u8 = 12;
pub const USER_CALENDAR: u8 = 13;
pub const USER_CONTACTS: u8 = 14;
pub const USER_TASKS: u8 = 15;

/// The class of items a folder type holds: which store the Sync engine runs a collection on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Email,
    Contacts,
    Calendar,
    Tasks,
    Notes,
}

impl Class {
    pub fn of(kind: u8) -> Class {
        match kind {
            CONTACTS | USER_CONTACTS => Class::Contacts,
            CALENDAR | USER_CALENDAR => Class::Calendar,
            TASKS | USER_TASKS => Class::Tasks,
            NOTES | JOURNAL => Class::Notes,
            _ => Class::Email,
        }
    }
}
