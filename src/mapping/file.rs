//! The mapping file format (YAML) and its validation.
//!
//! ```yaml
//! ttl: 5                      # optional, seconds; default from --ttl
//! hosts:                      # FQDN -> address or list of addresses
//!   db-0.db.example.com: 10.42.0.12
//!   db-1.db.example.com: [10.42.0.13, "fd00::13"]
//! ```
//!
//! YAML crate: `serde-saphyr`. `serde_yaml` is archived (unmaintained since 2024); serde-saphyr is
//! maintained, pure Rust with `unsafe` forbidden, fuzzed, deserializes straight into our types
//! without an intermediate tree, and gives every node's line and column (`Spanned`), which is what
//! lets every error below name the exact place in the file.
//!
//! Every error names file, line and column. Validation happens completely before a [`Snapshot`]
//! exists, so a bad file can never be half-published.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::rules::{self, Rule, RuleResult};
use super::{Entry, Fnv1a, Snapshot, SnapshotBuilder, fnv1a, name};

/// RFC 2181 §8: a TTL is an unsigned 31-bit number.
pub const MAX_TTL: u32 = 0x7fff_ffff;

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("{path}: cannot read mapping file: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: u64,
        column: u64,
        message: String,
    },
}

impl MappingError {
    fn at(path: &str, loc: Location, message: impl Into<String>) -> MappingError {
        MappingError::Invalid {
            path: path.to_owned(),
            line: loc.line(),
            column: loc.column(),
            message: message.into(),
        }
    }
}

/// The raw text of a mapping source: one file, or every `*.yaml` / `*.yml` file of a directory
/// (hidden files skipped, which also skips a ConfigMap volume's `..data` machinery), in name order.
pub struct SourceText {
    pub files: Vec<(String, String)>,
    /// FNV-1a over every file's name and contents: equal hashes mean nothing to publish.
    pub hash: u64,
}

/// Reads a mapping source without parsing it.
pub fn read_source(path: &Path) -> Result<SourceText, MappingError> {
    let origin = path.display().to_string();
    let read_err = |path: String| move |source| MappingError::Read { path, source };
    let meta = std::fs::metadata(path).map_err(read_err(origin.clone()))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_err(origin.clone()))? {
            let entry = entry.map_err(read_err(origin.clone()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            // `metadata` follows symlinks: ConfigMap keys are symlinks into `..data/`.
            if yaml
                && !name.starts_with('.')
                && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file())
            {
                names.push(entry.path());
            }
        }
        names.sort();
        if names.is_empty() {
            return Err(MappingError::Read {
                path: origin,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "directory holds no *.yaml file",
                ),
            });
        }
        for file in names {
            let o = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(read_err(o.clone()))?;
            files.push((o, text));
        }
    } else {
        let text = std::fs::read_to_string(path).map_err(read_err(origin.clone()))?;
        files.push((origin, text));
    }
    let mut hash = Fnv1a::default();
    for (name, text) in &files {
        for part in [name.as_bytes(), &[0], text.as_bytes(), &[0]] {
            hash.update(part);
        }
    }
    Ok(SourceText {
        hash: hash.0,
        files,
    })
}

/// A fingerprint of the source's metadata (device, inode, size, mtime and ctime of the file, or
/// of the directory and each of its mapping files, symlinks followed): equal fingerprints mean
/// nothing was written. `None` if anything cannot be read (the caller then reads the source to
/// report the error).
pub fn stat_signature(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut fields: Vec<i64> = Vec::new();
    let mut add = |m: &std::fs::Metadata| {
        fields.extend([m.dev() as i64, m.ino() as i64, m.len() as i64]);
        fields.extend([m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()]);
    };
    let meta = std::fs::metadata(path).ok()?;
    add(&meta);
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            if let Ok(m) = std::fs::metadata(&e) {
                add(&m);
            }
        }
    }
    let bytes: Vec<u8> = fields.iter().flat_map(|f| f.to_le_bytes()).collect();
    Some(fnv1a(&bytes))
}

/// Parses and validates a whole source; a name defined in two files is an error naming both.
pub fn parse_source(source: &SourceText, default_ttl: u32) -> Result<Snapshot, MappingError> {
    let mut builder = SnapshotBuilder::default();
    for (origin, text) in &source.files {
        parse_into(&mut builder, text, origin, default_ttl)?;
    }
    finish(builder, source.hash)
}

