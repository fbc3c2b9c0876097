//! EAS protocol versions and command names: the vocabulary of the request line.

use std::fmt;

/// A protocol version the gateway speaks. Clients pick the highest one we advertise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    V12_1,
    V14_0,
    V14_1,
    V16_0,
    V16_1,
}

impl ProtocolVersion {
    /// Every supported version, oldest first (the order of `MS-ASProtocolVersions`).
    pub const ALL: [ProtocolVersion; 5] = [
        ProtocolVersion::V12_1,
        ProtocolVersion::V14_0,
        ProtocolVersion::V14_1,
        ProtocolVersion::V16_0,
        ProtocolVersion::V16_1,
    ];

    /// The header/XML spelling, e.g. `"14.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V12_1 => "12.1",
            ProtocolVersion::V14_0 => "14.0",
            ProtocolVersion::V14_1 => "14.1",
            ProtocolVersion::V16_0 => "16.0",
            ProtocolVersion::V16_1 => "16.1",
        }
    }

    /// Parses `"14.1"` (the header form).
    pub fn parse(s: &str) -> Option<ProtocolVersion> {
        ProtocolVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == s.trim())
    }

    /// The base64 query form stores the version as an integer ×10 (141 for 14.1).
    pub fn from_byte(b: u8) -> Option<ProtocolVersion> {
        match b {
            121 => Some(ProtocolVersion::V12_1),
            140 => Some(ProtocolVersion::V14_0),
            141 => Some(ProtocolVersion::V14_1),
            160 => Some(ProtocolVersion::V16_0),
            161 => Some(ProtocolVersion::V16_1),
            _ => None,
        }
    }

    /// 14.0 and later carry errors such as "not provisioned" as a Status in the body; 12.x only
    /// understands HTTP status codes.
    pub fn has_body_status(self) -> bool {
        self >= ProtocolVersion::V14_0
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! commands {
    ($( $variant:ident = $code:literal ),* $(,)?) => {
        /// An EAS command as named in the `Cmd` query parameter, with its base64-query code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Command { $( $variant, )* }

        impl Command {
            /// Every command EAS defines.
            pub const ALL: &'static [Command] = &[$( Command::$variant, )*];

            /// The `Cmd=` spelling.
            pub fn name(self) -> &'static str {
                match self { $( Command::$variant => stringify!($variant), )* }
            }

            /// The command code of the base64 query form.
            pub fn code(self) -> u8 {
                match self { $( Command::$variant => $code, )* }
            }

            /// From the base64 query form's command code.
            pub fn from_code(code: u8) -> Option<Command> {
                match code { $( $code => Some(Command::$variant), )* _ => None }
            }

            /// From `Cmd=`, case-insensitively (clients agree on the spelling, proxies don't
            /// always preserve it).
            pub fn from_name(name: &str) -> Option<Command> {
                Command::ALL.iter().copied().find(|c| c.name().eq_ignore_ascii_case(name))
            }
        }
    };
}

commands! {
    Sync = 0, SendMail = 1, SmartForward = 2, SmartReply = 3, GetAttachment = 4,
    GetHierarchy = 5, CreateCollection = 6, DeleteCollection = 7, MoveCollection = 8,
    FolderSync = 9, FolderCreate = 10, FolderDelete = 11, FolderUpdate = 12, MoveItems = 13,
    GetItemEstimate = 14, MeetingResponse = 15, Search = 16, Settings = 17, Ping = 18,
    ItemOperations = 19, Provision = 20, ResolveRecipients = 21, ValidateCert = 22, Find = 23,
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn versions_and_commands_round_trip() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::parse(v.as_str()), Some(v));
        }
        assert_eq!(
            ProtocolVersion::from_byte(141),
            Some(ProtocolVersion::V14_1)
        );
        assert_eq!(ProtocolVersion::parse("2.5"), None);
        for &c in Command::ALL {
            assert_eq!(Command::from_code(c.code()), Some(c));
            assert_eq!(Command::from_name(&c.name().to_lowercase()), Some(c));
        }
        assert_eq!(Command::from_code(24), None);
    }
}
