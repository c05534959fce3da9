//! One logging setup for every binary: the journal when systemd started the program (it sets
//! `JOURNAL_STREAM`), else stderr as `name: level: message`. The same rule everywhere: the
//! program's own targets at `info`, every other crate's warnings and errors (a dependency's
//! warning is often the reason something failed; its info chatter is noise in the journal).

use log::{Level, LevelFilter, Log, Metadata, Record};
use systemd_journal_logger::JournalLog;

use crate::Program;

/// Whether a record passes: warnings and errors from anywhere; `info` from `info_targets`
/// (a target or its submodules).
pub fn wanted(info_targets: &[&str], m: &Metadata) -> bool {
    m.level() <= Level::Warn
        || (m.level() <= Level::Info && info_targets.iter().any(|own| within(m.target(), own)))
}

/// `target` is the module `own` or one of its submodules.
fn within(target: &str, own: &str) -> bool {
    target
        .strip_prefix(own)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

enum Sink {
    Journal(JournalLog),
    Stderr,
}

struct Logger {
    program: &'static Program,
    sink: Sink,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        wanted(self.program.info_targets, m)
    }
    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        match &self.sink {
            Sink::Journal(j) => j.log(r),
            Sink::Stderr => eprintln!("{}", line(self.program, r)),
        }
    }
    fn flush(&self) {
        if let Sink::Journal(j) = &self.sink {
            j.flush();
        }
    }
}

/// `name: level: message`; a dependency's line also names its target.
fn line(p: &Program, r: &Record) -> String {
    let level = r.level().as_str().to_lowercase();
    let own = p
        .info_targets
        .first()
        .is_some_and(|own| within(r.target(), own));
    if own {
        format!("{}: {level}: {}", p.name, r.args())
    } else {
        format!("{}: {level}: {}: {}", p.name, r.target(), r.args())
    }
}

/// Installs the logger (once; a second call does nothing).
pub fn init(program: &'static Program) {
    let journal = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(JournalLog::new)
        .and_then(Result::ok);
    let sink = journal.map_or(Sink::Stderr, Sink::Journal);
    if log::set_boxed_logger(Box::new(Logger { program, sink })).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(target: &str, level: Level) -> Metadata<'_> {
        Metadata::builder().target(target).level(level).build()
    }

    #[test]
    fn own_info_and_everyones_warnings_pass() {
        let own = &["sdwdate", "tor_dirmgr"];
        assert!(wanted(own, &meta("sdwdate", Level::Info)));
        assert!(wanted(own, &meta("sdwdate::daemon", Level::Info)));
        assert!(wanted(own, &meta("tor_dirmgr", Level::Info)));
        assert!(wanted(own, &meta("tor_proto::circuit", Level::Warn)));
        assert!(wanted(own, &meta("rustls", Level::Error)));
        assert!(!wanted(own, &meta("tor_proto::circuit", Level::Info)));
        assert!(!wanted(own, &meta("sdwdatex", Level::Info)));
        assert!(!wanted(own, &meta("sdwdate", Level::Debug)));
    }

    #[test]
    fn stderr_lines_name_the_program_and_foreign_targets() {
        static P: Program = Program {
            name: "kloak",
            section: "8",
            examples: "",
            notes: "",
            exit_codes: &[],
            error_code: 1,
            info_targets: &["kloak"],
        };
        let own = Record::builder()
            .target("kloak::daemon")
            .level(Level::Info)
            .args(format_args!("grabbed"))
            .build();
        assert_eq!(line(&P, &own), "kloak: info: grabbed");
        let dep = Record::builder()
            .target("evdev")
            .level(Level::Warn)
            .args(format_args!("odd"))
            .build();
        assert_eq!(line(&P, &dep), "kloak: warn: evdev: odd");
    }
}
