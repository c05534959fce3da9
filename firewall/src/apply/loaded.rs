//! What anon-firewall loaded, as the kernel lists it, so that a table another tool deleted,
//! flushed or opened (`nft delete table inet anon_firewall`, `nft flush chain ...`, a policy
//! set to accept) is told from ours. Pure: nft's JSON (`nft -j list ...`) in, differences out;
//! nothing here reads nft's human-readable text.
//!
//! Right after each load the shell lists our table and records its [`Loaded`] shape in
//! `/run/anon-firewall/loaded.json`; `status`, `check` and leaktest list it again and
//! [`compare`] the two. A rule is compared as the kernel gives it back (its expressions, not
//! its handle), counters' running values left out.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::ruleset::TABLE;

/// Our table's shape: its chains with their rules, and any other object (named sets, maps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaded {
    pub chains: Vec<ChainShape>,
    /// Objects other than chains and rules (named sets, maps, counters), without handles,
    /// in a stable order.
    #[serde(default)]
    pub other: Vec<Value>,
}

/// One chain: for a base chain its type, hook, priority and policy; its rules in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainShape {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub hook: Option<String>,
    pub prio: Option<Value>,
    pub policy: Option<String>,
    /// Each rule as nft lists it, without family, table, chain and handle.
    pub rules: Vec<Value>,
}

/// nft's JSON was not what `nft -j list` prints.
#[derive(Debug, Error)]
pub enum ParseError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no `nftables` array in nft's JSON")]
    NoArray,
    #[error("a {0} of nft's JSON without a name")]
    NoName(&'static str),
}

/// The `nftables` array of `nft -j list ...` output.
fn objects(text: &str) -> Result<Vec<Value>, ParseError> {
    let mut v: Value = serde_json::from_str(text)?;
    match v.get_mut("nftables").map(Value::take) {
        Some(Value::Array(a)) => Ok(a),
        _ => Err(ParseError::NoArray),
    }
}

/// Whether `nft -j list tables` output lists our table (`inet anon_firewall`).
pub fn has_table(text: &str) -> Result<bool, ParseError> {
    Ok(objects(text)?.iter().any(|o| {
        o.get("table").is_some_and(|t| {
            t.get("family").and_then(Value::as_str) == Some("inet")
                && t.get("name").and_then(Value::as_str) == Some(TABLE)
        })
    }))
}

/// Drops what changes without anyone changing the rules: counters' and quotas' running
/// values.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, inner) in m.iter_mut() {
                if let (Some(kind), Value::Object(fields)) = (
                    match k.as_str() {
                        "counter" => Some(&["packets", "bytes"][..]),
                        "quota" => Some(&["used"][..]),
                        _ => None,
                    },
                    &mut *inner,
                ) {
                    for f in kind {
                        fields.remove(*f);
                    }
                }
                normalize(inner);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn without(mut m: Map<String, Value>, keys: &[&str]) -> Value {
    for k in keys {
        m.remove(*k);
    }
    let mut v = Value::Object(m);
    normalize(&mut v);
    v
}

impl Loaded {
    /// From `nft -j list table inet anon_firewall` output.
    pub fn from_nft_json(text: &str) -> Result<Loaded, ParseError> {
        let mut chains: Vec<ChainShape> = Vec::new();
        let mut rules: Vec<(String, Value)> = Vec::new();
        let mut other = Vec::new();
        for o in objects(text)? {
            let Value::Object(o) = o else { continue };
            let Some((kind, Value::Object(body))) = o.into_iter().next() else {
                continue;
            };
            match kind.as_str() {
                "metainfo" | "table" => {}
                "chain" => {
                    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
                    chains.push(ChainShape {
                        name: s("name").ok_or(ParseError::NoName("chain"))?,
                        kind: s("type"),
                        hook: s("hook"),
                        prio: body.get("prio").cloned(),
                        policy: s("policy"),
                        rules: Vec::new(),
                    });
                }
                "rule" => {
                    let chain = body
                        .get("chain")
                        .and_then(Value::as_str)
                        .ok_or(ParseError::NoName("rule"))?
                        .to_owned();
                    rules.push((
                        chain,
                        without(body, &["family", "table", "chain", "handle"]),
                    ));
                }
                _ => {
                    let mut m = Map::new();
                    m.insert(kind, without(body, &["handle"]));
                    other.push(Value::Object(m));
                }
            }
        }
        for (chain, rule) in rules {
            match chains.iter_mut().find(|c| c.name == chain) {
                Some(c) => c.rules.push(rule),
                // nft lists a chain before its rules; a rule of an unlisted chain is odd
                // enough to be a chain of its own here (it then differs from the record).
                None => chains.push(ChainShape {
                    name: chain,
                    kind: None,
                    hook: None,
                    prio: None,
                    policy: None,
                    rules: vec![rule],
                }),
            }
        }
        other.sort_by_key(ToString::to_string);
        Ok(Loaded { chains, other })
    }
}

