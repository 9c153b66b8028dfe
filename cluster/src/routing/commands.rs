//! The engine's commands on the [`Cluster`] handle: each names its local engine call, its
//! forwarded form, and how the owner's answer converts back.

use bytes::Bytes;
use slotkv_engine::{key_slot, ExpireCondition, ExpireTime, GetExExpiry, SetOptions, SetOutcome};

use crate::routing::protocol::{expire_condition_to_code, getex_to_wire, Command, Value};
use crate::routing::serve::common_slot;
use crate::routing::{Cluster, ClusterError};

fn bulk(value: Value) -> Option<Option<Bytes>> {
    match value {
        Value::Bulk(value) => Some(value.map(Bytes::from)),
        _ => None,
    }
}

fn integer(value: Value) -> Option<i64> {
    match value {
        Value::Integer(number) => Some(number),
        _ => None,
    }
}

fn boolean(value: Value) -> Option<bool> {
    match value {
        Value::Bool(answer) => Some(answer),
        _ => None,
    }
}

fn owned(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|key| key.to_vec()).collect()
}

fn owned_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_vec(), value.to_vec()))
        .collect()
}

fn slot_of(keys: &[&[u8]]) -> Result<u16, ClusterError> {
    if keys.is_empty() {
        return Err(ClusterError::Command(
            slotkv_engine::CommandError::WrongArity { command: "command" },
        ));
    }
    common_slot(keys).ok_or(ClusterError::CrossSlot)
}

