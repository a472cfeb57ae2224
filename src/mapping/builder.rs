//! Building a [`Snapshot`] entry by entry while the file is read: duplicate names are found here
//! (case-insensitively, across files, with the place of the first definition), and `finish`
//! compiles the rules and lays the snapshot out for lookups.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::HashTable;

use super::error::MappingError;
use super::{Entry, Rec, Snapshot, name, rules};

/// Builds a snapshot entry by entry, rejecting a name given twice (in one file or two).
#[derive(Default)]
pub(crate) struct SnapshotBuilder {
    recs: Vec<Rec>,
    /// Where each entry was defined (file index, location): for the duplicate error only.
    locs: Vec<(u32, serde_saphyr::Location)>,
    by_name: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    origins: Vec<String>,
    rules: Vec<(rules::Rule, String)>,
}

impl SnapshotBuilder {
    /// Starts a new source file; returns its index.
    pub(crate) fn file(&mut self, origin: &str) -> u32 {
        self.origins.push(origin.to_owned());
        self.origins.len() as u32 - 1
    }

    /// Adds one name; on a duplicate returns the message, naming where the first definition is
    /// ("line N" in the same file, "other.yaml:N" in another).
    pub(crate) fn add(
        &mut self,
        file: u32,
        name: Vec<u8>,
        at: serde_saphyr::Location,
        entry: Entry,
    ) -> Result<(), String> {
        let hash = self.hasher.hash_one(&name[..]);
        let recs = &self.recs;
        if let Some(&i) = self
            .by_name
            .find(hash, |&i| *recs[i as usize].name == name[..])
        {
            let (first_file, loc) = &self.locs[i as usize];
            let first = if *first_file == file {
                format!("line {}", loc.line())
            } else {
                format!("{}:{}", self.origins[*first_file as usize], loc.line())
            };
            return Err(format!(
                "duplicate name {} (names are case-insensitive; first defined at {first})",
                name::wire_to_text(&name)
            ));
        }
        let index = self.recs.len() as u32;
        let (recs, hasher) = (&self.recs, &self.hasher);
        self.by_name.insert_unique(hash, index, |&i| {
            hasher.hash_one(&recs[i as usize].name[..])
        });
        self.recs.push(Rec {
            name: name.into_boxed_slice(),
            entry,
        });
        self.locs.push((file, at));
        Ok(())
    }

    /// Sets the TTL of the entries of `file` that did not set their own (a file's `ttl:` may
    /// come after its `hosts:`).
    pub(crate) fn apply_file_ttl(&mut self, file: u32, ttl: u32, own_ttl: &[bool]) {
        let mine = self
            .locs
            .iter()
            .zip(self.recs.iter_mut())
            .filter(|((f, _), _)| *f == file);
        for (((_, _), rec), own) in mine.zip(own_ttl) {
            if !own {
                rec.entry.ttl = ttl;
            }
        }
    }

    pub(crate) fn add_rule(&mut self, rule: rules::Rule, pattern: String) {
        self.rules.push((rule, pattern));
    }

    pub(crate) fn origins(&self) -> &[String] {
        &self.origins
    }

    pub(crate) fn finish(self, content_hash: u64) -> Result<Snapshot, String> {
        let rules = if self.rules.is_empty() {
            None
        } else {
            let patterns: Vec<String> = self.rules.iter().map(|(_, p)| p.clone()).collect();
            Some(rules::Rules::new(
                self.rules.into_iter().map(|(r, _)| r).collect(),
                &patterns,
            )?)
        };
        drop(self.locs);
        let mut by_addr: HashMap<IpAddr, u32, foldhash::fast::FixedState> = HashMap::default();
        let mut more_owners: HashMap<IpAddr, Vec<u32>, foldhash::fast::FixedState> =
            HashMap::default();
        by_addr.reserve(self.recs.len());
        for (i, rec) in self.recs.iter().enumerate() {
            let v4 = rec.entry.v4.iter().map(|a| IpAddr::V4(*a));
            let v6 = rec.entry.v6.iter().map(|a| IpAddr::V6(*a));
            for ip in v4.chain(v6) {
                match by_addr.entry(ip) {
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(i as u32);
                    }
                    std::collections::hash_map::Entry::Occupied(_) => {
                        more_owners.entry(ip).or_default().push(i as u32);
                    }
                }
            }
        }
        let mut by_name = self.by_name;
        by_name.shrink_to_fit(|&i| self.hasher.hash_one(&self.recs[i as usize].name[..]));
        Ok(Snapshot {
            entries: self.recs.into_boxed_slice(),
            by_name,
            by_addr,
            more_owners,
            hasher: self.hasher,
            rules,
            content_hash,
        })
    }
}

/// Finishes `builder` into a snapshot; a failure (the rules cannot be compiled together) names
/// every file of the source.
pub(super) fn finish(builder: SnapshotBuilder, hash: u64) -> Result<Snapshot, MappingError> {
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
