//! `kloak`: parse options, run the daemon or the simulator.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use rand::SeedableRng;

use kloak::daemon::{run, Options};
use kloak::devices::parse_combo;
use kloak::schedule::HoldFloor;
use kloak::simulate;

const EXAMPLES: &str = "\
Examples:
  kloak                              protect every keyboard and mouse (as root)
  kloak -d 200 --no-mouse            keyboards only, delays up to 200 ms
  kloak -r /dev/input/event3         only this device
  kloak simulate -d 100 < typing.tsv release times the core would choose

Escape: Right Shift + Esc releases every device and exits (-k to change).
Exit codes: 0 stopped normally, 1 error, 2 usage error.";

#[derive(Debug, Parser)]
#[command(name = "kloak", version, about = "Keystroke and mouse timing anonymization", after_help = EXAMPLES)]
struct Cli {
    /// Maximum delay in milliseconds.
    #[arg(short = 'd', long = "delay", default_value_t = 100, global = true)]
    delay: u64,
    /// Hold-time floor in ms, MIN-MAX: a short tap's release is emitted no earlier than its
    /// press plus a random floor from this range, hiding how long each key is held. 0: off.
    #[arg(long = "hold-floor", default_value = "150-200", global = true, value_parser = parse_floor)]
    hold_floor: Floor,
    /// More keys treated like modifiers (their releases keep upstream's rule), besides Shift, Ctrl,
    /// Alt, AltGr, Meta, CapsLock, KEY_102ND and KEY_COMPOSE, e.g. KEY_SCROLLLOCK.
    #[arg(long, value_delimiter = ',')]
    modifiers: Vec<String>,
    /// Wait this long (ms) before grabbing, so the keys that started kloak are released.
    #[arg(short = 's', long = "start-delay", default_value_t = 500)]
    start_delay: u64,
    /// Devices to protect (repeatable). Default: every keyboard and mouse, with hotplug.
    #[arg(short = 'r', long = "device")]
    devices: Vec<PathBuf>,
    /// Leave mice and touchpads alone.
    #[arg(long)]
    no_mouse: bool,
    /// Escape combination, key names joined by commas.
    #[arg(
        short = 'k',
        long = "esc-key-combo",
        default_value = "KEY_RIGHTSHIFT,KEY_ESC"
    )]
    esc_key_combo: String,
    /// Where input devices appear.
    #[arg(long, default_value = "/dev/input", hide = true)]
    input_dir: PathBuf,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Read `time_us type code value` lines on stdin, print the release times kloak would choose.
    Simulate {
        /// Seed for a reproducible run (default: from the OS).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
    /// Print a shell completion script (bash, zsh, fish, ...) to stdout.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
}

/// `--hold-floor`: None = off.
#[derive(Debug, Clone, Copy)]
struct Floor(Option<HoldFloor>);

fn parse_floor(s: &str) -> Result<Floor, String> {
    if s.trim() == "0" {
        return Ok(Floor(None));
    }
    let (a, b) = s
        .split_once('-')
        .ok_or("expected MIN-MAX in milliseconds, e.g. 150-200, or 0 for off")?;
    let ms = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|_| format!("`{x}` is not a number of milliseconds"))
    };
    let (min, max) = (ms(a)?, ms(b)?);
    if min > max || max == 0 {
        return Err(format!(
            "{min}-{max}: MIN must be at most MAX, and MAX above 0"
        ));
    }
    Ok(Floor(Some(HoldFloor {
        min: min * 1000,
        max: max * 1000,
    })))
}

fn main() -> ExitCode {
    init_logging();
    match real_main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kloak: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Some(Cmd::Man) => {
            clap_mangen::Man::new(Cli::command())
                .section("8")
                .render(&mut std::io::stdout())?;
            Ok(())
        }
        Some(Cmd::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "kloak", &mut std::io::stdout());
            Ok(())
        }
        Some(Cmd::Simulate { seed }) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            let events = simulate::parse(&text).context("stdin")?;
            let floor = cli.hold_floor.0;
            let mut rng = seed.map_or_else(
                rand_chacha::ChaCha20Rng::from_os_rng,
                rand_chacha::ChaCha20Rng::seed_from_u64,
            );
            print!(
                "{}",
                simulate::render(&simulate::run(&events, cli.delay * 1000, floor, &mut rng))
            );
            Ok(())
        }
        None => {
            let esc_combo = parse_combo(&cli.esc_key_combo)
                .map_err(anyhow::Error::msg)
                .context("--esc-key-combo")?;
            let extra_modifiers = if cli.modifiers.is_empty() {
                Vec::new()
            } else {
                parse_combo(&cli.modifiers.join(","))
                    .map_err(anyhow::Error::msg)
                    .context("--modifiers")?
            };
            let opts = Options {
                hold_floor: cli.hold_floor.0,
                extra_modifiers,
                max_delay: Duration::from_millis(cli.delay),
                start_delay: Duration::from_millis(cli.start_delay),
                devices: cli.devices,
                no_mouse: cli.no_mouse,
                esc_combo,
                input_dir: cli.input_dir,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(run(opts, rand_chacha::ChaCha20Rng::from_os_rng()))
        }
    }
}

fn init_logging() {
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let ok = journal
        && systemd_journal_logger::JournalLog::new()
            .map(|l| l.install().is_ok())
            .unwrap_or(false);
    if !ok {
        let _ = log::set_logger(&StderrLog);
    }
    log::set_max_level(log::LevelFilter::Info);
}

struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("kloak")
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("kloak: {}: {}", r.level().as_str().to_lowercase(), r.args());
        }
    }
    fn flush(&self) {}
}
