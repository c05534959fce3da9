//! An embedded Tor client (arti-client): sdwdate works on a host with no tor daemon, and every
//! fetch gets its own `IsolationToken`, so no two fetches can share a circuit by construction
//! (with SOCKS that rests on tor's IsolateSOCKSAuth default).
//!
//! arti keeps its state and directory cache under `<state dir>/arti` (`/var/lib/sdwdate/arti`,
//! the unit's StateDirectory), created 0700 because arti refuses directories others can read.
//! The Tor consensus window for the sanity bound comes from arti's own network directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arti_client::config::{CfgPath, TorClientConfigBuilder};
use arti_client::{IsolationToken, StreamPrefs, TorClient, TorClientConfig};
use log::{info, warn};
use thiserror::Error;
use tor_proto::client::stream::ClientStreamCtrl;
use tor_rtcompat::PreferredRuntime;

use crate::clock::Clock;
use crate::config::Source;
use crate::round::Answer;
use crate::transport::{
    exchange_maybe_tls, with_timeout, FetchError, Progress, Transport, WindowError,
};

/// How far ahead of the local clock a consensus may be. arti's default (1 day) would keep a
/// client whose clock is days slow from ever bootstrapping, which is exactly the clock sdwdate
/// exists to fix. Only newer documents are let in: a consensus from the future cannot be forged
/// without the authorities' keys, and an old one is still refused (arti's default post-valid
/// tolerance is unchanged).
pub const PRE_VALID_TOLERANCE: &str = "30 days";

/// Isolation strings remembered (the daemon uses each once; the map only lets a caller reuse
/// one on purpose). Bounded so a long-running daemon does not grow.
const MAX_TOKENS: usize = 64;

/// What went wrong with arti: its settings, its state directory, the client. Clone (a fetch
/// error may carry one), so the I/O errors are shared behind an `Arc`.
#[derive(Debug, Clone, Error)]
pub enum ArtiError {
    /// The settings file (ARTI_CONFIG) cannot be read.
    #[error("{}: {error}", file.display())]
    ReadSettings {
        file: PathBuf,
        error: Arc<std::io::Error>,
    },
    /// The settings are not TOML, or not arti's settings.
    #[error("{}: {error}", file.display())]
    Settings {
        file: PathBuf,
        error: toml::de::Error,
    },
    /// `[storage]` in the settings: sdwdate sets it.
    #[error("{}: [storage] is set by sdwdate (<state dir>/arti); remove it", file.display())]
    Storage { file: PathBuf },
    #[error("{}: unknown arti setting(s): {}", file.display(), keys.join(", "))]
    UnknownSettings { file: PathBuf, keys: Vec<String> },
    /// arti refuses the settings as a whole.
    #[error("{}: {error}", file.display())]
    Build {
        file: PathBuf,
        error: arti_client::config::ConfigBuildError,
    },
    #[error("{}: {source}", dir.display())]
    State {
        dir: PathBuf,
        source: Arc<std::io::Error>,
    },
    #[error("arti: {0}")]
    Client(arti_client::Error),
    /// arti's consensus has a window Tor would not make: no bound, no time.
    #[error("arti's consensus window cannot be Tor's: {0}")]
    Implausible(tor_control::time::ImplausibleWindow),
    #[error("arti: not bootstrapped within {secs} s (Tor network unreachable?)")]
    BootstrapTimeout { secs: u64 },
    #[error("arti: bootstrap: {0}")]
    Bootstrap(arti_client::Error),
    /// arti could not connect a stream to the onion service.
    #[error("Tor (arti): {0}")]
    Connect(arti_client::Error),
    #[error("arti: no network directory: {0}")]
    NoNetDir(tor_netdir::Error),
}

/// What a config error names: the settings file, or arti's defaults when there is none.
fn settings_name(extra: Option<&Path>) -> PathBuf {
    extra.map_or_else(|| PathBuf::from("arti's built-in defaults"), Path::to_owned)
}

