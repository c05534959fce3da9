//! The clock against Tor's consensus window and the minimum time (as upstream's anondate
//! and timesanitycheck).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// Upstream's expiry: 2033-05-17 10:00:00 UTC.
pub const EXPIRY: i64 = 1_999_936_800;

/// Days since 1970-01-01 of a Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Tor's `YYYY-MM-DD HH:MM:SS` (UTC) as unix time.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim().trim_matches('"');
    let (date, time) = s.split_once(' ')?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let t: Vec<i64> = time
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if d.len() != 3
        || t.len() != 3
        || !(1..=12).contains(&d[1])
        || !(1..=31).contains(&d[2])
        || t[0] > 23
        || t[1] > 59
        || t[2] > 60
    {
        return None;
    }
    Some(days_from_civil(d[0], d[1], d[2]) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2])
}

/// valid-after / valid-until of a cached consensus file.
pub fn window_from_consensus(text: &str) -> Option<(i64, i64)> {
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(parse_time)
    };
    Some((field("valid-after ")?, field("valid-until ")?))
}

/// The same from a ControlPort (NULL or cookie authentication).
pub fn window_from_control(addr: SocketAddr, cookie: Option<&Path>) -> Result<(i64, i64), String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("control port {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut ask = |cmd: String| -> Result<Vec<String>, String> {
        w.write_all(cmd.as_bytes()).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("control port closed".into());
            }
            let line = line.trim_end().to_owned();
            if !line.starts_with("250") {
                return Err(format!("control port: {line}"));
            }
            let last = line.as_bytes().get(3) == Some(&b' ');
            out.push(line);
            if last {
                return Ok(out);
            }
        }
    };
    let auth = match cookie {
        Some(p) => {
            let c = std::fs::read(p).map_err(|e| format!("cookie {}: {e}", p.display()))?;
            format!(
                "AUTHENTICATE {}\r\n",
                c.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        }
        None => "AUTHENTICATE\r\n".to_owned(),
    };
    ask(auth)?;
    let got = ask("GETINFO consensus/valid-after consensus/valid-until\r\n".into())?;
    let v = |k: &str| {
        got.iter()
            .find_map(|l| l.split(&format!("{k}=")).nth(1))
            .and_then(parse_time)
            .ok_or(format!("no {k}"))
    };
    Ok((v("consensus/valid-after")?, v("consensus/valid-until")?))
}

/// sdwdate's own slack below the minimum time (its estimate of the time is not exact).
pub const MINIMUM_SLACK: i64 = 100;

/// Which bound the clock violates, if any.
pub fn check(now: i64, window: Option<(i64, i64)>, minimum: i64) -> Result<String, String> {
    if now < minimum - MINIMUM_SLACK {
        return Err(format!(
            "the clock is before the minimum time by {} s (slow)",
            minimum - now
        ));
    }
    if now > EXPIRY {
        return Err("the clock is after 2033-05-17 10:00 UTC (fast)".into());
    }
    match window {
        Some((after, _)) if now < after => Err(format!(
            "the clock is {} s before Tor's consensus valid-after (slow)",
            after - now
        )),
        Some((_, until)) if now > until => Err(format!(
            "the clock is {} s after Tor's consensus valid-until (fast)",
            now - until
        )),
        Some(_) => Ok("inside Tor's consensus window and after the minimum time".into()),
        None => Ok("after the minimum time (no Tor consensus to compare with)".into()),
    }
}

/// max of the 10-digit times in these files (sdwdate's replay protection, /etc/minimum-unixtime).
pub fn minimum_time(files: &[&Path]) -> i64 {
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|t| t.trim().parse::<i64>().ok())
        .filter(|t| (1_000_000_000..10_000_000_000).contains(t))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let c = "network-status-version 3 microdesc\nvalid-after 2026-11-25 19:00:00\nfresh-until 2026-11-25 20:00:00\nvalid-until 2026-11-25 22:00:00\n";
        let (a, u) = window_from_consensus(c).expect("window");
        assert_eq!(u - a, 3 * 3600);
        assert_eq!(a, 1_795_633_200);
        assert!(check(a + 10, Some((a, u)), 0).is_ok());
        assert!(check(a - 10, Some((a, u)), 0)
            .expect_err("slow")
            .contains("valid-after (slow)"));
        assert!(check(u + 10, Some((a, u)), 0)
            .expect_err("fast")
            .contains("valid-until (fast)"));
        assert!(
            check(a, None, a + 5).is_ok(),
            "within sdwdate's 100 s slack"
        );
        assert!(check(a, None, a + 101)
            .expect_err("min")
            .contains("minimum time"));
        assert!(parse_time("2026-13-01 00:00:00").is_none());
    }
}