/// How the kernel's table differs from the one anon-firewall loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    TableMissing,
    ChainMissing(String),
    ExtraChain(String),
    /// A base chain's type, hook, priority or policy (`what`) changed.
    Changed {
        chain: String,
        what: &'static str,
        loaded: String,
        now: String,
    },
    RuleCount {
        chain: String,
        loaded: usize,
        now: usize,
    },
    /// Same number of rules, but rule `index` (0-based) is another one.
    RuleChanged {
        chain: String,
        index: usize,
    },
    OtherObjects,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::TableMissing => write!(
                f,
                "table inet {TABLE} is missing (deleted by another tool, e.g. `nft flush ruleset`?)"
            ),
            Difference::ChainMissing(c) => write!(f, "chain {c} is missing"),
            Difference::ExtraChain(c) => write!(f, "chain {c} was added"),
            Difference::Changed {
                chain,
                what,
                loaded,
                now,
            } => write!(f, "chain {chain}: {what} is {now}, {loaded} was loaded"),
            Difference::RuleCount { chain, loaded, now } => write!(
                f,
                "chain {chain}: {now} rules, {loaded} were loaded{}",
                if *now == 0 { " (flushed)" } else { "" }
            ),
            Difference::RuleChanged { chain, index } => {
                write!(f, "chain {chain}: rule {} is not the one loaded", index + 1)
            }
            Difference::OtherObjects => {
                f.write_str("the table's sets or other objects are not those loaded")
            }
        }
    }
}

fn text(v: &Option<impl fmt::Display>) -> String {
    v.as_ref()
        .map_or_else(|| "(none)".to_owned(), ToString::to_string)
}

/// What differs between the recorded `loaded` shape and the kernel's table `now` (`None`:
/// the table is gone). Empty: the kernel has what was loaded.
pub fn compare(loaded: &Loaded, now: Option<&Loaded>) -> Vec<Difference> {
    let Some(now) = now else {
        return vec![Difference::TableMissing];
    };
    let mut out = Vec::new();
    for l in &loaded.chains {
        let Some(n) = now.chains.iter().find(|c| c.name == l.name) else {
            out.push(Difference::ChainMissing(l.name.clone()));
            continue;
        };
        let prio = |c: &ChainShape| c.prio.as_ref().map(ToString::to_string);
        for (what, a, b) in [
            ("type", text(&l.kind), text(&n.kind)),
            ("hook", text(&l.hook), text(&n.hook)),
            ("priority", text(&prio(l)), text(&prio(n))),
            ("policy", text(&l.policy), text(&n.policy)),
        ] {
            if a != b {
                out.push(Difference::Changed {
                    chain: l.name.clone(),
                    what,
                    loaded: a,
                    now: b,
                });
            }
        }
        if l.rules.len() != n.rules.len() {
            out.push(Difference::RuleCount {
                chain: l.name.clone(),
                loaded: l.rules.len(),
                now: n.rules.len(),
            });
        } else if let Some(index) = l.rules.iter().zip(&n.rules).position(|(a, b)| a != b) {
            out.push(Difference::RuleChanged {
                chain: l.name.clone(),
                index,
            });
        }
    }
    for n in &now.chains {
        if !loaded.chains.iter().any(|c| c.name == n.name) {
            out.push(Difference::ExtraChain(n.name.clone()));
        }
    }
    if loaded.other != now.other {
        out.push(Difference::OtherObjects);
    }
    out
}

