//! One home per command. Each file holds one command (or family): its typed arguments, its
//! keys and slot rule, whether it writes, how it applies to the engine, its request-protocol
//! form (the struct itself, bincode-encoded), its typed result and wire reply ([`Reply`]), and
//! its [`Cluster`](crate::Cluster) method(s).
//!
//! A command struct is generic over how it holds bytes: a local call borrows (`Get<&[u8]>`,
//! no copy of keys or values), a decoded request owns (`Get<Vec<u8>>`); both encode to the
//! same bytes, so the forwarding path encodes straight from the caller's slices.
//!
//! The registry at the bottom lists every command once. The wire enum [`AnyCommand`] and its
//! one dispatch (keys, read/write, name, execution) are generated from that list: adding a
//! command is one file plus one registry line. All three paths go through it: the handle's
//! local fast path ([`execute`] on the typed command), the forwarding path (the typed command
//! converted into a borrowed [`AnyCommand`] and encoded) and the owner's serve path
//! ([`AnyCommand::execute`] on the decoded request, after `routing::serve` applied the
//! MOVED/ASK rules to the command's keys and read/write flag).
//!
//! A client protocol (the RESP gateway) adds to each command's file only its
//! [`client::ClientForm`]: the parse from the request's arguments (by the command's
//! [`Command::NAMES`]) and the client's view of its [`Command::Output`]; the gateway's
//! dispatch by name is `crate::routing::client`.

pub(crate) mod append;
pub(crate) mod client;
pub(crate) mod copy;
pub(crate) mod del;
pub(crate) mod exists;
pub(crate) mod expire;
pub(crate) mod get;
pub(crate) mod getdel;
pub(crate) mod getex;
pub(crate) mod getrange;
pub(crate) mod getset;
pub(crate) mod incr;
pub(crate) mod incrbyfloat;
pub(crate) mod mget;
pub(crate) mod mset;
pub(crate) mod options;
pub(crate) mod persist;
pub(crate) mod reply;
pub(crate) mod set;
pub(crate) mod setex;
pub(crate) mod setnx;
pub(crate) mod setrange;
pub(crate) mod strlen;
pub(crate) mod touch;
pub(crate) mod ttl;
pub(crate) mod unlink;

use bincode::{Decode, Encode};
use slotkv_engine::{key_slot, CommandError, Slot, Store};

use crate::node_state::write_log::{record_removals, WriteGate, REMOVALS_PER_WRITE_MAX};
use crate::node_state::{StoreCell, WriteLog};
pub(crate) use reply::{Reply, Value, WireCommandError};

/// One command: what every path needs to know about it. See the module docs.
pub(crate) trait Command {
    /// The Redis names this type implements, lower case as Redis prints them in error lines;
    /// the first is the default [`Command::name`].
    const NAMES: &'static [&'static str];
    /// Whether the command may change the data set: a write runs on the master under its
    /// slot's write stripe and its keys are read back into the replication log.
    const WRITES: bool;
    /// The typed result of a successful call.
    type Output: Reply;

    /// This call's name (a family names its member, e.g. `pexpire`).
    fn name(&self) -> &'static str {
        Self::NAMES[0]
    }

    /// Calls `visit` with the keys the command touches, in order. For a write these are
    /// exactly the keys whose resulting state the replication log must capture.
    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R;

    /// Applies the command to the engine. `slot` is the common slot of its keys (the slot
    /// rule has been checked), so hot commands can skip hashing the key again.
    fn apply(&self, store: &Store, slot: Slot) -> Result<Self::Output, CommandError>;

    /// The slot rule: every key in one slot (else `CROSSSLOT`), at least one key (else
    /// Redis's arity error).
    fn slot(&self) -> Result<Slot, CommandError> {
        self.with_keys(|keys| common_slot(keys, self.name()))
    }
}

/// The slot all `keys` hash to; `CrossSlot` when they span slots, `WrongArity` (naming
/// `command`) when there is none.
pub(crate) fn common_slot(keys: &[&[u8]], command: &'static str) -> Result<Slot, CommandError> {
    let Some((first, others)) = keys.split_first() else {
        return Err(CommandError::WrongArity { command });
    };
    let slot = key_slot(first);
    if others.iter().any(|key| key_slot(key) != slot) {
        return Err(CommandError::CrossSlot);
    }
    Ok(slot)
}

