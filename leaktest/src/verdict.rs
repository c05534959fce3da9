//! The pure core: from what a probe did locally and what the observer saw, a verdict.

use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub check: String,
    pub verdict: Verdict,
    pub evidence: String,
}

/// What the observer reported for one network probe: `None` without an observer.
pub type Seen = Option<Vec<String>>;

/// A network probe's verdict: a leak is only established (FAIL) or excluded (PASS) by what
/// the observer saw; the local result alone proves nothing (SKIP).
pub fn network(check: &str, local: &str, seen: &Seen) -> Outcome {
    let (verdict, evidence) = match seen {
        None => (
            Verdict::Skip,
            format!("{local}; no observer, so this is not proof"),
        ),
        Some(p) if p.is_empty() => (Verdict::Pass, format!("{local}; the observer saw nothing")),
        Some(p) => (
            Verdict::Fail,
            format!("{local}; the observer saw {}: {}", p.len(), p.join(", ")),
        ),
    };
    Outcome {
        check: check.to_owned(),
        verdict,
        evidence,
    }
}

/// A fact of this host.
pub fn fact(check: &str, ok: Option<bool>, evidence: String) -> Outcome {
    let verdict = match ok {
        Some(true) => Verdict::Pass,
        Some(false) => Verdict::Fail,
        None => Verdict::Skip,
    };
    Outcome {
        check: check.to_owned(),
        verdict,
        evidence,
    }
}

/// The TCP counters of /proc/net/snmp: ActiveOpens + PassiveOpens (each open computes one ISN,
/// a connect's SYN or a listener's SYN-ACK).
pub fn tcp_opens(snmp: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let field = |name: &str| -> Option<u64> {
        let i = names.split_whitespace().position(|n| n == name)?;
        values.split_whitespace().nth(i)?.parse().ok()
    };
    Some(field("ActiveOpens")? + field("PassiveOpens")?)
}

/// What tirdad's counters say about a test window in which `opens` TCP opens happened (the
/// kernel's counters) and tirdad `replaced` ISNs; `missed` ISNs it let through since load. A
/// module that is loaded but misses or lags is failing: some connections carry the kernel's
/// own, clock-derived ISN.
pub fn tirdad_health(
    missed: Option<u64>,
    replaced: Option<u64>,
    opens: Option<u64>,
) -> (Option<bool>, String) {
    match (missed, replaced, opens) {
        (Some(m), _, _) if m > 0 => (
            Some(false),
            format!("loaded, but {m} ISN(s) missed since load (left as the kernel made them)"),
        ),
        (Some(0), Some(r), Some(o)) if r < o => (
            Some(false),
            format!("loaded, but replaced {r} ISN(s) for {o} TCP open(s) during the test"),
        ),
        (Some(0), Some(r), Some(o)) => (
            Some(true),
            format!("random TCP ISNs: {r} replaced for {o} TCP open(s) during the test, 0 missed"),
        ),
        // Loaded and nothing missed, but a module whose probes never fire (kprobes disabled
        // system-wide) misses nothing either: without the comparison this proves nothing.
        (Some(0), _, _) => (
            None,
            "loaded, 0 missed, but no loopback test connection could be made to compare its \
             counter with the kernel's TCP opens: not proof"
                .into(),
        ),
        _ => (
            Some(false),
            "loaded, but its counters cannot be read (a module too old to count missed ISNs?)"
                .into(),
        ),
    }
}

/// What `anon-firewall status` said, as a check: its exit code (`None`: killed, or it could
/// not run), its report (the `rules:` line is the evidence) and anon-firewall's `state` file.
/// The verdict rests on the exit codes anon-firewall documents: 0 loaded as applied, 1 the
/// lockdown after a failed apply (closed, as it should be: no leak), 3 not loaded, 4 cannot
/// tell, 5 the kernel's table is not what anon-firewall loaded (deleted, flushed, opened).
pub fn firewall_status(
    code: Option<i32>,
    report: &str,
    state: Option<&str>,
) -> (Option<bool>, String) {
    let line = |key: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or("?")
            .to_owned()
    };
    match code {
        Some(0) => (
            Some(true),
            format!(
                "anon-firewall's rules are loaded as applied ({})",
                line("state:")
            ),
        ),
        Some(1) => (
            Some(true),
            format!(
                "locked down after a failed apply, the lockdown as loaded (failed: {})",
                line("failed:")
            ),
        ),
        Some(3) if state.map(str::trim) == Some("unloaded") => (
            Some(false),
            "anon-firewall's rules were unloaded: this host is not filtered by anon-firewall"
                .into(),
        ),
        Some(3) => (
            None,
            "anon-firewall has loaded no rules since boot (not in use here?)".into(),
        ),
        Some(5) => (
            Some(false),
            format!(
                "the kernel no longer has the rules anon-firewall loaded: {}",
                line("rules:")
            ),
        ),
        Some(4) => (None, format!("anon-firewall {}", line("rules:"))),
        other => (
            None,
            format!(
                "`anon-firewall status` ended with {}",
                other.map_or_else(|| "a signal".to_owned(), |c| format!("exit code {c}"))
            ),
        ),
    }
}