/// Builds arti's configuration: `extra` (arti's own TOML format, e.g. a private test network's
/// authorities and fallbacks) on top of arti's defaults, then sdwdate's storage and tolerance.
/// Unknown keys in `extra` are an error, not silently ignored.
pub fn config(state: &Path, extra: Option<&Path>) -> Result<TorClientConfig, ArtiError> {
    let mut table = toml::Table::new();
    if let Some(file) = extra {
        let text = std::fs::read_to_string(file).map_err(|e| ArtiError::ReadSettings {
            file: file.to_owned(),
            error: Arc::new(e),
        })?;
        table = text
            .parse::<toml::Table>()
            .map_err(|error| ArtiError::Settings {
                file: file.to_owned(),
                error,
            })?;
        if table.contains_key("storage") {
            return Err(ArtiError::Storage {
                file: file.to_owned(),
            });
        }
    }
    let tolerance = table
        .entry("directory_tolerance")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(t) = tolerance {
        t.entry("pre_valid_tolerance")
            .or_insert_with(|| PRE_VALID_TOLERANCE.into());
    }
    let mut unknown = Vec::new();
    let mut bld: TorClientConfigBuilder =
        serde_ignored::deserialize(toml::Value::Table(table), |p| unknown.push(p.to_string()))
            .map_err(|error| ArtiError::Settings {
                file: settings_name(extra),
                error,
            })?;
    if let (Some(file), false) = (extra, unknown.is_empty()) {
        return Err(ArtiError::UnknownSettings {
            file: file.to_owned(),
            keys: unknown,
        });
    }
    let dir = state.join("arti");
    bld.storage()
        .cache_dir(CfgPath::new_literal(dir.join("cache")))
        .state_dir(CfgPath::new_literal(dir.join("state")));
    bld.build().map_err(|error| ArtiError::Build {
        file: settings_name(extra),
        error,
    })
}

/// Creates `<state>/arti` private to the service user (arti checks it and refuses otherwise).
pub fn prepare_state(state: &Path) -> Result<PathBuf, ArtiError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = state.join("arti");
    let err = |source| ArtiError::State {
        dir: dir.clone(),
        source: Arc::new(source),
    };
    // Another user's directory (a root test run beside the daemon), or no directory at all:
    // arti could not write it, and the daemon would fail and restart in a loop. It is moved
    // aside, kept for a look, and a fresh one made (arti bootstraps again).
    if let Ok(m) = std::fs::symlink_metadata(&dir) {
        if !m.is_dir() || m.uid() != nix::unistd::geteuid().as_raw() {
            let what = if m.is_dir() {
                "another user's"
            } else {
                "not a directory"
            };
            move_aside(state, &format!("{what} (owner uid {})", m.uid()))?;
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(err)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    Ok(dir)
}

/// Renames `<state>/arti` to `<state>/arti.broken-<unix time>` (kept for a look), saying why:
/// arti then starts from an empty directory and bootstraps again.
pub fn move_aside(state: &Path, why: &str) -> Result<PathBuf, ArtiError> {
    let dir = state.join("arti");
    let aside = state.join(format!(
        "arti.broken-{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    ));
    warn!(
        "{} is {why}; moved aside to {} and made anew",
        dir.display(),
        aside.display()
    );
    std::fs::rename(&dir, &aside).map_err(|source| ArtiError::State {
        dir: dir.clone(),
        source: Arc::new(source),
    })?;
    Ok(aside)
}

/// Whether `<state>/arti` was moved aside (by [`move_aside`]) less than `secs` ago.
pub fn moved_aside_within(state: &Path, secs: u64) -> bool {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::fs::read_dir(state).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("arti.broken-"))
                .and_then(|t| t.parse::<u64>().ok())
                .is_some_and(|t| now.saturating_sub(t) < secs)
        })
    })
}

