//! The KurrentDB operator's sidecar config: the JSON file the operator writes for its own DNS
//! sidecar (kurrent-io/dns-sidecar), read into the same [`Snapshot`] as a YAML mapping.
//!
//! ```json
//! {
//!   "listen": "127.0.0.1:53",
//!   "resolver": "10.96.0.10:53",
//!   "rules": [
//!     {"host": "kdb-([0-9]+)\\.my-domain\\.com", "result": "kdb-${1}.kdb.ns.svc.cluster.local", "regex": true},
//!     {"host": "far-pod0.my-domain.com", "result": "10.1.2.3"}
//!   ]
//! }
//! ```
//!
//! The contract is the incumbent's (its `main.go` and `dns/dns.go`, read with Go's
//! `encoding/json`), kept where users may rely on it and fixed where it is a defect:
//! - `listen` defaults to `127.0.0.1:53`; `resolver` is required (`IP[:PORT]`, port 53 by
//!   default) and becomes the upstream; `rules` are `{host, result, regex}`, first match wins.
//! - Keys match case-insensitively and a key given twice takes its last value, as Go's decoder
//!   does; `null` leaves a field at its default. Fields we do not know are ignored with one
//!   warning: the operator may add fields, and refusing to start on an operator upgrade would take
//!   every database pod's DNS down.
//! - Each rule is validated by the same code as a YAML rule ([`super::validate::parse_rule`]) and
//!   becomes the same [`super::rules::Rule`]: one model, one matcher, one answer path. A rule that
//!   can never work (invalid regex, `${3}` with two groups, an empty host) is an error naming
//!   file, line and column, as in YAML; the incumbent fails at start on a bad regex too.
//! - Matching is case-insensitive and ignores a trailing dot (DNS names are case-insensitive,
//!   RFC 4343; the incumbent compares case-sensitively, so `KDB-2.My-Domain.com` got SERVFAIL).

use std::net::{Ipv4Addr, SocketAddr};

use super::builder::finish;
use super::error::{MappingError, Pos};
use super::json::{self, Member, Node, Value};
use super::validate::{RuleSpec, parse_rule};
use super::{Snapshot, SnapshotBuilder};

/// `listen` when the file does not say (the incumbent's default).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 53);

/// What the operator's file says besides the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSettings {
    /// Where to serve DNS (UDP and TCP).
    pub listen: SocketAddr,
    /// The upstream (the cluster DNS).
    pub resolver: SocketAddr,
}

/// One operator config, read and validated.
#[derive(Debug)]
pub struct OperatorConfig {
    pub snapshot: Snapshot,
    pub settings: OperatorSettings,
    /// Fields the operator's schema does not have, as `"name" at LINE:COL`: ignored, and logged
    /// once by whoever loads the file.
    pub unknown_fields: Vec<String>,
}

