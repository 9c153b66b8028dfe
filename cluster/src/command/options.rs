//! Wire mirrors of the engine's option types shared by several commands (the engine stays free
//! of any encoding). Each is a bincode-derived enum: an unknown variant index is a decode error.

use bincode::{Decode, Encode};
use slotkv_engine::ExpireTime;

/// An expire time on the wire (mirror of [`ExpireTime`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) enum WireExpireTime {
    /// EX / EXPIRE.
    Seconds(i64),
    /// PX / PEXPIRE.
    Milliseconds(i64),
    /// EXAT / EXPIREAT.
    UnixSeconds(i64),
    /// PXAT / PEXPIREAT.
    UnixMilliseconds(i64),
}

impl From<ExpireTime> for WireExpireTime {
    fn from(time: ExpireTime) -> Self {
        match time {
            ExpireTime::Seconds(amount) => Self::Seconds(amount),
            ExpireTime::Milliseconds(amount) => Self::Milliseconds(amount),
            ExpireTime::UnixSeconds(amount) => Self::UnixSeconds(amount),
            ExpireTime::UnixMilliseconds(amount) => Self::UnixMilliseconds(amount),
        }
    }
}

impl From<WireExpireTime> for ExpireTime {
    fn from(time: WireExpireTime) -> Self {
        match time {
            WireExpireTime::Seconds(amount) => Self::Seconds(amount),
            WireExpireTime::Milliseconds(amount) => Self::Milliseconds(amount),
            WireExpireTime::UnixSeconds(amount) => Self::UnixSeconds(amount),
            WireExpireTime::UnixMilliseconds(amount) => Self::UnixMilliseconds(amount),
        }
    }
}
