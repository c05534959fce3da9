//! `sdwdate`: the daemon with the SOCKS transport. The embedded arti client lives in
//! `sdwdate-arti` (/usr/libexec/sdwdate), which this binary execs, same process and
//! arguments, when arti is the transport: in SOCKS mode nothing of arti is even mapped, so
//! the daemon stays as light as the SOCKS-only build.
#![forbid(unsafe_code)]

/// This binary links no arti code (the branches that would are dead here and removed).
const WITH_ARTI: bool = false;

#[path = "cli.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
