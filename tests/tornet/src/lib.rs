#![doc = include_str!("../README.md")]
// One unsafe block (pre_exec), allowed where it stands.
#![deny(unsafe_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anon_wait::wait_until;

/// Seconds per voting round. 15, not chutney's 10: see ../../../shared/notes/tor-testnet.md
/// (the onion-service time period is 24 x this, and arti needs it to be whole minutes >= 5).
pub const VOTING_INTERVAL: u64 = 15;
// arti clamps hsdir_interval to >= 5 minutes and takes whole minutes only.
const _: () = assert!(24 * VOTING_INTERVAL % 60 == 0 && 24 * VOTING_INTERVAL / 60 >= 5);
/// Consensus lifetime in voting intervals: 20 x 15 s = a 5-minute valid-after..valid-until
/// window, wide enough for time sources that are a little off to pass the consensus bound.
pub const INTERVALS_VALID: u64 = 20;
/// How long one attempt to get every onion reachable may take before a restart.
const ATTEMPT: Duration = Duration::from_secs(45);
/// How often start-up looks again at what it waits for.
const POLL: Duration = Duration::from_millis(500);

/// How a time source answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// A `Date` header this many seconds away from the true time.
    Offset(i64),
    /// `Date: yesterday at noon`.
    Malformed,
    /// 64 KiB of headers before the `Date`.
    Oversized,
    /// Waits this long before answering.
    Slow(Duration),
    /// Closes the connection without a word.
    Dead,
}

/// One onion service in front of a local HTTP server whose answer the test controls.
#[derive(Debug, Clone)]
pub struct TimeSource {
    pub hostname: String,
    pub behaviour: Arc<Mutex<Behaviour>>,
    /// Requests that reached the HTTP server.
    pub hits: Arc<AtomicUsize>,
}

impl TimeSource {
    pub fn url(&self) -> String {
        format!("http://{}", self.hostname)
    }
    pub fn set(&self, b: Behaviour) {
        if let Ok(mut g) = self.behaviour.lock() {
            *g = b;
        }
    }
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Identities of a node, for clients (arti) that need fallbacks.
#[derive(Debug, Clone)]
pub struct Node {
    pub nick: String,
    pub or_port: u16,
    pub dir_port: u16,
    /// RSA identity, hex.
    pub rsa: String,
    /// Ed25519 identity, unpadded base64.
    pub ed25519: String,
    /// Authorities only: the v3 identity (hex).
    pub v3ident: Option<String>,
}

/// A private Tor network on 127.0.0.1 (or another local address): 3 directory authorities, 3 exit relays, an
/// onion-service host with one onion per time source, and a client with SocksPort and
/// ControlPort. Every process is killed and every file removed on drop.
#[derive(Debug)]
pub struct TorNet {
    pub dir: PathBuf,
    /// The address every node listens on.
    pub addr: Ipv4Addr,
    pub socks: SocketAddr,
    pub control: SocketAddr,
    /// The client's control socket (beside it `control.authcookie`, as Debian lays them out).
    pub control_socket: PathBuf,
    /// The client's cookie file: the ControlPort and the socket want SAFECOOKIE or COOKIE, as
    /// Debian's tor does (no NULL authentication, which a squatter could offer too).
    pub cookie: PathBuf,
    pub sources: Vec<TimeSource>,
    pub authorities: Vec<Node>,
    pub relays: Vec<Node>,
    children: Vec<(String, Child)>,
    stop: Arc<AtomicBool>,
}

/// Ports for the network's listeners, chosen below the kernel's ephemeral range.
///
/// Tor binds them seconds after they are chosen (key generation comes first). A port the
/// kernel handed out with `bind(0)` is in the ephemeral range, where in the meantime any
/// outgoing connection (of a second network started in parallel by another test, say) may
/// take it as its source port; the relay then cannot bind, never enters the consensus, and
/// the network never comes up (seen once in CI). Ports below the range are only ever taken
/// by an explicit bind, and the ones handed out in this process are never handed out again.
fn free_ports(addr: Ipv4Addr, n: usize) -> io::Result<Vec<u16>> {
    use std::collections::BTreeSet;
    use std::hash::{BuildHasher, Hasher};
    static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_000 + 1_000));
    let span = u64::from(high - low);
    // A random start, so that two processes (a test and the demo, say) rarely probe the same
    // ports; the bind below settles any overlap at the time of the choice.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let start = h.finish() % span;
    let mut taken = TAKEN
        .lock()
        .map_err(|_| io::Error::other("port registry poisoned"))?;
    let mut ports = Vec::with_capacity(n);
    for i in 0..span {
        if ports.len() == n {
            break;
        }
        let port = low + u16::try_from((start + i) % span).map_err(io::Error::other)?;
        if taken.contains(&port) {
            continue;
        }
        let free = |a: Ipv4Addr| TcpListener::bind((a, port)).is_ok();
        if free(addr) && (addr == Ipv4Addr::LOCALHOST || free(Ipv4Addr::LOCALHOST)) {
            taken.insert(port);
            ports.push(port);
        }
    }
    if ports.len() < n {
        return Err(io::Error::other(format!(
            "tornet: only {} free ports in {low}..{high}, {n} needed",
            ports.len()
        )));
    }
    Ok(ports)
}

