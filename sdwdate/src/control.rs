//! Tor's consensus window from a control port: the bound that makes a lying time source
//! useless unless it also controls the Tor network's view of time. The protocol is the shared
//! `tor_control` crate's; this is its async edge.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use tor_control::{ControlAddr, ControlError};

use crate::transport::WindowError;

#[derive(Debug, Clone)]
pub struct ControlPort {
    pub addr: ControlAddr,
    /// Cookie file for COOKIE authentication; PROTOCOLINFO's COOKIEFILE is used when unset.
    pub cookie: Option<PathBuf>,
    /// Bounds the connect and every read and write.
    pub timeout: Duration,
    /// The SOCKS proxy to verify against tor's own listeners: a port on this host, which any
    /// local user could have bound before tor (or where tor does not listen). `None`: a
    /// proxy on another host (the Whonix gateway), or the arti transport.
    pub verify_socks: Option<std::net::SocketAddr>,
}

impl ControlPort {
    /// `(valid-after, valid-until)` of the current consensus.
    /// Bounded twice over: the blocking conversation has its own deadline, and the wait for
    /// it another (a Unix-socket connect has no timeout of its own).
    pub async fn consensus_window(&self) -> Result<(i64, i64), WindowError> {
        let me = self.clone();
        let verify = self.verify_socks;
        let query = tokio::task::spawn_blocking(move || {
            tor_control::client::query(&me.addr, me.cookie.as_deref(), me.timeout, verify.is_some())
        });
        let (window, listeners) = tokio::time::timeout(self.timeout * 2, query)
            .await
            .map_err(|_| WindowError::ControlTimeout(self.addr.clone()))?
            .map_err(|e| WindowError::ControlTask(Arc::new(e)))?
            .map_err(|e| WindowError::Control(Arc::new(e)))?;
        if let Some(proxy) = verify {
            let listeners = listeners.unwrap_or_default();
            if !tor_control::proto::is_tor_socks(&listeners, proxy) {
                return Err(WindowError::NotTorsSocks { proxy, listeners });
            }
        }
        Ok(window)
    }
}
