//! The name -> address mapping: an immutable, validated, lookup-optimised snapshot.
//!
//! A snapshot is built completely (parsed and validated, see [`file`]) before anyone can see it,
//! and published with one `ArcSwap` store; the query path only ever reads a whole snapshot.

mod builder;
mod error;
pub mod file;
mod json;
pub mod name;
pub mod operator;
pub mod reload;
pub mod rules;
mod schema;
mod source;
mod validate;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashTable;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub(crate) use builder::SnapshotBuilder;
pub use error::MappingError;

/// What a mapped name answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub v4: Box<[Ipv4Addr]>,
    pub v6: Box<[Ipv6Addr]>,
    /// TTL of local answers and of the synthesized SOA, in seconds.
    pub ttl: u32,
}

/// One published version of the mapping.
///
/// Laid out for 100,000+ names in little memory: the entries in one vector, an index-only hash
/// table over their names (4 octets a slot), and a reverse index from address to entry for PTR,
/// keyed by the address itself rather than by its `in-addr.arpa` name.
pub struct Snapshot {
    entries: Box<[Rec]>,
    /// Indices into `entries`, hashed by the lower-cased wire name.
    by_name: HashTable<u32>,
    /// Address -> the first entry holding it; further holders (rare) in `more_owners`.
    by_addr: HashMap<IpAddr, u32, foldhash::fast::FixedState>,
    more_owners: HashMap<IpAddr, Vec<u32>, foldhash::fast::FixedState>,
    hasher: foldhash::fast::RandomState,
    rules: Option<rules::Rules>,
    /// FNV-1a of the file contents: tells identical reloads apart and is shown in logs.
    pub content_hash: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("names", &self.entries.len())
            .field("rules", &self.rule_count())
            .field("content_hash", &self.content_hash)
            .finish()
    }
}

/// A name and what it answers with.
struct Rec {
    name: Box<[u8]>,
    entry: Entry,
}

/// What the mapping says about a name.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    /// A `hosts` entry, or a rule whose result is an address.
    Entry(&'a Entry),
    /// Rule `i`'s result is a name to resolve instead.
    Alias(usize),
    /// The reverse name of a mapped address: see [`Snapshot::owners`].
    Ptr(IpAddr),
    /// Not ours: forward.
    None,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        match SnapshotBuilder::default().finish(0) {
            Ok(s) => s,
            // No rules, no entries: nothing can fail; keep the code path total anyway.
            Err(_) => Snapshot {
                entries: Box::new([]),
                by_name: HashTable::new(),
                by_addr: HashMap::default(),
                more_owners: HashMap::default(),
                hasher: Default::default(),
                rules: None,
                content_hash: 0,
            },
        }
    }

    /// A `hosts` entry by lower-cased wire name (as produced by
    /// [`crate::dns::wire::read_question`]).
    #[inline]
    pub fn lookup(&self, wire_lower: &[u8]) -> Option<&Entry> {
        if self.entries.is_empty() {
            return None;
        }
        let hash = self.hasher.hash_one(wire_lower);
        let entries = &self.entries;
        self.by_name
            .find(hash, |&i| *entries[i as usize].name == *wire_lower)
            .map(|&i| &entries[i as usize].entry)
    }

    /// The whole lookup, in precedence order: exact `hosts`, then reverse names of mapped
    /// addresses, then `rules` in file order.
    #[inline]
    pub fn find(&self, wire_lower: &[u8]) -> Found<'_> {
        if let Some(e) = self.lookup(wire_lower) {
            return Found::Entry(e);
        }
        if !self.by_addr.is_empty()
            && let Some(ip) = name::reverse_to_ip(wire_lower)
            && self.by_addr.contains_key(&ip)
        {
            return Found::Ptr(ip);
        }
        let Some(rules) = &self.rules else {
            return Found::None;
        };
        let mut buf = [0u8; 256];
        let Some(text) = name::wire_to_text_in(wire_lower, &mut buf) else {
            return Found::None;
        };
        match rules.first_match(text) {
            Some(i) => match &rules.rules[i].result {
                rules::RuleResult::Local(e) => Found::Entry(e),
                rules::RuleResult::Alias(_) => Found::Alias(i),
            },
            None => Found::None,
        }
    }

    /// Every mapped name holding `ip`, with its TTL, in file order.
    pub fn owners(&self, ip: IpAddr) -> impl Iterator<Item = (&[u8], u32)> + Clone {
        let first = self.by_addr.get(&ip).copied();
        let more = self
            .more_owners
            .get(&ip)
            .map(|v| v.as_slice())
            .unwrap_or_default();
        first
            .into_iter()
            .chain(more.iter().copied())
            .filter_map(|i| {
                self.entries
                    .get(i as usize)
                    .map(|r| (&r.name[..], r.entry.ttl))
            })
    }

    pub fn rules(&self) -> Option<&rules::Rules> {
        self.rules.as_ref()
    }

    pub fn rule_count(&self) -> usize {
        self.rules.as_ref().map_or(0, |r| r.rules.len())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts of (names, IPv4 addresses, IPv6 addresses).
    pub fn summary(&self) -> (usize, usize, usize) {
        let v4 = self.entries.iter().map(|r| r.entry.v4.len()).sum();
        let v6 = self.entries.iter().map(|r| r.entry.v6.len()).sum();
        (self.entries.len(), v4, v6)
    }

    /// Short form of the content hash for logs.
    pub(crate) fn short_hash(&self) -> String {
        short_hash(self.content_hash)
    }
}

/// The live mapping shared by the query path (readers) and the reloader (the one writer).
pub type SharedMapping = Arc<ArcSwap<Snapshot>>;

/// The first 8 hex digits of a content hash, as shown in logs and metrics.
pub(crate) fn short_hash(hash: u64) -> String {
    format!("{:08x}", (hash >> 32) as u32)
}

/// FNV-1a, 64 bit: a stable content fingerprint (not a security boundary).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::default();
    h.update(bytes);
    h.0
}

/// FNV-1a fed in pieces, for content spread over several buffers (no copy into one).
pub(crate) struct Fnv1a(pub u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