fn run(cmd: &mut Command) -> io::Result<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Is a tor binary here? Tests skip loudly without one (and fail in CI).
pub fn require_tor(test: &str) -> bool {
    let ok = Command::new("tor")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs Debian's tor (scripts/test.sh installs it), and CI=true forbids skipping");
    }
    eprintln!(
        "\n*** SKIPPED {test}: no `tor` binary. Run scripts/test.sh, which installs it. ***\n"
    );
    false
}

impl TorNet {
    /// Brings the network up with one onion service per behaviour and waits until the client
    /// can reach every onion (typically 15-40 s; gives up after `budget`).
    pub fn start(behaviours: &[Behaviour], budget: Duration) -> io::Result<TorNet> {
        TorNet::start_on(Ipv4Addr::LOCALHOST, behaviours, budget)
    }

    /// As [`TorNet::start`], with every node on `addr` instead of 127.0.0.1 (the demo puts
    /// the network on the internet namespace's 198.51.100.1, where the gateway reaches it).
    /// The calling thread's network namespace is the network's: start it from a thread that
    /// joined the namespace, and keep that thread alive as long as the network.
    pub fn start_on(
        addr: Ipv4Addr,
        behaviours: &[Behaviour],
        budget: Duration,
    ) -> io::Result<TorNet> {
        let started = Instant::now();
        let deadline = started + budget;
        let (mut net, ports) = TorNet::create(addr, behaviours.len())?;
        net.make_nodes(&ports[..12])?;
        net.serve_sources(behaviours, &ports[14..])?;
        net.start_relays()?;
        // Gate (notes/tor-testnet.md, pitfall 2): the onion host and the client start only
        // once the consensus lists every relay; an early, empty consensus confuses them.
        net.wait_for_consensus(deadline)?;
        let consensus_after = started.elapsed();
        net.start_onions(&ports[14..], deadline).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{e}\n  (the consensus listed every relay after {:.0} s of the {:.0} s budget)",
                    consensus_after.as_secs_f64(),
                    budget.as_secs_f64()
                ),
            )
        })?;
        for s in &net.sources {
            s.hits.store(0, Ordering::SeqCst);
        }
        eprintln!(
            "tornet: up in {:.1} s ({} onions) at {}",
            started.elapsed().as_secs_f64(),
            net.sources.len(),
            net.dir.display()
        );
        Ok(net)
    }

    /// A network with no node yet: its directory, with the empty defaults torrc every tor
    /// reads, and its ports: an ORPort and a DirPort per node (authorities a1-a3, then relays
    /// r1-r3), the client's SocksPort and ControlPort, then one per time source.
    fn create(addr: Ipv4Addr, sources: usize) -> io::Result<(TorNet, Vec<u16>)> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tornet-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir)?;
        let ports = free_ports(addr, 14 + sources)?;
        let net = TorNet {
            dir: dir.clone(),
            socks: SocketAddr::from((addr, ports[12])),
            control: SocketAddr::from((addr, ports[13])),
            control_socket: dir.join("client/control"),
            cookie: dir.join("client/control.authcookie"),
            addr,
            sources: Vec::new(),
            authorities: Vec::new(),
            relays: Vec::new(),
            children: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        fs::write(dir.join("empty-torrc"), "")?;
        Ok((net, ports))
    }

    /// Keys and fingerprints of the 3 authorities and the 3 relays, made in parallel (RSA key
    /// generation is the slow part); `ports` holds an ORPort and a DirPort per node.
    fn make_nodes(&mut self, ports: &[u16]) -> io::Result<()> {
        let (dir, addr) = (&self.dir, self.addr);
        let empty = dir.join("empty-torrc");
        let nodes: Vec<(String, u16, u16, bool)> = (0..6)
            .map(|i| {
                (
                    if i < 3 {
                        format!("a{}", i + 1)
                    } else {
                        format!("r{}", i - 2)
                    },
                    ports[2 * i],
                    ports[2 * i + 1],
                    i < 3,
                )
            })
            .collect();
        let made: Vec<io::Result<Node>> = std::thread::scope(|s| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|(nick, or, dirp, auth)| {
                    let (d, empty) = (dir.join(nick), &empty);
                    s.spawn(move || make_node(&d, empty, addr, nick, *or, *dirp, *auth))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("keygen panicked")))
                })
                .collect()
        });
        for n in made {
            let n = n?;
            if n.v3ident.is_some() {
                self.authorities.push(n);
            } else {
                self.relays.push(n);
            }
        }
        Ok(())
    }

    /// The time sources' HTTP servers, one per behaviour, on `ports`.
    fn serve_sources(&mut self, behaviours: &[Behaviour], ports: &[u16]) -> io::Result<()> {
        for (b, &port) in behaviours.iter().zip(ports) {
            let src = TimeSource {
                hostname: String::new(),
                behaviour: Arc::new(Mutex::new(*b)),
                hits: Arc::new(AtomicUsize::new(0)),
            };
            serve(port, src.clone(), Arc::clone(&self.stop))?;
            self.sources.push(src);
        }
        Ok(())
    }

    /// The `DirAuthority` lines that make a tor use this network's authorities.
    fn dir_authorities(&self) -> String {
        self.authorities
            .iter()
            .map(|a| {
                format!(
                    "DirAuthority {} orport={} no-v2 v3ident={} {}:{} {}\n",
                    a.nick,
                    a.or_port,
                    a.v3ident.as_deref().unwrap_or_default(),
                    self.addr,
                    a.dir_port,
                    a.rsa
                )
            })
            .collect()
    }

    /// The torrc lines every tor of the network has, `d` being its data directory.
    fn common_torrc(&self, nick: &str, d: &Path) -> String {
        format!(
            "TestingTorNetwork 1\nDataDirectory {}\nRunAsDaemon 0\nNickname {nick}\nLog notice file {}/notice.log\n\
             SafeLogging 0\nShutdownWaitLength 0\nAssumeReachable 1\nPathsNeededToBuildCircuits 0.25\n\
             ContactInfo {nick}@test.invalid\n{}",
            d.display(),
            d.display(),
            self.dir_authorities()
        )
    }

    /// The torrc of an authority (voting every `VOTING_INTERVAL` s, every relay an exit,
    /// guard and HSDir) or of an exit relay.
    fn relay_torrc(&self, n: &Node, d: &Path) -> String {
        let addr = self.addr;
        let mut t = self.common_torrc(&n.nick, d);
        t += &format!(
            "SocksPort 0\nAddress {addr}\nORPort {addr}:{}\nDirPort {addr}:{}\nV3AuthNIntervalsValid {INTERVALS_VALID}\n",
            n.or_port, n.dir_port
        );
        if n.v3ident.is_some() {
            t += &format!(
                "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nExitRelay 0\nExitPolicy reject *:*\n\
                 TestingV3AuthInitialVotingInterval 5\nTestingV3AuthInitialVoteDelay 2\nTestingV3AuthInitialDistDelay 2\n\
                 V3AuthVotingInterval {VOTING_INTERVAL}\nV3AuthVoteDelay 2\nV3AuthDistDelay 2\n\
                 TestingDirAuthVoteExit *\nTestingDirAuthVoteGuard *\nTestingDirAuthVoteHSDir *\nTestingMinExitFlagThreshold 0\n"
            );
        } else {
            t += "ExitRelay 1\nExitPolicyRejectPrivate 0\nExitPolicy accept 127.0.0.0/8:*\nExitPolicy accept *:*\n";
        }
        t
    }

    /// The authorities and the relays.
    fn start_relays(&mut self) -> io::Result<()> {
        let all: Vec<Node> = self
            .authorities
            .iter()
            .chain(self.relays.iter())
            .cloned()
            .collect();
        for n in &all {
            let d = self.dir.join(&n.nick);
            let t = self.relay_torrc(n, &d);
            self.spawn_tor(&n.nick, &d, &t)?;
        }
        Ok(())
    }

    /// Until the first authority's consensus lists all 6 relays.
    fn wait_for_consensus(&mut self, deadline: Instant) -> io::Result<()> {
        let (addr, a1) = (self.addr, self.authorities[0].dir_port);
        let mut listed = 0;
        let all_listed = wait_until(left(deadline), POLL, || {
            listed = consensus_relays(addr, a1);
            listed >= 6
        });
        if all_listed {
            return Ok(());
        }
        Err(timed_out(&format!(
            "a consensus listing all 6 relays (a1 lists {listed}){}",
            self.diagnose()
        )))
    }

    /// The onion host (one onion per time source, in front of its HTTP server on
    /// `http_ports`) and the client, restarted as needed until every onion is reachable.
    fn start_onions(&mut self, http_ports: &[u16], deadline: Instant) -> io::Result<()> {
        let hs = self.dir.join("hs");
        let mut hs_torrc = self.common_torrc("hs", &hs) + "SocksPort 0\n";
        for (i, port) in http_ports.iter().enumerate() {
            hs_torrc += &format!(
                "HiddenServiceDir {}/onion{i}\nHiddenServicePort 80 127.0.0.1:{port}\n",
                hs.display()
            );
        }
        let c = self.dir.join("client");
        let client_torrc = self.common_torrc("client", &c)
            + &format!(
                "SocksPort {}\nControlPort {}\nControlSocket {}\nCookieAuthentication 1\nCookieAuthFile {}\n",
                self.socks,
                self.control,
                self.control_socket.display(),
                self.cookie.display()
            );
        // In a network this small an onion sometimes stays unreachable for minutes (the
        // client and the host disagree on the HSDirs while the first consensuses change).
        // Restarting both with fresh state (the onion keys are kept) settles it quickly.
        for attempt in 1.. {
            self.spawn_tor("hs", &hs, &hs_torrc)?;
            self.spawn_tor("client", &c, &client_torrc)?;
            let attempt_deadline = (Instant::now() + ATTEMPT).min(deadline);
            match self.wait_ready(&hs, &c, attempt_deadline) {
                Ok(()) => break,
                Err(e) if Instant::now() + Duration::from_secs(15) < deadline => {
                    eprintln!(
                        "tornet: attempt {attempt}: {e}; restarting the onion host and the client"
                    );
                    self.kill("hs");
                    self.kill("client");
                    let _ = fs::remove_dir_all(&c);
                    clear_dir_except(&hs, |name| name.starts_with("onion"))?;
                }
                Err(e) => {
                    return Err(io::Error::new(e.kind(), format!("{e}{}", self.diagnose())));
                }
            }
        }
        Ok(())
    }

    /// Onion hostnames known, the client bootstrapped, every onion reachable through it.
    fn wait_ready(&mut self, hs: &Path, client: &Path, deadline: Instant) -> io::Result<()> {
        for (i, src) in self.sources.iter_mut().enumerate() {
            let path = hs.join(format!("onion{i}/hostname"));
            src.hostname = wait_until(left(deadline), POLL, || {
                fs::read_to_string(&path).ok().map(|s| s.trim().to_owned())
            })
            .ok_or_else(|| timed_out("onion hostname"))?;
        }
        let log = client.join("notice.log");
        let bootstrapped = wait_until(left(deadline), POLL, || {
            fs::read_to_string(&log).is_ok_and(|l| l.contains("Bootstrapped 100%"))
        });
        if !bootstrapped {
            return Err(timed_out("the client's Bootstrapped 100%"));
        }
        // A lookup that ran before the descriptor was uploaded makes tor skip those HSDirs for
        // a while, so a pass with failures ends with NEWNYM, which purges that state.
        let (socks, control, cookie) = (self.socks, self.control, self.cookie.clone());
        let mut pending: Vec<String> = self.sources.iter().map(|s| s.hostname.clone()).collect();
        let reached = wait_until(left(deadline), POLL, || {
            // Each probe stops at the deadline: a pass over onions that are all unreachable
            // would otherwise take 10 s per onion and leave no time for a restart.
            pending.retain(|h| {
                let time = left(deadline).min(Duration::from_secs(10));
                time.is_zero() || !socks_probe(socks, h, time)
            });
            if pending.is_empty() {
                return true;
            }
            control_command(control, Some(&cookie), "SIGNAL NEWNYM");
            false
        });
        if reached {
            return Ok(());
        }
        Err(timed_out(&format!(
            "every onion reachable: {} still unreachable",
            pending.len()
        )))
    }

    /// Why start-up failed, as far as the nodes tell: every tor that exited, and the last
    /// warnings of every node, so that a CI log says what went wrong.
    fn diagnose(&mut self) -> String {
        let mut out = String::new();
        for (nick, child) in &mut self.children {
            let d = self.dir.join(nick.as_str());
            let mut lines = Vec::new();
            if let Ok(Some(status)) = child.try_wait() {
                out += &format!("\n  {nick}: exited ({status})");
                lines = last_lines(&d.join("stderr.log"), 5, |_| true);
            }
            lines.extend(last_lines(&d.join("notice.log"), 3, |l| {
                l.contains("[warn]") || l.contains("[err]")
            }));
            for l in lines {
                out += &format!("\n    {nick}: {l}");
            }
        }
        out
    }

    /// Restarts the client tor (SIGKILL, then the same torrc and data directory), as a
    /// package upgrade or a crash does; its SocksPort and ControlPort are back a few seconds
    /// later. Call it from the thread that started the network (see `spawn_tor`).
    pub fn restart_client(&mut self) -> io::Result<()> {
        let c = self.dir.join("client");
        let torrc = fs::read_to_string(c.join("torrc"))?;
        self.kill("client");
        self.spawn_tor("client", &c, &torrc)
    }

    fn kill(&mut self, nick: &str) {
        self.children.retain_mut(|(n, c)| {
            if n != nick {
                return true;
            }
            let _ = c.kill();
            let _ = c.wait();
            false
        });
    }

    fn spawn_tor(&mut self, nick: &str, d: &Path, torrc: &str) -> io::Result<()> {
        fs::create_dir_all(d)?;
        set_mode(d, 0o700)?;
        let rc = d.join("torrc");
        fs::write(&rc, torrc)?;
        let mut cmd = Command::new("tor");
        cmd.arg("--defaults-torrc")
            .arg(self.dir.join("empty-torrc"))
            .arg("-f")
            .arg(&rc);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("stderr.log"))?);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child when
        // the spawning thread dies, so no tor outlives a crashed test.
        #[allow(unsafe_code)]
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.children.push((nick.to_owned(), cmd.spawn()?));
        Ok(())
    }

    /// torrc lines that make another tor (e.g. a Whonix gateway's) a client of this network;
    /// add its own ports. `data_dir` must exist and be private to that tor's user.
    pub fn client_torrc(&self, nick: &str, data_dir: &Path) -> String {
        format!(
            "TestingTorNetwork 1\nDataDirectory {}\nRunAsDaemon 0\nNickname {nick}\nLog notice file {}/notice.log\n\
             SafeLogging 0\nShutdownWaitLength 0\nPathsNeededToBuildCircuits 0.25\n{}",
            data_dir.display(),
            data_dir.display(),
            self.dir_authorities()
        )
    }

    /// The torrc lines that make a tor with its own data directory and ports (Debian's
    /// tor@default in a booted test guest, say) a client of this network.
    pub fn network_torrc(&self) -> String {
        format!(
            "TestingTorNetwork 1\nPathsNeededToBuildCircuits 0.25\n{}",
            self.dir_authorities()
        )
    }

    /// Every ORPort and DirPort of the authorities and relays: what a client elsewhere (a
    /// guest behind a port forward) has to reach.
    pub fn node_ports(&self) -> Vec<u16> {
        self.authorities
            .iter()
            .chain(&self.relays)
            .flat_map(|n| [n.or_port, n.dir_port])
            .collect()
    }

    /// A config for arti (TOML in arti's own format) that makes it a client of this network:
    /// the authorities' v3 identities, every authority and relay as a fallback (RSA, ed25519,
    /// ORPort), and the overrides a private network needs. Test networks only, never a default:
    /// - `hsdir_interval` = 24 voting intervals in minutes. With `TestingTorNetwork` C tor
    ///   derives the onion-service time period from the voting interval and ignores the
    ///   consensus parameter; arti reads the parameter (default 1440) and would look for
    ///   descriptors in the wrong period ("Unable to download hidden service descriptor").
    /// - subnet family prefixes beyond the address length: every relay shares one address, and
    ///   arti would otherwise refuse to put two of them in one circuit.
    /// - `allow_local_addrs`: exits may be asked for local addresses.
    /// - `cbtdisabled`: circuits on loopback build in milliseconds, so arti's learned build
    ///   timeout sinks to its 10 ms floor and slower onion circuits then "time out" at once;
    ///   the estimate is persisted, so a client kept across restarts fails every round
    ///   (seen in the benchmark). With learning off arti uses a fixed 60 s.
    pub fn arti_toml(&self) -> String {
        let quoted = |v: Vec<String>| v.join(", ");
        let v3idents = quoted(
            self.authorities
                .iter()
                .filter_map(|a| a.v3ident.as_ref())
                .map(|v| format!("\"{v}\""))
                .collect(),
        );
        let fallbacks: String = self
            .authorities
            .iter()
            .chain(&self.relays)
            .map(|n| {
                format!(
                    "  {{ rsa_identity = \"{}\", ed_identity = \"{}\", orports = [\"{}:{}\"] }},\n",
                    n.rsa, n.ed25519, self.addr, n.or_port
                )
            })
            .collect();
        format!(
            "# A private test network: see anon-tornet. Never use outside tests.\n\
             [tor_network]\n\
             authorities = {{ v3idents = [{v3idents}] }}\n\
             fallback_caches = [\n{fallbacks}]\n\n\
             [path_rules]\n\
             ipv4_subnet_family_prefix = 33\n\
             ipv6_subnet_family_prefix = 129\n\n\
             [address_filter]\n\
             allow_local_addrs = true\n\n\
             [override_net_params]\n\
             hsdir_interval = {}\n\
             cbtdisabled = 1\n",
            24 * VOTING_INTERVAL / 60
        )
    }
}