/// Parses and validates the operator's JSON `text`; `origin` names it in errors, `hash` is the
/// content hash of the source.
pub fn parse(
    text: &str,
    origin: &str,
    default_ttl: u32,
    hash: u64,
) -> Result<OperatorConfig, MappingError> {
    let root = json::parse(text).map_err(|e| MappingError::at(origin, e.at, e.message))?;
    let err = |at: Pos, message: String| MappingError::at(origin, at, message);
    let members = match root.value {
        Value::Object(m) => m,
        // Go's decoder leaves the config untouched on `null`: then the resolver is missing.
        Value::Null => Vec::new(),
        other => {
            return Err(err(
                root.at,
                format!(
                    "expected a JSON object with `resolver` and `rules`, found {}",
                    other.kind()
                ),
            ));
        }
    };
    let mut listen: Option<Node> = None;
    let mut resolver: Option<Node> = None;
    let mut rules: Option<Node> = None;
    let mut unknown_fields = Vec::new();
    for Member { key, key_at, value } in members {
        // Case-insensitive, the last of duplicates wins: Go's encoding/json.
        let slot = match key.to_ascii_lowercase().as_str() {
            "listen" => &mut listen,
            "resolver" => &mut resolver,
            "rules" => &mut rules,
            _ => {
                unknown_fields.push(format!("{key:?} at {}:{}", key_at.line, key_at.column));
                continue;
            }
        };
        *slot = Some(value);
    }
    let listen = match string_field(origin, "`listen`", listen)? {
        None => DEFAULT_LISTEN,
        Some((text, at)) => parse_listen(&text).map_err(|why| err(at, why))?,
    };
    let resolver = match string_field(origin, "`resolver`", resolver)? {
        Some((text, at)) if !text.trim().is_empty() => crate::config::parse_upstream(&text)
            .map_err(|e| err(at, format!("invalid `resolver`: {e}")))?,
        Some((_, at)) => return Err(err(at, "`resolver` is empty; it is required".into())),
        None => {
            return Err(err(
                root.at,
                "`resolver` is required (the cluster DNS, e.g. \"10.96.0.10:53\")".into(),
            ));
        }
    };
    let mut builder = SnapshotBuilder::default();
    builder.file(origin);
    let rules = match rules.map(|n| (n.value, n.at)) {
        None | Some((Value::Null, _)) => Vec::new(),
        Some((Value::Array(items), _)) => items,
        Some((other, at)) => {
            return Err(err(
                at,
                format!("`rules` must be an array, found {}", other.kind()),
            ));
        }
    };
    for (i, node) in rules.into_iter().enumerate() {
        let spec = rule_spec(origin, i + 1, node, &mut unknown_fields)?;
        let (rule, pattern) = parse_rule(origin, i + 1, spec, default_ttl)?;
        builder.add_rule(rule, pattern);
    }
    let snapshot = finish(builder, hash)?;
    Ok(OperatorConfig {
        snapshot,
        settings: OperatorSettings { listen, resolver },
        unknown_fields,
    })
}

/// A string field's text and place; `None` when absent or `null` (Go leaves it at its default).
fn string_field(
    origin: &str,
    label: &str,
    node: Option<Node>,
) -> Result<Option<(String, Pos)>, MappingError> {
    match node.map(|n| (n.value, n.at)) {
        None | Some((Value::Null, _)) => Ok(None),
        Some((Value::String(s), at)) => Ok(Some((s, at))),
        Some((other, at)) => Err(MappingError::at(
            origin,
            at,
            format!("{label} must be a string, found {}", other.kind()),
        )),
    }
}

/// Rule number `n` (1-based) as the shared validation takes it.
fn rule_spec(
    origin: &str,
    n: usize,
    node: Node,
    unknown_fields: &mut Vec<String>,
) -> Result<RuleSpec, MappingError> {
    let members = match node.value {
        Value::Object(m) => m,
        other => {
            return Err(MappingError::at(
                origin,
                node.at,
                format!(
                    "rule {n}: expected an object {{\"host\", \"result\", \"regex\"}}, found {}",
                    other.kind()
                ),
            ));
        }
    };
    let (mut host, mut result, mut regex) = (None, None, None);
    for Member { key, key_at, value } in members {
        let slot = match key.to_ascii_lowercase().as_str() {
            "host" => &mut host,
            "result" => &mut result,
            "regex" => &mut regex,
            _ => {
                unknown_fields.push(format!("{key:?} at {}:{}", key_at.line, key_at.column));
                continue;
            }
        };
        *slot = Some(value);
    }
    let what = |field: &str| format!("rule {n}: `{field}`");
    let host = string_field(origin, &what("host"), host)?;
    let result = string_field(origin, &what("result"), result)?;
    let regex = match regex.map(|r| (r.value, r.at)) {
        None | Some((Value::Null, _)) => false,
        Some((Value::Bool(b), _)) => b,
        Some((other, at)) => {
            return Err(MappingError::at(
                origin,
                at,
                format!(
                    "{} must be true or false, found {}",
                    what("regex"),
                    other.kind()
                ),
            ));
        }
    };
    // A missing host or result reads as empty, as in Go; the shared validation then says so at
    // the rule itself.
    let (host, host_at) = host.unwrap_or((String::new(), node.at));
    let (result, result_at) = result.unwrap_or((String::new(), node.at));
    Ok(RuleSpec {
        host,
        host_at,
        result,
        result_at,
        regex,
        ttl: None,
    })
}