/// Reads and validates a mapping file or directory into a snapshot.
pub fn load(path: &Path, default_ttl: u32) -> Result<Snapshot, MappingError> {
    parse_source(&read_source(path)?, default_ttl)
}

/// Parses and validates mapping text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str, default_ttl: u32) -> Result<Snapshot, MappingError> {
    let mut builder = SnapshotBuilder::default();
    parse_into(&mut builder, text, origin, default_ttl)?;
    finish(builder, fnv1a(text.as_bytes()))
}

fn finish(builder: SnapshotBuilder, hash: u64) -> Result<Snapshot, MappingError> {
    let origins = builder.origins().join(", ");
    builder
        .finish(hash)
        .map_err(|message| MappingError::Invalid {
            path: origins,
            line: 0,
            column: 0,
            message,
        })
}

/// Parses one file straight into `builder`: each host is validated and stored as it is read,
/// so a 100,000-name file never exists as an intermediate list (peak memory is about the final
/// snapshot plus the text).
pub fn parse_into(
    builder: &mut SnapshotBuilder,
    text: &str,
    origin: &str,
    default_ttl: u32,
) -> Result<(), MappingError> {
    let file = builder.file(origin);
    let mut recorded: Option<MappingError> = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        FileSeed {
            builder: &mut *builder,
            file,
            origin,
            default_ttl,
            recorded: &mut recorded,
        }
        .deserialize(de)
    });
    match (result, recorded) {
        (Ok(()), _) => Ok(()),
        // Our own validation errors carry their exact location; the parser's error is only the
        // vehicle that stopped it.
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => {
            let loc = e.location().unwrap_or(Location::UNKNOWN);
            Err(MappingError::at(origin, loc, yaml_message(&e, text)))
        }
    }
}

/// Records `e` and returns a parser error that stops deserialization.
fn stop<E: de::Error>(slot: &mut Option<MappingError>, e: MappingError) -> E {
    let msg = e.to_string();
    *slot = Some(e);
    E::custom(msg)
}

/// The whole file: `ttl`, `hosts`, `rules`, in any order.
struct FileSeed<'a> {
    builder: &'a mut SnapshotBuilder,
    file: u32,
    origin: &'a str,
    default_ttl: u32,
    recorded: &'a mut Option<MappingError>,
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
        f.write_str("a mapping with `hosts:` (and optionally `ttl:` and `rules:`)")
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
        let mut hosts_seen = false;
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
            match key.value.as_str() {
                "ttl" => {
                    let t: Spanned<u32> = map.next_value()?;
                    ttl = Some(check_ttl(origin, &t).map_err(|e| stop(recorded, e))?);
                }
                "hosts" => {
                    hosts_seen = true;
                    map.next_value_seed(HostsSeed {
                        builder: &mut *builder,
                        file,
                        origin,
                        ttl: ttl.unwrap_or(default_ttl),
                        own_ttl: &mut own_ttl,
                        recorded: &mut *recorded,
                    })?;
                }
                "rules" => {
                    raw_rules = map
                        .next_value::<Option<Vec<Spanned<RawRule>>>>()?
                        .unwrap_or_default();
                }
                other => {
                    let e = MappingError::at(
                        origin,
                        key.referenced,
                        format!("unknown field `{other}`, expected one of `ttl`, `hosts`, `rules`"),
                    );
                    return Err(stop(recorded, e));
                }
            }
        }
        if !hosts_seen {
            let e = MappingError::Invalid {
                path: origin.to_owned(),
                line: 1,
                column: 1,
                message: "missing field `hosts` (an empty `hosts:` forwards everything)".into(),
            };
            return Err(stop(recorded, e));
        }
        let ttl = ttl.unwrap_or(default_ttl);
        // A `ttl:` written after `hosts:` still applies to every host of the file.
        builder.apply_file_ttl(file, ttl, &own_ttl);
        for (n, raw) in raw_rules.into_iter().enumerate() {
            let (rule, pattern) =
                parse_rule(origin, n + 1, raw, ttl).map_err(|e| stop(recorded, e))?;
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
    let mut addrs = AddrCollector {
        origin,
        what: &key.value,
        v4: Vec::new(),
        v6: Vec::new(),
    };
    match value.value {
        RawHost::Addrs(list) => {
            addrs.add_all(Spanned::new(list, value.referenced, value.defined))?;
            Ok((addrs.entry(ttl), false))
        }
        RawHost::Detailed(d) => {
            addrs.add_all(d.addresses)?;
            match &d.ttl {
                Some(t) => Ok((addrs.entry(check_ttl(origin, t)?), true)),
                None => Ok((addrs.entry(ttl), false)),
            }
        }
    }
}

