//! The request parser: RESP multibulk (`*<n>\r\n$<len>\r\n<bytes>\r\n...`) and inline
//! commands (`PING\r\n`, with Redis's quoting rules), incrementally over a client's
//! input buffer, so pipelined requests come out one by one and a request split over many
//! reads is parsed once. Every length read from the wire is checked against
//! [`RequestLimits`] before anything is buffered for it; a malformed request is a
//! [`ProtocolError`] whose text is Redis's (the connection answers `-ERR <text>` and closes).
//!
//! Arguments are handed out as [`Bytes`] split off the input buffer: no copy of keys or
//! values.

use bytes::{Buf, Bytes, BytesMut};

use crate::limits::RequestLimits;

/// Why a client's input cannot be parsed. Nothing of the offending request was executed;
/// the connection is closed after the error is answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An inline request longer than the inline limit without a newline.
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    /// An inline request with an unclosed quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A `*<count>` line longer than the inline limit.
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooBig,
    /// A `*<count>` that is not an integer or exceeds the argument limit.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A `$<length>` line longer than the inline limit.
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    /// An argument header that does not start with `$`.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    /// A `$<length>` that is not an integer, negative, or above `proto-max-bulk-len`.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// The request buffered so far exceeds the query buffer limit (Redis closes such a
    /// client without an answer).
    #[error("query buffer of {bytes} bytes exceeds the limit of {limit} bytes")]
    QueryBufferExceeded {
        /// Bytes buffered.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

impl ProtocolError {
    /// Whether Redis answers this error before closing (all but the query buffer limit).
    pub fn is_answered(&self) -> bool {
        !matches!(self, ProtocolError::QueryBufferExceeded { .. })
    }
}

/// A multibulk request being read: the arguments read so far and the next one's length
/// once its header was read.
#[derive(Debug, Default)]
struct Multibulk {
    remaining: usize,
    arguments: Vec<Bytes>,
    argument_bytes: usize,
    next_length: Option<usize>,
}

/// Most argument slots reserved up front for one multibulk request, whatever its count
/// says (the count is only a claim until the arguments arrive).
const ARGUMENTS_RESERVED_MAX: usize = 1024;

/// Parses one client's requests out of its input buffer (see the module docs).
#[derive(Debug)]
pub struct RequestParser {
    limits: RequestLimits,
    pending: Option<Multibulk>,
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: RequestLimits) -> RequestParser {
        RequestParser {
            limits,
            pending: None,
        }
    }

    /// The next complete request in `buffer`, consuming its bytes: `Ok(None)` when more
    /// input is needed. Empty requests (a blank inline line, `*0`) are skipped.
    pub fn next_request(
        &mut self,
        buffer: &mut BytesMut,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            let parsed = match self.pending.take() {
                Some(multibulk) => self.continue_multibulk(buffer, multibulk)?,
                None => match buffer.first() {
                    None => return Ok(None),
                    Some(b'*') => self.start_multibulk(buffer)?,
                    Some(_) => self.inline(buffer)?,
                },
            };
            match parsed {
                Step::Request(arguments) if arguments.is_empty() => continue,
                Step::Request(arguments) => return Ok(Some(arguments)),
                Step::NeedMore => {
                    self.check_buffered(buffer)?;
                    return Ok(None);
                }
            }
        }
    }

    fn check_buffered(&self, buffer: &BytesMut) -> Result<(), ProtocolError> {
        let held = self
            .pending
            .as_ref()
            .map_or(0, |pending| pending.argument_bytes);
        let bytes = buffer.len() + held;
        if bytes > self.limits.query_buffer_bytes_max {
            return Err(ProtocolError::QueryBufferExceeded {
                bytes,
                limit: self.limits.query_buffer_bytes_max,
            });
        }
        Ok(())
    }

    fn inline(&mut self, buffer: &mut BytesMut) -> Result<Step, ProtocolError> {
        let Some(newline) = buffer.iter().position(|byte| *byte == b'\n') else {
            if buffer.len() > self.limits.inline_bytes_max {
                return Err(ProtocolError::InlineTooBig);
            }
            return Ok(Step::NeedMore);
        };
        if newline > self.limits.inline_bytes_max {
            return Err(ProtocolError::InlineTooBig);
        }
        let line = buffer.split_to(newline + 1);
        let mut text = &line[..newline];
        if let Some(stripped) = text.strip_suffix(b"\r") {
            text = stripped;
        }
        let arguments = split_inline(text)?;
        Ok(Step::Request(
            arguments.into_iter().map(Bytes::from).collect(),
        ))
    }

    fn start_multibulk(&mut self, buffer: &mut BytesMut) -> Result<Step, ProtocolError> {
        let Some(line) = header_line(buffer, self.limits.inline_bytes_max)
            .map_err(|()| ProtocolError::MultibulkCountTooBig)?
        else {
            return Ok(Step::NeedMore);
        };
        let count = parse_integer(&buffer[1..line]).ok_or(ProtocolError::InvalidMultibulkLength)?;
        if count > self.limits.multibulk_args_max as i64 {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        buffer.advance(line + 2);
        if count <= 0 {
            return Ok(Step::Request(Vec::new()));
        }
        let remaining = count as usize;
        let multibulk = Multibulk {
            remaining,
            arguments: Vec::with_capacity(remaining.min(ARGUMENTS_RESERVED_MAX)),
            argument_bytes: 0,
            next_length: None,
        };
        self.continue_multibulk(buffer, multibulk)
    }

    fn continue_multibulk(
        &mut self,
        buffer: &mut BytesMut,
        mut multibulk: Multibulk,
    ) -> Result<Step, ProtocolError> {
        while multibulk.remaining > 0 {
            let length = match multibulk.next_length {
                Some(length) => length,
                None => match self.bulk_header(buffer)? {
                    Some(length) => length,
                    None => {
                        self.pending = Some(multibulk);
                        return Ok(Step::NeedMore);
                    }
                },
            };
            if buffer.len() < length + 2 {
                multibulk.next_length = Some(length);
                // Room for the whole argument at once, so it arrives without regrowing.
                buffer.reserve(length + 2 - buffer.len());
                self.pending = Some(multibulk);
                return Ok(Step::NeedMore);
            }
            let argument = buffer.split_to(length).freeze();
            // The two bytes after the argument are its CRLF (not checked, as Redis).
            buffer.advance(2);
            multibulk.argument_bytes += length;
            multibulk.arguments.push(argument);
            multibulk.next_length = None;
            multibulk.remaining -= 1;
        }
        Ok(Step::Request(multibulk.arguments))
    }

    /// Reads a `$<length>\r\n` header: the length, or `None` when incomplete.
    fn bulk_header(&self, buffer: &mut BytesMut) -> Result<Option<usize>, ProtocolError> {
        let Some(line) = header_line(buffer, self.limits.inline_bytes_max)
            .map_err(|()| ProtocolError::BulkCountTooBig)?
        else {
            return Ok(None);
        };
        if buffer[0] != b'$' {
            return Err(ProtocolError::ExpectedBulk(buffer[0]));
        }
        let length = parse_integer(&buffer[1..line]).ok_or(ProtocolError::InvalidBulkLength)?;
        if length < 0 || length as u64 > self.limits.bulk_bytes_max as u64 {
            return Err(ProtocolError::InvalidBulkLength);
        }
        buffer.advance(line + 2);
        Ok(Some(length as usize))
    }
}

