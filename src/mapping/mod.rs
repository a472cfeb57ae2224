//! The name -> address mapping: an immutable, validated, lookup-optimised snapshot.
//!
//! A snapshot is built completely (parsed and validated, see [`file`]) before anyone can see it,
//! and published with one `ArcSwap` store; the query path only ever reads a whole snapshot.

pub mod file;
pub mod name;
pub mod reload;
pub mod rules;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use file::MappingError;

/// What a mapped name answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub v4: Box<[Ipv4Addr]>,
    pub v6: Box<[Ipv6Addr]>,
    /// TTL of local answers and of the synthesized SOA, in seconds.
    pub ttl: u32,
}

/// Owners of a reverse name: (lower-cased wire name, TTL) of every host with that address.
pub type PtrOwners = Box<[(Box<[u8]>, u32)]>;

/// One published version of the mapping.
#[derive(Debug)]
pub struct Snapshot {
    /// Keyed by the lower-cased wire-format name, which is what the query path has in hand
    /// after reading the question: no conversion to text per query.
    names: HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
    /// `in-addr.arpa` / `ip6.arpa` names of every address in `hosts`, for PTR.
    reverse: HashMap<Box<[u8]>, PtrOwners, foldhash::fast::RandomState>,
    rules: Option<rules::Rules>,
    /// FNV-1a of the file contents: tells identical reloads apart and is shown in logs.
    pub content_hash: u64,
}

/// What the mapping says about a name.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    /// A `hosts` entry, or a rule whose result is an address.
    Entry(&'a Entry),
    /// Rule `i`'s result is a name to resolve instead.
    Alias(usize),
    /// A reverse name of mapped addresses.
    Ptr(&'a PtrOwners),
    /// Not ours: forward.
    None,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot::new(HashMap::default(), None, 0)
    }

    /// Builds a snapshot (and its reverse index) from validated parts.
    pub fn new(
        names: HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
        rules: Option<rules::Rules>,
        content_hash: u64,
    ) -> Snapshot {
        type Owners = Vec<(Box<[u8]>, u32)>;
        let mut reverse: HashMap<Box<[u8]>, Owners, foldhash::fast::RandomState> =
            HashMap::default();
        for (owner, entry) in &names {
            let v4 = entry.v4.iter().map(|a| name::reverse_v4(*a));
            let v6 = entry.v6.iter().map(|a| name::reverse_v6(*a));
            for rev in v4.chain(v6) {
                reverse
                    .entry(rev.into_boxed_slice())
                    .or_default()
                    .push((owner.clone(), entry.ttl));
            }
        }
        let reverse = reverse
            .into_iter()
            .map(|(k, mut v)| {
                v.sort(); // stable answers whatever the hash order
                (k, v.into_boxed_slice())
            })
            .collect();
        Snapshot {
            names,
            reverse,
            rules: rules.filter(|r| !r.is_empty()),
            content_hash,
        }
    }

    /// A `hosts` entry by lower-cased wire name (as produced by
    /// [`crate::dns::wire::read_question`]).
    #[inline]
    pub fn lookup(&self, wire_lower: &[u8]) -> Option<&Entry> {
        if self.names.is_empty() {
            return None;
        }
        self.names.get(wire_lower)
    }

    /// The whole lookup, in precedence order: exact `hosts`, then reverse names of mapped
    /// addresses, then `rules` in file order.
    #[inline]
    pub fn find(&self, wire_lower: &[u8]) -> Found<'_> {
        if let Some(e) = self.lookup(wire_lower) {
            return Found::Entry(e);
        }
        if !self.reverse.is_empty()
            && let Some(owners) = self.reverse.get(wire_lower)
        {
            return Found::Ptr(owners);
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

    pub fn rules(&self) -> Option<&rules::Rules> {
        self.rules.as_ref()
    }

    pub fn rule_count(&self) -> usize {
        self.rules.as_ref().map_or(0, |r| r.rules.len())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Counts of (names, IPv4 addresses, IPv6 addresses).
    pub fn summary(&self) -> (usize, usize, usize) {
        let v4 = self.names.values().map(|e| e.v4.len()).sum();
        let v6 = self.names.values().map(|e| e.v6.len()).sum();
        (self.names.len(), v4, v6)
    }

    /// Short form of the content hash for logs.
    pub fn short_hash(&self) -> String {
        short_hash(self.content_hash)
    }
}

/// The live mapping shared by the query path (readers) and the reloader (the one writer).
pub type SharedMapping = Arc<ArcSwap<Snapshot>>;

/// The first 8 hex digits of a content hash, as shown in logs and metrics.
pub fn short_hash(hash: u64) -> String {
    format!("{:08x}", (hash >> 32) as u32)
}

/// FNV-1a, 64 bit: a stable content fingerprint (not a security boundary).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
