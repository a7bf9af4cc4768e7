//! The `Content-Encoding` of request bodies (SPEC §8): `gzip` is accepted on every POST
//! route, as the analytics libraries send it, and the limits count the decoded body. A body
//! is inflated one byte past the limit at most, so a few kilobytes that would inflate to
//! gigabytes (a zip bomb) cost no more than the limit.

use flate2::read::MultiGzDecoder;
use std::borrow::Cow;
use std::io::Read;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The decoded body is over the limit.
    #[error("the decompressed body is over the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// An encoding other than `gzip` (or `identity`).
    #[error("the content encoding `{0}` is not supported; send `gzip` or no encoding")]
    Unsupported(String),
    /// Not a gzip stream, or a truncated one.
    #[error("the body does not decompress as gzip: {0}")]
    Corrupt(String),
}

/// The body as sent before its `Content-Encoding` (the header's value, `None` when absent)
/// was applied, at most `limit` bytes. Encodings listed in the order they were applied are
/// undone from the last; `identity` changes nothing.
pub fn decode<'a>(
    encoding: Option<&str>,
    body: &'a [u8],
    limit: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let mut out = Cow::Borrowed(body);
    let codings: Vec<String> = encoding
        .unwrap_or("")
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    for coding in codings.iter().rev() {
        match coding.as_str() {
            "identity" => {}
            "gzip" | "x-gzip" => out = Cow::Owned(gunzip(&out, limit)?),
            other => return Err(DecodeError::Unsupported(other.to_owned())),
        }
    }
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

/// Inflates a gzip stream (members one after the other, as `gzip` concatenates them), at
/// most `limit` bytes.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    MultiGzDecoder::new(body)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_and_identity_decode_and_others_are_refused() {
        let body = br#"{"type": "track"}"#;
        assert_eq!(decode(None, body, 100).unwrap().as_ref(), body);
        assert_eq!(decode(Some("identity"), body, 100).unwrap().as_ref(), body);
        assert_eq!(
            decode(Some("GZip"), &gzip(body), 100).unwrap().as_ref(),
            body
        );
        assert_eq!(
            decode(Some("gzip, gzip"), &gzip(&gzip(body)), 100)
                .unwrap()
                .as_ref(),
            body
        );
        // two members, as `cat a.gz b.gz` makes
        let mut two = gzip(b"{\"a\":");
        two.extend(gzip(b"1}"));
        assert_eq!(
            decode(Some("gzip"), &two, 100).unwrap().as_ref(),
            b"{\"a\":1}"
        );
        assert_eq!(
            decode(Some("br"), body, 100),
            Err(DecodeError::Unsupported("br".into()))
        );
        assert!(matches!(
            decode(Some("gzip"), body, 100),
            Err(DecodeError::Corrupt(_))
        ));
        let cut = gzip(body);
        assert!(matches!(
            decode(Some("gzip"), &cut[..cut.len() - 4], 100),
            Err(DecodeError::Corrupt(_))
        ));
    }

    /// 64 MB of zeros gzip to about 64 KB; decoding stops one byte past the limit.
    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10, "{}", bomb.len());
        assert_eq!(
            decode(Some("gzip"), &bomb, 1 << 20),
            Err(DecodeError::TooLarge { limit: 1 << 20 })
        );
        assert_eq!(
            decode(None, &[0u8; 11], 10),
            Err(DecodeError::TooLarge { limit: 10 })
        );
    }
}
