//! The man page: clap_mangen's sections, then EXAMPLES, NOTES and EXIT STATUS from the
//! [`Program`](crate::Program) (clap_mangen would put the help epilogue under "EXTRA").

use std::io::{self, Write};

use clap::Command;
use roff::{bold, roman, Roff};

use crate::Program;

pub(crate) fn render(p: &Program, cmd: Command, out: &mut dyn Write) -> io::Result<()> {
    let mut page = Vec::new();
    sections(p, cmd, &mut page)?;
    out.write_all(once_preamble(&String::from_utf8_lossy(&page)).as_bytes())
}

/// Each of clap_mangen's section renderers starts with the same two-line string-definition
/// preamble; a page needs it once.
fn once_preamble(page: &str) -> String {
    let mut seen = false;
    let mut lines = page.lines().peekable();
    let mut kept = String::new();
    while let Some(l) = lines.next() {
        if l.starts_with(".ie \\n(.g .ds Aq") {
            if let Some(el) = lines.next_if(|n| n.starts_with(".el .ds Aq")) {
                if !seen {
                    kept += &format!("{l}\n{el}\n");
                }
                seen = true;
                continue;
            }
        }
        kept += l;
        kept.push('\n');
    }
    kept
}

fn sections(p: &Program, cmd: Command, out: &mut dyn Write) -> io::Result<()> {
    let has_subcommands = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let man = clap_mangen::Man::new(cmd.after_help(None::<&str>)).section(p.section);
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    if has_subcommands {
        man.render_subcommands_section(out)?;
    }
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES"]).control("nf", []);
    for line in p.examples.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    if !p.notes.trim().is_empty() {
        roff.control("SH", ["NOTES"]);
        for para in p.notes.trim().split("\n\n") {
            roff.control("PP", [])
                .text([roman(para.replace('\n', " "))]);
        }
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in p.all_exit_codes() {
        roff.control("TP", [])
            .text([bold(code.to_string())])
            .text([roman(meaning)]);
    }
    roff.to_writer(out)?;
    man.render_version_section(out)
}