impl Drop for TorNet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("TORNET_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn set_mode(p: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
}

fn make_node(
    d: &Path,
    empty: &Path,
    addr: Ipv4Addr,
    nick: &str,
    or_port: u16,
    dir_port: u16,
    authority: bool,
) -> io::Result<Node> {
    fs::create_dir_all(d.join("keys"))?;
    set_mode(d, 0o700)?;
    let mut v3ident = None;
    if authority {
        let mut child = Command::new("tor-gencert")
            .current_dir(d.join("keys"))
            .args([
                "--create-identity-key",
                "-m",
                "12",
                "-a",
                &format!("{addr}:{dir_port}"),
                "--passphrase-fd",
                "0",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("stdin"))?
            .write_all(b"\n")?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "tor-gencert: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let cert = fs::read_to_string(d.join("keys/authority_certificate"))?;
        v3ident = cert
            .lines()
            .find_map(|l| l.strip_prefix("fingerprint "))
            .map(|s| s.trim().to_owned());
    }
    run(Command::new("tor")
        .arg("--list-fingerprint")
        .arg("-f")
        .arg(empty)
        .arg("--defaults-torrc")
        .arg(empty)
        .arg("--DataDirectory")
        .arg(d)
        .args(["--ORPort", &or_port.to_string(), "--Nickname", nick])
        .stdout(Stdio::null()))?;
    let field = |f: &str| -> io::Result<String> {
        let text = fs::read_to_string(d.join(f))?;
        text.split_whitespace()
            .nth(1)
            .map(str::to_owned)
            .ok_or_else(|| io::Error::other(format!("{f}: {text}")))
    };
    Ok(Node {
        nick: nick.to_owned(),
        or_port,
        dir_port,
        rsa: field("fingerprint")?,
        ed25519: field("fingerprint-ed25519")?,
        v3ident,
    })
}

/// The last `n` lines of a log that match `keep` (none if the log does not exist yet: these
/// lines only ever explain a failure, they never decide one).
pub fn last_lines(path: &Path, n: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// Empties a tor data directory except the entries `keep` names (torrc, onion keys), so that
/// the next start is a fresh client with the same configuration and identity.
pub fn clear_dir_except(dir: &Path, keep: impl Fn(&str) -> bool) -> io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        if keep(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let p = entry.path();
        if p.is_dir() {
            fs::remove_dir_all(&p)?;
        } else {
            fs::remove_file(&p)?;
        }
    }
    Ok(())
}

/// What is left of the time until `deadline` (none once it passed).
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("tornet: timed out waiting for {what}"),
    )
}

