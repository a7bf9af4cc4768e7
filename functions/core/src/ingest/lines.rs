//! The lines of an events file (JSON Lines) as text. A line that is not UTF-8 is that line's
//! error, as any other bad line: one bad byte never fails the whole file.

use crate::ingest::call::CallError;

/// The error of a line that is not UTF-8 (`valid_up_to`: its valid prefix, in bytes).
pub fn not_utf8(valid_up_to: usize) -> CallError {
    CallError {
        path: String::new(),
        message: format!(
            "the line is not UTF-8 text (an invalid byte at column {})",
            valid_up_to + 1
        ),
    }
}

/// The non-blank lines of `bytes`, numbered from 1, each without its ending (`\n` or
/// `\r\n`, as `str::lines` gives them): its text, or the error of a line that is not UTF-8.
pub fn text_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, Result<&str, CallError>)> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let text = std::str::from_utf8(line).map_err(|e| not_utf8(e.valid_up_to()));
            (i + 1, text)
        })
        .filter(|(_, text)| !text.as_ref().is_ok_and(|t| t.trim().is_empty()))
}

/// Makes a block of whole lines text without moving a byte: every line that is not UTF-8 is
/// overwritten with spaces (a blank line, of the same length) and listed with its number
/// (`first_line` is the block's first) and error, in order.
pub fn blank_invalid_lines(bytes: Vec<u8>, first_line: usize) -> (String, Vec<(usize, CallError)>) {
    let mut bytes = match String::from_utf8(bytes) {
        Ok(text) => return (text, Vec::new()),
        Err(e) => e.into_bytes(),
    };
    let mut bad = Vec::new();
    let mut start = 0;
    let mut number = first_line;
    while start < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        if let Err(e) = std::str::from_utf8(&bytes[start..end]) {
            bad.push((number, not_utf8(e.valid_up_to())));
            bytes[start..end].fill(b' ');
        }
        start = end + 1;
        number += 1;
    }
    // every line is now UTF-8 (and so is the whole)
    let text = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    (text, bad)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_bad_byte_is_its_lines_error_only() {
        let bytes = b"{\"a\":1}\r\n\n  \nx\xffy\n{\"b\":2}";
        let lines: Vec<_> = text_lines(bytes).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], (1, Ok("{\"a\":1}")));
        assert_eq!(lines[1].0, 4);
        assert!(lines[1]
            .1
            .as_ref()
            .unwrap_err()
            .message
            .contains("column 2"));
        assert_eq!(lines[2], (5, Ok("{\"b\":2}")));
    }

    #[test]
    fn blanking_keeps_every_offset() {
        let bytes = b"ok\n\xc3\n\xe2\x82\xac ok\nbad \xf0\x28\n".to_vec();
        let (text, bad) = blank_invalid_lines(bytes.clone(), 10);
        assert_eq!(text.len(), bytes.len());
        assert_eq!(text, "ok\n \n\u{20ac} ok\n      \n");
        assert_eq!(
            bad.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![11, 13]
        );
    }
}
