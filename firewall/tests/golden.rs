//! Golden tests: the exact nft JSON for each role and each option. A change to the generated
//! rules must show up as a reviewed diff of these files. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p anon-firewall --test golden` and read the diff.
//! (That the kernel accepts every golden file is checked in tests/, inside a namespace.)

use std::path::{Path, PathBuf};

use anon_firewall::{ruleset, Config, Facts, Role, Ruleset};

/// Every case: name, config text, role, whether sdwdate has succeeded.
pub const CASES: &[(&str, &str, Role, bool)] = &[
    ("gateway-default", "", Role::Gateway, false),
    ("gateway-timesync", "mode = \"timesync-fail-closed\"", Role::Gateway, false),
    (
        "gateway-vpn",
        "vpn_firewall = true\nvpn_servers = [\"192.0.2.7\", \"2001:db8::7\"]\nvpn_user = \"tunnel\"\nvpn_server_ports = [1194, \"443\"]",
        Role::Gateway,
        false,
    ),
    ("gateway-ssh-icmp", "allow_incoming_ssh = true\nallow_incoming_icmp = true", Role::Gateway, false),
    (
        "gateway-open-ports",
        "external_open_ports = [443, \"8000-8010\"]\nexternal_udp_open_ports = [4500]\ninternal_open_ports = [8080]",
        Role::Gateway,
        false,
    ),
    ("gateway-no-nat-users", "no_nat_users = [\"root-is-not-here\", 1234]", Role::Gateway, false),
    (
        "gateway-custom-net",
        "external_interface = \"wan0\"\ninternal_interface = \"vif*\"\ngateway_ip = \"10.137.0.1\"\n\
         internal_network = \"10.137.0.0/16\"\nlocal_networks = [\"192.168.1.0/24\"]\ntrans_port = 9041\n\
         dns_port = 5400\ncontrol_port_filter_port = 9052\nsocks_ports = [9050]\nsdwdate_socks_port = 9050",
        Role::Gateway,
        false,
    ),
    ("workstation-default", "", Role::Workstation, false),
    ("workstation-timesync", "mode = \"timesync-fail-closed\"", Role::Workstation, false),
    (
        "workstation-strict",
        "workstation_transparent_tcp = false\nworkstation_open_ports = [22]",
        Role::Workstation,
        false,
    ),
];

fn facts(synced: bool) -> Facts {
    // Fixed uids so the golden files do not depend on this machine's /etc/passwd.
    Facts {
        tor_uid: 107,
        no_nat_uids: vec![1234],
        sdwdate_uid: Some(108),
        vpn_uid: Some(1195),
        time_synced: synced,
    }
}

fn build(text: &str, role: Role, synced: bool) -> String {
    let mut cfg = Config::default();
    cfg.merge_str(Path::new("case.toml"), text)
        .expect("case config parses");
    let mut f = facts(synced);
    if cfg.no_nat_users.is_empty() {
        f.no_nat_uids.clear();
    }
    let rs = Ruleset::build(&cfg, role, &f);
    let mut json = serde_json::to_value(&rs.nftables).expect("serializes");
    canonical(&mut json);
    serde_json::to_string_pretty(&json).expect("serializes") + "\n"
}

/// Sorts the flags of every `fib` expression: the nftables crate keeps them in a HashSet, whose
/// order changes from one run to the next; nft reads them as a set of bits either way.
fn canonical(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            if let Some(serde_json::Value::Array(flags)) =
                o.get_mut("fib").and_then(|f| f.get_mut("flags"))
            {
                flags.sort_by_key(|f| f.to_string());
            }
            o.values_mut().for_each(canonical);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(canonical),
        _ => {}
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check(name: &str, actual: &str) {
    let path = golden_dir().join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name}: generated ruleset differs from {}; review and regenerate with UPDATE_GOLDEN=1",
        path.display()
    );
}

#[test]
fn golden_rulesets() {
    for (name, text, role, synced) in CASES {
        check(name, &build(text, *role, *synced));
    }
    check(
        "lockdown",
        &(serde_json::to_string_pretty(&ruleset::lockdown()).expect("serializes") + "\n"),
    );
}

#[test]
fn every_option_changes_the_ruleset() {
    let default_gw = build("", Role::Gateway, false);
    let default_ws = build("", Role::Workstation, false);
    for (name, text, role, synced) in CASES.iter().filter(|c| !c.1.is_empty()) {
        let default = if *role == Role::Gateway {
            &default_gw
        } else {
            &default_ws
        };
        assert_ne!(
            &build(text, *role, *synced),
            default,
            "{name} has no effect"
        );
    }
}

#[test]
fn timesync_mode_becomes_full_after_first_success() {
    for role in [Role::Gateway, Role::Workstation] {
        let synced = build("mode = \"timesync-fail-closed\"", role, true);
        assert_eq!(synced, build("", role, false), "{role}");
        assert_ne!(
            build("mode = \"timesync-fail-closed\"", role, false),
            synced,
            "{role}"
        );
    }
}

#[test]
fn golden_files_are_all_known() {
    // A stale golden file would be loaded by the namespace tests without being generated here.
    let mut names: Vec<String> = CASES.iter().map(|c| format!("{}.json", c.0)).collect();
    names.push("lockdown.json".into());
    for entry in std::fs::read_dir(golden_dir()).expect("golden dir") {
        let file = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(names.contains(&file), "stale golden file {file}");
    }
}

#[test]
fn every_golden_case_is_a_valid_config() {
    // The golden files show what users can get: none of them may need a config that the
    // validation pass refuses.
    for (name, text, role, _) in CASES {
        let mut cfg = Config::default();
        cfg.merge_str(Path::new("case.toml"), text)
            .expect("case config parses");
        anon_firewall::validate::config(&cfg, *role).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