fn check_ttl(origin: &str, t: &Spanned<u32>) -> Result<u32, MappingError> {
    if t.value > MAX_TTL {
        return Err(MappingError::at(
            origin,
            t.referenced,
            format!("ttl {} is larger than {MAX_TTL} (RFC 2181 §8)", t.value),
        ));
    }
    Ok(t.value)
}

/// Collects validated addresses into an [`Entry`]; `what` names the owner in messages.
struct AddrCollector<'a> {
    origin: &'a str,
    what: &'a str,
    v4: Vec<std::net::Ipv4Addr>,
    v6: Vec<std::net::Ipv6Addr>,
}

impl AddrCollector<'_> {
    fn add(&mut self, text: &str, loc: Location) -> Result<(), MappingError> {
        match text.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if !self.v4.contains(&a) => self.v4.push(a),
            Ok(IpAddr::V6(a)) if !self.v6.contains(&a) => self.v6.push(a),
            Ok(_) => {} // the same address twice: harmless, answered once
            Err(_) => {
                return Err(MappingError::at(
                    self.origin,
                    loc,
                    format!("invalid IP address {text:?} for {}", self.what),
                ));
            }
        }
        Ok(())
    }

    fn add_all(&mut self, addrs: Spanned<RawAddrList>) -> Result<(), MappingError> {
        match addrs.value {
            RawAddrList::One(a) => self.add(&a, addrs.referenced),
            RawAddrList::Many(list) if list.is_empty() => Err(MappingError::at(
                self.origin,
                addrs.referenced,
                format!("{} has an empty address list", self.what),
            )),
            RawAddrList::Many(list) => list
                .into_iter()
                .try_for_each(|a| self.add(&a.value, a.referenced)),
        }
    }

    fn entry(self, ttl: u32) -> Entry {
        Entry {
            v4: self.v4.into(),
            v6: self.v6.into(),
            ttl,
        }
    }
}

/// Validates rule number `n` (1-based): its host (name or regex), its result (address, or host
/// name template whose `${n}` refer to existing groups) and its TTL.
fn parse_rule(
    origin: &str,
    n: usize,
    raw: Spanned<RawRule>,
    ttl: u32,
) -> Result<(Rule, String), MappingError> {
    let r = raw.value;
    let host = r.host.value.trim().to_owned();
    let err = |at: Location, why: String| {
        MappingError::at(origin, at, format!("rule {n} (host {host:?}): {why}"))
    };
    if !r.regex {
        name::to_wire_lower(&host)
            .map_err(|why| err(r.host.referenced, format!("invalid name: {why}")))?;
    }
    let regex = rules::compile_one(&host, r.regex).map_err(|why| err(r.host.referenced, why))?;
    let rule_ttl = match &r.ttl {
        Some(t) => check_ttl(origin, t)?,
        None => ttl,
    };
    let result_text = r.result.value.trim();
    let result = if let Ok(ip) = result_text.parse::<IpAddr>() {
        let mut addrs = AddrCollector {
            origin,
            what: &host,
            v4: Vec::new(),
            v6: Vec::new(),
        };
        addrs.add(&ip.to_string(), r.result.referenced)?;
        RuleResult::Local(addrs.entry(rule_ttl))
    } else {
        rules::check_template(result_text, &regex).map_err(|why| err(r.result.referenced, why))?;
        // The literal parts must make a host name: check it with every group reference
        // replaced by a plain label character.
        let probe = regex::Regex::new(r"\$(\{[^}]*\}|[A-Za-z0-9_]+)")
            .map(|re| re.replace_all(result_text, "x").into_owned())
            .unwrap_or_else(|_| result_text.to_owned());
        name::to_wire_lower(&probe).map_err(|why| {
            err(
                r.result.referenced,
                format!("result {result_text:?} is neither an IP address nor a host name: {why}"),
            )
        })?;
        RuleResult::Alias(result_text.to_owned())
    };
    let pattern = rules::pattern(&host, r.regex);
    Ok((
        Rule {
            host,
            regex,
            result,
            ttl: rule_ttl,
        },
        pattern,
    ))
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    // The defaults (250k nodes) are sized for hand-written configs; a mapping of 100k+ names with
    // address lists is legitimately larger. Still bounded: a hostile file cannot exhaust memory.
    budget.max_nodes = 8_000_000;
    budget.max_events = 16_000_000;
    budget.max_reader_input_bytes = Some(256 * 1024 * 1024);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    // We detect duplicate names ourselves, case-insensitively and across files, with the
    // locations of both; the parser's own exact-key set (SipHash over every key) would only
    // repeat that work: it was about a tenth of a 100,000-name load.
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::PassThrough;
    options
}

