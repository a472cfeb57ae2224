//! The name -> address mapping: an immutable, validated, lookup-optimised snapshot.
//!
//! A snapshot is built completely (parsed and validated, see [`file`]) before anyone can see it,
//! and published with one `ArcSwap` store; the query path only ever reads a whole snapshot.

pub mod file;
pub mod name;
pub mod reload;

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

/// One published version of the mapping.
#[derive(Debug)]
pub struct Snapshot {
    /// Keyed by the lower-cased wire-format name, which is what the query path has in hand
    /// after reading the question: no conversion to text per query.
    names: HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
    /// FNV-1a of the file contents: tells identical reloads apart and is shown in logs.
    pub content_hash: u64,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            names: HashMap::default(),
            content_hash: 0,
        }
    }

    /// `wire_lower` is a lower-cased name in wire format (as produced by
    /// [`crate::dns::wire::read_question`]).
    #[inline]
    pub fn lookup(&self, wire_lower: &[u8]) -> Option<&Entry> {
        if self.names.is_empty() {
            return None;
        }
        self.names.get(wire_lower)
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
