//! Internal macros.

/// Declares a closed, lowercase-named enum with `ALL`, `as_str`, `Display` and `FromStr`.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal, $expected:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $str:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $str)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name used on the wire, in config and in derived names.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $str, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::error::ModelError;
            fn from_str(s: &str) -> Result<Self, $crate::error::ModelError> {
                match s {
                    $( $str => Ok($name::$variant), )+
                    _ => Err($crate::error::ModelError::UnknownName {
                        what: $what,
                        input: $crate::error::quote_input(s),
                        expected: $expected,
                    }),
                }
            }
        }
    };
}
