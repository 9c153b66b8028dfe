//! kvnode's redis.conf-style configuration file: `kvnode /etc/kvnode.conf --port 7001` reads
//! the file's directives, then the command line's flags, which win (as with `redis-server`).
//!
//! A directive is a line `name arg [arg ...]`, split as Redis splits it: spaces separate
//! arguments, `"double quotes"` take `\n \r \t \b \a \\ \" \xHH` escapes, `'single quotes'`
//! take `\'`, and `#` starts a comment line. Each directive becomes the flag of the same name
//! (`cluster-node-timeout 5000` is `--cluster-node-timeout 5000`), its arguments joined by one
//! space; every `save` line adds its pairs to the ones before it and `save ""` clears them,
//! as in Redis. A directive kvnode has no flag for is an error naming it and its line, never
//! skipped: a setting the operator wrote must not silently do nothing.

use std::ffi::OsString;
use std::path::Path;

/// Most bytes of a configuration file read (a redis.conf is tens of KiB).
pub(crate) const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is larger than [`CONFIG_FILE_BYTES_MAX`].
    #[error("{path} is larger than {CONFIG_FILE_BYTES_MAX} bytes")]
    TooLarge { path: String },
    /// A line's quoting does not close, or a closing quote is followed by more text.
    #[error("{path}:{line}: unbalanced quotes")]
    Quotes { path: String, line: usize },
    /// A directive kvnode does not know.
    #[error("{path}:{line}: unknown directive '{name}' (kvnode --help lists the settings it has)")]
    Unknown {
        path: String,
        line: usize,
        name: String,
    },
    /// A directive with no argument.
    #[error("{path}:{line}: '{name}' needs an argument")]
    MissingArgument {
        path: String,
        line: usize,
        name: String,
    },
}

/// The command-line arguments the file at `path` stands for, in its order (`save` last, its
/// pairs merged), for the flags whose long names are `known`.
pub(crate) fn arguments_of_file(
    path: &Path,
    known: &[String],
) -> Result<Vec<OsString>, ConfigFileError> {
    let shown = path.display().to_string();
    let read_error = |source| ConfigFileError::Read {
        path: shown.clone(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    if metadata.len() > CONFIG_FILE_BYTES_MAX {
        return Err(ConfigFileError::TooLarge { path: shown });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    arguments_of_text(&text, &shown, known)
}

/// [`arguments_of_file`] for text already read; `path` names it in errors.
pub(crate) fn arguments_of_text(
    text: &str,
    path: &str,
    known: &[String],
) -> Result<Vec<OsString>, ConfigFileError> {
    let mut arguments = Vec::new();
    let mut save: Option<Vec<String>> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let words = split_arguments(trimmed).ok_or_else(|| ConfigFileError::Quotes {
            path: path.to_string(),
            line: number,
        })?;
        let Some((name, values)) = words.split_first() else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if !known.contains(&name) {
            return Err(ConfigFileError::Unknown {
                path: path.to_string(),
                line: number,
                name,
            });
        }
        if values.is_empty() {
            return Err(ConfigFileError::MissingArgument {
                path: path.to_string(),
                line: number,
                name,
            });
        }
        if name == "save" {
            let pairs = save.get_or_insert_with(Vec::new);
            if values.len() == 1 && values[0].is_empty() {
                pairs.clear();
            } else {
                pairs.extend(values.iter().cloned());
            }
            continue;
        }
        arguments.push(OsString::from(format!("--{name}")));
        arguments.push(OsString::from(values.join(" ")));
    }
    if let Some(pairs) = save {
        arguments.push(OsString::from("--save"));
        arguments.push(OsString::from(pairs.join(" ")));
    }
    Ok(arguments)
}

/// Splits a line into arguments as Redis splits a config line (see the module docs); `None`
/// when its quotes do not balance.
fn split_arguments(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Some(words);
        };
        let mut word = String::new();
        match first {
            '"' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            'n' => word.push('\n'),
                            'r' => word.push('\r'),
                            't' => word.push('\t'),
                            'b' => word.push('\u{8}'),
                            'a' => word.push('\u{7}'),
                            'x' => {
                                let high = chars.next()?;
                                let low = chars.next()?;
                                let byte = u8::from_str_radix(&format!("{high}{low}"), 16).ok()?;
                                word.push(char::from(byte));
                            }
                            other => word.push(other),
                        },
                        other => word.push(other),
                    }
                }
                if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                    return None;
                }
            }
            '\'' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '\'' => break,
                        '\\' if chars.peek() == Some(&'\'') => {
                            chars.next();
                            word.push('\'');
                        }
                        other => word.push(other),
                    }
                }
                if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                    return None;
                }
            }
            _ => {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    word.push(c);
                }
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        [
            "port",
            "requirepass",
            "save",
            "cluster-node-timeout",
            "bind",
        ]
        .iter()
        .map(|name| name.to_string())
        .collect()
    }

    fn arguments(text: &str) -> Result<Vec<String>, ConfigFileError> {
        arguments_of_text(text, "test.conf", &known()).map(|arguments| {
            arguments
                .into_iter()
                .map(|argument| argument.into_string().expect("utf-8"))
                .collect()
        })
    }

    #[test]
    fn directives_become_flags_in_order_with_comments_and_blank_lines_skipped() {
        let text = "# a comment\n\nport 7001\n  Cluster-Node-Timeout   5000  \nbind 10.0.0.1 ::1\n";
        assert_eq!(
            arguments(text).expect("accepted"),
            [
                "--port",
                "7001",
                "--cluster-node-timeout",
                "5000",
                "--bind",
                "10.0.0.1 ::1"
            ]
        );
    }

    #[test]
    fn quoted_values_are_unescaped_as_redis_does() {
        let text = "requirepass \"a b\\\"c\\x41\"\n";
        assert_eq!(
            arguments(text).expect("accepted"),
            ["--requirepass", "a b\"cA"]
        );
        let text = "requirepass 'it\\'s'\n";
        assert_eq!(
            arguments(text).expect("accepted"),
            ["--requirepass", "it's"]
        );
        for broken in [
            "requirepass \"open\n",
            "requirepass \"a\"b\n",
            "requirepass 'x\n",
        ] {
            let error = arguments(broken).expect_err("refused");
            assert!(error.to_string().contains("test.conf:1"), "{error}");
        }
    }

    #[test]
    fn save_lines_add_up_and_an_empty_save_clears_them() {
        let text = "save 900 1\nport 7000\nsave 300 10\n";
        assert_eq!(
            arguments(text).expect("accepted"),
            ["--port", "7000", "--save", "900 1 300 10"]
        );
        let text = "save 900 1\nsave \"\"\n";
        assert_eq!(arguments(text).expect("accepted"), ["--save", ""]);
    }

    #[test]
    fn an_unknown_directive_is_named_with_its_line_not_skipped() {
        let error = arguments("port 7000\ntcp-keepalive 300\n").expect_err("refused");
        let text = error.to_string();
        assert!(
            text.contains("test.conf:2") && text.contains("'tcp-keepalive'"),
            "{text}"
        );
        let error = arguments("port\n").expect_err("refused");
        assert!(error.to_string().contains("needs an argument"), "{error}");
    }
}