/// What one parsing step produced.
enum Step {
    Request(Vec<Bytes>),
    NeedMore,
}

/// The position of the `\r` ending the header line at the start of `buffer`, once the
/// `\n` after it arrived too; `Err` when no line end came within `max` bytes.
fn header_line(buffer: &BytesMut, max: usize) -> Result<Option<usize>, ()> {
    let searched = &buffer[..buffer.len().min(max + 2)];
    match searched.iter().position(|byte| *byte == b'\r') {
        Some(position) if position + 1 < buffer.len() => Ok(Some(position)),
        Some(_) => Ok(None),
        None if buffer.len() > max => Err(()),
        None => Ok(None),
    }
}

/// Redis's strict decimal integer (see `slotkv_engine::parse_i64`).
fn parse_integer(text: &[u8]) -> Option<i64> {
    slotkv_engine::parse_i64(text)
}

/// Splits an inline request into arguments as Redis does: separated by spaces (and tabs,
/// CR, LF, NUL-free whitespace); `"..."` with backslash escapes (`\n \r \t \b \a \\ \"`
/// and `\xHH`), `'...'` with `\'`; a closing quote must be followed by a space or the end.
pub fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut arguments = Vec::new();
    let mut position = 0;
    loop {
        while position < line.len() && is_space(line[position]) {
            position += 1;
        }
        if position == line.len() {
            return Ok(arguments);
        }
        let (argument, next) = match line[position] {
            b'"' => double_quoted(line, position + 1)?,
            b'\'' => single_quoted(line, position + 1)?,
            _ => bare(line, position),
        };
        arguments.push(argument);
        position = next;
    }
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