impl Cluster {
    /// GET: the value of `key`, or `None`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, ClusterError> {
        let slot = key_slot(key);
        self.run(
            slot,
            &[key],
            false,
            |store| Ok(store.get(key)),
            || Command::Get(key.to_vec()),
            bulk,
        )
        .await
    }

    /// SET without options.
    pub async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), ClusterError> {
        self.set_with(key, value, SetOptions::default())
            .await
            .map(|_| ())
    }

    /// SET with options (NX/XX, expiry, GET).
    pub async fn set_with(
        &self,
        key: &[u8],
        value: &[u8],
        options: SetOptions,
    ) -> Result<SetOutcome, ClusterError> {
        let slot = key_slot(key);
        self.run(
            slot,
            &[key],
            true,
            |store| store.set(key, value, options),
            || Command::Set(key.to_vec(), value.to_vec(), options.into()),
            |answer| match answer {
                Value::SetOutcome(written, previous) => Some(SetOutcome {
                    written,
                    previous: previous.map(Bytes::from),
                }),
                _ => None,
            },
        )
        .await
    }

    /// DEL of same-slot keys: how many existed.
    pub async fn del(&self, keys: &[&[u8]]) -> Result<usize, ClusterError> {
        let slot = slot_of(keys)?;
        self.run(
            slot,
            keys,
            true,
            |store| store.del(keys),
            || Command::Del(owned(keys)),
            |answer| integer(answer).map(|count| count as usize),
        )
        .await
    }

    /// EXISTS of same-slot keys: how many exist (a key named twice counts twice).
    pub async fn exists(&self, keys: &[&[u8]]) -> Result<usize, ClusterError> {
        let slot = slot_of(keys)?;
        self.run(
            slot,
            keys,
            false,
            |store| store.exists(keys),
            || Command::Exists(owned(keys)),
            |answer| integer(answer).map(|count| count as usize),
        )
        .await
    }

    /// The EXPIRE family (EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT by the time's kind): whether
    /// the TTL was set (a time in the past deletes the key).
    pub async fn expire(
        &self,
        key: &[u8],
        time: ExpireTime,
        condition: ExpireCondition,
    ) -> Result<bool, ClusterError> {
        let slot = key_slot(key);
        self.run(
            slot,
            &[key],
            true,
            |store| store.expire_with(key, time, condition),
            || {
                Command::Expire(
                    key.to_vec(),
                    time.into(),
                    expire_condition_to_code(condition),
                )
            },
            boolean,
        )
        .await
    }

    /// PERSIST: whether a TTL was removed.
    pub async fn persist(&self, key: &[u8]) -> Result<bool, ClusterError> {
        let slot = key_slot(key);
        self.run(
            slot,
            &[key],
            true,
            |store| store.persist(key),
            || Command::Persist(key.to_vec()),
            boolean,
        )
        .await
    }

    /// PTTL: remaining ms, -1 without TTL, -2 when missing.
    pub async fn pttl(&self, key: &[u8]) -> Result<i64, ClusterError> {
        let slot = key_slot(key);
        self.run(
            slot,
            &[key],
            false,
            |store| Ok(store.pttl(key)),
            || Command::Pttl(key.to_vec()),
            integer,
        )
        .await
    }

    /// TTL: remaining seconds (rounded), -1 without TTL, -2 when missing.
    pub async fn ttl(&self, key: &[u8]) -> Result<i64, ClusterError> {
        Ok(match self.pttl(key).await? {
            remaining if remaining < 0 => remaining,
            remaining => (remaining + 500) / 1_000,
        })
    }

    /// INCRBY.
    pub async fn incr_by(&self, key: &[u8], increment: i64) -> Result<i64, ClusterError> {
        let slot = key_slot(key);
        self.run(
            slot,
            &[key],
            true,
            |store| store.incrby(key, increment),
            || Command::IncrBy(key.to_vec(), increment),
            integer,
        )
        .await
    }

    /// DECRBY.
    pub async fn decr_by(&self, key: &[u8], decrement: i64) -> Result<i64, ClusterError> {
        let slot = key_slot(key);
        self.run(
            slot,
            &[key],
            true,
            |store| store.decrby(key, decrement),
            || Command::DecrBy(key.to_vec(), decrement),
            integer,
        )
        .await
    }

    /// INCR.
    pub async fn incr(&self, key: &[u8]) -> Result<i64, ClusterError> {
        self.incr_by(key, 1).await
    }

    /// DECR.
    pub async fn decr(&self, key: &[u8]) -> Result<i64, ClusterError> {
        self.decr_by(key, 1).await
    }

    /// APPEND: the new length.
    pub async fn append(&self, key: &[u8], suffix: &[u8]) -> Result<usize, ClusterError> {
        let slot = key_slot(key);
        self.run(
            slot,
            &[key],
            true,
            |store| store.append(key, suffix),
            || Command::Append(key.to_vec(), suffix.to_vec()),
            |answer| integer(answer).map(|length| length as usize),
        )
        .await
    }

    /// STRLEN.
    pub async fn strlen(&self, key: &[u8]) -> Result<usize, ClusterError> {
        let slot = key_slot(key);
        self.run(
            slot,
            &[key],
            false,
            |store| Ok(store.strlen(key)),
            || Command::Strlen(key.to_vec()),
            |answer| integer(answer).map(|length| length as usize),
        )
        .await
    }

    /// GETDEL.
    pub async fn getdel(&self, key: &[u8]) -> Result<Option<Bytes>, ClusterError> {
        let slot = key_slot(key);
        self.run(
            slot,
            &[key],
            true,
            |store| store.getdel(key),
            || Command::GetDel(key.to_vec()),
            bulk,
        )
        .await
    }

    /// GETEX.
    pub async fn getex(
        &self,
        key: &[u8],
        expiry: GetExExpiry,
    ) -> Result<Option<Bytes>, ClusterError> {
        let slot = key_slot(key);
        self.run(
            slot,
            &[key],
            true,
            |store| store.getex(key, expiry),
            || Command::GetEx(key.to_vec(), getex_to_wire(expiry)),
            bulk,
        )
        .await
    }

    /// MGET of same-slot keys (see [`Cluster::mget_multi`] for keys in many slots).
    pub async fn mget(&self, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>, ClusterError> {
        let slot = slot_of(keys)?;
        self.run(
            slot,
            keys,
            false,
            |store| store.mget(keys),
            || Command::MGet(owned(keys)),
            |answer| match answer {
                Value::Array(values) => Some(
                    values
                        .into_iter()
                        .map(|value| value.map(Bytes::from))
                        .collect(),
                ),
                _ => None,
            },
        )
        .await
    }

    /// MSET of same-slot pairs, atomically (see [`Cluster::mset_multi`] for many slots).
    pub async fn mset(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), ClusterError> {
        let keys: Vec<&[u8]> = pairs.iter().map(|(key, _)| *key).collect();
        let slot = slot_of(&keys)?;
        self.run(
            slot,
            &keys,
            true,
            |store| store.mset(pairs),
            || Command::MSet(owned_pairs(pairs)),
            |answer| matches!(answer, Value::Unit).then_some(()),
        )
        .await
    }

    /// MSETNX of same-slot pairs: whether they were set (only if none existed).
    pub async fn msetnx(&self, pairs: &[(&[u8], &[u8])]) -> Result<bool, ClusterError> {
        let keys: Vec<&[u8]> = pairs.iter().map(|(key, _)| *key).collect();
        let slot = slot_of(&keys)?;
        self.run(
            slot,
            &keys,
            true,
            |store| store.msetnx(pairs),
            || Command::MSetNx(owned_pairs(pairs)),
            boolean,
        )
        .await
    }
}
