#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod logging;
mod man;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches};

/// `EX_USAGE` (sysexits.h): the command was used incorrectly. Never a verdict.
pub const USAGE: u8 = 64;

/// What a binary declares about itself, once: its help epilogue, its man page sections and
/// its exit codes come from here.
#[derive(Debug)]
pub struct Program {
    /// The executable's name (`anon-firewall`).
    pub name: &'static str,
    /// The man page section: 8 for daemons and root tools, 1 for user commands.
    pub section: &'static str,
    /// Example command lines, one per line, each with its comment.
    pub examples: &'static str,
    /// Further prose for `--help` and the man page (may be empty).
    pub notes: &'static str,
    /// Every exit code but [`USAGE`] (which every binary shares and is added here), with its
    /// meaning.
    pub exit_codes: &'static [(u8, &'static str)],
    /// The exit code for an error `run` returns (not a [`UsageError`]).
    pub error_code: u8,
    /// Log targets shown at `info` (besides warnings and errors from everywhere): the
    /// program's own crates, and any dependency whose info lines an operator needs.
    pub info_targets: &'static [&'static str],
}

impl Program {
    /// Every exit code with its meaning, [`USAGE`] included.
    pub fn all_exit_codes(&self) -> Vec<(u8, &'static str)> {
        let mut codes = self.exit_codes.to_vec();
        codes.push((
            USAGE,
            "usage error: an unknown option, a bad value or a missing argument (nothing was done)",
        ));
        codes
    }

    /// The text after `--help`'s options: examples, notes, exit codes.
    pub fn epilogue(&self) -> String {
        let mut s = format!("Examples:\n{}\n", self.examples.trim_end());
        if !self.notes.trim().is_empty() {
            s += &format!("\n{}\n", self.notes.trim_end());
        }
        s += "\nExit codes:\n";
        for (code, meaning) in self.all_exit_codes() {
            s += &format!("  {code:<3} {meaning}\n");
        }
        s.trim_end().to_owned()
    }

    /// The clap definition with the epilogue and the hidden `--man` / `--completions`.
    pub fn command<C: CommandFactory>(&self) -> Command {
        C::command()
            .name(self.name)
            .bin_name(self.name)
            .after_help(self.epilogue())
            .arg(
                Arg::new(MAN)
                    .long(MAN)
                    .action(ArgAction::SetTrue)
                    .exclusive(true)
                    .hide(true)
                    .help("Print the man page (roff) to stdout"),
            )
            .arg(
                Arg::new(COMPLETIONS)
                    .long(COMPLETIONS)
                    .value_name("SHELL")
                    .value_parser(clap::value_parser!(clap_complete::Shell))
                    .exclusive(true)
                    .hide(true)
                    .help("Print a shell completion script (bash, zsh, fish, ...) to stdout"),
            )
    }

    /// Parses `args` into `C`. `Ok(Parsed::Done(code))` when the request was answered here
    /// (help, version, man page, completions, or a usage error already reported on stderr).
    pub fn parse_from<C, I, T>(&self, args: I, out: &mut dyn Write) -> Parsed<C>
    where
        C: CommandFactory + FromArgMatches,
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut cmd = self.command::<C>();
        let matches = match cmd.try_get_matches_from_mut(&args) {
            Ok(m) => m,
            // clap checks a required subcommand before `exclusive`, so `--man` alone is
            // refused: parse once more without the requirement, for these two flags only
            // (any other use keeps clap's own message and usage line).
            Err(e) if e.kind() == clap::error::ErrorKind::MissingSubcommand => {
                match cmd
                    .clone()
                    .subcommand_required(false)
                    .try_get_matches_from(&args)
                {
                    Ok(m) if m.get_flag(MAN) || m.contains_id(COMPLETIONS) => m,
                    _ => return Parsed::Done(clap_exit(&e)),
                }
            }
            Err(e) => return Parsed::Done(clap_exit(&e)),
        };
        if matches.get_flag(MAN) {
            let cmd = cmd.disable_help_subcommand(true);
            return Parsed::Done(self.written(man::render(self, cmd, out)));
        }
        if let Some(shell) = matches.get_one::<clap_complete::Shell>(COMPLETIONS) {
            // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, self.name, &mut script);
            return Parsed::Done(self.written(out.write_all(&script)));
        }
        match C::from_arg_matches(&matches) {
            Ok(c) => Parsed::Run(c),
            Err(e) => Parsed::Done(clap_exit(&e.with_cmd(&cmd))),
        }
    }

    /// A failed write of the man page is an error of the program (its `error_code`), never
    /// one of its verdicts.
    fn written(&self, r: std::io::Result<()>) -> ExitCode {
        match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{}: cannot write: {e}", self.name);
                ExitCode::from(self.error_code)
            }
        }
    }

    /// Maps `run`'s result to the exit code, reporting an error on stderr.
    pub fn finish(&self, result: anyhow::Result<ExitCode>) -> ExitCode {
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("{}: {e:#}", self.name);
                if e.downcast_ref::<UsageError>().is_some() {
                    eprintln!("Try '{} --help' for more information.", self.name);
                    ExitCode::from(USAGE)
                } else {
                    ExitCode::from(self.error_code)
                }
            }
        }
    }
}