/// The arti transport. Bootstraps on first use (bounded by the fetch timeout), so a Tor
/// network that cannot be reached shows up as a failed round in the status files.
pub struct Arti {
    client: Arc<TorClient<PreferredRuntime>>,
    pub timeout: Duration,
    tokens: Mutex<HashMap<String, IsolationToken>>,
    /// Connection attempts abandoned as stalled (each retried on a fresh circuit).
    stalls: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Arti {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arti")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

impl Arti {
    /// Must run inside a tokio runtime. Installs ring as rustls' process-wide provider: arti's
    /// rustls build panics at start-up without one.
    pub fn new(cfg: TorClientConfig, timeout: Duration) -> Result<Arti, ArtiError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = TorClient::builder()
            .config(cfg)
            .create_unbootstrapped()
            .map_err(ArtiError::Client)?;
        Ok(Arti {
            client,
            timeout,
            tokens: Mutex::new(HashMap::new()),
            stalls: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Bootstraps (a no-op once done), within the fetch timeout.
    pub async fn bootstrap(&self) -> Result<(), ArtiError> {
        let started = std::time::Instant::now();
        tokio::time::timeout(self.timeout, self.client.bootstrap())
            .await
            .map_err(|_| ArtiError::BootstrapTimeout {
                secs: self.timeout.as_secs(),
            })?
            .map_err(ArtiError::Bootstrap)?;
        let took = started.elapsed();
        if took > Duration::from_millis(50) {
            info!("arti: bootstrapped in {:.2} s", took.as_secs_f64());
        }
        Ok(())
    }

    /// How many connection attempts were abandoned as stalled so far.
    pub fn stalls(&self) -> usize {
        self.stalls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Points `isolation` at a fresh token: after a stalled attempt, later fetches with the
    /// same string follow the new circuit, not the abandoned one.
    fn renew(&self, isolation: &str) -> IsolationToken {
        let token = IsolationToken::new();
        if let Ok(mut map) = self.tokens.lock() {
            map.insert(isolation.to_owned(), token);
        }
        token
    }

    fn token(&self, isolation: &str) -> IsolationToken {
        let Ok(mut map) = self.tokens.lock() else {
            return IsolationToken::new();
        };
        if map.len() >= MAX_TOKENS && !map.contains_key(isolation) {
            map.clear();
        }
        *map.entry(isolation.to_owned())
            .or_insert_with(IsolationToken::new)
    }

    /// As [`Transport::fetch`], also naming the circuit the stream went over (arti's unique
    /// id), so that tests and logs can show that no two fetches shared one.
    pub async fn fetch_on_circuit(
        &self,
        source: &Source,
        isolation: &str,
        clock: &dyn Clock,
    ) -> Result<(Answer, String), FetchError> {
        let progress = Progress::default();
        with_timeout(self.timeout, &progress, async {
            self.bootstrap().await?;
            // Reaching an onion is retried inside the fetch timeout, as tor does behind its
            // SocksPort: an attempt that fails (right after bootstrap arti can report "could
            // not construct a path" for a few seconds) is tried again after 1, 2, 4, 8 s; an
            // attempt that stalls without an error (about once in 20 fresh starts on the test
            // network) is abandoned after a quarter of the timeout and tried on a fresh
            // circuit, still shared with no other fetch. The last error is what is reported.
            let deadline = tokio::time::Instant::now() + self.timeout;
            let attempt = (self.timeout / 4).max(Duration::from_secs(10));
            let mut pause = Duration::from_secs(1);
            let mut token = self.token(isolation);
            let stream = loop {
                let mut prefs = StreamPrefs::new();
                prefs.set_isolation(token);
                let connect = self
                    .client
                    .connect_with_prefs((source.host.as_str(), source.port), &prefs);
                match tokio::time::timeout(attempt, connect).await {
                    Ok(Ok(stream)) => break stream,
                    Ok(Err(e)) => {
                        let e = ArtiError::Connect(e);
                        if tokio::time::Instant::now() + pause >= deadline {
                            return Err(e.into());
                        }
                        info!("arti: {source}: {e}; trying again in {} s", pause.as_secs());
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(8));
                    }
                    Err(_) => {
                        warn!(
                            "arti: {source}: no connection after {} s; trying a fresh circuit",
                            attempt.as_secs()
                        );
                        self.stalls
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        token = self.renew(isolation);
                    }
                }
            };
            let circuit = stream
                .client_stream_ctrl()
                .and_then(|c| c.tunnel())
                .map(|t| t.unique_id().to_string())
                .unwrap_or_else(|| "?".into());
            progress.connected();
            info!("arti: {source}: stream on circuit {circuit}");
            let answer = exchange_maybe_tls(stream, source, clock).await?;
            Ok((answer, circuit))
        })
        .await
    }

    /// `(valid-after, valid-until)` of the consensus arti holds (unchecked against the local
    /// clock: that clock is what is being corrected).
    pub fn netdir_lifetime(&self) -> Result<(i64, i64), ArtiError> {
        let dirmgr = self.client.dirmgr().map_err(ArtiError::Client)?;
        let netdir = dirmgr
            .netdir(tor_netdir::Timeliness::Unchecked)
            .map_err(ArtiError::NoNetDir)?;
        let life = netdir.lifetime();
        let (after, fresh, until) = (
            unix(SystemTime::from(life.valid_after)),
            unix(SystemTime::from(life.fresh_until)),
            unix(SystemTime::from(life.valid_until)),
        );
        tor_control::time::plausible_window(after, Some(fresh), until)
            .map_err(ArtiError::Implausible)?;
        Ok((after, until))
    }

    /// The consensus window for the sanity bound. arti's bootstrap returns as soon as it has
    /// loaded a usable directory from its cache, and fetches a newer one in the background; a
    /// window from a cache that is hours old would reject every honest source as "fast". So
    /// when, by the local clock, the consensus is in the last third of its validity or past
    /// it (on the public network: more than 2 of its 3 hours old), wait (bounded) for arti to
    /// announce a newer one. A clock so slow that an old consensus looks current is caught
    /// the other way: the sources then read as "fast" and the round fails, as with C tor.
    pub async fn consensus_window_fresh(&self) -> Result<(i64, i64), ArtiError> {
        use futures::StreamExt;
        self.bootstrap().await?;
        let dirmgr = self.client.dirmgr().map_err(ArtiError::Client)?;
        let mut events = dirmgr.events();
        let (after, until) = self.netdir_lifetime()?;
        let now = unix(SystemTime::now());
        if now <= until - (until - after) / 3 {
            return Ok((after, until));
        }
        let wait = self.timeout.min(Duration::from_secs(60));
        info!(
            "arti: the consensus ({} .. {}) is old by this clock; waiting up to {} s for a newer one",
            crate::bounds::utc(after),
            crate::bounds::utc(until),
            wait.as_secs()
        );
        let newer = tokio::time::timeout(wait, async {
            while let Some(e) = events.next().await {
                if e == tor_netdir::DirEvent::NewConsensus {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !newer {
            warn!("arti: no newer consensus within {} s", wait.as_secs());
        }
        self.netdir_lifetime()
    }
}

impl Transport for Arti {
    async fn fetch(
        &self,
        source: &Source,
        isolation: &str,
        clock: &dyn Clock,
    ) -> Result<Answer, FetchError> {
        self.fetch_on_circuit(source, isolation, clock)
            .await
            .map(|(a, _)| a)
    }

    async fn consensus_window(&self) -> Option<Result<(i64, i64), WindowError>> {
        Some(self.consensus_window_fresh().await.map_err(Into::into))
    }

    async fn consensus_window_now(&self) -> Option<Result<(i64, i64), WindowError>> {
        Some(self.netdir_lifetime().map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tag: &str, text: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("sdwdate-arti-{}-{tag}.toml", std::process::id()));
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn defaults_and_a_test_network_build() {
        let state = Path::new("/var/lib/sdwdate");
        config(state, None).expect("arti's defaults with sdwdate's storage");
        let f = file(
            "net",
            "[tor_network]\nauthorities = { v3idents = [\"0123456789ABCDEF0123456789ABCDEF01234567\"] }\n\
             fallback_caches = [{ rsa_identity = \"0123456789ABCDEF0123456789ABCDEF01234567\", \
             ed_identity = \"dGhpcyBpcyBhIHRlc3Qga2V5IG9mIDMyIGJ5dGVzISE\", orports = [\"127.0.0.1:9001\"] }]\n\
             [path_rules]\nipv4_subnet_family_prefix = 33\n[override_net_params]\nhsdir_interval = 6\n\
             [directory_tolerance]\npre_valid_tolerance = \"2 days\"\n",
        );
        let r = config(state, Some(&f));
        std::fs::remove_file(&f).expect("rm");
        r.expect("a private network's settings");
    }

    #[test]
    fn unknown_settings_and_storage_are_errors_naming_the_file() {
        type Check = fn(&ArtiError) -> bool;
        let cases: [(&str, &str, Check); 4] = [
            (
                "unknown",
                "[path_rules]\nipv4_prefix = 33\n",
                |e| matches!(e, ArtiError::UnknownSettings { keys, .. } if keys == &["path_rules.ipv4_prefix"]),
            ),
            ("storage", "[storage]\nstate_dir = \"/tmp\"\n", |e| {
                matches!(e, ArtiError::Storage { .. })
            }),
            ("syntax", "[path_rules\n", |e| {
                matches!(e, ArtiError::Settings { .. })
            }),
            (
                "invalid",
                "[tor_network]\nauthorities = { v3idents = [\"00\"] }\n",
                |e| matches!(e, ArtiError::Settings { .. } | ArtiError::Build { .. }),
            ),
        ];
        for (tag, text, check) in cases {
            let f = file(tag, text);
            let r = config(Path::new("/var/lib/sdwdate"), Some(&f));
            std::fs::remove_file(&f).expect("rm");
            let e = r.expect_err(tag);
            assert!(check(&e), "{tag}: {e:?}");
            // What users read starts with the file to fix.
            assert!(
                e.to_string().starts_with(&f.display().to_string()),
                "{tag}: {e}"
            );
        }
        // A settings file that cannot be read names itself too.
        let missing = Path::new("/nonexistent/sdwdate-arti.toml");
        let e = config(Path::new("/var/lib/sdwdate"), Some(missing)).expect_err("missing");
        assert!(
            matches!(&e, ArtiError::ReadSettings { file, .. } if file == missing),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("/nonexistent/sdwdate-arti.toml: "),
            "{e}"
        );
        // The storage hint is the whole message.
        assert_eq!(
            ArtiError::Storage {
                file: "/etc/a.toml".into()
            }
            .to_string(),
            "/etc/a.toml: [storage] is set by sdwdate (<state dir>/arti); remove it"
        );
        assert_eq!(
            ArtiError::UnknownSettings {
                file: "/etc/a.toml".into(),
                keys: vec!["a.b".into(), "c".into()]
            }
            .to_string(),
            "/etc/a.toml: unknown arti setting(s): a.b, c"
        );
    }

    #[test]
    fn state_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("sdwdate-arti-state-{}", std::process::id()));
        std::fs::create_dir_all(base.join("arti")).expect("mkdir");
        std::fs::set_permissions(base.join("arti"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let dir = prepare_state(&base).expect("prepare");
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        std::fs::remove_dir_all(&base).expect("rm");
        assert_eq!(mode & 0o777, 0o700);
    }

    /// A state directory arti could not use (a file, or another user's) is moved aside and
    /// made anew, not left to fail every start.
    #[test]
    fn an_unusable_state_dir_is_moved_aside() {
        use std::os::unix::fs::MetadataExt;
        let base = std::env::temp_dir().join(format!("sdwdate-arti-broken-{}", std::process::id()));
        std::fs::create_dir_all(&base).expect("mkdir");
        std::fs::write(base.join("arti"), "not a directory").expect("write");
        let mut cases = vec!["a file"];
        if nix::unistd::geteuid().is_root() {
            cases.push("another user's");
        }
        for case in cases {
            if case == "another user's" {
                std::fs::create_dir(base.join("arti")).expect("mkdir");
                nix::unistd::chown(
                    &base.join("arti"),
                    Some(nix::unistd::Uid::from_raw(64_123)),
                    None,
                )
                .expect("chown");
            }
            let dir = prepare_state(&base).expect(case);
            let m = std::fs::metadata(&dir).expect("stat");
            assert!(
                m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw(),
                "{case}"
            );
            let aside: Vec<_> = std::fs::read_dir(&base)
                .expect("ls")
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("arti.broken-"))
                .collect();
            assert!(!aside.is_empty(), "{case}: kept aside");
            for a in aside {
                let _ =
                    std::fs::remove_dir_all(a.path()).or_else(|_| std::fs::remove_file(a.path()));
            }
            std::fs::remove_dir_all(&dir).expect("rm");
        }
        std::fs::remove_dir_all(&base).expect("rm");
    }
}