fn bare(line: &[u8], start: usize) -> (Vec<u8>, usize) {
    let end = line[start..]
        .iter()
        .position(|byte| is_space(*byte))
        .map_or(line.len(), |offset| start + offset);
    (line[start..end].to_vec(), end)
}

/// After a closing quote: the end of the line or a space, else unbalanced.
fn after_quote(line: &[u8], position: usize) -> Result<usize, ProtocolError> {
    match line.get(position) {
        None => Ok(position),
        Some(byte) if is_space(*byte) => Ok(position),
        Some(_) => Err(ProtocolError::UnbalancedQuotes),
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|digit| digit as u8)
}

fn double_quoted(line: &[u8], mut position: usize) -> Result<(Vec<u8>, usize), ProtocolError> {
    let mut argument = Vec::new();
    loop {
        let Some(&byte) = line.get(position) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        match byte {
            b'"' => return Ok((argument, after_quote(line, position + 1)?)),
            b'\\' if line.get(position + 1) == Some(&b'x') => {
                let high = line.get(position + 2).copied().and_then(hex_value);
                let low = line.get(position + 3).copied().and_then(hex_value);
                if let (Some(high), Some(low)) = (high, low) {
                    argument.push(high * 16 + low);
                    position += 4;
                } else {
                    argument.push(b'x');
                    position += 2;
                }
            }
            b'\\' if position + 1 < line.len() => {
                argument.push(match line[position + 1] {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                });
                position += 2;
            }
            other => {
                argument.push(other);
                position += 1;
            }
        }
    }
}

fn single_quoted(line: &[u8], mut position: usize) -> Result<(Vec<u8>, usize), ProtocolError> {
    let mut argument = Vec::new();
    loop {
        let Some(&byte) = line.get(position) else {
            return Err(ProtocolError::UnbalancedQuotes);
        };
        match byte {
            b'\'' => return Ok((argument, after_quote(line, position + 1)?)),
            b'\\' if line.get(position + 1) == Some(&b'\'') => {
                argument.push(b'\'');
                position += 2;
            }
            other => {
                argument.push(other);
                position += 1;
            }
        }
    }
}

