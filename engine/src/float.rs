//! Redis's decimal floating-point syntax and formatting (its `string2ld` and `ld2string` in
//! human mode), used by INCRBYFLOAT.
//!
//! Redis computes in `long double`; slotkv in `f64`. The formatting rounds to at most 17
//! decimals and trims trailing zeros as Redis does, and otherwise prints the shortest decimal
//! that reads back to the same `f64` (so `10.5` + `0.1` prints `10.6`, as in Redis); a result
//! whose 18th significant digit differs between the two precisions (`0.1` + `0.2`) prints as
//! `f64` sees it.

/// Longest text accepted as a number, in bytes (Redis's `MAX_LONG_DOUBLE_CHARS`).
pub(crate) const FLOAT_TEXT_BYTES_MAX: usize = 5 * 1024;

/// Decimals kept by the formatting (Redis prints `%.17Lf`).
const DECIMALS_MAX: usize = 17;

/// Parses `bytes` as Redis would for INCRBYFLOAT, or `None` where Redis says "not a valid
/// float": empty or too long, leading or trailing space or garbage, NaN, or a finite-looking
/// number out of range. `inf` and `infinity` parse (the sum is then refused as infinite).
pub fn parse_f64(bytes: &[u8]) -> Option<f64> {
    if bytes.is_empty() || bytes.len() >= FLOAT_TEXT_BYTES_MAX {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let value: f64 = text.parse().ok()?;
    if value.is_nan() {
        return None;
    }
    let spelled_infinite = text
        .trim_start_matches(['+', '-'])
        .eq_ignore_ascii_case("inf")
        || text
            .trim_start_matches(['+', '-'])
            .eq_ignore_ascii_case("infinity");
    if value.is_infinite() && !spelled_infinite {
        return None;
    }
    Some(value)
}

/// Formats a finite `value` as Redis's INCRBYFLOAT reply: plain decimal notation, at most 17
/// decimals, no trailing zeros or point, and `0` for negative zero.
pub fn format_f64(value: f64) -> String {
    let shortest = value.to_string();
    let decimals = shortest
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len());
    let mut text = if decimals > DECIMALS_MAX {
        format!("{value:.DECIMALS_MAX$}")
    } else {
        shortest
    };
    if text.contains('.') {
        let kept = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(kept);
    }
    if text == "-0" {
        text = "0".to_string();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_redis_parses() {
        let good: &[(&[u8], f64)] = &[
            (b"10.50", 10.5),
            (b"5.0e3", 5000.0),
            (b"-3", -3.0),
            (b"+1.5", 1.5),
            (b".5", 0.5),
            (b"inf", f64::INFINITY),
            (b"-Infinity", f64::NEG_INFINITY),
        ];
        for (text, value) in good {
            assert_eq!(parse_f64(text), Some(*value));
        }
        let bad: &[&[u8]] = &[
            b"", b" 1", b"1 ", b"abc", b"1.5x", b"nan", b"1e999", b"\xff",
        ];
        for text in bad {
            assert_eq!(parse_f64(text), None, "{:?}", String::from_utf8_lossy(text));
        }
        assert_eq!(parse_f64(&vec![b'1'; FLOAT_TEXT_BYTES_MAX]), None);
    }

    #[test]
    fn formats_like_redis() {
        let cases = [
            (10.5 + 0.1, "10.6"),
            (10.6 - 5.0, "5.6"),
            (0.1 + 0.2, "0.30000000000000004"),
            (5000.0 + 200.0, "5200"),
            (3.0, "3"),
            (-0.0, "0"),
            (-2.5, "-2.5"),
            (1e-20, "0"),
            (1.5e-10, "0.00000000015"),
            (1e20, "100000000000000000000"),
        ];
        for (value, text) in cases {
            assert_eq!(format_f64(value), text, "{value:e}");
        }
    }
}
