//! The engine against a model: random sequences of string and TTL commands, with a manual
//! clock that jumps forward and active-expiry cycles in between, run on the engine and on a
//! `BTreeMap` of values and deadlines that states Redis's semantics in a few lines. Every
//! reply must match, and at every step every key of the universe must read the same.
//! A failure prints the shrunk sequence; `PROPTEST_CASES=N` runs more cases.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use slotkv_engine::{
    key_slot, ActiveExpireBudget, CommandError, ExpireCondition, ExpireTime, ManualClock,
    SetCondition, SetExpiry, SetOptions, Store, StoreConfig,
};

/// Keys the sequences use: few, so commands meet the same keys; two share a hash tag (a
/// multi-key command over other pairs is CROSSSLOT, in the model too).
const KEYS: [&str; 6] = ["a", "b", "c", "{t}x", "{t}y", "counter"];
const START_MS: u64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    Set {
        key: usize,
        value: Vec<u8>,
        condition: SetCondition,
        ttl_ms: Option<u64>,
        keep_ttl: bool,
    },
    Get(usize),
    Del(Vec<usize>),
    IncrBy(usize, i64),
    Append(usize, Vec<u8>),
    PExpire(usize, i64),
    Persist(usize),
    PTtl(usize),
    GetDel(usize),
    Strlen(usize),
    Exists(Vec<usize>),
    Advance(u64),
    ActiveExpire,
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<i64>().prop_map(|number| number.to_string().into_bytes()),
        (-20i64..20).prop_map(|number| number.to_string().into_bytes()),
        proptest::collection::vec(b'a'..=b'z', 0..6),
    ]
}

fn key() -> impl Strategy<Value = usize> {
    0..KEYS.len()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), value(), prop_oneof![
                Just(SetCondition::Always),
                Just(SetCondition::IfAbsent),
                Just(SetCondition::IfPresent)
            ], proptest::option::of(1u64..3_000), any::<bool>())
            .prop_map(|(key, value, condition, ttl_ms, keep_ttl)| Op::Set {
                key, value, condition, ttl_ms, keep_ttl
            }),
        3 => key().prop_map(Op::Get),
        1 => proptest::collection::vec(key(), 1..3).prop_map(Op::Del),
        2 => (key(), prop_oneof![-5i64..5, any::<i64>()]).prop_map(|(key, by)| Op::IncrBy(key, by)),
        1 => (key(), proptest::collection::vec(b'0'..=b'9', 0..3)).prop_map(|(key, s)| Op::Append(key, s)),
        2 => (key(), -10i64..3_000).prop_map(|(key, ms)| Op::PExpire(key, ms)),
        1 => key().prop_map(Op::Persist),
        1 => key().prop_map(Op::PTtl),
        1 => key().prop_map(Op::GetDel),
        1 => key().prop_map(Op::Strlen),
        1 => proptest::collection::vec(key(), 1..4).prop_map(Op::Exists),
        2 => (0u64..2_000).prop_map(Op::Advance),
        1 => Just(Op::ActiveExpire),
    ]
}

/// An integer as Redis reads one (`string2ll`): the canonical decimal form only, so no
/// sign on zero, no `+`, no leading zeros or spaces.
fn redis_integer(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let number = text.parse::<i64>().ok()?;
    (number.to_string() == text).then_some(number)
}

/// Redis's semantics for these commands: a key lives while its deadline is in the future.
#[derive(Default)]
struct Model {
    now_ms: u64,
    keys: BTreeMap<usize, (Vec<u8>, Option<u64>)>,
}

/// A reply, the same shape from both sides.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Bool(bool),
    Int(i64),
    Value(Option<Vec<u8>>),
    Error(CommandError),
}

impl Model {
    fn live(&mut self, key: usize) -> Option<&mut (Vec<u8>, Option<u64>)> {
        let now = self.now_ms;
        if self
            .keys
            .get(&key)
            .is_some_and(|(_, deadline)| deadline.is_some_and(|at| at <= now))
        {
            self.keys.remove(&key);
        }
        self.keys.get_mut(&key)
    }