/// Encodes `arguments` as one multibulk request (what a client sends).
pub fn encode_request(arguments: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", arguments.len()).as_bytes());
    for argument in arguments {
        out.extend_from_slice(format!("${}\r\n", argument.len()).as_bytes());
        out.extend_from_slice(argument);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse_all(
        input: &[u8],
        limits: RequestLimits,
    ) -> (Vec<Vec<Vec<u8>>>, Option<ProtocolError>) {
        let mut parser = RequestParser::new(limits);
        let mut buffer = BytesMut::from(input);
        let mut requests = Vec::new();
        loop {
            match parser.next_request(&mut buffer) {
                Ok(Some(arguments)) => {
                    requests.push(arguments.iter().map(|a| a.to_vec()).collect());
                }
                Ok(None) => return (requests, None),
                Err(error) => return (requests, Some(error)),
            }
        }
    }

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn pipelined_multibulk_and_inline_requests_come_out_in_order() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n\r\n*0\r\nset a \"b c\"\r\n";
        let (requests, error) = parse_all(input, RequestLimits::default());
        assert_eq!(error, None);
        assert_eq!(
            requests,
            vec![
                args(&["GET", "k"]),
                args(&["PING"]),
                args(&["set", "a", "b c"])
            ]
        );
    }

    #[test]
    fn a_request_split_anywhere_parses_once_complete() {
        let mut whole = Vec::new();
        encode_request(&[b"SET", b"key", b"value\r\nwith crlf"], &mut whole);
        for cut in 0..whole.len() {
            let mut parser = RequestParser::new(RequestLimits::default());
            let mut buffer = BytesMut::from(&whole[..cut]);
            assert_eq!(parser.next_request(&mut buffer), Ok(None), "cut at {cut}");
            buffer.extend_from_slice(&whole[cut..]);
            let request = parser.next_request(&mut buffer).unwrap().unwrap();
            assert_eq!(request[2], &b"value\r\nwith crlf"[..]);
            assert!(buffer.is_empty());
        }
    }

    #[test]
    fn malformed_requests_get_redis_errors() {
        let limits = RequestLimits {
            bulk_bytes_max: 10,
            multibulk_args_max: 4,
            inline_bytes_max: 16,
            query_buffer_bytes_max: 64,
        };
        let cases: &[(&[u8], &str)] = &[
            (b"*5\r\n", "Protocol error: invalid multibulk length"),
            (b"*x\r\n", "Protocol error: invalid multibulk length"),
            (b"*1\r\n+3\r\n", "Protocol error: expected '$', got '+'"),
            (b"*1\r\n$11\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$01\r\n", "Protocol error: invalid bulk length"),
            (
                b"*111111111111111111",
                "Protocol error: too big mbulk count string",
            ),
            (
                b"*1\r\n$1111111111111111111",
                "Protocol error: too big bulk count string",
            ),
            (
                b"aaaaaaaaaaaaaaaaaaaaaaaa",
                "Protocol error: too big inline request",
            ),
            (
                b"set \"a\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"set 'a'b\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
        ];
        for (input, expected) in cases {
            let (_, error) = parse_all(input, limits);
            let error =
                error.unwrap_or_else(|| panic!("{:?} parsed", String::from_utf8_lossy(input)));
            assert_eq!(error.to_string(), *expected);
            assert!(error.is_answered());
        }
    }

    #[test]
    fn the_query_buffer_limit_closes_a_client_whose_request_never_completes() {
        let limits = RequestLimits {
            query_buffer_bytes_max: 32,
            ..RequestLimits::default()
        };
        let mut parser = RequestParser::new(limits);
        let mut buffer = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$10\r\n0123456789\r\n$100\r\n"[..]);
        assert_eq!(parser.next_request(&mut buffer), Ok(None));
        buffer.extend_from_slice(&[b'x'; 20]);
        let error = parser.next_request(&mut buffer).unwrap_err();
        assert!(matches!(error, ProtocolError::QueryBufferExceeded { .. }));
        assert!(!error.is_answered());
    }

    #[test]
    fn inline_quoting_follows_redis() {
        assert_eq!(
            split_inline(br#"a "b\x41\n" 'c\'d'   e"#).unwrap(),
            vec![
                b"a".to_vec(),
                b"bA\n".to_vec(),
                b"c'd".to_vec(),
                b"e".to_vec()
            ]
        );
        assert_eq!(split_inline(b"  ").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(split_inline(b"\"\"").unwrap(), vec![Vec::<u8>::new()]);
    }

    proptest! {
        #[test]
        fn any_request_round_trips_in_any_chunking(
            requests in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6), 1..5),
            chunk in 1usize..50,
        ) {
            let mut wire = Vec::new();
            for request in &requests {
                let slices: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
                encode_request(&slices, &mut wire);
            }
            let mut parser = RequestParser::new(RequestLimits::default());
            let mut buffer = BytesMut::new();
            let mut parsed = Vec::new();
            for piece in wire.chunks(chunk) {
                buffer.extend_from_slice(piece);
                while let Some(request) = parser.next_request(&mut buffer).unwrap() {
                    parsed.push(request.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                }
            }
            prop_assert_eq!(parsed, requests);
        }

        #[test]
        fn any_input_parses_or_fails_without_panicking(input in prop::collection::vec(any::<u8>(), 0..200)) {
            let limits = RequestLimits {
                bulk_bytes_max: 32,
                multibulk_args_max: 8,
                inline_bytes_max: 32,
                query_buffer_bytes_max: 128,
            };
            let _ = parse_all(&input, limits);
        }
    }
}
