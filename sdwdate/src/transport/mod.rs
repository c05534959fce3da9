//! Getting an HTTP response head from an onion service over Tor.

#[cfg(feature = "arti")]
pub mod arti;
pub mod socks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::clock::Clock;
use crate::config::{Config, Scheme, Source, TransportKind};
use crate::control::{ControlAddr, ControlError};
use crate::http;
use crate::round::Answer;

/// Why a fetch brought no answer. Clone (the round keeps the last one), so errors of other
/// crates that are not are shared behind an `Arc`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// Tor (behind SOCKS) could not connect the stream to the onion service.
    #[error("Tor (SOCKS {proxy}): {error}")]
    Socks {
        proxy: SocketAddr,
        error: Arc<tokio_socks::Error>,
    },
    /// arti could not bootstrap or connect the stream.
    #[cfg(feature = "arti")]
    #[error(transparent)]
    Arti(#[from] arti::ArtiError),
    #[error("no answer within {secs} s (slow): {}", if *connected { "connected, but no HTTP reply" } else { "Tor did not connect to the onion" })]
    Timeout { secs: u64, connected: bool },
    #[error("sending the request: {0}")]
    Send(Arc<std::io::Error>),
    #[error("reading the response: {0}")]
    Receive(Arc<std::io::Error>),
    #[error("connection closed without an answer")]
    Closed,
    #[error("response ended inside its head")]
    Truncated,
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("TLS: {0}")]
    TlsConfig(rustls::Error),
    #[error("TLS: name: {0}")]
    TlsName(Arc<rustls::pki_types::InvalidDnsNameError>),
    #[error("TLS: handshake: {0}")]
    TlsHandshake(Arc<std::io::Error>),
}

/// Why Tor's consensus window could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WindowError {
    /// The control port's conversation did not end within twice its timeout.
    #[error("control port {0}: no answer in time")]
    ControlTimeout(ControlAddr),
    /// The task that talks to the control port failed (a panic, or the runtime shutting down).
    #[error("control port query: {0}")]
    ControlTask(Arc<tokio::task::JoinError>),
    #[error(transparent)]
    Control(Arc<ControlError>),
    /// The SOCKS port on this host is not one tor listens on: whoever bound it is not asked.
    #[error("the SOCKS port {proxy} is not tor's (tor listens on: {}); nothing is fetched through it", if listeners.is_empty() { "none".to_owned() } else { listeners.join(", ") })]
    NotTorsSocks {
        proxy: std::net::SocketAddr,
        listeners: Vec<String>,
    },
    /// arti's own directory.
    #[cfg(feature = "arti")]
    #[error(transparent)]
    Arti(#[from] arti::ArtiError),
}

/// A way to reach onion services. `isolation` is unique per fetch: no two fetches may share
/// a circuit, so one malicious relay cannot see or shape more than one source.
pub trait Transport: Send + Sync {
    fn fetch(
        &self,
        source: &Source,
        isolation: &str,
        clock: &dyn Clock,
    ) -> impl Future<Output = Result<Answer, FetchError>> + Send;

    /// `(valid-after, valid-until)` of the consensus, when the transport holds one itself
    /// (arti), before a round: may wait (bounded) for a fresher one. `None`: ask a control
    /// port instead (a tor daemon behind SOCKS).
    fn consensus_window(
        &self,
    ) -> impl Future<Output = Option<Result<(i64, i64), WindowError>>> + Send {
        async { None }
    }

    /// The same, read again when answers are judged: at once, no waiting.
    fn consensus_window_now(
        &self,
    ) -> impl Future<Output = Option<Result<(i64, i64), WindowError>>> + Send {
        self.consensus_window()
    }
}

/// Which transport, and why: the explicit choice (`--transport`, then `TRANSPORT`), else SOCKS
/// on Whonix (the gateway is the only way out), when a proxy is configured, or when a tor
/// daemon is installed (`tor_installed`, asked last); arti only where no tor is installed at
/// all. Never "SOCKS did not answer, so arti": a tor that is slow to start, or that uses
/// bridges, must never make sdwdate connect to public relays on its own. Decided once at start.
pub fn choose(
    explicit: Option<TransportKind>,
    cfg: &Config,
    proxy_given: bool,
    whonix: bool,
    tor_installed: impl FnOnce() -> bool,
) -> (TransportKind, &'static str) {
    if let Some(k) = explicit {
        return (k, "--transport");
    }
    if let Some(k) = cfg.transport {
        return (k, "TRANSPORT in the config");
    }
    if whonix {
        return (TransportKind::Socks, "Whonix");
    }
    if proxy_given || cfg.proxy_ip.is_some() || cfg.proxy_port.is_some() {
        return (TransportKind::Socks, "a proxy is configured");
    }
    if tor_installed() {
        (TransportKind::Socks, "a tor daemon is installed (or Qubes)")
    } else {
        (TransportKind::Arti, "no tor daemon is installed")
    }
}

/// Runs the HTTP exchange on an established stream (plain or TLS).
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    source: &Source,
    clock: &dyn Clock,
) -> Result<Answer, FetchError> {
    let started = Instant::now();
    let sending = |e: std::io::Error| FetchError::Send(Arc::new(e));
    s.write_all(&http::request(&source.host, &source.path))
        .await
        .map_err(sending)?;
    // arti's streams (and TLS) buffer writes: without a flush the request never leaves.
    s.flush().await.map_err(sending)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let end = loop {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| FetchError::Receive(Arc::new(e)))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                FetchError::Closed
            } else {
                FetchError::Truncated
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = http::head_end(&buf) {
            break end;
        }
        if buf.len() > http::MAX_HEAD {
            return Err(http::HttpError::Oversized.into());
        }
    };
    let local_at_reply = clock.now();
    let round_trip = started.elapsed();
    let remote = http::parse_date(&buf[..end])?;
    Ok(Answer {
        remote,
        local_at_reply,
        round_trip,
    })
}

