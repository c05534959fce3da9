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
