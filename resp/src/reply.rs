//! Replies and their encoding in RESP2 or RESP3 (chosen per connection by HELLO).
//!
//! A [`Reply`] is written once in its richest form; [`Reply::encode`] lowers the RESP3-only
//! types for a RESP2 client as Redis does: a map becomes a flat array of keys and values, a
//! set an array, a double a bulk string, a boolean the integer 1 or 0, a verbatim string a
//! bulk string, and the null a nil bulk string (or a nil array where Redis sends one).

use bytes::{BufMut, Bytes};

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2 (every connection starts here).
    #[default]
    Resp2,
    /// RESP3 (after `HELLO 3`).
    Resp3,
}

/// One reply to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+text`: a status such as OK or PONG (no CR or LF inside).
    Status(&'static str),
    /// `+text` built at run time (CR and LF are replaced by spaces).
    StatusText(String),
    /// `-CODE message`: an error line (CR and LF are replaced by spaces).
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$len bytes`.
    Bulk(Bytes),
    /// The null: RESP2's nil bulk string, RESP3's `_`.
    Nil,
    /// The null where RESP2 sends a nil array (`*-1`), RESP3's `_`.
    NilArray,
    /// `*n ...`.
    Array(Vec<Reply>),
    /// `%n key value ...` (RESP2: a flat array).
    Map(Vec<(Reply, Reply)>),
    /// `~n ...` (RESP2: an array).
    Set(Vec<Reply>),
    /// `,double` (RESP2: its text as a bulk string).
    Double(f64),
    /// `#t` / `#f` (RESP2: 1 / 0).
    Boolean(bool),
    /// `=len fmt:text`, with a three-letter format such as `txt` (RESP2: a bulk string).
    Verbatim(&'static str, Bytes),
}

/// `+OK`.
pub const OK: Reply = Reply::Status("OK");

impl Reply {
    /// A bulk string of `text`.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Bulk(Bytes::from(text.into()))
    }

    /// A bulk string, or the null for `None`.
    pub fn optional(value: Option<Bytes>) -> Reply {
        value.map_or(Reply::Nil, Reply::Bulk)
    }

    /// An error reply: `line` is the whole line after `-` (code first, e.g. `ERR ...`).
    pub fn error(line: impl Into<String>) -> Reply {
        Reply::Error(line.into())
    }

    /// `ERR <message>`.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the reply's encoding in `protocol` to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut Vec<u8>) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Reply::Status(text) => line(out, b'+', text.as_bytes()),
            Reply::StatusText(text) => line(out, b'+', text.as_bytes()),
            Reply::Error(text) => line(out, b'-', text.as_bytes()),
            Reply::Integer(number) => header(out, b':', *number),
            Reply::Bulk(bytes) => bulk(out, b'$', bytes),
            Reply::Nil if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::NilArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(items) => sequence(out, b'*', items, protocol),
            Reply::Set(items) => sequence(out, if resp3 { b'~' } else { b'*' }, items, protocol),
            Reply::Map(pairs) => {
                if resp3 {
                    header(out, b'%', pairs.len() as i64);
                } else {
                    header(out, b'*', 2 * pairs.len() as i64);
                }
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
            Reply::Double(value) => {
                let text = format_double(*value);
                if resp3 {
                    line(out, b',', text.as_bytes());
                } else {
                    bulk(out, b'$', text.as_bytes());
                }
            }
            Reply::Boolean(value) if resp3 => {
                out.extend_from_slice(if *value { b"#t\r\n" } else { b"#f\r\n" });
            }
            Reply::Boolean(value) => header(out, b':', i64::from(*value)),
            Reply::Verbatim(format, text) if resp3 => {
                let mut body = Vec::with_capacity(text.len() + 4);
                body.extend_from_slice(format.as_bytes());
                body.put_u8(b':');
                body.extend_from_slice(text);
                bulk(out, b'=', &body);
            }
            Reply::Verbatim(_, text) => bulk(out, b'$', text),
        }
    }
}

/// A double as Redis prints it: `inf`, `-inf`, `nan`, else the shortest decimal.
fn format_double(value: f64) -> String {
    if value.is_nan() {
        "nan".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        value.to_string()
    }
}

fn header(out: &mut Vec<u8>, kind: u8, number: i64) {
    out.push(kind);
    decimal(out, number);
    out.extend_from_slice(b"\r\n");
}

/// Appends `number` in decimal without allocating.
fn decimal(out: &mut Vec<u8>, number: i64) {
    let mut digits = [0u8; 20];
    let mut position = digits.len();
    let mut magnitude = number.unsigned_abs();
    loop {
        position -= 1;
        digits[position] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if number < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[position..]);
}

fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend(text.iter().map(|byte| {
        if matches!(byte, b'\r' | b'\n') {
            b' '
        } else {
            *byte
        }
    }));
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    header(out, kind, bytes.len() as i64);
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

