//! The request protocol of the data path: the frame a node sends on the transport's request
//! channel ([`Request`]) and the owner's answer ([`Response`]). The commands inside, their
//! replies and their errors are the registry's ([`crate::command`]); both frames are encoded
//! and decoded by the one codec ([`crate::codec`]): versioned, bounded, strict (an unknown
//! variant anywhere is a decode error) and validated.

use bincode::{Decode, Encode};
use slotkv_engine::SLOT_COUNT;

use crate::codec::{Format, Validate};
use crate::command::{Value, WireCommandError};

/// Largest request or response frame decoded, in bytes: the transport's bound of a frame on
/// the request channel (a value can be as large as that).
pub(crate) const PROTOCOL_FRAME_BYTES_MAX: usize = 64 << 20;

/// Request frames (version 2: the command registry's encoding, strict option and error enums).
pub(crate) const REQUEST_FORMAT: Format<PROTOCOL_FRAME_BYTES_MAX> =
    Format::new("data-path request", 2);

/// Response frames (same version as the requests).
pub(crate) const RESPONSE_FORMAT: Format<PROTOCOL_FRAME_BYTES_MAX> =
    Format::new("data-path response", 2);

/// A command forwarded to the owner of its slot, and how to execute it. `C` is the registry's
/// command enum, borrowed when encoded, owned when decoded.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub(crate) struct CommandRequest<C> {
    /// The command.
    pub(crate) command: C,
    /// ASKING: execute on an importing slot (one-shot, after an ASK redirection).
    pub(crate) asking: bool,
    /// READONLY: a replica of the owner may serve this read.
    pub(crate) read_from_replica: bool,
    /// After a write, wait for this many replica acknowledgements before answering.
    pub(crate) durability_replicas: u32,
    /// Longest durability wait, in ms.
    pub(crate) durability_timeout_ms: u64,
}

/// One request frame.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub(crate) enum Request<C> {
    /// A keyed command for the owner of its slot.
    Command(CommandRequest<C>),
    /// WAIT on the receiving node's own log: until `replicas` replicas acknowledged
    /// `offset`, at most `timeout_ms`.
    Wait {
        /// Replication offset to wait for.
        offset: u64,
        /// Replicas wanted.
        replicas: u32,
        /// Longest wait, in ms.
        timeout_ms: u64,
    },
}

impl<C> Validate for Request<C> {}

/// Why the cluster refuses keyed commands (the three CLUSTERDOWN lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum DownReason {
    /// `CLUSTERDOWN The cluster is down`.
    ClusterDown,
    /// `CLUSTERDOWN The cluster is down and only accepts read commands`.
    ReadOnly,
    /// `CLUSTERDOWN Hash slot not served`.
    SlotNotServed,
}

/// The owner's answer.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) enum Response {
    /// Executed; the value and the node's replication offset after the command.
    Done(Value, u64),
    /// The engine refused the command; nothing changed.
    Failed(WireCommandError),
    /// `MOVED slot`: another node owns the slot (its id hex and bus address).
    Moved(u16, String, String),
    /// `ASK slot`: the slot is migrating; ask the target (id hex, bus address) with ASKING.
    Ask(u16, String, String),
    /// `TRYAGAIN`: multi-key request during a slot migration.
    TryAgain,
    /// `CLUSTERDOWN`.
    Down(DownReason),
    /// `CROSSSLOT`.
    CrossSlot,
    /// The write was done but fewer replicas than asked acknowledged it in time.
    NotDurable {
        /// The value of the write.
        value: Value,
        /// Replicas that acknowledged.
        acknowledged: u32,
    },
}

impl Validate for Response {
    fn validate(&self) -> Result<(), &'static str> {
        match self {
            Response::Failed(error) if error.to_engine().is_none() => {
                Err("an engine error names a command the registry does not know")
            }
            Response::Moved(slot, _, _) | Response::Ask(slot, _, _)
                if usize::from(*slot) >= SLOT_COUNT =>
            {
                Err("a redirection names a slot out of range")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::DecodeError;
    use crate::command::{BorrowedCommand, OwnedCommand};

    fn get_request(key: &[u8]) -> Request<BorrowedCommand<'_>> {
        Request::Command(CommandRequest {
            command: crate::command::get::Get { key }.into(),
            asking: true,
            read_from_replica: false,
            durability_replicas: 1,
            durability_timeout_ms: 100,
        })
    }

    #[test]
    fn a_borrowed_request_decodes_as_the_owned_one() {
        let frame = REQUEST_FORMAT.encode(&get_request(b"k"));
        let decoded: Request<OwnedCommand> = REQUEST_FORMAT.decode(&frame).unwrap();
        assert_eq!(REQUEST_FORMAT.encode(&decoded), frame);
        let Request::Command(request) = decoded else {
            panic!("not a command");
        };
        assert!(request.asking);
        assert!(matches!(request.command, OwnedCommand::Get { .. }));
    }

    #[test]
    fn responses_round_trip_and_bad_ones_are_refused() {
        let response = Response::Moved(7, "ab".into(), "127.0.0.1:1".into());
        let frame = RESPONSE_FORMAT.encode(&response);
        assert_eq!(RESPONSE_FORMAT.decode(&frame), Ok(response));
        let out_of_range = Response::Ask(SLOT_COUNT as u16, "ab".into(), "x:1".into());
        assert!(matches!(
            RESPONSE_FORMAT.decode::<Response>(&RESPONSE_FORMAT.encode(&out_of_range)),
            Err(DecodeError::Invalid { .. })
        ));
        let unknown = Response::Failed(WireCommandError::WrongArity("nosuch".into()));
        assert!(matches!(
            RESPONSE_FORMAT.decode::<Response>(&RESPONSE_FORMAT.encode(&unknown)),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            REQUEST_FORMAT.decode::<Request<OwnedCommand>>(&[9, 0]),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
    }
}
