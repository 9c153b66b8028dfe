//! What an owner answers for a command: its result as a wire [`Value`] (each command's typed
//! output converts through [`Reply`]) or the engine's refusal as a [`WireCommandError`].

use bincode::{Decode, Encode};
use bytes::Bytes;
use slotkv_engine::{CommandError, SetOutcome};

use crate::command::static_name;

/// A successful command's result on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum Value {
    /// No value (MSET, SETEX).
    Unit,
    /// A value or nil.
    Bulk(Option<Vec<u8>>),
    /// An integer.
    Integer(i64),
    /// A yes/no answer.
    Bool(bool),
    /// SET's outcome: written, previous value.
    SetOutcome(bool, Option<Vec<u8>>),
    /// MGET's values.
    Array(Vec<Option<Vec<u8>>>),
}

/// A command's typed output and its wire form. `from_value` is `None` when the answer does
/// not have the output's shape (a malformed answer, never a default).
pub(crate) trait Reply: Sized {
    /// The wire form.
    fn into_value(self) -> Value;
    /// Back from the wire form.
    fn from_value(value: Value) -> Option<Self>;
}

impl Reply for () {
    fn into_value(self) -> Value {
        Value::Unit
    }

    fn from_value(value: Value) -> Option<Self> {
        matches!(value, Value::Unit).then_some(())
    }
}

impl Reply for bool {
    fn into_value(self) -> Value {
        Value::Bool(self)
    }

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Bool(answer) => Some(answer),
            _ => None,
        }
    }
}

impl Reply for i64 {
    fn into_value(self) -> Value {
        Value::Integer(self)
    }

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Integer(number) => Some(number),
            _ => None,
        }
    }
}

impl Reply for usize {
    fn into_value(self) -> Value {
        Value::Integer(i64::try_from(self).unwrap_or(i64::MAX))
    }

    fn from_value(value: Value) -> Option<Self> {
        i64::from_value(value).and_then(|number| usize::try_from(number).ok())
    }
}

impl Reply for Option<Bytes> {
    fn into_value(self) -> Value {
        Value::Bulk(self.map(|bytes| bytes.to_vec()))
    }

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Bulk(value) => Some(value.map(Bytes::from)),
            _ => None,
        }
    }
}

impl Reply for Bytes {
    fn into_value(self) -> Value {
        Some(self).into_value()
    }

    fn from_value(value: Value) -> Option<Self> {
        Option::<Bytes>::from_value(value).flatten()
    }
}

impl Reply for SetOutcome {
    fn into_value(self) -> Value {
        Value::SetOutcome(self.written, self.previous.map(|bytes| bytes.to_vec()))
    }

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::SetOutcome(written, previous) => Some(SetOutcome {
                written,
                previous: previous.map(Bytes::from),
            }),
            _ => None,
        }
    }
}