/// Relays in the authority's current microdescriptor consensus.
fn consensus_relays(addr: Ipv4Addr, dir_port: u16) -> usize {
    let Ok(mut s) =
        TcpStream::connect_timeout(&SocketAddr::from((addr, dir_port)), Duration::from_secs(2))
    else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req =
        "GET /tor/status-vote/current/consensus-microdesc HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines().filter(|l| l.starts_with("r ")).count()
}

/// Does a SOCKS5 CONNECT to `host:80` through Tor succeed? (The onion's descriptor is
/// published and its backend accepts; what the backend then says is the test's business.)
pub fn socks_probe(proxy: SocketAddr, host: &str, timeout: Duration) -> bool {
    let attempt = || -> io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&proxy, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(&[5, 1, 0])?;
        let mut r = [0u8; 2];
        s.read_exact(&mut r)?;
        let mut req = vec![
            5,
            1,
            0,
            3,
            u8::try_from(host.len()).map_err(io::Error::other)?,
        ];
        req.extend_from_slice(host.as_bytes());
        req.extend_from_slice(&80u16.to_be_bytes());
        s.write_all(&req)?;
        let mut rep = [0u8; 10];
        s.read_exact(&mut rep)?;
        Ok(rep[1] == 0)
    };
    attempt().unwrap_or(false)
}