/// Runs `command` (all keys in `slot`) on the engine: a read straight on it; a write only once
/// it holds the slot's write stripe (so it takes the engine a full sync may swap, see
/// [`StoreCell::get`]), recording its keys' effects in the log before the stripe is released;
/// then it logs the engine removals pending (its evictions), at most
/// [`REMOVALS_PER_WRITE_MAX`]. A command that executed counts as a read or a write of
/// `slot` ([`StoreCell::activity`]). Returns the output and, for a write, the log offset after it.
/// A write refused by the log's gate under its stripe ([`WriteLog::gate`]: writes were
/// paused or stopped after the routing check) changes nothing and is
/// [`ExecuteError::WritesClosed`] or [`ExecuteError::Stopped`].
pub(crate) fn execute<C: Command>(
    stores: &StoreCell,
    log: &WriteLog,
    slot: Slot,
    command: &C,
) -> Result<(C::Output, Option<u64>), ExecuteError> {
    execute_while(stores, log, slot, command, || true)
}

/// [`execute`] for the local fast path: a write also checks `still_allowed` under its
/// stripe (the slot is still stable and this node's), and is [`ExecuteError::WritesClosed`]
/// when it no longer holds, so the caller takes the owner's rules instead.
pub(crate) fn execute_while<C: Command>(
    stores: &StoreCell,
    log: &WriteLog,
    slot: Slot,
    command: &C,
    still_allowed: impl Fn() -> bool,
) -> Result<(C::Output, Option<u64>), ExecuteError> {
    if !C::WRITES {
        let output = command.apply(&stores.get(), slot)?;
        stores.activity().count(slot, false);
        return Ok((output, None));
    }
    let stripe = log.lock_slot(slot);
    match log.gate() {
        WriteGate::Open => {}
        WriteGate::Paused => return Err(ExecuteError::WritesClosed),
        WriteGate::Stopped => return Err(ExecuteError::Stopped),
    }
    // An atomic migration paused the slot for its flip: as paused writes, retried.
    if log.outbound.is_paused(slot) || !still_allowed() {
        return Err(ExecuteError::WritesClosed);
    }
    let store = stores.get();
    let output = command.apply(&store, slot);
    let offset = output
        .is_ok()
        .then(|| command.with_keys(|keys| log.record(&store, keys)));
    drop(stripe);
    if output.is_ok() {
        stores.activity().count(slot, true);
    }
    // Evictions (and lazy expiries) this write caused are logged by it, outside its stripe.
    if store.removals_pending() > 0 {
        record_removals(log, &store, REMOVALS_PER_WRITE_MAX);
    }
    Ok((output?, offset))
}

/// Why [`execute`] did not run a command. Nothing changed in either case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExecuteError {
    /// The engine refused it.
    Command(CommandError),
    /// A write arrived after writes were paused (a retryable TRYAGAIN for the caller).
    WritesClosed,
    /// A write arrived after the node stopped its writes for good (shutdown).
    Stopped,
}

impl From<CommandError> for ExecuteError {
    fn from(error: CommandError) -> Self {
        ExecuteError::Command(error)
    }
}

/// The keys of a multi-key command: borrowed slices for a local call, owned for a decoded
/// request.
pub(crate) trait KeyList {
    /// Calls `visit` with the keys as slices.
    fn with_slices<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R;
}

impl KeyList for &[&[u8]] {
    fn with_slices<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(self)
    }
}

impl KeyList for Vec<Vec<u8>> {
    fn with_slices<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        let keys: Vec<&[u8]> = self.iter().map(Vec::as_slice).collect();
        visit(&keys)
    }
}

/// The key-value pairs of MSET and MSETNX: borrowed or owned, like [`KeyList`].
pub(crate) trait PairList {
    /// Calls `visit` with the pairs as slices.
    fn with_pairs<R>(&self, visit: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> R;
    /// Calls `visit` with the keys of the pairs, in order.
    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R;
}

impl PairList for &[(&[u8], &[u8])] {
    fn with_pairs<R>(&self, visit: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> R {
        visit(self)
    }

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        let keys: Vec<&[u8]> = self.iter().map(|(key, _)| *key).collect();
        visit(&keys)
    }
}

impl PairList for Vec<(Vec<u8>, Vec<u8>)> {
    fn with_pairs<R>(&self, visit: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> R {
        let pairs: Vec<(&[u8], &[u8])> = self
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
            .collect();
        visit(&pairs)
    }

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        let keys: Vec<&[u8]> = self.iter().map(|(key, _)| key.as_slice()).collect();
        visit(&keys)
    }
}

impl PairList for Vec<(&[u8], &[u8])> {
    fn with_pairs<R>(&self, visit: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> R {
        visit(self)
    }

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        let keys: Vec<&[u8]> = self.iter().map(|(key, _)| *key).collect();
        visit(&keys)
    }
}

/// A command parsed from a client's arguments, borrowing them (see [`client`]).
pub(crate) type ClientCommand<'a> = AnyCommand<&'a [u8], &'a [&'a [u8]], Vec<(&'a [u8], &'a [u8])>>;

