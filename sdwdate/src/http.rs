//! The one thing sdwdate reads from a time source: the `Date` header of an HTTP response.
//! Sans-IO: bytes in, a verdict out.

use thiserror::Error;

/// A response head larger than this is refused: a time source has no reason to send more.
pub const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("response head larger than {MAX_HEAD} bytes (oversized)")]
    Oversized,
    #[error("not an HTTP response: {0:?}")]
    NotHttp(String),
    #[error("no Date header in the response")]
    NoDate,
    #[error("malformed Date header {0:?}")]
    BadDate(String),
}

/// Where the head ends (index after the blank line), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The request sdwdate sends. Minimal and identical for every user, so it identifies nobody.
pub fn request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// Unix time of the `Date` header in a complete response head.
pub fn parse_date(head: &[u8]) -> Result<i64, HttpError> {
    if head.len() > MAX_HEAD {
        return Err(HttpError::Oversized);
    }
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let ok_status = status.starts_with("HTTP/1.")
        && status
            .split(' ')
            .nth(1)
            .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()));
    if !ok_status {
        return Err(HttpError::NotHttp(status.chars().take(40).collect()));
    }
    let value = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("date"))
        .map(|(_, v)| v.trim())
        .ok_or(HttpError::NoDate)?;
    // Upstream's sanity limits on the header's length.
    if !(29..=100).contains(&value.len()) {
        return Err(HttpError::BadDate(value.chars().take(100).collect()));
    }
    let t = httpdate::parse_http_date(value).map_err(|_| HttpError::BadDate(value.to_owned()))?;
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| HttpError::BadDate(value.to_owned()))?
        .as_secs();
    i64::try_from(secs).map_err(|_| HttpError::BadDate(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let ok = b"HTTP/1.0 200 OK\r\nServer: x\r\ndate: Wed, 25 Nov 2026 19:50:09 GMT\r\n\r\n";
        assert_eq!(parse_date(ok), Ok(1_795_636_209));
        let redirect =
            b"HTTP/1.1 301 Moved\r\nDate: Wed, 25 Nov 2026 19:50:09 GMT\r\nLocation: /\r\n\r\n";
        assert_eq!(parse_date(redirect), Ok(1_795_636_209));
        assert_eq!(
            parse_date(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(HttpError::NoDate)
        );
        assert!(matches!(
            parse_date(b"HTTP/1.1 200 OK\r\nDate: yesterday\r\n\r\n"),
            Err(HttpError::BadDate(_))
        ));
        assert!(matches!(
            parse_date(b"HTTP/1.1 200 OK\r\nDate: Wed, 32 Nov 2026 19:50:09 GMT\r\n\r\n"),
            Err(HttpError::BadDate(_))
        ));
        assert!(matches!(
            parse_date(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(HttpError::NotHttp(_))
        ));
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(parse_date(&big), Err(HttpError::Oversized));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n"), None);
    }
}