/// The parser's message without its own location suffix (we print `file:line:col:` first).
fn yaml_message(e: &serde_saphyr::Error, text: &str) -> String {
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return "the file is empty; expected a `hosts:` mapping".into();
    }
    let message = e.without_snippet().to_string();
    // The parser appends " at line L, column C"; we already lead with file:line:col.
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
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
struct RawRule {
    host: Spanned<String>,
    result: Spanned<String>,
    #[serde(default)]
    regex: bool,
    ttl: Option<Spanned<u32>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "m.yaml", 5).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_documented_example() {
        let s = parse(
            "ttl: 7\nhosts:\n  db-0.db.example.com: 10.42.0.12\n  DB-1.db.example.com.: [10.42.0.13, \"fd00::13\"]\n",
            "m.yaml",
            5,
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        let e = s.lookup(b"\x04db-1\x02db\x07example\x03com\x00").unwrap();
        assert_eq!(e.v4.len(), 1);
        assert_eq!(e.v6.len(), 1);
        assert_eq!(e.ttl, 7);
        assert_eq!(
            s.lookup(b"\x04db-0\x02db\x07example\x03com\x00")
                .unwrap()
                .ttl,
            7
        );
    }

    #[test]
    fn empty_hosts_is_valid_and_default_ttl_applies() {
        assert!(parse("hosts:\n", "m", 5).unwrap().is_empty());
        assert!(parse("hosts: {}\n", "m", 5).unwrap().is_empty());
        let s = parse("hosts:\n  a.b: 1.2.3.4\n", "m", 9).unwrap();
        assert_eq!(s.lookup(b"\x01a\x01b\x00").unwrap().ttl, 9);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = err("hosts:\n  a.example.com: 10.0.0.1\n  b.example.com: 10.0.0.300\n");
        assert!(e.starts_with("m.yaml:3:"), "{e}");
        assert!(e.contains("invalid IP address \"10.0.0.300\""), "{e}");

        let e = err("hosts:\n  a.example.com: 10.0.0.1\n  A.Example.com.: 10.0.0.2\n");
        assert!(
            e.starts_with("m.yaml:3:3: duplicate name a.example.com."),
            "{e}"
        );
        assert!(e.contains("first defined at line 2"), "{e}");

        let e = err("hosts:\n  a..example.com: 10.0.0.1\n");
        assert!(e.starts_with("m.yaml:2:3: invalid name"), "{e}");

        let e = err("hostz:\n  a.example.com: 10.0.0.1\n");
        assert!(e.starts_with("m.yaml:1:"), "{e}");
        assert!(e.contains("hostz"), "{e}");

        let e = err("hosts:\n  a.example.com: [10.0.0.1, nope]\n");
        assert!(e.starts_with("m.yaml:2:29:"), "{e}");

        let e = err("hosts:\n  a.example.com: [\n");
        assert!(e.starts_with("m.yaml:"), "{e}");

        let e = err("hosts:\n  a.example.com: 10.0.0.1\n  a.example.com: 10.0.0.2\n");
        assert!(
            e.starts_with("m.yaml:3:3: duplicate name a.example.com."),
            "{e}"
        );
        let e = err("hosts:\nttl: 5\nhosts:\n");
        assert!(e.starts_with("m.yaml:3:1: duplicate key `hosts`"), "{e}");
        assert!(err("").contains("empty"));
        assert!(err("ttl: 5\n").contains("hosts"));
    }
}
