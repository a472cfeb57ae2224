//! The YAML schema of a mapping file, and the streaming reader that applies it.
//!
//! ```yaml
//! ttl: 5                      # optional, seconds; default from --ttl
//! hosts:                      # FQDN -> address, list of addresses, or { addresses, ttl }
//!   db-0.db.example.com: 10.42.0.12
//!   db-1.db.example.com: [10.42.0.13, "fd00::13"]
//! rules:                      # the operator's splitDNSExtraRules: { host, result, regex, ttl }
//!   - host: legacy.example.com
//!     result: 10.1.2.3
//! ```
//!
//! Every key the format accepts is in this file: the top level in [`TOP_KEYS`], a host's detailed
//! form in [`RawDetailed`], a rule in [`RawRule`] (serde rejects any other key of those two).
//!
//! `hosts:` is not deserialized into a list: [`HostsSeed`] validates each host and hands it to
//! the [`SnapshotBuilder`] as it is read, so a 100,000-name file never exists as an intermediate
//! collection (peak memory is about the final snapshot plus the text).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::Entry;
use super::error::MappingError;
use super::error::Pos;
use super::validate::{AddrCollector, RuleSpec, check_ttl, parse_rule};
use super::{SnapshotBuilder, name};

/// A top-level key of a mapping file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopKey {
    Ttl,
    Hosts,
    Rules,
}

/// The top-level keys, in the order messages list them.
const TOP_KEYS: [(&str, TopKey); 3] = [
    ("ttl", TopKey::Ttl),
    ("hosts", TopKey::Hosts),
    ("rules", TopKey::Rules),
];

/// The error for a file without a single key (empty, blank or only comments).
pub(super) const EMPTY_FILE: &str =
    "the file is empty; expected `hosts:` and/or `rules:` (an empty `hosts:` forwards everything)";

/// "unknown field `x`, expected one of `ttl`, `hosts`, `rules`"
fn unknown_top_key(key: &str) -> String {
    let known: Vec<String> = TOP_KEYS.iter().map(|(k, _)| format!("`{k}`")).collect();
    format!(
        "unknown field `{key}`, expected one of {}",
        known.join(", ")
    )
}

/// Records `e` and returns a parser error that stops deserialization.
fn stop<E: de::Error>(slot: &mut Option<MappingError>, e: MappingError) -> E {
    let msg = e.to_string();
    *slot = Some(e);
    E::custom(msg)
}

/// The whole file: `ttl`, `hosts`, `rules`, in any order.
pub(super) struct FileSeed<'a> {
    pub(super) builder: &'a mut SnapshotBuilder,
    pub(super) file: u32,
    pub(super) origin: &'a str,
    pub(super) default_ttl: u32,
    pub(super) recorded: &'a mut Option<MappingError>,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with `hosts:` and/or `rules:` (and optionally `ttl:`)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let FileSeed {
            builder,
            file,
            origin,
            default_ttl,
            recorded,
        } = self;
        let mut ttl: Option<u32> = None;
        // `hosts:` or `rules:`, either may be alone (an operator may only write rules).
        let mut names_or_rules = false;
        let mut own_ttl = Vec::new();
        let mut raw_rules: Vec<Spanned<RawRule>> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            // Duplicate keys reach us (the parser's own check is off, see `options`).
            if seen.contains(&key.value) {
                let msg = format!("duplicate key `{}`", key.value);
                return Err(stop(
                    recorded,
                    MappingError::at(origin, key.referenced, msg),
                ));
            }
            seen.push(key.value.clone());
            let known = TOP_KEYS
                .iter()
                .find(|(k, _)| *k == key.value)
                .map(|(_, t)| *t);
            match known {
                Some(TopKey::Ttl) => {
                    let t: Spanned<u32> = map.next_value()?;
                    ttl = Some(
                        check_ttl(origin, t.value, t.referenced).map_err(|e| stop(recorded, e))?,
                    );
                }
                Some(TopKey::Hosts) => {
                    names_or_rules = true;
                    map.next_value_seed(HostsSeed {
                        builder: &mut *builder,
                        file,
                        origin,
                        ttl: ttl.unwrap_or(default_ttl),
                        own_ttl: &mut own_ttl,
                        recorded: &mut *recorded,
                    })?;
                }
                Some(TopKey::Rules) => {
                    names_or_rules = true;
                    raw_rules = map
                        .next_value::<Option<Vec<Spanned<RawRule>>>>()?
                        .unwrap_or_default();
                }
                None => {
                    let e = MappingError::at(origin, key.referenced, unknown_top_key(&key.value));
                    return Err(stop(recorded, e));
                }
            }
        }
        // Neither: nothing to answer, so most likely not what was meant (a file cut short, a
        // template that rendered nothing, the wrong file); publishing it would send every mapped
        // name to the upstream (the hairpin) until the next good file. Forwarding everything is
        // a deliberate `hosts:` with nothing after it.
        if !names_or_rules {
            let message = if seen.is_empty() {
                EMPTY_FILE
            } else {
                "missing field `hosts` or `rules` (an empty `hosts:` forwards everything)"
            };
            let e = MappingError::Invalid {
                path: origin.to_owned(),
                line: 1,
                column: 1,
                message: message.into(),
            };
            return Err(stop(recorded, e));
        }
        let ttl = ttl.unwrap_or(default_ttl);
        // A `ttl:` written after `hosts:` still applies to every host of the file.
        builder.apply_file_ttl(file, ttl, &own_ttl);
        for (n, raw) in raw_rules.into_iter().enumerate() {
            let (rule, pattern) =
                parse_rule(origin, n + 1, raw.value.into(), ttl).map_err(|e| stop(recorded, e))?;
            builder.add_rule(rule, pattern);
        }
        Ok(())
    }
}

