//! `kloak`: parse options, run the daemon or the simulator.
#![forbid(unsafe_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anon_cli::Program;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use rand::SeedableRng;

use kloak::daemon::Options;
use kloak::devices::parse_combo;
use kloak::schedule::HoldFloor;
use kloak::simulate;

static PROGRAM: Program = Program {
    name: "kloak",
    section: "8",
    examples: "  kloak                              protect every keyboard and mouse (as root)
  kloak -d 200 --no-mouse            keyboards only, delays up to 200 ms
  kloak -r /dev/input/event3         only this device
  kloak simulate -d 100 < typing.tsv release times the core would choose",
    notes: "Escape: Right Shift + Esc releases every device and exits (-k to change).",
    exit_codes: &[
        (0, "stopped normally (escape combination or a signal)"),
        (1, "an error"),
    ],
    error_code: 1,
    info_targets: &["kloak"],
};

#[derive(Debug, Parser)]
#[command(
    name = "kloak",
    version,
    about = "Keystroke and mouse timing anonymization"
)]
struct Cli {
    /// Maximum delay in milliseconds (at most an hour).
    #[arg(short = 'd', long = "delay", default_value_t = 100, global = true,
          value_parser = clap::value_parser!(u64).range(0..=MAX_MS))]
    delay: u64,
    /// Hold-time floor in ms, MIN-MAX: a short tap's release is emitted no earlier than its
    /// press plus a random floor from this range, hiding how long each key is held. 0: off.
    #[arg(long = "hold-floor", default_value = "150-200", global = true, value_parser = parse_floor)]
    hold_floor: Floor,
    /// More keys treated like modifiers (their releases keep upstream's rule), besides Shift, Ctrl,
    /// Alt, AltGr, Meta, CapsLock, KEY_102ND and KEY_COMPOSE, e.g. KEY_SCROLLLOCK.
    #[arg(long, value_parser = parse_keys)]
    modifiers: Vec<Keys>,
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
        default_value = "KEY_RIGHTSHIFT,KEY_ESC",
        value_parser = parse_keys
    )]
    esc_key_combo: Keys,
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
}

/// Key names joined by commas, as key codes.
#[derive(Debug, Clone)]
struct Keys(Vec<u16>);

fn parse_keys(s: &str) -> anyhow::Result<Keys> {
    parse_combo(s).map(Keys).map_err(anyhow::Error::msg)
}

/// `--hold-floor`: None = off.
#[derive(Debug, Clone, Copy)]
struct Floor(Option<HoldFloor>);

/// The longest delay or hold floor accepted, in ms (an hour): far beyond any use, and far from
/// overflowing once turned into the core's microseconds.
const MAX_MS: u64 = 3_600_000;

fn parse_floor(s: &str) -> anyhow::Result<Floor> {
    if s.trim() == "0" {
        return Ok(Floor(None));
    }
    let Some((a, b)) = s.split_once('-') else {
        bail!("expected MIN-MAX in milliseconds, e.g. 150-200, or 0 for off");
    };
    let ms = |x: &str| {
        x.trim()
            .parse::<u64>()
            .with_context(|| format!("`{x}` is not a number of milliseconds"))
    };
    let (min, max) = (ms(a)?, ms(b)?);
    if min > max || max == 0 || max > MAX_MS {
        bail!("{min}-{max}: MIN must be at most MAX, and MAX above 0 and at most {MAX_MS}");
    }
    Ok(Floor(Some(HoldFloor {
        min: min * 1000,
        max: max * 1000,
    })))
}

fn main() -> ExitCode {
    anon_cli::main(&PROGRAM, run)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Some(Cmd::Simulate { seed }) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            let events = simulate::parse(&text).context("stdin")?;
            let mut rng = seed.map_or_else(
                rand_chacha::ChaCha20Rng::from_os_rng,
                rand_chacha::ChaCha20Rng::seed_from_u64,
            );
            let out = simulate::run(&events, cli.delay * 1000, cli.hold_floor.0, &mut rng);
            print!("{}", simulate::render(&out));
        }
        None => {
            let opts = Options {
                hold_floor: cli.hold_floor.0,
                extra_modifiers: cli.modifiers.into_iter().flat_map(|k| k.0).collect(),
                max_delay: Duration::from_millis(cli.delay),
                start_delay: Duration::from_millis(cli.start_delay),
                devices: cli.devices,
                no_mouse: cli.no_mouse,
                esc_combo: cli.esc_key_combo.0,
                input_dir: cli.input_dir,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(kloak::daemon::run(
                opts,
                rand_chacha::ChaCha20Rng::from_os_rng(),
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