/// A command as a decoded request holds it.
pub(crate) type OwnedCommand = AnyCommand<Vec<u8>, Vec<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>>;

/// A command borrowing the caller's keys and values, as the forwarding path encodes it.
pub(crate) type BorrowedCommand<'a> =
    AnyCommand<&'a [u8], &'a [&'a [u8]], &'a [(&'a [u8], &'a [u8])]>;

/// The registry: generates [`AnyCommand`] (one variant per line, in wire order: append new
/// commands at the end), its conversions from each command and its dispatch.
macro_rules! registry {
    ($($variant:ident($($module:ident)::+ <$bytes:ident>)),+ $(,)?) => {
        /// Every command of the request protocol. `B` holds a key or value, `L` a list of
        /// keys, `P` a list of key-value pairs (see [`OwnedCommand`], [`BorrowedCommand`]).
        /// An unknown variant index is a decode error.
        #[derive(Debug, Clone, PartialEq, Encode, Decode)]
        pub(crate) enum AnyCommand<B, L, P> {
            $(
                #[doc = concat!("See `", stringify!($($module)::+), "`.")]
                $variant {
                    /// The command.
                    command: $($module)::+<$bytes>,
                },
            )+
        }

        $(
            impl<B, L, P> From<$($module)::+<$bytes>> for AnyCommand<B, L, P> {
                fn from(command: $($module)::+<$bytes>) -> Self {
                    AnyCommand::$variant { command }
                }
            }
        )+

        impl<B: AsRef<[u8]>, L: KeyList, P: PairList> AnyCommand<B, L, P> {
            /// Whether the command may change the data set.
            pub(crate) fn writes(&self) -> bool {
                match self {
                    $(AnyCommand::$variant { .. } => <$($module)::+<$bytes> as Command>::WRITES,)+
                }
            }

            /// Calls `visit` with the command's keys.
            pub(crate) fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
                match self {
                    $(AnyCommand::$variant { command } => command.with_keys(visit),)+
                }
            }

            /// The command's slot (see [`Command::slot`]).
            pub(crate) fn slot(&self) -> Result<Slot, CommandError> {
                match self {
                    $(AnyCommand::$variant { command } => command.slot(),)+
                }
            }

            /// [`execute`] with the output as its wire reply.
            pub(crate) fn execute(
                &self,
                stores: &StoreCell,
                log: &WriteLog,
                slot: Slot,
            ) -> Result<(Value, Option<u64>), ExecuteError> {
                match self {
                    $(AnyCommand::$variant { command } => execute(stores, log, slot, command)
                        .map(|(output, offset)| (output.into_value(), offset)),)+
                }
            }
        }

        /// Every name of every registered command.
        pub(crate) fn registered_names() -> impl Iterator<Item = &'static str> {
            type B = Vec<u8>;
            type L = Vec<Vec<u8>>;
            type P = Vec<(Vec<u8>, Vec<u8>)>;
            let families: &[&[&'static str]] =
                &[$(<$($module)::+<$bytes> as Command>::NAMES,)+];
            families.iter().flat_map(|names| names.iter().copied())
        }
    };
}

registry! {
    Get(get::Get<B>),
    Set(set::Set<B>),
    Del(del::Del<L>),
    Exists(exists::Exists<L>),
    Expire(expire::Expire<B>),
    Persist(persist::Persist<B>),
    Pttl(ttl::Pttl<B>),
    IncrBy(incr::IncrBy<B>),
    DecrBy(incr::DecrBy<B>),
    Append(append::Append<B>),
    Strlen(strlen::Strlen<B>),
    GetDel(getdel::GetDel<B>),
    GetEx(getex::GetEx<B>),
    MGet(mget::MGet<L>),
    MSet(mset::MSet<P>),
    MSetNx(mset::MSetNx<P>),
    SetRange(setrange::SetRange<B>),
    GetRange(getrange::GetRange<B>),
    GetSet(getset::GetSet<B>),
    SetNx(setnx::SetNx<B>),
    SetEx(setex::SetEx<B>),
    IncrByFloat(incrbyfloat::IncrByFloat<B>),
    Copy(copy::Copy<B>),
    Touch(touch::Touch<L>),
    Unlink(unlink::Unlink<L>),
}

/// The registry's own spelling of a command name received on the wire (inside an engine
/// error), or `None` when no registered command has that name.
pub(crate) fn static_name(name: &str) -> Option<&'static str> {
    registered_names().find(|known| *known == name)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use slotkv_engine::{ManualClock, StoreConfig};

    use super::*;
    use crate::node_state::write_log::{BacklogRead, DEFAULT_BACKLOG_BYTES_MAX};

    fn fixture() -> (StoreCell, WriteLog) {
        let store = StoreCell::new(StoreConfig::default(), Arc::new(ManualClock::new(1)));
        (store, WriteLog::new(1, DEFAULT_BACKLOG_BYTES_MAX))
    }

    #[test]
    fn writes_are_logged_and_reads_are_not() {
        let (store, log) = fixture();
        let pairs: &[(&[u8], &[u8])] = &[(b"{a}1", b"x"), (b"{a}2", b"y")];
        let set: BorrowedCommand<'_> = mset::MSet { pairs }.into();
        let slot = key_slot(b"{a}1");
        assert_eq!(set.execute(&store, &log, slot), Ok((Value::Unit, Some(2))));
        let get: BorrowedCommand<'_> = get::Get { key: &b"{a}2"[..] }.into();
        assert_eq!(
            get.execute(&store, &log, slot),
            Ok((Value::Bulk(Some(b"y".to_vec())), None))
        );
        let incr: BorrowedCommand<'_> = incr::IncrBy {
            key: &b"{a}1"[..],
            increment: 1,
        }
        .into();
        assert!(incr.execute(&store, &log, slot).is_err());
        assert!(matches!(log.read_after(1, 0, 10), BacklogRead::Ops { ops, .. } if ops.len() == 2));
    }

    #[test]
    fn a_write_after_the_gate_closed_changes_nothing_and_a_read_still_runs() {
        let (store, log) = fixture();
        let slot = key_slot(b"k");
        let plain = |value: &'static [u8]| -> BorrowedCommand<'static> {
            set::Set {
                key: &b"k"[..],
                value,
                options: slotkv_engine::SetOptions::default().into(),
            }
            .into()
        };
        let set = plain(b"v");
        assert!(matches!(set.execute(&store, &log, slot), Ok((_, Some(1)))));
        assert_eq!(log.close_writes(), 1);
        let overwrite = plain(b"w");
        assert_eq!(
            overwrite.execute(&store, &log, slot),
            Err(ExecuteError::WritesClosed)
        );
        assert_eq!(log.offset(), 1, "nothing was logged");
        let get: BorrowedCommand<'_> = get::Get { key: &b"k"[..] }.into();
        assert_eq!(
            get.execute(&store, &log, slot),
            Ok((Value::Bulk(Some(b"v".to_vec())), None))
        );
    }

    #[test]
    fn a_write_that_passed_the_routing_check_before_stop_writes_changes_nothing() {
        // The data path checked the gate before `stop_writes` (shutdown, a snapshot about to
        // be written) and runs only now: the check under its stripe refuses it.
        let (store, log) = fixture();
        let slot = key_slot(b"k");
        log.stop_writes();
        let set: BorrowedCommand<'_> = set::Set {
            key: &b"k"[..],
            value: &b"v"[..],
            options: slotkv_engine::SetOptions::default().into(),
        }
        .into();
        assert_eq!(set.execute(&store, &log, slot), Err(ExecuteError::Stopped));
        assert_eq!(log.offset(), 0, "nothing was logged");
        // A pause's reopening never reopens a stopped gate.
        log.set_writes_open(true);
        assert_eq!(set.execute(&store, &log, slot), Err(ExecuteError::Stopped));
    }

    #[test]
    fn the_slot_rule_refuses_no_keys_and_keys_in_two_slots() {
        let none: &[&[u8]] = &[];
        assert_eq!(
            del::Del { keys: none }.slot(),
            Err(CommandError::WrongArity { command: "del" })
        );
        let two: &[&[u8]] = &[b"foo", b"bar"];
        assert_eq!(
            exists::Exists { keys: two }.slot(),
            Err(CommandError::CrossSlot)
        );
        let tagged: &[&[u8]] = &[b"{a}x", b"{a}y"];
        assert_eq!(exists::Exists { keys: tagged }.slot(), Ok(key_slot(b"a")));
    }

    #[test]
    fn names_map_back_through_the_registry_only() {
        for name in ["get", "set", "pexpire", "setex", "psetex", "copy", "touch"] {
            assert_eq!(static_name(name), Some(name));
        }
        assert_eq!(static_name("flushall"), None);
        assert_eq!(static_name("command"), None);
    }
}