/// TLS (for https:// onions) with Mozilla's roots compiled in, ring as the provider.
pub async fn exchange_maybe_tls<S>(
    s: S,
    source: &Source,
    clock: &dyn Clock,
) -> Result<Answer, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    match source.scheme {
        Scheme::Http => exchange(s, source, clock).await,
        Scheme::Https => {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(FetchError::TlsConfig)?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(source.host.clone())
                .map_err(|e| FetchError::TlsName(Arc::new(e)))?;
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
                .connect(name, s)
                .await
                .map_err(|e| FetchError::TlsHandshake(Arc::new(e)))?;
            exchange(tls, source, clock).await
        }
    }
}

/// How far a fetch got. When it runs out of time, the log says whether Tor never reached the
/// onion (a Tor or network problem, or the service is gone) or the service took the request
/// and never answered (the source itself is slow): the two call for different fixes.
#[derive(Debug, Default)]
pub struct Progress(AtomicBool);

impl Progress {
    /// Tor has connected the stream to the onion service.
    pub fn connected(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Bounds a fetch in time; a slow source is a failed source.
pub async fn with_timeout<T, F: Future<Output = Result<T, FetchError>>>(
    timeout: Duration,
    progress: &Progress,
    f: F,
) -> Result<T, FetchError> {
    tokio::time::timeout(timeout, f).await.unwrap_or_else(|_| {
        Err(FetchError::Timeout {
            secs: timeout.as_secs(),
            connected: progress.0.load(Ordering::SeqCst),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransportKind::{Arti, Socks};

    /// A timed-out fetch says how far it got: not connected (Tor's side) or connected and
    /// unanswered (the source's side).
    #[tokio::test(start_paused = true)]
    async fn a_timeout_says_how_far_the_fetch_got() {
        let limit = Duration::from_secs(30);
        let progress = Progress::default();
        let r: Result<(), FetchError> =
            with_timeout(limit, &progress, std::future::pending()).await;
        assert!(
            matches!(
                r,
                Err(FetchError::Timeout {
                    secs: 30,
                    connected: false
                })
            ),
            "{r:?}"
        );
        assert_eq!(
            r.expect_err("timeout").to_string(),
            "no answer within 30 s (slow): Tor did not connect to the onion"
        );
        let progress = Progress::default();
        let r: Result<(), FetchError> = with_timeout(limit, &progress, async {
            progress.connected();
            std::future::pending().await
        })
        .await;
        assert!(
            matches!(
                r,
                Err(FetchError::Timeout {
                    secs: 30,
                    connected: true
                })
            ),
            "{r:?}"
        );
        // In time: the future's own result, whatever the progress.
        let r = with_timeout(limit, &Progress::default(), async { Ok(7) }).await;
        assert!(matches!(r, Ok(7)), "{r:?}");
    }

    /// Round failures and rejections are logged and written to the status files with these
    /// texts.
    #[test]
    fn fetch_and_window_errors_read_as_before() {
        let io = || Arc::new(std::io::Error::other("broken pipe"));
        for (e, text) in [
            (FetchError::Send(io()), "sending the request: broken pipe"),
            (
                FetchError::Receive(io()),
                "reading the response: broken pipe",
            ),
            (
                FetchError::TlsHandshake(io()),
                "TLS: handshake: broken pipe",
            ),
            (FetchError::Closed, "connection closed without an answer"),
            (
                FetchError::Socks {
                    proxy: "127.0.0.1:9050".parse().expect("addr"),
                    error: Arc::new(tokio_socks::Error::ProxyServerUnreachable),
                },
                "Tor (SOCKS 127.0.0.1:9050): Proxy server unreachable",
            ),
        ] {
            assert_eq!(e.to_string(), text);
        }
        let addr: ControlAddr = "127.0.0.1:9051".parse().expect("addr");
        assert_eq!(
            WindowError::ControlTimeout(addr).to_string(),
            "control port 127.0.0.1:9051: no answer in time"
        );
    }

    #[test]
    fn transport_choice() {
        let plain = Config::default();
        let arti_cfg = Config {
            transport: Some(Arti),
            ..Config::default()
        };
        let proxy_cfg = Config {
            proxy_port: Some(9108),
            ..Config::default()
        };
        let unreachable = || -> bool { panic!("nothing to look up") };
        // Explicit choices win, the command line over the config.
        assert_eq!(
            choose(Some(Socks), &arti_cfg, false, false, unreachable).0,
            Socks
        );
        assert_eq!(choose(None, &arti_cfg, false, true, unreachable).0, Arti);
        // Whonix and a configured proxy mean SOCKS without probing.
        assert_eq!(
            choose(None, &plain, false, true, unreachable),
            (Socks, "Whonix")
        );
        assert_eq!(choose(None, &proxy_cfg, false, false, unreachable).0, Socks);
        assert_eq!(choose(None, &plain, true, false, unreachable).0, Socks);
        // Otherwise an installed tor means SOCKS, whether or not it answers yet; arti only
        // where there is no tor at all.
        assert_eq!(choose(None, &plain, false, false, || true).0, Socks);
        assert_eq!(
            choose(None, &plain, false, false, || false),
            (Arti, "no tor daemon is installed")
        );
    }
}
