//! The mapping file format (YAML): reading, parsing and validating a source into a
//! [`Snapshot`].
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
//!
//! The pieces, by concern: [`super::source`] reads and hashes the file or directory,
//! [`super::schema`] is the format (every accepted key) and its streaming reader,
//! [`super::validate`] checks addresses, TTLs and rules, [`super::builder`] collects the entries
//! into the snapshot. This module runs the parser over them and is the public entry point.

use std::path::Path;

use serde::de::DeserializeSeed;
use serde_saphyr::Location;

use super::builder::finish;
use super::schema::{EMPTY_FILE, FileSeed};
use super::{Snapshot, SnapshotBuilder, fnv1a};

pub use super::error::MappingError;
use super::operator::{self, OperatorSettings};
pub(crate) use super::source::stat_signature;
pub use super::source::{SourceText, read_source};
pub(crate) use super::validate::MAX_TTL;

/// The two syntaxes a mapping source may be written in; both become one [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Our mapping file (`hosts:`, `rules:`), one file or a directory of them.
    Yaml,
    /// The KurrentDB operator's sidecar config (JSON: `listen`, `resolver`, `rules`), one file.
    Operator,
}

impl Format {
    /// The syntax `text` is written in, for `splitdns check`: a JSON object is the operator's
    /// config (a YAML mapping starts with a key), anything else YAML.
    pub fn sniff(text: &str) -> Format {
        match text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .as_bytes()
            .first()
        {
            Some(b'{') => Format::Operator,
            _ => Format::Yaml,
        }
    }
}

/// A loaded source: the snapshot, and for the operator's config what else it says.
#[derive(Debug)]
pub struct Loaded {
    pub snapshot: Snapshot,
    /// The operator's `listen` and `resolver`, and the fields that were ignored.
    pub operator: Option<(OperatorSettings, Vec<String>)>,
}

/// Parses and validates a source read with [`read_source`], in `format`.
pub fn parse_source_as(
    format: Format,
    source: &SourceText,
    default_ttl: u32,
) -> Result<Loaded, MappingError> {
    match format {
        Format::Yaml => Ok(Loaded {
            snapshot: parse_source(source, default_ttl)?,
            operator: None,
        }),
        Format::Operator => {
            let [(origin, text)] = source.files.as_slice() else {
                let origin = source.files.first().map_or("", |(o, _)| o.as_str());
                return Err(MappingError::Read {
                    path: origin.to_owned(),
                    source: std::io::Error::other("the operator's config is one JSON file"),
                });
            };
            let c = operator::parse(text, origin, default_ttl, source.hash)?;
            Ok(Loaded {
                snapshot: c.snapshot,
                operator: Some((c.settings, c.unknown_fields)),
            })
        }
    }
}

/// Reads and validates `path` (file or directory) written in `format`.
pub fn load_as(format: Format, path: &Path, default_ttl: u32) -> Result<Loaded, MappingError> {
    if format == Format::Operator && path.is_dir() {
        return Err(MappingError::Read {
            path: path.display().to_string(),
            source: std::io::Error::other("is a directory; the operator's config is one JSON file"),
        });
    }
    parse_source_as(format, &read_source(path)?, default_ttl)
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

/// Parses one file straight into `builder`: each host is validated and stored as it is read,
/// so a 100,000-name file never exists as an intermediate list (peak memory is about the final
/// snapshot plus the text).
pub(crate) fn parse_into(
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
        return EMPTY_FILE.into();
    }
    let message = e.without_snippet().to_string();
    // The parser appends " at line L, column C"; we already lead with file:line:col.
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
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

    #[test]
    fn rules_alone_are_a_mapping_but_neither_hosts_nor_rules_is_an_error() {
        let s = parse(
            "rules:\n  - host: a.example\n    result: 10.0.0.1\n",
            "m",
            5,
        )
        .unwrap();
        assert!(s.is_empty());
        assert_eq!(s.rule_count(), 1);
        // A `ttl:` after the rules still caps them.
        let s = parse(
            "rules:\n  - host: a.example\n    result: 10.0.0.1\nttl: 9\n",
            "m",
            5,
        );
        assert!(matches!(
            s.unwrap().find(b"\x01a\x07example\x00"),
            super::super::Found::Entry(e) if e.ttl == 9
        ));
        assert_eq!(parse("rules:\n", "m", 5).unwrap().rule_count(), 0);
        assert_eq!(
            err("ttl: 5\n"),
            "m.yaml:1:1: missing field `hosts` or `rules` (an empty `hosts:` forwards everything)"
        );
        for empty in ["", "\n\n", "# nothing yet\n"] {
            assert_eq!(
                err(empty),
                "m.yaml:1:1: the file is empty; expected `hosts:` and/or `rules:` (an empty \
                 `hosts:` forwards everything)",
                "{empty:?}"
            );
        }
        // Errors inside a rules-only file keep their place.
        let e = err("rules:\n  - host: a.example\n    result: a b\n");
        assert!(e.starts_with("m.yaml:3:13: rule 1"), "{e}");
    }
}
