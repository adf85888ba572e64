//! The one place that ties a message type to its kind byte, channel and direction. Both the
//! stream [`Message`](crate::Message) and the [`Datagram`](crate::Datagram) enums are declared
//! through [`kinds!`], so codec dispatch, kind tables and `From` impls can never disagree.

/// Declares a message enum (one variant per struct of the same name), its kind enum and the
/// archive/unarchive/validate dispatch. Each variant has exactly one doc line: it becomes
/// [`Kind::summary`](crate::Kind::summary), used by SPEC tables and golden vectors.
macro_rules! kinds {
    (
        $(#[$emeta:meta])*
        pub enum $Enum:ident;
        $(#[$kmeta:meta])*
        pub enum $Kind:ident;
        $( #[doc = $doc:literal] $code:literal => $Var:ident ($chan:ident, $dir:ident), )*
    ) => {
        $(#[$emeta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
        #[non_exhaustive]
        pub enum $Enum {
            $( #[doc = $doc] $Var($Var), )*
        }

        $(#[$kmeta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum $Kind {
            $( #[doc = $doc] $Var = $code, )*
        }

        impl $Kind {
            /// Every kind, in code order.
            pub const ALL: &'static [Self] = &[$(Self::$Var),*];

            /// The kind byte on the wire.
            pub const fn to_u8(self) -> u8 {
                self as u8
            }

            /// The kind for a wire byte, or `None` if this version does not define it.
            pub const fn from_u8(byte: u8) -> Option<Self> {
                match byte {
                    $( $code => Some(Self::$Var), )*
                    _ => None,
                }
            }

            /// The kind's name as SPEC.md spells it.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$Var => stringify!($Var), )*
                }
            }

            /// One line on what the kind is for (its doc comment).
            pub const fn summary(self) -> &'static str {
                match self {
                    $( Self::$Var => $doc.trim_ascii_start(), )*
                }
            }

            /// The channel this kind travels on.
            pub const fn channel(self) -> $crate::message::Channel {
                match self {
                    $( Self::$Var => $crate::message::Channel::$chan, )*
                }
            }

            /// Who sends this kind.
            pub const fn direction(self) -> $crate::message::Direction {
                match self {
                    $( Self::$Var => $crate::message::Direction::$dir, )*
                }
            }
        }

        impl std::fmt::Display for $Kind {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{} (0x{:02x})", self.name(), self.to_u8())
            }
        }

        impl $Enum {
            /// This message's kind.
            pub const fn kind(&self) -> $Kind {
                match self {
                    $( Self::$Var(_) => $Kind::$Var, )*
                }
            }

            /// Checks every field against the protocol limits.
            pub fn validate(&self) -> Result<(), $crate::Error> {
                use $crate::validate::Validate as _;
                match self {
                    $( Self::$Var(m) => m.validate(), )*
                }
            }

            /// The rkyv archive of the message body (no kind byte).
            fn archive(&self) -> Result<rkyv::util::AlignedVec, $crate::Error> {
                let kind = self.kind().name();
                match self {
                    $( Self::$Var(m) => rkyv::to_bytes::<rkyv::rancor::Error>(m), )*
                }
                .map_err(|source| $crate::Error::Malformed { kind, source })
            }

            /// Validates `body` (which must be 16-byte aligned) as the archive of `kind` and
            /// deserialises it. Limits are not checked here.
            fn unarchive(kind: $Kind, body: &[u8]) -> Result<Self, $crate::Error> {
                match kind {
                    $( $Kind::$Var => rkyv::from_bytes::<$Var, rkyv::rancor::Error>(body).map(Self::$Var), )*
                }
                .map_err(|source| $crate::Error::Malformed { kind: kind.name(), source })
            }
        }

        $(
            impl From<$Var> for $Enum {
                fn from(m: $Var) -> Self {
                    Self::$Var(m)
                }
            }
        )*
    };
}
