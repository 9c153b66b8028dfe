//! The one versioned, bounded binary codec of every format the cluster puts on the wire:
//! bus messages ([`crate::core::wire`]), the data-path request protocol and the bulk-channel
//! streams (replication, and slot migration later).
//!
//! A frame is one version byte followed by the bincode 2 encoding of a value. Decoding:
//! 1. refuses an empty frame and a frame longer than the format's limit, before any work;
//! 2. checks the version byte;
//! 3. decodes under the same size limit (a hostile length prefix inside the body cannot make
//!    bincode allocate more than the frame could hold);
//! 4. refuses trailing bytes;
//! 5. validates the decoded value ([`Validate`]): bounds and invariants the types alone do
//!    not express.
//!
//! Unknown enum discriminants are decode errors (bincode's derive refuses them); a type that
//! maps codes by hand must refuse unknown ones in its [`Validate`] or conversion, never fall
//! back to a default. Pure: no IO, no clock, usable by the sans-IO core.

use bincode::{BorrowDecode, Decode, Encode};

/// Bounds and invariants of a decoded value that its type does not enforce.
pub trait Validate {
    /// `Err(reason)` when the value breaks a bound or an invariant of its format.
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// Why a frame did not decode. Nothing was applied; the caller drops and counts the frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes.
    #[error("empty {format}")]
    Empty {
        /// The format's name, e.g. "bus message".
        format: &'static str,
    },
    /// Longer than the format's limit.
    #[error("{format} of {length} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// The format's name.
        format: &'static str,
        /// The frame's length.
        length: usize,
        /// The format's limit.
        limit: usize,
    },
    /// The version byte is not the format's.
    #[error("{format} version {found} is not supported (expected {expected})")]
    UnsupportedVersion {
        /// The format's name.
        format: &'static str,
        /// The version byte received.
        found: u8,
        /// The version this build speaks.
        expected: u8,
    },
    /// bincode could not decode the body (bad discriminant, truncation, over the limit).
    #[error("{format} does not decode: {reason}")]
    Malformed {
        /// The format's name.
        format: &'static str,
        /// bincode's description.
        reason: String,
    },
    /// Bytes left over after the value.
    #[error("{format} has {count} trailing bytes")]
    TrailingBytes {
        /// The format's name.
        format: &'static str,
        /// How many bytes were left.
        count: usize,
    },
    /// Decoded, but a field breaks a bound or an invariant.
    #[error("{format} is invalid: {reason}")]
    Invalid {
        /// The format's name.
        format: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A wire format: its name (for errors), version byte and size limit in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format<const LIMIT: usize> {
    /// Human name used in errors ("bus message", "replication frame", ...).
    pub name: &'static str,
    /// The version byte in front of every frame.
    pub version: u8,
}

impl<const LIMIT: usize> Format<LIMIT> {
    /// The largest frame this format decodes, in bytes (version byte included).
    pub const LIMIT: usize = LIMIT;

    /// A format named `name` whose frames start with `version`.
    pub const fn new(name: &'static str, version: u8) -> Self {
        Format { name, version }
    }

    fn config() -> impl bincode::config::Config {
        bincode::config::standard().with_limit::<LIMIT>()
    }

    /// Encodes `value` as version byte + bincode. Encoding owned values into a `Vec` only
    /// fails past the limit, which the cluster's own bounded values never reach; such a
    /// frame is sent with an empty body and fails to decode on the other side.
    pub fn encode<T: Encode>(&self, value: &T) -> Vec<u8> {
        self.encode_after(&[], value)
    }

    /// Encodes `value` behind `prefix` (e.g. the stream tag of a bulk frame), in one buffer:
    /// `prefix`, version byte, bincode. The receiver removes the prefix before [`Self::decode`].
    pub fn encode_after<T: Encode>(&self, prefix: &[u8], value: &T) -> Vec<u8> {
        let mut frame = Vec::with_capacity(prefix.len() + 64);
        frame.extend_from_slice(prefix);
        frame.push(self.version);
        let header = frame.len();
        match bincode::encode_into_std_write(value, &mut frame, Self::config()) {
            Ok(_) => {}
            Err(error) => {
                frame.truncate(header);
                debug_assert!(false, "{} did not encode: {error}", self.name);
                tracing::error!(format = self.name, %error, "a frame did not encode");
            }
        }
        frame
    }

    /// Decodes and validates one frame (see the module docs for the order of checks).
    pub fn decode<T: Decode<()> + Validate>(&self, frame: &[u8]) -> Result<T, DecodeError> {
        let body = self.body(frame)?;
        let decoded = bincode::decode_from_slice(body, Self::config());
        self.finish(body, decoded)
    }

    /// [`Self::decode`] for a value that borrows from `frame` (byte strings as slices of
    /// it: no copy, no allocation per field), with the same checks.
    pub fn borrow_decode<'de, T: BorrowDecode<'de, ()> + Validate>(
        &self,
        frame: &'de [u8],
    ) -> Result<T, DecodeError> {
        let body = self.body(frame)?;
        let decoded = bincode::borrow_decode_from_slice(body, Self::config());
        self.finish(body, decoded)
    }

    /// The bincode body of `frame` once its length and version byte are checked.
    fn body<'a>(&self, frame: &'a [u8]) -> Result<&'a [u8], DecodeError> {
        let format = self.name;
        let (&version, body) = frame.split_first().ok_or(DecodeError::Empty { format })?;
        if frame.len() > LIMIT {
            return Err(DecodeError::TooLarge {
                format,
                length: frame.len(),
                limit: LIMIT,
            });
        }
        if version != self.version {
            return Err(DecodeError::UnsupportedVersion {
                format,
                found: version,
                expected: self.version,
            });
        }
        Ok(body)
    }

    /// Bincode's result for `body`, refused if malformed, not all of `body`, or invalid.
    fn finish<T: Validate>(
        &self,
        body: &[u8],
        decoded: Result<(T, usize), bincode::error::DecodeError>,
    ) -> Result<T, DecodeError> {
        let format = self.name;
        let (value, used) = decoded.map_err(|error| DecodeError::Malformed {
            format,
            reason: error.to_string(),
        })?;
        if used != body.len() {
            return Err(DecodeError::TrailingBytes {
                format,
                count: body.len() - used,
            });
        }
        value
            .validate()
            .map_err(|reason| DecodeError::Invalid { format, reason })?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
    enum Sample {
        Small(u8),
        Bytes(Vec<u8>),
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), &'static str> {
            match self {
                Sample::Small(value) if *value > 100 => Err("small value above 100"),
                _ => Ok(()),
            }
        }
    }

    const FORMAT: Format<64> = Format::new("sample frame", 3);

    #[test]
    fn values_round_trip() {
        for value in [Sample::Small(7), Sample::Bytes(b"abc".to_vec())] {
            assert_eq!(FORMAT.decode::<Sample>(&FORMAT.encode(&value)), Ok(value));
        }
    }

    #[test]
    fn each_check_refuses_with_its_own_error() {
        assert!(matches!(
            FORMAT.decode::<Sample>(&[]),
            Err(DecodeError::Empty { .. })
        ));
        assert!(matches!(
            FORMAT.decode::<Sample>(&[3; 65]),
            Err(DecodeError::TooLarge { length: 65, .. })
        ));
        assert!(matches!(
            FORMAT.decode::<Sample>(&[9, 0, 1]),
            Err(DecodeError::UnsupportedVersion { found: 9, .. })
        ));
        // Discriminant 7 names no variant: an error, never a default.
        assert!(matches!(
            FORMAT.decode::<Sample>(&[3, 7, 1]),
            Err(DecodeError::Malformed { .. })
        ));
        let mut trailing = FORMAT.encode(&Sample::Small(1));
        trailing.push(0);
        assert!(matches!(
            FORMAT.decode::<Sample>(&trailing),
            Err(DecodeError::TrailingBytes { count: 1, .. })
        ));
        assert!(matches!(
            FORMAT.decode::<Sample>(&FORMAT.encode(&Sample::Small(200))),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn a_length_prefix_beyond_the_limit_allocates_nothing() {
        // Variant 1 (bytes) claiming u64::MAX bytes (varint 0xFF + 8 bytes).
        let mut frame = vec![3, 1, 0xFF];
        frame.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            FORMAT.decode::<Sample>(&frame),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        let frame = FORMAT.encode(&Sample::Bytes(b"hello".to_vec()));
        for cut in 0..frame.len() {
            assert!(FORMAT.decode::<Sample>(&frame[..cut]).is_err());
        }
    }
}