fn sequence(out: &mut Vec<u8>, kind: u8, items: &[Reply], protocol: Protocol) {
    header(out, kind, items.len() as i64);
    for item in items {
        item.encode(protocol, out);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encoded(reply: &Reply, protocol: Protocol) -> String {
        let mut out = Vec::new();
        reply.encode(protocol, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn resp3_types_are_lowered_for_resp2_as_redis_does() {
        let map = Reply::Map(vec![(Reply::text("a"), Reply::Integer(1))]);
        assert_eq!(encoded(&map, Protocol::Resp3), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(encoded(&map, Protocol::Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(encoded(&Reply::Nil, Protocol::Resp2), "$-1\r\n");
        assert_eq!(encoded(&Reply::NilArray, Protocol::Resp2), "*-1\r\n");
        assert_eq!(encoded(&Reply::Nil, Protocol::Resp3), "_\r\n");
        assert_eq!(encoded(&Reply::Double(1.5), Protocol::Resp3), ",1.5\r\n");
        assert_eq!(
            encoded(&Reply::Double(1.5), Protocol::Resp2),
            "$3\r\n1.5\r\n"
        );
        assert_eq!(encoded(&Reply::Boolean(true), Protocol::Resp2), ":1\r\n");
        assert_eq!(encoded(&Reply::Boolean(false), Protocol::Resp3), "#f\r\n");
        let set = Reply::Set(vec![Reply::Integer(2)]);
        assert_eq!(encoded(&set, Protocol::Resp3), "~1\r\n:2\r\n");
        assert_eq!(encoded(&set, Protocol::Resp2), "*1\r\n:2\r\n");
        let verbatim = Reply::Verbatim("txt", Bytes::from_static(b"hi"));
        assert_eq!(encoded(&verbatim, Protocol::Resp3), "=6\r\ntxt:hi\r\n");
        assert_eq!(encoded(&verbatim, Protocol::Resp2), "$2\r\nhi\r\n");
    }

    #[test]
    fn integers_print_in_decimal_at_both_ends_of_the_range() {
        for number in [0, 7, -7, 10, i64::MAX, i64::MIN] {
            assert_eq!(
                encoded(&Reply::Integer(number), Protocol::Resp2),
                format!(":{number}\r\n")
            );
        }
    }

    #[test]
    fn error_and_status_lines_never_carry_a_line_break() {
        let error = Reply::error("ERR bad\r\nthing");
        assert_eq!(encoded(&error, Protocol::Resp2), "-ERR bad  thing\r\n");
    }

    /// A minimal RESP reader for tests: one reply from `input`, and the bytes left.
    pub(crate) fn decode(input: &[u8]) -> Option<(Reply, &[u8])> {
        let end = input.windows(2).position(|pair| pair == b"\r\n")?;
        let (head, rest) = (&input[..end], &input[end + 2..]);
        let text = std::str::from_utf8(&head[1..]).ok()?;
        let items = decode_items;
        Some(match head[0] {
            b'+' => (Reply::StatusText(text.to_string()), rest),
            b'-' => (Reply::Error(text.to_string()), rest),
            b':' => (Reply::Integer(text.parse().ok()?), rest),
            b'$' if text == "-1" => (Reply::Nil, rest),
            b'_' => (Reply::Nil, rest),
            b'$' => {
                let length: usize = text.parse().ok()?;
                let bytes = Bytes::copy_from_slice(rest.get(..length)?);
                (Reply::Bulk(bytes), rest.get(length + 2..)?)
            }
            b'*' if text == "-1" => (Reply::NilArray, rest),
            b'*' => {
                let (items, rest) = items(text.parse().ok()?, rest)?;
                (Reply::Array(items), rest)
            }
            b'%' => {
                let (items, rest) = items(2 * text.parse::<usize>().ok()?, rest)?;
                let mut pairs = Vec::new();
                let mut iter = items.into_iter();
                while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
                    pairs.push((key, value));
                }
                (Reply::Map(pairs), rest)
            }
            _ => return None,
        })
    }

    fn decode_items(count: usize, mut rest: &[u8]) -> Option<(Vec<Reply>, &[u8])> {
        let mut items = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let (item, left) = decode(rest)?;
            items.push(item);
            rest = left;
        }
        Some((items, rest))
    }

    fn reply_strategy() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Reply::Integer),
            prop::collection::vec(any::<u8>(), 0..20).prop_map(|b| Reply::Bulk(Bytes::from(b))),
            "[a-zA-Z0-9 ]{0,12}".prop_map(|t| Reply::Error(format!("ERR {t}"))),
            Just(Reply::Nil),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Reply::Array),
                prop::collection::vec((inner.clone(), inner), 0..3).prop_map(Reply::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn every_reply_decodes_to_itself_in_resp3(reply in reply_strategy()) {
            let mut out = Vec::new();
            reply.encode(Protocol::Resp3, &mut out);
            let Some((decoded, rest)) = decode(&out) else {
                return Err(TestCaseError::fail("undecodable"));
            };
            prop_assert!(rest.is_empty());
            let mut again = Vec::new();
            decoded.encode(Protocol::Resp3, &mut again);
            prop_assert_eq!(again, out);
        }
    }
}