/// `listen` as the incumbent takes it (Go's `net.ResolveUDPAddr`): `IP:PORT`, `[IPv6]:PORT`,
/// `:PORT` (every IPv4 address) or `localhost:PORT`; a bare IP gets port 53.
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = t.trim_start_matches('[').trim_end_matches(']').parse() {
        return Ok(SocketAddr::new(ip, 53));
    }
    let bad = || format!("invalid `listen` {text:?}: expected IP:PORT, e.g. \"127.0.0.1:53\"");
    let (host, port) = t.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ip = match host {
        "" => std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        h if h.eq_ignore_ascii_case("localhost") => std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => return Err(bad()),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Found;

    fn parse_ok(text: &str) -> OperatorConfig {
        parse(text, "dns.conf", 5, 1).expect("valid")
    }

    fn err(text: &str) -> String {
        parse(text, "dns.conf", 5, 1).unwrap_err().to_string()
    }

    fn wire(name: &str) -> Vec<u8> {
        crate::mapping::name::to_wire_lower(name).expect("name")
    }

    /// The incumbent's own test (its dns/dns_test.go): the rules the operator writes for an
    /// FQDN template `x\({podName}|y.another-{podName}.{domain}` (escaped for a regex, then for
    /// JSON), and the names that must and must not match.
    #[test]
    fn the_incumbents_own_rules() {
        let text = r#"{"resolver": "10.96.0.10:53", "rules": [
            {"regex": true, "host": "x\\\\\\(kdb-([0-9]+)\\|y\\.another-kdb-([0-9]+)\\.my-domain",
             "result": "kdb-${1}.kdb.ns.svc.cluster.local"},
            {"regex": true, "host": "x\\\\\\(kdb-replica-([0-9]+)\\|y\\.another-kdb-replica-([0-9]+)\\.my-domain",
             "result": "kdb-replica-${1}.kdb-replica.ns.svc.cluster.local"}]}"#;
        let c = parse_ok(text);
        let rules = c.snapshot.rules().expect("rules");
        let rows = [
            (
                "x\\(kdb-0|y.another-kdb-0.my-domain",
                Some("kdb-0.kdb.ns.svc.cluster.local"),
            ),
            (
                "x\\(kdb-2|y.another-kdb-2.my-domain",
                Some("kdb-2.kdb.ns.svc.cluster.local"),
            ),
            (
                "x\\(kdb-replica-1|y.another-kdb-replica-1.my-domain",
                Some("kdb-replica-1.kdb-replica.ns.svc.cluster.local"),
            ),
            ("x\\(kdb-|y.another-kdb-.my-domain", None),
            ("x\\(kdb-replica-|y.another-kdb-replica-.my-domain", None),
        ];
        for (name, want) in rows {
            // The labels hold '\', '(' and '|' as plain octets, as the incumbent reads them.
            let mut w = Vec::new();
            for label in name.split('.') {
                w.push(label.len() as u8);
                w.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
            }
            w.push(0);
            let got = match c.snapshot.find(&w) {
                Found::Alias(i) => rules.expand(i, name),
                _ => None,
            };
            assert_eq!(got.as_deref(), want, "{name}");
        }
    }

    #[test]
    fn settings_defaults_and_go_decoding() {
        let c = parse_ok(r#"{"resolver": "10.96.0.10"}"#);
        assert_eq!(c.settings.listen, DEFAULT_LISTEN);
        assert_eq!(c.settings.resolver, "10.96.0.10:53".parse().unwrap());
        assert_eq!(c.snapshot.rule_count(), 0);
        // Keys case-insensitively, the last duplicate wins, null leaves the default.
        let c = parse_ok(
            r#"{"Listen": null, "RESOLVER": "10.0.0.1:5300", "resolver": "10.0.0.2:53",
                "Rules": [{"HOST": "a.example.com", "Result": "10.1.2.3", "Regex": null}]}"#,
        );
        assert_eq!(c.settings.listen, DEFAULT_LISTEN);
        assert_eq!(c.settings.resolver, "10.0.0.2:53".parse().unwrap());
        assert!(
            matches!(c.snapshot.find(&wire("A.example.com")), Found::Entry(e) if e.v4.len() == 1)
        );
        assert!(c.unknown_fields.is_empty());
        for (listen, want) in [
            ("127.0.0.1:5353", "127.0.0.1:5353"),
            ("[::1]:53", "[::1]:53"),
            (":53", "0.0.0.0:53"),
            ("localhost:1053", "127.0.0.1:1053"),
            ("127.0.0.2", "127.0.0.2:53"),
        ] {
            let c = parse_ok(&format!(
                r#"{{"listen": "{listen}", "resolver": "10.0.0.1"}}"#
            ));
            assert_eq!(
                c.settings.listen,
                want.parse::<SocketAddr>().unwrap(),
                "{listen}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_collected_not_refused() {
        let c = parse_ok(
            "{\"resolver\": \"10.0.0.1\",\n \"clusterDomain\": \"cluster.local\",\n \"rules\": [{\"host\": \"a.b\", \"result\": \"10.0.0.9\", \"comment\": 1}]}",
        );
        assert_eq!(
            c.unknown_fields,
            ["\"clusterDomain\" at 2:2", "\"comment\" at 3:50"]
        );
        assert_eq!(c.snapshot.rule_count(), 1);
    }

    #[test]
    fn every_error_names_line_and_column() {
        let rows = [
            ("", "dns.conf:1:1: the file is empty"),
            ("[]", "dns.conf:1:1: expected a JSON object"),
            ("{}", "dns.conf:1:1: `resolver` is required"),
            ("null", "dns.conf:1:1: `resolver` is required"),
            ("{\"resolver\": \"\"}", "dns.conf:1:14: `resolver` is empty"),
            (
                "{\"resolver\": \"dns.example\"}",
                "dns.conf:1:14: invalid `resolver`",
            ),
            (
                "{\"resolver\": 53}",
                "dns.conf:1:14: `resolver` must be a string, found a number",
            ),
            (
                "{\"resolver\": \"10.0.0.1\", \"listen\": \"nowhere\"}",
                "dns.conf:1:36: invalid `listen` \"nowhere\"",
            ),
            (
                "{\"resolver\": \"10.0.0.1\", \"rules\": {}}",
                "dns.conf:1:35: `rules` must be an array, found an object",
            ),
            (
                "{\"resolver\": \"10.0.0.1\", \"rules\": [\"a\"]}",
                "dns.conf:1:36: rule 1: expected an object",
            ),
            (
                "{\"resolver\": \"10.0.0.1\", \"rules\": [{\"host\": \"a.b\", \"result\": \"10.0.0.1\", \"regex\": \"yes\"}]}",
                "dns.conf:1:83: rule 1: `regex` must be true or false, found a string",
            ),
            (
                "{\"resolver\": \"10.0.0.1\",\n\"rules\": [{\"host\": \"a(b\", \"result\": \"x.y\", \"regex\": true}]}",
                "dns.conf:2:20: rule 1 (host \"a(b\"): invalid regular expression",
            ),
            (
                "{\"resolver\": \"10.0.0.1\",\n\"rules\": [{\"host\": \"a-(\\\\d+)\", \"result\": \"b-${2}.c\", \"regex\": true}]}",
                "dns.conf:2:42: rule 1 (host \"a-(\\\\d+)\"): result \"b-${2}.c\" refers to group ${2}",
            ),
            (
                "{\"resolver\": \"10.0.0.1\",\n\"rules\": [{\"result\": \"10.0.0.1\"}]}",
                "dns.conf:2:11: rule 1 (host \"\"): host is empty",
            ),
            (
                "{\"resolver\": \"10.0.0.1\",\n\"rules\": [{\"host\": \"a.b\"}]}",
                "dns.conf:2:11: rule 1 (host \"a.b\"): result is empty",
            ),
            (
                "{\"resolver\": \"10.0.0.1\",\n\"rules\": [{\"host\": \"a..b\", \"result\": \"10.0.0.1\"}]}",
                "dns.conf:2:20: rule 1 (host \"a..b\"): invalid name",
            ),
            (
                "{\"resolver\": \"10.0.0.1\",\n\"rules\": [{\"host\": \"a.b\", \"result\": \"not a name\"}]}",
                "dns.conf:2:37: rule 1 (host \"a.b\"): result \"not a name\" is neither",
            ),
            (
                "{\"resolver\": \"10.0.0.1\",}",
                "dns.conf:1:25: expected a string key",
            ),
        ];
        for (text, want) in rows {
            let e = err(text);
            assert!(e.starts_with(want), "{text}\n got: {e}\nwant: {want}");
        }
    }
}
