//! Runs one owned [`Command`] against the engine, logging write effects for replication.
//!
//! Used for forwarded requests (and for local calls that cannot take the fast path, such as
//! commands on a migrating slot). Reads run straight on the engine; writes run under the
//! slot's stripe lock and their effects are appended to the replication log before it is
//! released (see [`crate::replication`]).

use slotkv_engine::{CommandError, Slot, Store};

use crate::node_state::{StoreCell, WriteLog};
use crate::routing::protocol::{expire_condition_from_code, getex_from_wire, Command, Value};

fn bulk(value: Option<bytes::Bytes>) -> Value {
    Value::Bulk(value.map(|bytes| bytes.to_vec()))
}

fn pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
    pairs
        .iter()
        .map(|(key, value)| (key.as_slice(), value.as_slice()))
        .collect()
}

fn keys(keys: &[Vec<u8>]) -> Vec<&[u8]> {
    keys.iter().map(Vec::as_slice).collect()
}

/// Runs a read-only command.
fn run_read(store: &Store, command: &Command) -> Result<Value, CommandError> {
    Ok(match command {
        Command::Get(key) => bulk(store.get(key)),
        Command::Exists(list) => Value::Integer(store.exists(&keys(list))? as i64),
        Command::Pttl(key) => Value::Integer(store.pttl(key)),
        Command::Strlen(key) => Value::Integer(store.strlen(key) as i64),
        Command::MGet(list) => Value::Array(
            store
                .mget(&keys(list))?
                .into_iter()
                .map(|value| value.map(|bytes| bytes.to_vec()))
                .collect(),
        ),
        _ => return Err(CommandError::Syntax),
    })
}

/// Runs a write command on the engine (no logging).
fn run_write(store: &Store, command: &Command) -> Result<Value, CommandError> {
    Ok(match command {
        Command::Set(key, value, options) => {
            let outcome = store.set(key, value, (*options).into())?;
            Value::SetOutcome(outcome.written, outcome.previous.map(|b| b.to_vec()))
        }
        Command::Del(list) => Value::Integer(store.del(&keys(list))? as i64),
        Command::Expire(key, time, condition) => Value::Bool(store.expire_with(
            key,
            (*time).into(),
            expire_condition_from_code(*condition),
        )?),
        Command::Persist(key) => Value::Bool(store.persist(key)?),
        Command::IncrBy(key, delta) => Value::Integer(store.incrby(key, *delta)?),
        Command::DecrBy(key, delta) => Value::Integer(store.decrby(key, *delta)?),
        Command::Append(key, suffix) => Value::Integer(store.append(key, suffix)? as i64),
        Command::GetDel(key) => bulk(store.getdel(key)?),
        Command::GetEx(key, expiry) => bulk(store.getex(key, getex_from_wire(*expiry))?),
        Command::MSet(list) => {
            store.mset(&pairs(list))?;
            Value::Unit
        }
        Command::MSetNx(list) => Value::Bool(store.msetnx(&pairs(list))?),
        _ => return Err(CommandError::Syntax),
    })
}

/// Executes `command` (all keys in `slot`); returns its value and the log offset after it.
/// A write takes the engine only once it holds the slot's stripe (see [`StoreCell::get`]).
pub(crate) fn execute(
    stores: &StoreCell,
    log: &WriteLog,
    slot: Slot,
    command: &Command,
) -> Result<(Value, u64), CommandError> {
    if command.is_read_only() {
        let value = run_read(&stores.get(), command)?;
        return Ok((value, log.offset()));
    }
    let _stripe = log.lock_slot(slot);
    let store = stores.get();
    let value = run_write(&store, command)?;
    let offset = log.record(&store, &command.keys());
    Ok((value, offset))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use slotkv_engine::{ManualClock, StoreConfig};

    use super::*;
    use crate::node_state::write_log::{BacklogRead, DEFAULT_BACKLOG_BYTES_MAX};

    #[test]
    fn writes_are_logged_and_reads_are_not() {
        let store = StoreCell::new(StoreConfig::default(), Arc::new(ManualClock::new(1)));
        let log = WriteLog::new(1, DEFAULT_BACKLOG_BYTES_MAX);
        let set = Command::MSet(vec![
            (b"{a}1".to_vec(), b"x".to_vec()),
            (b"{a}2".to_vec(), b"y".to_vec()),
        ]);
        let slot = slotkv_engine::key_slot(b"{a}1");
        assert_eq!(execute(&store, &log, slot, &set).unwrap(), (Value::Unit, 2));
        let get = Command::Get(b"{a}2".to_vec());
        assert_eq!(
            execute(&store, &log, slot, &get).unwrap(),
            (Value::Bulk(Some(b"y".to_vec())), 2)
        );
        let incr = Command::IncrBy(b"{a}1".to_vec(), 1);
        assert!(execute(&store, &log, slot, &incr).is_err());
        assert!(matches!(log.read_after(1, 0, 10), BacklogRead::Ops { ops, .. } if ops.len() == 2));
    }
}