/// 0 every check passed, 1 a leak, 2 could not test.
pub fn exit_code(outcomes: &[Outcome]) -> u8 {
    if outcomes.iter().any(|o| o.verdict == Verdict::Fail) {
        1
    } else if outcomes.is_empty() || outcomes.iter().any(|o| o.verdict == Verdict::Skip) {
        2
    } else {
        0
    }
}

pub fn human(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    for o in outcomes {
        s += &format!("[{}] {:<22} {}\n", o.verdict.as_str(), o.check, o.evidence);
    }
    let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
    s += &format!(
        "leaktest: {} passed, {} failed, {} skipped: {}\n",
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Skip),
        match exit_code(outcomes) {
            0 => "no leak found",
            1 => "LEAK",
            _ => "could not test everything",
        }
    );
    s
}

pub fn to_json(outcomes: &[Outcome]) -> serde_json::Value {
    json!({
        "exit": exit_code(outcomes),
        "checks": outcomes.iter().map(|o| json!({"check": o.check, "verdict": o.verdict.as_str(), "evidence": o.evidence})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_opens_are_read_from_snmp() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\nTcp: 1 200 120000 -1 17 5 0\nUdp: InDatagrams\nUdp: 3\n";
        assert_eq!(tcp_opens(snmp), Some(22));
        assert_eq!(tcp_opens("Tcp: ActiveOpens\n"), None);
        assert_eq!(tcp_opens(""), None);
    }

    #[test]
    fn tirdad_fails_when_it_misses_or_lags() {
        assert_eq!(tirdad_health(Some(0), Some(4), Some(4)).0, Some(true));
        assert_eq!(tirdad_health(Some(0), Some(9), Some(4)).0, Some(true));
        assert_eq!(tirdad_health(Some(0), None, None).0, None);
        assert_eq!(tirdad_health(Some(3), Some(4), Some(4)).0, Some(false));
        assert_eq!(tirdad_health(Some(0), Some(3), Some(4)).0, Some(false));
        assert_eq!(tirdad_health(None, Some(4), Some(4)).0, Some(false));
    }

    #[test]
    fn anon_firewalls_status_is_judged_by_its_exit_code() {
        let report = "state: gateway full\nloaded: no\nrules: CHANGED since anon-firewall loaded them: table inet anon_firewall is missing\n";
        let (ok, e) = firewall_status(Some(5), report, Some("gateway full\n"));
        assert_eq!(ok, Some(false));
        assert!(e.ends_with("table inet anon_firewall is missing"), "{e}");
        assert_eq!(
            firewall_status(Some(0), "state: gateway full\n", None),
            (
                Some(true),
                "anon-firewall's rules are loaded as applied (gateway full)".into()
            )
        );
        // A lockdown is closed: no leak.
        assert_eq!(firewall_status(Some(1), "failed: x\n", None).0, Some(true));
        // Unloaded on purpose is unfiltered; never applied is not anon-firewall's host.
        assert_eq!(
            firewall_status(Some(3), "", Some("unloaded\n")).0,
            Some(false)
        );
        assert_eq!(firewall_status(Some(3), "", None).0, None);
        // Cannot tell, a usage error, a signal: no verdict.
        let (ok, e) = firewall_status(Some(4), "rules: cannot tell: no CAP_NET_ADMIN\n", None);
        assert_eq!(ok, None);
        assert!(e.contains("cannot tell: no CAP_NET_ADMIN"), "{e}");
        assert_eq!(firewall_status(Some(64), "", None).0, None);
        assert!(firewall_status(None, "", None).1.contains("a signal"));
    }

    #[test]
    fn verdicts_need_evidence() {
        assert_eq!(network("udp", "sent", &None).verdict, Verdict::Skip);
        assert_eq!(network("udp", "sent", &Some(vec![])).verdict, Verdict::Pass);
        let f = network(
            "udp",
            "sent",
            &Some(vec!["udp 10.152.152.11 -> 192.0.2.1:123".into()]),
        );
        assert_eq!(f.verdict, Verdict::Fail);
        assert!(f.evidence.contains("192.0.2.1:123"));
        let pass = fact("tz", Some(true), "UTC".into());
        assert_eq!(exit_code(std::slice::from_ref(&pass)), 0);
        assert_eq!(
            exit_code(&[pass.clone(), network("x", "refused", &None)]),
            2
        );
        assert_eq!(exit_code(&[pass, f, network("x", "refused", &None)]), 1);
        assert_eq!(exit_code(&[]), 2);
        assert!(human(&[fact("tz", Some(false), "Europe/Berlin".into())]).contains("1 failed"));
    }
}