/// What the kernel's table `now` lacks of the transaction `batch` just loaded (our `add
/// table; flush table; add chain ...; add rule ...`): each chain it adds with its type, hook
/// and policy, and as many rules in each as it adds. A chain of the table that the batch does
/// not add may stay only empty (a leftover of an earlier role: `flush table` emptied it).
/// Empty: the kernel took the transaction as it was meant, so recording `now` records ours.
pub fn unlike_batch(batch: &Value, now: &Loaded) -> Vec<Difference> {
    let mut want: Vec<(ChainShape, usize)> = Vec::new();
    let adds = batch
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|cmd| cmd.get("add"));
    for add in adds {
        let s = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some(c) = add.get("chain") {
            want.push((
                ChainShape {
                    name: s(c, "name").unwrap_or_default(),
                    kind: s(c, "type"),
                    hook: s(c, "hook"),
                    prio: c.get("prio").cloned(),
                    policy: s(c, "policy"),
                    rules: Vec::new(),
                },
                0,
            ));
        } else if let Some(r) = add.get("rule") {
            let chain = s(r, "chain").unwrap_or_default();
            if let Some((_, n)) = want.iter_mut().find(|(c, _)| c.name == chain) {
                *n += 1;
            }
        }
    }
    let mut out = Vec::new();
    for (w, rules) in &want {
        let Some(n) = now.chains.iter().find(|c| c.name == w.name) else {
            out.push(Difference::ChainMissing(w.name.clone()));
            continue;
        };
        for (what, a, b) in [
            ("type", &w.kind, &n.kind),
            ("hook", &w.hook, &n.hook),
            ("policy", &w.policy, &n.policy),
        ] {
            if a != b {
                out.push(Difference::Changed {
                    chain: w.name.clone(),
                    what,
                    loaded: text(a),
                    now: text(b),
                });
            }
        }
        if n.rules.len() != *rules {
            out.push(Difference::RuleCount {
                chain: w.name.clone(),
                loaded: *rules,
                now: n.rules.len(),
            });
        }
    }
    for n in &now.chains {
        if !n.rules.is_empty() && !want.iter().any(|(w, _)| w.name == n.name) {
            out.push(Difference::ExtraChain(n.name.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nft -j list table inet anon_firewall` printed (nft 1.0.6) for a small table.
    const LISTED: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "anon_firewall", "handle": 3}}, {"chain": {"family": "inet", "table": "anon_firewall", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}, {"chain": {"family": "inet", "table": "anon_firewall", "name": "output", "handle": 2, "type": "filter", "hook": "output", "prio": 0, "policy": "drop"}}, {"rule": {"family": "inet", "table": "anon_firewall", "chain": "input", "handle": 4, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "anon_firewall", "chain": "output", "handle": 5, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "lo"}}, {"counter": {"packets": 7, "bytes": 420}}, {"accept": null}]}}]}"#;

    fn listed() -> Loaded {
        Loaded::from_nft_json(LISTED).expect("parse")
    }

    #[test]
    fn reads_chains_and_rules_without_handles_or_counts() {
        let l = listed();
        assert_eq!(l.chains.len(), 2);
        let input = &l.chains[0];
        assert_eq!(
            (
                input.name.as_str(),
                input.hook.as_deref(),
                input.policy.as_deref()
            ),
            ("input", Some("input"), Some("drop"))
        );
        assert_eq!(input.rules.len(), 1);
        assert!(input.rules[0].get("handle").is_none());
        assert!(input.rules[0].get("expr").is_some());
        // A counter's running values do not make a rule another one.
        let busier = LISTED.replace(
            "\"packets\": 7, \"bytes\": 420",
            "\"packets\": 9, \"bytes\": 999",
        );
        assert_eq!(
            compare(&l, Some(&Loaded::from_nft_json(&busier).expect("parse"))),
            []
        );
        // Nor do handles (the same rules loaded again get new ones).
        let again = LISTED.replace("\"handle\": 4", "\"handle\": 40");
        assert_eq!(
            compare(&l, Some(&Loaded::from_nft_json(&again).expect("parse"))),
            []
        );
        // The record survives a round trip through its file.
        let json = serde_json::to_string(&l).expect("serialize");
        assert_eq!(serde_json::from_str::<Loaded>(&json).expect("read"), l);
    }

    #[test]
    fn every_kind_of_tampering_is_named() {
        let l = listed();
        assert_eq!(compare(&l, None), [Difference::TableMissing]);
        let mut flushed = l.clone();
        flushed.chains[1].rules.clear();
        let d = compare(&l, Some(&flushed));
        assert_eq!(
            d,
            [Difference::RuleCount {
                chain: "output".into(),
                loaded: 1,
                now: 0
            }]
        );
        assert_eq!(
            d[0].to_string(),
            "chain output: 0 rules, 1 were loaded (flushed)"
        );
        let opened = Loaded::from_nft_json(&LISTED.replacen(
            "\"policy\": \"drop\"",
            "\"policy\": \"accept\"",
            1,
        ))
        .expect("parse");
        let d = compare(&l, Some(&opened));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            d[0].to_string(),
            "chain input: policy is accept, drop was loaded"
        );
        let mut gone = l.clone();
        gone.chains.remove(0);
        assert_eq!(
            compare(&l, Some(&gone)),
            [Difference::ChainMissing("input".into())]
        );
        assert_eq!(
            compare(&gone, Some(&l)),
            [Difference::ExtraChain("input".into())]
        );
        let swapped = Loaded::from_nft_json(&LISTED.replace(
            "\"right\": \"lo\"}}, {\"accept\"",
            "\"right\": \"eth0\"}}, {\"accept\"",
        ))
        .expect("parse");
        assert_eq!(
            compare(&l, Some(&swapped)),
            [Difference::RuleChanged {
                chain: "input".into(),
                index: 0
            }]
        );
        let mut with_set = l.clone();
        with_set
            .other
            .push(serde_json::json!({"set": {"name": "x"}}));
        assert_eq!(compare(&l, Some(&with_set)), [Difference::OtherObjects]);
        assert!(Difference::TableMissing
            .to_string()
            .contains("inet anon_firewall is missing"));
    }

    #[test]
    fn the_kernel_must_hold_the_batch_just_loaded() {
        let batch = serde_json::json!({"nftables": [
            {"add": {"table": {"family": "inet", "name": "anon_firewall"}}},
            {"flush": {"table": {"family": "inet", "name": "anon_firewall"}}},
            {"add": {"chain": {"family": "inet", "table": "anon_firewall", "name": "input", "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}},
            {"add": {"chain": {"family": "inet", "table": "anon_firewall", "name": "output", "type": "filter", "hook": "output", "prio": 0, "policy": "drop"}}},
            {"add": {"rule": {"family": "inet", "table": "anon_firewall", "chain": "input", "expr": []}}},
            {"add": {"rule": {"family": "inet", "table": "anon_firewall", "chain": "output", "expr": []}}},
        ]});
        let l = listed();
        assert_eq!(unlike_batch(&batch, &l), []);
        // A policy an earlier tool set that the load did not put back, a rule too few, a
        // chain left over with rules in it: each is named.
        let mut odd = l.clone();
        odd.chains[0].policy = Some("accept".into());
        odd.chains[1].rules.clear();
        odd.chains.push(ChainShape {
            name: "sneaky".into(),
            kind: None,
            hook: None,
            prio: None,
            policy: None,
            rules: vec![serde_json::json!({"expr": []})],
        });
        let d = unlike_batch(&batch, &odd);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(matches!(&d[0], Difference::Changed { what: "policy", .. }));
        assert!(matches!(
            &d[1],
            Difference::RuleCount {
                now: 0,
                loaded: 1,
                ..
            }
        ));
        assert_eq!(d[2], Difference::ExtraChain("sneaky".into()));
        // An empty leftover chain is fine.
        odd.chains[2].rules.clear();
        assert_eq!(unlike_batch(&batch, &odd).len(), 2);
    }

    #[test]
    fn finds_our_table_among_the_tables() {
        let tables = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "anon_firewall", "handle": 1}}, {"table": {"family": "inet", "name": "filter", "handle": 2}}]}"#;
        assert!(!has_table(tables).expect("parse"));
        let ours = tables.replace(
            "\"inet\", \"name\": \"filter\"",
            "\"inet\", \"name\": \"anon_firewall\"",
        );
        assert!(has_table(&ours).expect("parse"));
        assert!(has_table(r#"{"nftables": [{"metainfo": {}}]}"#).is_ok_and(|t| !t));
        assert!(matches!(has_table("Error: x"), Err(ParseError::Json(_))));
        assert!(matches!(has_table("{}"), Err(ParseError::NoArray)));
    }
}
