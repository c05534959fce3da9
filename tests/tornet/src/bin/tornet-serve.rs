//! Keeps a private Tor network up for a test that is not written in Rust (the booted-system
//! tier, tests/system/run.sh): honest time sources and liars, the client's SocksPort and
//! ControlPort (and its cookie, hex), the node ports and the settings that make another tor or
//! arti a client (hex), written to an env file once every onion is reachable, everything torn down
//! when stdin closes (the caller holds it open as long as it needs the network).
//!
//! `tornet-serve ENV_FILE [HONEST [LIARS [LIAR_OFFSET_S]]]` (defaults 3, 3, 7200).
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anon_tornet::{Behaviour, TorNet};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(env_file) = args.first().map(std::path::PathBuf::from) else {
        eprintln!("usage: tornet-serve ENV_FILE [HONEST [LIARS [LIAR_OFFSET_S]]]");
        return ExitCode::from(2);
    };
    let num = |i: usize, default: i64| -> Option<i64> {
        args.get(i).map_or(Some(default), |a| a.parse().ok())
    };
    let (Some(honest), Some(liars), Some(offset)) = (num(1, 3), num(2, 3), num(3, 7200)) else {
        eprintln!("tornet-serve: HONEST, LIARS and LIAR_OFFSET_S are integers");
        return ExitCode::from(2);
    };
    let mut behaviours = vec![Behaviour::Offset(0); usize::try_from(honest).unwrap_or(0)];
    behaviours.extend(vec![
        Behaviour::Offset(offset);
        usize::try_from(liars).unwrap_or(0)
    ]);
    let net = match TorNet::start(&behaviours, Duration::from_secs(240)) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("tornet-serve: the network did not come up: {e}");
            return ExitCode::from(1);
        }
    };
    let urls = |r: std::ops::Range<usize>| {
        net.sources[r]
            .iter()
            .map(|s| s.url())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let n = behaviours.len();
    let h = n - usize::try_from(liars).unwrap_or(0);
    // The control port wants the cookie (SAFECOOKIE): a guest gets it as hex.
    let cookie: String = match std::fs::read(&net.cookie) {
        Ok(c) => c.iter().map(|b| format!("{b:02x}")).collect(),
        Err(e) => {
            eprintln!("tornet-serve: {}: {e}", net.cookie.display());
            return ExitCode::from(1);
        }
    };
    // A guest's own tor or arti joins the network through a forward of every node port:
    // their settings as hex (one line each), the ports as a list.
    let hex = |s: String| -> String { s.bytes().map(|b| format!("{b:02x}")).collect() };
    let ports: Vec<String> = net.node_ports().iter().map(u16::to_string).collect();
    let text = format!(
        "SOCKS={}\nCONTROL={}\nCOOKIE={cookie}\nHONEST=\"{}\"\nLIARS=\"{}\"\n\
         PORTS=\"{}\"\nTORRC={}\nARTI={}\n",
        net.socks,
        net.control,
        urls(0..h),
        urls(h..n),
        ports.join(" "),
        hex(net.network_torrc()),
        hex(net.arti_toml())
    );
    // Atomically: a reader never sees half a file.
    let tmp = env_file.with_extension("partial");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &env_file)) {
        eprintln!("tornet-serve: {}: {e}", env_file.display());
        return ExitCode::from(1);
    }
    eprintln!("tornet-serve: up ({} sources), {}", n, env_file.display());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(net);
    ExitCode::SUCCESS
}