/// The `hosts:` mapping, validated and stored entry by entry.
struct HostsSeed<'a> {
    builder: &'a mut SnapshotBuilder,
    file: u32,
    origin: &'a str,
    /// The file's TTL as known so far (fixed up afterwards if `ttl:` comes later).
    ttl: u32,
    /// For each host of this file, in order: whether it set its own TTL.
    own_ttl: &'a mut Vec<bool>,
    recorded: &'a mut Option<MappingError>,
}

impl<'de> DeserializeSeed<'de> for HostsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for HostsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of host name to address(es)")
    }

    /// `hosts:` with nothing after it: no names, forward everything.
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let HostsSeed {
            builder,
            file,
            origin,
            ttl,
            own_ttl,
            recorded,
        } = self;
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value: Spanned<RawHost> = map.next_value()?;
            let wire = name::to_wire_lower(&key.value).map_err(|why| {
                let msg = format!("invalid name {:?}: {why}", key.value);
                stop::<A::Error>(recorded, MappingError::at(origin, key.referenced, msg))
            })?;
            let (entry, own) =
                host_entry(origin, &key, value, ttl).map_err(|e| stop(recorded, e))?;
            if let Err(message) = builder.add(file, wire, key.referenced, entry) {
                return Err(stop(
                    recorded,
                    MappingError::at(origin, key.referenced, message),
                ));
            }
            own_ttl.push(own);
        }
        Ok(())
    }
}

/// Validates one host's value into an entry; also says whether it set its own TTL.
fn host_entry(
    origin: &str,
    key: &Spanned<String>,
    value: Spanned<RawHost>,
    ttl: u32,
) -> Result<(Entry, bool), MappingError> {
    let mut addrs = AddrCollector::new(origin, &key.value);
    match value.value {
        RawHost::Addrs(list) => {
            add_all(
                &mut addrs,
                Spanned::new(list, value.referenced, value.defined),
            )?;
            Ok((addrs.entry(ttl), false))
        }
        RawHost::Detailed(d) => {
            add_all(&mut addrs, d.addresses)?;
            match &d.ttl {
                Some(t) => Ok((addrs.entry(check_ttl(origin, t.value, t.referenced)?), true)),
                None => Ok((addrs.entry(ttl), false)),
            }
        }
    }
}

/// Every address of a host's list into `addrs`.
fn add_all(addrs: &mut AddrCollector<'_>, list: Spanned<RawAddrList>) -> Result<(), MappingError> {
    match list.value {
        RawAddrList::One(a) => addrs.add(&a, Pos::from(list.referenced)),
        RawAddrList::Many(items) if items.is_empty() => Err(addrs.empty(list.referenced)),
        RawAddrList::Many(items) => items
            .into_iter()
            .try_for_each(|a| addrs.add(&a.value, a.referenced)),
    }
}

/// A host's value: its address(es), or `{ addresses: ..., ttl: ... }`.
enum RawHost {
    Addrs(RawAddrList),
    Detailed(RawDetailed),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetailed {
    addresses: Spanned<RawAddrList>,
    ttl: Option<Spanned<u32>>,
}

/// An address or a list of addresses.
enum RawAddrList {
    One(String),
    Many(Vec<Spanned<String>>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) host: Spanned<String>,
    pub(super) result: Spanned<String>,
    #[serde(default)]
    pub(super) regex: bool,
    pub(super) ttl: Option<Spanned<u32>>,
}

impl From<RawRule> for RuleSpec {
    fn from(r: RawRule) -> RuleSpec {
        RuleSpec {
            host: r.host.value,
            host_at: r.host.referenced.into(),
            result: r.result.value,
            result_at: r.result.referenced.into(),
            regex: r.regex,
            ttl: r.ttl.map(|t| (t.value, t.referenced.into())),
        }
    }
}

impl<'de> Deserialize<'de> for RawHost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHost;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an IP address, a list of IP addresses, or { addresses: ..., ttl: ... }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawHost, E> {
                Ok(RawHost::Addrs(RawAddrList::One(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawHost, A::Error> {
                list_from_seq(seq).map(RawHost::Addrs)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawHost, A::Error> {
                RawDetailed::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawHost::Detailed)
            }
        }
        d.deserialize_any(V)
    }
}

fn list_from_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<RawAddrList, A::Error> {
    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1));
    while let Some(a) = seq.next_element()? {
        out.push(a);
    }
    Ok(RawAddrList::Many(out))
}

impl<'de> Deserialize<'de> for RawAddrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAddrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an IP address or a list of IP addresses")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAddrList, E> {
                Ok(RawAddrList::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawAddrList, A::Error> {
                list_from_seq(seq)
            }
        }
        d.deserialize_any(V)
    }
}
