//! SOCKS5 to a Tor daemon (the system Tor, or the Whonix gateway's SocksPort 9108).
//! The onion name goes to Tor inside the SOCKS request; nothing is resolved locally.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_socks::tcp::Socks5Stream;

use crate::clock::Clock;
use crate::config::Source;
use crate::round::Answer;
use crate::transport::{exchange_maybe_tls, with_timeout, FetchError, Progress, Transport};

#[derive(Debug, Clone)]
pub struct Socks {
    pub proxy: SocketAddr,
    pub timeout: Duration,
}

impl Transport for Socks {
    async fn fetch(
        &self,
        source: &Source,
        isolation: &str,
        clock: &dyn Clock,
    ) -> Result<Answer, FetchError> {
        let progress = Progress::default();
        with_timeout(self.timeout, &progress, async {
            // A username unique per fetch: with IsolateSOCKSAuth (Tor's default) every fetch
            // gets its own circuit.
            let stream = Socks5Stream::connect_with_password(
                self.proxy,
                (source.host.as_str(), source.port),
                isolation,
                "sdwdate",
            )
            .await
            .map_err(|e| FetchError::Socks {
                proxy: self.proxy,
                error: std::sync::Arc::new(e),
            })?;
            progress.connected();
            exchange_maybe_tls(stream, source, clock).await
        })
        .await
    }
}