/// Sends one command to a ControlPort, authenticating with the cookie file (COOKIE: this is
/// the test's own tor) or with NULL.
pub fn control_command(control: SocketAddr, cookie: Option<&Path>, cmd: &str) -> Option<String> {
    let auth = match cookie {
        Some(p) => fs::read(p)
            .ok()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        None => String::new(),
    };
    let mut s = TcpStream::connect_timeout(&control, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("AUTHENTICATE {auth}\r\n{cmd}\r\nQUIT\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    Some(out)
}

/// The HTTP server behind one onion: a thread per connection, bounded by the stop flag.
fn serve(port: u16, src: TimeSource, stop: Arc<AtomicBool>) -> io::Result<()> {
    let l = TcpListener::bind(("127.0.0.1", port))?;
    l.set_nonblocking(true)?;
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, _)) => {
                    let src = src.clone();
                    std::thread::spawn(move || answer(s, &src));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    Ok(())
}

fn answer(mut s: TcpStream, src: &TimeSource) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16_384 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    src.hits.fetch_add(1, Ordering::SeqCst);
    let behaviour = src.behaviour.lock().map(|b| *b).unwrap_or(Behaviour::Dead);
    let date = |offset: i64| {
        let now = SystemTime::now();
        let t = if offset >= 0 {
            now + Duration::from_secs(offset as u64)
        } else {
            now - Duration::from_secs(offset.unsigned_abs())
        };
        httpdate::fmt_http_date(t)
    };
    let head = match behaviour {
        Behaviour::Dead => return,
        Behaviour::Offset(o) => format!(
            "HTTP/1.1 200 OK\r\nDate: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            date(o)
        ),
        Behaviour::Malformed => {
            "HTTP/1.1 200 OK\r\nDate: yesterday at noon\r\nConnection: close\r\n\r\n".to_owned()
        }
        Behaviour::Oversized => format!(
            "HTTP/1.1 200 OK\r\nX-Padding: {}\r\nDate: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(64 * 1024),
            date(0)
        ),
        Behaviour::Slow(d) => {
            std::thread::sleep(d);
            format!(
                "HTTP/1.1 200 OK\r\nDate: {}\r\nConnection: close\r\n\r\n",
                date(0)
            )
        }
    };
    let _ = s.write_all(head.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_handed_out_twice() {
        let low: u16 = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(32768);
        let a = free_ports(Ipv4Addr::LOCALHOST, 20).expect("ports");
        let b = free_ports(Ipv4Addr::LOCALHOST, 20).expect("ports");
        let all: std::collections::BTreeSet<u16> = a.iter().chain(&b).copied().collect();
        assert_eq!(all.len(), 40, "a port was handed out twice: {a:?} {b:?}");
        assert!(
            all.iter().all(|&p| (10_000..low.max(11_000)).contains(&p)),
            "{all:?}"
        );
        // Free at the time of the choice: each can be bound.
        for p in &all {
            TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).expect("bind a chosen port");
        }
    }

    #[test]
    fn last_lines_and_clear_dir_except() {
        let dir = std::env::temp_dir().join(format!("tornet-helpers-{}", std::process::id()));
        fs::create_dir_all(dir.join("onion0")).expect("dir");
        fs::create_dir_all(dir.join("cache")).expect("dir");
        let log = dir.join("notice.log");
        fs::write(
            &log,
            "x [warn] one\ny [notice] two\nz [warn] three\nw [err] four\n",
        )
        .expect("write");
        let t = last_lines(&log, 2, |l| l.contains("[warn]") || l.contains("[err]"));
        assert_eq!(t, ["z [warn] three", "w [err] four"]);
        assert!(last_lines(&dir.join("missing.log"), 2, |_| true).is_empty());
        clear_dir_except(&dir, |n| n.starts_with("onion")).expect("clear");
        let left: Vec<String> = fs::read_dir(&dir)
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["onion0"]);
        let _ = fs::remove_dir_all(&dir);
    }
}