    fn apply(&mut self, op: &Op) -> Option<Reply> {
        let now = self.now_ms;
        if let Op::Del(keys) | Op::Exists(keys) = op {
            let slot = |key: &usize| key_slot(KEYS[*key].as_bytes());
            if keys.iter().any(|key| slot(key) != slot(&keys[0])) {
                return Some(Reply::Error(CommandError::CrossSlot));
            }
        }
        Some(match op {
            Op::Set {
                key,
                value,
                condition,
                ttl_ms,
                keep_ttl,
            } => {
                let existing = self.live(*key).map(|(_, deadline)| *deadline);
                let allowed = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfAbsent => existing.is_none(),
                    SetCondition::IfPresent => existing.is_some(),
                };
                if allowed {
                    let deadline = match (ttl_ms, keep_ttl) {
                        (Some(ms), _) => Some(now + ms),
                        (None, true) => existing.flatten(),
                        (None, false) => None,
                    };
                    self.keys.insert(*key, (value.clone(), deadline));
                }
                Reply::Bool(allowed)
            }
            Op::Get(key) => Reply::Value(self.live(*key).map(|(value, _)| value.clone())),
            Op::Del(keys) => {
                let mut removed = 0;
                for key in keys {
                    if self.live(*key).is_some() {
                        self.keys.remove(key);
                        removed += 1;
                    }
                }
                Reply::Int(removed)
            }
            Op::IncrBy(key, by) => {
                let (current, deadline) = match self.live(*key) {
                    Some((value, deadline)) => match redis_integer(value) {
                        Some(number) => (number, *deadline),
                        None => return Some(Reply::Error(CommandError::NotAnInteger)),
                    },
                    None => (0, None),
                };
                let Some(next) = current.checked_add(*by) else {
                    return Some(Reply::Error(CommandError::IncrementOverflow));
                };
                self.keys
                    .insert(*key, (next.to_string().into_bytes(), deadline));
                Reply::Int(next)
            }
            Op::Append(key, suffix) => {
                let entry = match self.live(*key) {
                    Some(entry) => entry,
                    None => self.keys.entry(*key).or_insert((Vec::new(), None)),
                };
                entry.0.extend_from_slice(suffix);
                Reply::Int(entry.0.len() as i64)
            }
            Op::PExpire(key, ms) => {
                if self.live(*key).is_none() {
                    return Some(Reply::Bool(false));
                }
                if *ms <= 0 {
                    self.keys.remove(key);
                } else if let Some(entry) = self.keys.get_mut(key) {
                    entry.1 = Some(now + *ms as u64);
                }
                Reply::Bool(true)
            }
            Op::Persist(key) => match self.live(*key) {
                Some(entry) if entry.1.is_some() => {
                    entry.1 = None;
                    Reply::Bool(true)
                }
                _ => Reply::Bool(false),
            },
            Op::PTtl(key) => Reply::Int(match self.live(*key) {
                None => -2,
                Some((_, None)) => -1,
                Some((_, Some(at))) => (*at - now) as i64,
            }),
            Op::GetDel(key) => {
                let value = self.live(*key).map(|(value, _)| value.clone());
                self.keys.remove(key);
                Reply::Value(value)
            }
            Op::Strlen(key) => {
                Reply::Int(self.live(*key).map_or(0, |(value, _)| value.len()) as i64)
            }
            Op::Exists(keys) => {
                Reply::Int(keys.iter().filter(|key| self.live(**key).is_some()).count() as i64)
            }
            Op::Advance(ms) => {
                self.now_ms += ms;
                return None;
            }
            Op::ActiveExpire => return None,
        })
    }
}

fn run(store: &Store, clock: &ManualClock, op: &Op) -> Option<Reply> {
    let name = |key: &usize| KEYS[*key].as_bytes();
    let names = |keys: &[usize]| keys.iter().map(name).collect::<Vec<_>>();
    let reply = |result: Result<Reply, CommandError>| result.unwrap_or_else(Reply::Error);
    Some(match op {
        Op::Set {
            key,
            value,
            condition,
            ttl_ms,
            keep_ttl,
        } => {
            let expiry = match (ttl_ms, keep_ttl) {
                (Some(ms), _) => SetExpiry::Expire(ExpireTime::Milliseconds(*ms as i64)),
                (None, true) => SetExpiry::KeepTtl,
                (None, false) => SetExpiry::ClearTtl,
            };
            let options = SetOptions {
                condition: *condition,
                expiry,
                return_previous: false,
            };
            reply(
                store
                    .set(name(key), value, options)
                    .map(|outcome| Reply::Bool(outcome.written)),
            )
        }
        Op::Get(key) => Reply::Value(store.get(name(key)).map(|value| value.to_vec())),
        Op::Del(keys) => reply(
            store
                .del(&names(keys))
                .map(|count| Reply::Int(count as i64)),
        ),
        Op::IncrBy(key, by) => reply(store.incrby(name(key), *by).map(Reply::Int)),
        Op::Append(key, suffix) => reply(
            store
                .append(name(key), suffix)
                .map(|len| Reply::Int(len as i64)),
        ),
        Op::PExpire(key, ms) => reply(
            store
                .pexpire(name(key), *ms, ExpireCondition::Always)
                .map(Reply::Bool),
        ),
        Op::Persist(key) => reply(store.persist(name(key)).map(Reply::Bool)),
        Op::PTtl(key) => Reply::Int(store.pttl(name(key))),
        Op::GetDel(key) => reply(
            store
                .getdel(name(key))
                .map(|value| Reply::Value(value.map(|v| v.to_vec()))),
        ),
        Op::Strlen(key) => Reply::Int(store.strlen(name(key)) as i64),
        Op::Exists(keys) => reply(
            store
                .exists(&names(keys))
                .map(|count| Reply::Int(count as i64)),
        ),
        Op::Advance(ms) => {
            clock.advance_ms(*ms);
            return None;
        }
        Op::ActiveExpire => {
            store.active_expire(ActiveExpireBudget::default());
            return None;
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_engine_behaves_as_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let clock = Arc::new(ManualClock::new(START_MS));
        let store = Store::new(StoreConfig::default(), Arc::clone(&clock) as Arc<dyn slotkv_engine::Clock>);
        let mut model = Model { now_ms: START_MS, ..Model::default() };
        for (step, op) in ops.iter().enumerate() {
            let expected = model.apply(op);
            let actual = run(&store, &clock, op);
            prop_assert_eq!(actual, expected, "step {}: {:?}", step, op);
            for (key, name) in KEYS.iter().enumerate() {
                let engine = store.get(name.as_bytes()).map(|value| value.to_vec());
                let modelled = model.live(key).map(|(value, _)| value.clone());
                prop_assert_eq!(engine, modelled, "key {} after step {}", name, step);
            }
        }
        // Memory accounting returns to zero once everything is deleted.
        for key in KEYS {
            store.del(&[key.as_bytes()]).unwrap();
        }
        store.active_expire(ActiveExpireBudget { max_keys_sampled: 10_000, max_slots_visited: 16_384 });
        prop_assert_eq!(store.used_memory_bytes(), 0);
    }
}
