//! Tor's consensus window from a control port: the bound that makes a lying time source
//! useless unless it also controls the Tor network's view of time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::bounds::parse_tor_time;

#[derive(Debug, Clone)]
pub struct ControlPort {
    pub addr: SocketAddr,
    /// Cookie file for COOKIE authentication; PROTOCOLINFO's COOKIEFILE is used when unset.
    pub cookie: Option<PathBuf>,
    pub timeout: Duration,
}

impl ControlPort {
    /// `(valid-after, valid-until)` of the current consensus.
    pub async fn consensus_window(&self) -> Result<(i64, i64), String> {
        tokio::time::timeout(self.timeout, self.query())
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "control port {}: no answer within {:?}",
                    self.addr, self.timeout
                ))
            })
    }

    async fn query(&self) -> Result<(i64, i64), String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("control port {}: {e}", self.addr))?;
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        let mut reply = async |w: &mut tokio::net::tcp::OwnedWriteHalf,
                               cmd: &str|
               -> Result<Vec<String>, String> {
            w.write_all(cmd.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            loop {
                let line = lines
                    .next_line()
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("control port closed")?;
                let done = line.len() >= 4 && line.as_bytes()[3] == b' ';
                if !line.starts_with("250") {
                    return Err(format!("control port: {line}"));
                }
                out.push(line);
                if done {
                    return Ok(out);
                }
            }
        };
        let info = reply(&mut w, "PROTOCOLINFO 1\r\n").await?;
        let methods = info
            .iter()
            .find_map(|l| l.split("METHODS=").nth(1))
            .unwrap_or("");
        let auth = if methods.split([',', ' ']).any(|m| m == "NULL") {
            "AUTHENTICATE\r\n".to_owned()
        } else {
            let path = match &self.cookie {
                Some(p) => p.clone(),
                None => info
                    .iter()
                    .find_map(|l| l.split("COOKIEFILE=\"").nth(1).and_then(|r| r.split('"').next()))
                    .map(PathBuf::from)
                    .ok_or("control port needs a password; only NULL and COOKIE authentication are supported")?,
            };
            let cookie =
                std::fs::read(&path).map_err(|e| format!("cookie {}: {e}", path.display()))?;
            format!(
                "AUTHENTICATE {}\r\n",
                cookie
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            )
        };
        reply(&mut w, &auth).await?;
        let got = reply(
            &mut w,
            "GETINFO consensus/valid-after consensus/valid-until\r\n",
        )
        .await?;
        let value = |key: &str| {
            got.iter()
                .find_map(|l| l.split(&format!("{key}=")).nth(1))
                .and_then(parse_tor_time)
                .ok_or_else(|| format!("control port: no {key} in {got:?}"))
        };
        let window = (
            value("consensus/valid-after")?,
            value("consensus/valid-until")?,
        );
        let _ = w.write_all(b"QUIT\r\n").await;
        Ok(window)
    }
}
