//! KEYS and SCAN over this node's keys, and Redis's glob patterns.
//!
//! SCAN's cursor is a slot number: each call returns the keys of whole slots, from the
//! cursor's slot on, until COUNT keys are gathered (so one call may return more than COUNT,
//! as Redis's may), and the next slot as the cursor (0 at the end).

use bytes::Bytes;
use slotkv_engine::{Slot, SLOT_COUNT};

use crate::commands::{integer_arg, is, syntax_error, wrong_arity};
use crate::reply::Reply;
use crate::server::Gateway;

/// SCAN's COUNT when none is given (Redis's).
const SCAN_COUNT_DEFAULT: usize = 10;

/// Largest COUNT of one SCAN call (a larger one is clamped).
const SCAN_COUNT_MAX: usize = 100_000;

/// Most nested `*` a pattern may have before it is refused as matching nothing (bounds the
/// matcher's backtracking).
const PATTERN_STARS_MAX: usize = 64;

/// Runs KEYS or SCAN.
pub(crate) fn keys(gateway: &Gateway, name: &str, rest: &[&[u8]]) -> Reply {
    match (name, rest) {
        ("keys", [pattern]) => {
            let keys = matching_keys(gateway, pattern, 0..SLOT_COUNT as Slot, usize::MAX).0;
            Reply::Array(keys.into_iter().map(Reply::Bulk).collect())
        }
        ("scan", [cursor, options @ ..]) => scan(gateway, cursor, options),
        _ => wrong_arity(name),
    }
}

fn scan(gateway: &Gateway, cursor: &[u8], options: &[&[u8]]) -> Reply {
    let start = match integer_arg(cursor) {
        Ok(slot) if (0..SLOT_COUNT as i64).contains(&slot) => slot as Slot,
        Ok(_) => return Reply::Array(vec![Reply::text("0"), Reply::Array(Vec::new())]),
        Err(_) => return Reply::error("ERR invalid cursor"),
    };
    let mut pattern: &[u8] = b"*";
    let mut count = SCAN_COUNT_DEFAULT;
    let mut rest = options;
    while let [option, value, tail @ ..] = rest {
        if is(option, "MATCH") {
            pattern = value;
        } else if is(option, "COUNT") {
            count = match integer_arg(value) {
                Ok(count) if count >= 1 => (count as usize).min(SCAN_COUNT_MAX),
                Ok(_) => return syntax_error(),
                Err(error) => return error,
            };
        } else if is(option, "TYPE") {
            if !is(value, "string") {
                pattern = b"";
            }
        } else {
            return syntax_error();
        }
        rest = tail;
    }
    if !rest.is_empty() {
        return syntax_error();
    }
    let (keys, next) = matching_keys(gateway, pattern, start..SLOT_COUNT as Slot, count);
    Reply::Array(vec![
        Reply::text(next.to_string()),
        Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
    ])
}

/// The keys matching `pattern` in `slots`, whole slots at a time until `count` are found;
/// and the slot after the last one walked (0 when every slot was walked).
fn matching_keys(
    gateway: &Gateway,
    pattern: &[u8],
    slots: std::ops::Range<Slot>,
    count: usize,
) -> (Vec<Bytes>, Slot) {
    let store = gateway.node.store();
    let mut found = Vec::new();
    for slot in slots {
        if found.len() >= count {
            return (found, slot);
        }
        if store.count_keys_in_slot(slot).unwrap_or(0) == 0 {
            continue;
        }
        let keys = store
            .list_keys_in_slot(slot, usize::MAX)
            .unwrap_or_default();
        found.extend(keys.into_iter().filter(|key| glob_match(pattern, key)));
    }
    (found, 0)
}

/// Redis's glob: `*`, `?`, `[abc]`, `[^a]`, `[a-z]` and `\` escapes, case-sensitive.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    if pattern.iter().filter(|byte| **byte == b'*').count() > PATTERN_STARS_MAX {
        return false;
    }
    // Backtracking to the last `*` only: linear in the text per star.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
            continue;
        }
        if let Some(next) = match_one(pattern, p, text[t]) {
            p = next;
            t += 1;
            continue;
        }
        match star {
            Some((star_p, star_t)) => {
                p = star_p + 1;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|byte| *byte == b'*')
}

/// Whether the pattern element at `p` matches `byte`; the position after the element.
fn match_one(pattern: &[u8], p: usize, byte: u8) -> Option<usize> {
    match pattern.get(p)? {
        b'*' => None,
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == byte).then_some(p + 2),
        b'[' => match_class(pattern, p + 1, byte),
        literal => (*literal == byte).then_some(p + 1),
    }
}

fn match_class(pattern: &[u8], mut p: usize, byte: u8) -> Option<usize> {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut matched = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            matched |= pattern[p + 1] == byte;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (low, high) = (
                pattern[p].min(pattern[p + 2]),
                pattern[p].max(pattern[p + 2]),
            );
            matched |= (low..=high).contains(&byte);
            p += 3;
        } else {
            matched |= pattern[p] == byte;
            p += 1;
        }
    }
    // An unclosed class ends at the pattern's end, as in Redis.
    let next = (p + 1).min(pattern.len());
    (matched != negate).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_redis_matches_them() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "anything", true),
            ("*", "", true),
            ("user:*", "user:42", true),
            ("user:*", "order:42", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("", "", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                *expected,
                "{pattern} on {text}"
            );
        }
    }
}
