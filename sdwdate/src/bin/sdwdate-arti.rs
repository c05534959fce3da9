//! `sdwdate-arti`: sdwdate with the embedded arti client, exec'd by `sdwdate` when arti is
//! the transport (or an arti settings file is to be checked). The same command line.
#![forbid(unsafe_code)]

/// This binary runs arti itself and never execs.
const WITH_ARTI: bool = true;

#[path = "../cli.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    // The process is still sdwdate to readers of /proc/PID/comm (timesync-check, the status
    // readers tell a live daemon by it) and to `ps -C sdwdate`.
    let _ = nix::sys::prctl::set_name(c"sdwdate");
    cli::main()
}