const MAN: &str = "man";
const COMPLETIONS: &str = "completions";

/// The outcome of parsing: the options to run with, or an exit code (already answered).
#[derive(Debug)]
pub enum Parsed<C> {
    Run(C),
    Done(ExitCode),
}

/// Options that parse but do not make sense together (or with the environment): found while
/// turning raw arguments into validated options, before anything is done. Exits with
/// [`USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Help and version go to stdout with 0; every usage error to stderr with [`USAGE`].
fn clap_exit(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

/// The whole `main` of a binary: logging, arguments, `run`, the exit code.
pub fn main<C>(program: &'static Program, run: fn(C) -> anyhow::Result<ExitCode>) -> ExitCode
where
    C: CommandFactory + FromArgMatches,
{
    logging::init(program);
    // stdout is locked only while parsing: `run` (a daemon's whole life) must not hold it.
    let parsed = {
        let mut out = std::io::stdout().lock();
        program.parse_from::<C, _, _>(std::env::args_os(), &mut out)
    };
    match parsed {
        Parsed::Run(cli) => program.finish(run(cli)),
        Parsed::Done(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, Subcommand};

    #[derive(Debug, Parser)]
    #[command(version, about = "A test program")]
    struct Cli {
        #[arg(long, default_value_t = 3)]
        count: u8,
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Debug, Subcommand)]
    enum Cmd {
        /// Do it.
        Go,
    }

    static PROGRAM: Program = Program {
        name: "testprog",
        section: "8",
        examples: "  testprog go     go",
        notes: "Some notes.",
        exit_codes: &[(0, "fine"), (1, "error"), (2, "a verdict")],
        error_code: 1,
        info_targets: &["testprog"],
    };

    fn parse(args: &[&str]) -> (Parsed<Cli>, String) {
        let mut out = Vec::new();
        let p = PROGRAM.parse_from::<Cli, _, _>(
            std::iter::once("testprog").chain(args.iter().copied()),
            &mut out,
        );
        (p, String::from_utf8(out).expect("utf-8"))
    }

    fn code(p: &Parsed<Cli>) -> Option<ExitCode> {
        match p {
            Parsed::Done(c) => Some(*c),
            Parsed::Run(_) => None,
        }
    }

    #[test]
    fn usage_errors_exit_64_not_2() {
        for bad in [
            &["--nope", "go"][..],
            &["--count", "x", "go"],
            &["--count", "300", "go"],
            &[],
            &["stop"],
            &["go", "extra"],
        ] {
            assert_eq!(code(&parse(bad).0), Some(ExitCode::from(64)), "{bad:?}");
        }
    }

    #[test]
    fn help_and_version_exit_0() {
        for ok in [&["--help"][..], &["--version"], &["go", "--help"]] {
            assert_eq!(code(&parse(ok).0), Some(ExitCode::SUCCESS), "{ok:?}");
        }
    }

    #[test]
    fn valid_arguments_run() {
        match parse(&["--count", "5", "go"]).0 {
            Parsed::Run(c) => assert_eq!(c.count, 5),
            Parsed::Done(c) => panic!("not run: {c:?}"),
        }
    }

    #[test]
    fn man_page_needs_no_subcommand_and_lists_every_exit_code() {
        let (p, page) = parse(&["--man"]);
        assert_eq!(code(&p), Some(ExitCode::SUCCESS));
        assert!(page.contains("\n.TH testprog 8 "), "{page}");
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble: {page}");
        let status = page.split(".SH \"EXIT STATUS\"").nth(1).expect(&page);
        for c in ["0", "1", "2", "64"] {
            assert!(
                status.contains(&format!("\n.TP\n\\fB{c}\\fR\n")),
                "{c} in {status}"
            );
        }
        assert!(page.contains(".SH EXAMPLES"), "{page}");
        assert!(!page.contains("\\-\\-man"), "--man is hidden: {page}");
    }

    #[test]
    fn man_with_other_options_is_a_usage_error() {
        assert_eq!(
            code(&parse(&["--man", "--count", "3"]).0),
            Some(ExitCode::from(64))
        );
    }

    #[test]
    fn completions_come_from_the_same_definition() {
        let (p, script) = parse(&["--completions", "bash"]);
        assert_eq!(code(&p), Some(ExitCode::SUCCESS));
        assert!(script.contains("complete -F"), "{script}");
        assert!(script.contains("--count"), "{script}");
        assert_eq!(
            code(&parse(&["--completions", "tcsh"]).0),
            Some(ExitCode::from(64))
        );
    }

    #[test]
    fn help_keeps_the_required_subcommand_in_the_usage_line() {
        let usage = PROGRAM.command::<Cli>().render_usage().to_string();
        assert!(usage.contains("<COMMAND>"), "{usage}");
        let (p, out) = parse(&["--count", "4"]);
        assert_eq!(code(&p), Some(ExitCode::from(64)));
        assert!(out.is_empty(), "{out}");
    }

    #[test]
    fn help_lists_the_exit_codes() {
        let help = PROGRAM.command::<Cli>().render_help().to_string();
        assert!(
            help.contains(
                "Exit codes:\n  0   fine\n  1   error\n  2   a verdict\n  64  usage error"
            ),
            "{help}"
        );
    }

    #[test]
    fn usage_error_from_run_exits_64_and_other_errors_the_error_code() {
        let usage = anyhow::Error::new(UsageError("--a needs --b".into()));
        assert_eq!(PROGRAM.finish(Err(usage)), ExitCode::from(64));
        let context = anyhow::Error::new(UsageError("x".into())).context("while validating");
        assert_eq!(PROGRAM.finish(Err(context)), ExitCode::from(64));
        assert_eq!(
            PROGRAM.finish(Err(anyhow::anyhow!("disk full"))),
            ExitCode::from(1)
        );
        assert_eq!(PROGRAM.finish(Ok(ExitCode::from(2))), ExitCode::from(2));
    }
}

/// For the binaries' integration tests: what every binary promises about its exit codes,
/// checked on the built executable (panics with the output when a promise is broken).
pub mod testing {
    use std::path::Path;
    use std::process::{Command, Output};

    fn run(bin: &Path, args: &[&str]) -> Output {
        Command::new(bin)
            .args(args)
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
    }

    /// Each of `bad` (argument lists that are usage errors) exits 64 with a message on
    /// stderr and nothing on stdout; `--help` and the man page's EXIT STATUS list `codes`
    /// and 64; `--completions bash` works.
    pub fn assert_exit_codes(bin: &Path, bad: &[&[&str]], codes: &[u8]) {
        for args in bad {
            let out = run(bin, args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
            assert!(!err.trim().is_empty(), "{args:?}: no message");
            assert!(out.stdout.is_empty(), "{args:?}: wrote to stdout");
        }
        let help = run(bin, &["--help"]);
        assert_eq!(help.status.code(), Some(0));
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let listed = help
            .split("Exit codes:")
            .nth(1)
            .unwrap_or_else(|| panic!("{help}"));
        let man = run(bin, &["--man"]);
        assert_eq!(man.status.code(), Some(0));
        let man = String::from_utf8_lossy(&man.stdout).into_owned();
        let status = man
            .split(".SH \"EXIT STATUS\"")
            .nth(1)
            .unwrap_or_else(|| panic!("no EXIT STATUS in {man}"));
        for c in codes.iter().chain(&[super::USAGE]) {
            assert!(
                listed.contains(&format!("\n  {c:<3} ")),
                "--help lacks {c}: {help}"
            );
            assert!(
                status.contains(&format!("\\fB{c}\\fR")),
                "man lacks {c}: {man}"
            );
        }
        let bash = run(bin, &["--completions", "bash"]);
        assert_eq!(bash.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&bash.stdout).contains("complete -F"));
    }
}