impl Reply for Vec<Option<Bytes>> {
    fn into_value(self) -> Value {
        Value::Array(
            self.into_iter()
                .map(|value| value.map(|bytes| bytes.to_vec()))
                .collect(),
        )
    }

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Array(values) => Some(
                values
                    .into_iter()
                    .map(|value| value.map(Bytes::from))
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// An engine error on the wire: one variant per [`CommandError`] variant (an unknown index is a
/// decode error); a command name travels as text and maps back through the registry.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum WireCommandError {
    /// [`CommandError::NotAnInteger`].
    NotAnInteger,
    /// [`CommandError::IncrementOverflow`].
    IncrementOverflow,
    /// [`CommandError::DecrementOverflow`].
    DecrementOverflow,
    /// [`CommandError::InvalidExpireTime`].
    InvalidExpireTime(String),
    /// [`CommandError::Syntax`].
    Syntax,
    /// [`CommandError::WrongArity`].
    WrongArity(String),
    /// [`CommandError::OutOfMemory`].
    OutOfMemory,
    /// [`CommandError::CrossSlot`].
    CrossSlot,
    /// [`CommandError::InvalidSlot`].
    InvalidSlot,
    /// [`CommandError::KeyTooLarge`].
    KeyTooLarge,
    /// [`CommandError::ValueTooLarge`].
    ValueTooLarge,
    /// [`CommandError::OffsetOutOfRange`].
    OffsetOutOfRange,
    /// [`CommandError::NotAFloat`].
    NotAFloat,
    /// [`CommandError::NanOrInfinity`].
    NanOrInfinity,
    /// [`CommandError::SameObject`].
    SameObject,
}

impl From<&CommandError> for WireCommandError {
    fn from(error: &CommandError) -> Self {
        match error {
            CommandError::NotAnInteger => Self::NotAnInteger,
            CommandError::IncrementOverflow => Self::IncrementOverflow,
            CommandError::DecrementOverflow => Self::DecrementOverflow,
            CommandError::InvalidExpireTime { command } => {
                Self::InvalidExpireTime(command.to_string())
            }
            CommandError::Syntax => Self::Syntax,
            CommandError::WrongArity { command } => Self::WrongArity(command.to_string()),
            CommandError::OutOfMemory => Self::OutOfMemory,
            CommandError::CrossSlot => Self::CrossSlot,
            CommandError::InvalidSlot => Self::InvalidSlot,
            CommandError::KeyTooLarge => Self::KeyTooLarge,
            CommandError::ValueTooLarge => Self::ValueTooLarge,
            CommandError::OffsetOutOfRange => Self::OffsetOutOfRange,
            CommandError::NotAFloat => Self::NotAFloat,
            CommandError::NanOrInfinity => Self::NanOrInfinity,
            CommandError::SameObject => Self::SameObject,
        }
    }
}

impl WireCommandError {
    /// The engine error, or `None` when it names a command the registry does not know.
    pub(crate) fn to_engine(&self) -> Option<CommandError> {
        Some(match self {
            Self::NotAnInteger => CommandError::NotAnInteger,
            Self::IncrementOverflow => CommandError::IncrementOverflow,
            Self::DecrementOverflow => CommandError::DecrementOverflow,
            Self::InvalidExpireTime(name) => CommandError::InvalidExpireTime {
                command: static_name(name)?,
            },
            Self::Syntax => CommandError::Syntax,
            Self::WrongArity(name) => CommandError::WrongArity {
                command: static_name(name)?,
            },
            Self::OutOfMemory => CommandError::OutOfMemory,
            Self::CrossSlot => CommandError::CrossSlot,
            Self::InvalidSlot => CommandError::InvalidSlot,
            Self::KeyTooLarge => CommandError::KeyTooLarge,
            Self::ValueTooLarge => CommandError::ValueTooLarge,
            Self::OffsetOutOfRange => CommandError::OffsetOutOfRange,
            Self::NotAFloat => CommandError::NotAFloat,
            Self::NanOrInfinity => CommandError::NanOrInfinity,
            Self::SameObject => CommandError::SameObject,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_survive_the_wire() {
        for error in [
            CommandError::InvalidExpireTime { command: "set" },
            CommandError::InvalidExpireTime { command: "psetex" },
            CommandError::WrongArity { command: "unlink" },
            CommandError::OutOfMemory,
            CommandError::NotAnInteger,
            CommandError::NotAFloat,
            CommandError::SameObject,
        ] {
            assert_eq!(WireCommandError::from(&error).to_engine(), Some(error));
        }
    }

    #[test]
    fn an_unknown_command_name_is_refused_not_defaulted() {
        let error = WireCommandError::WrongArity("no-such-command".to_string());
        assert_eq!(error.to_engine(), None);
    }

    #[test]
    fn answers_of_another_shape_are_refused() {
        assert_eq!(bool::from_value(Value::Integer(1)), None);
        assert_eq!(usize::from_value(Value::Integer(-1)), None);
        assert_eq!(Bytes::from_value(Value::Bulk(None)), None);
        assert_eq!(<()>::from_value(Value::Bool(true)), None);
    }
}
