//! Serve-stale (RFC 8767), opt-in with `--serve-stale DURATION`: the last good reply of each
//! forwarded question is kept (as bytes, bounded by `--stale-cache-size`), and used **only** when
//! no upstream answered a query within its budget. Then the client gets that reply with every TTL
//! set to 30 s (RFC 8767 §4, "stale answer TTL"), instead of SERVFAIL, for up to DURATION past
//! the reply's own expiry (RFC 8767 §5 "maximum stale timer"). While the upstreams answer, this
//! cache is written but never read: splitdns stays a relay, not a cache.
//!
//! Kept: NOERROR (answers and NODATA) and NXDOMAIN replies without TC. The key is the question
//! (name lower-cased, type, class) and the query's EDNS shape (none / EDNS / EDNS with DO), so a
//! client gets a stale reply of the form it asked for. Eviction is oldest-stored first.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::dns::query::Asked;
use crate::dns::wire::{self, HEADER_LEN, MAX_NAME_WIRE, flag, rcode, rtype};

/// RFC 8767 §4: the TTL of a stale answer.
pub(crate) const STALE_TTL: u32 = 30;
/// RFC 8767 §4: TTLs above 7 days are capped at 7 days (the reply's own TTL, and so how long it
/// counts as fresh before its stale window starts): a reply with a huge TTL, forged or not, cannot
/// stay servable for years.
pub(crate) const MAX_TTL: u32 = 604_800;
/// A reply for a question stored less than this long ago is not stored again (saves copying
/// every reply of a busy name).
const REFRESH: Duration = Duration::from_secs(1);
/// Longest key: name, type, class, EDNS shape.
const MAX_KEY: usize = MAX_NAME_WIRE + 5;

struct Entry {
    reply: Box<[u8]>,
    stored: Instant,
    /// Smallest TTL in the reply (its freshness).
    ttl: u32,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
    /// Keys in the order stored, with the sequence number they were stored under (an entry
    /// stored again gets a new one, so its old place in the queue is skipped).
    order: VecDeque<(Box<[u8]>, u64)>,
    bytes: usize,
    seq: u64,
}

pub(crate) struct StaleCache {
    max_bytes: usize,
    max_stale: Duration,
    inner: Mutex<Inner>,
}

/// The cache key of the query `query` (read into `asked`), written into `key`; `None` for a
/// query whose records do not read (no EDNS shape to key it by).
fn key(query: &[u8], asked: &Asked, key: &mut [u8; MAX_KEY]) -> Option<usize> {
    let edns = asked.extras(query).ok()?.edns;
    let q = asked.question;
    let n = q.name_len;
    for (k, c) in key[..n].iter_mut().zip(asked.name(query)) {
        *k = c.to_ascii_lowercase();
    }
    key[n..n + 2].copy_from_slice(&q.qtype.to_be_bytes());
    key[n + 2..n + 4].copy_from_slice(&q.qclass.to_be_bytes());
    key[n + 4] = match edns {
        None => 0,
        Some(e) if e.dnssec_ok => 2,
        Some(_) => 1,
    };
    Some(n + 5)
}

/// The smallest TTL of the records in `reply` (OPT excluded), or `None` if it is unreadable.
fn min_ttl(reply: &[u8], question_end: usize) -> Option<u32> {
    let header = wire::Header::read(reply)?;
    let mut min = u32::MAX;
    wire::for_each_record(reply, &header, question_end, |t, at| {
        if t != rtype::OPT {
            let ttl = u32::from_be_bytes([reply[at], reply[at + 1], reply[at + 2], reply[at + 3]]);
            min = min.min(ttl);
        }
    })
    .ok()?;
    Some(if min == u32::MAX { 0 } else { min })
}

impl StaleCache {
    pub(crate) fn new(max_bytes: usize, max_stale: Duration) -> StaleCache {
        StaleCache {
            max_bytes,
            max_stale,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `reply` (a validated upstream reply to `query`, read into `asked`) as the last good
    /// answer.
    pub(crate) fn store(&self, query: &[u8], asked: &Asked, reply: &[u8], now: Instant) {
        let Some(h) = wire::Header::read(reply) else {
            return;
        };
        let rc = (h.flags & 0x000F) as u8;
        if h.flags & flag::TC != 0 || !(rc == rcode::NOERROR || rc == rcode::NXDOMAIN) {
            return;
        }
        let mut k = [0u8; MAX_KEY];
        let Some(klen) = key(query, asked, &mut k) else {
            return;
        };
        let k = &k[..klen];
        let size = reply.len() + 2 * klen + 64;
        if size > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        if let Some(e) = inner.map.get(k)
            && now.saturating_duration_since(e.stored) < REFRESH
        {
            return;
        }
        let Some(ttl) = min_ttl(reply, asked.question.end()) else {
            return;
        };
        let ttl = ttl.min(MAX_TTL);
        inner.seq += 1;
        let seq = inner.seq;
        let entry = Entry {
            reply: reply.into(),
            stored: now,
            ttl,
            seq,
        };
        if let Some(old) = inner.map.insert(k.into(), entry) {
            inner.bytes -= old.reply.len() + 2 * klen + 64;
        }
        inner.bytes += size;
        inner.order.push_back((k.into(), seq));
        while inner.bytes > self.max_bytes {
            let Some((old, seq)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&old).is_some_and(|e| e.seq == seq)
                && let Some(e) = inner.map.remove(&old)
            {
                inner.bytes -= e.reply.len() + 2 * old.len() + 64;
            }
        }
        // Queue entries of keys stored again are skipped when they reach the front; bound the
        // queue all the same, so a few hot names stored over and over cannot grow it.
        if inner.order.len() > 4 * inner.map.len() + 64 {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    /// Writes into `out` the stale answer to `query`, if one is kept and not past the stale
    /// window, sized for a client that accepts `limit` octets: the kept reply with the client's
    /// ID and question spelling, every TTL set to [`STALE_TTL`].
    pub(crate) fn answer(
        &self,
        query: &[u8],
        asked: &Asked,
        limit: usize,
        out: &mut Vec<u8>,
        now: Instant,
    ) -> bool {
        let mut k = [0u8; MAX_KEY];
        let Some(klen) = key(query, asked, &mut k) else {
            return false;
        };
        let inner = self.lock();
        let Some(e) = inner.map.get(&k[..klen]) else {
            return false;
        };
        let age = now.saturating_duration_since(e.stored);
        if age > Duration::from_secs(u64::from(e.ttl)) + self.max_stale || e.reply.len() > limit {
            return false;
        }
        out.clear();
        out.extend_from_slice(&e.reply);
        drop(inner);
        // Same question case-insensitively, so the same length: echo the client's spelling.
        let question_end = asked.question.end();
        if query.len() < question_end || out.len() < question_end {
            return false;
        }
        out[..2].copy_from_slice(&query[..2]);
        out[HEADER_LEN..question_end].copy_from_slice(&query[HEADER_LEN..question_end]);
        let Some(header) = wire::Header::read(out) else {
            return false;
        };
        let mut ttls = Vec::new();
        let mut opt_at = None;
        if wire::for_each_record(out, &header, question_end, |t, at| {
            if t == rtype::OPT {
                opt_at = Some(at);
            } else {
                ttls.push(at);
            }
        })
        .is_err()
        {
            return false;
        }
        for at in ttls {
            out[at..at + 4].copy_from_slice(&STALE_TTL.to_be_bytes());
        }
        // RFC 8914 §4.4: say it is stale, with EDE 3 "Stale Answer" in the OPT (present when the
        // client asked with EDNS: the key keeps the shapes apart) when the OPT is the last record,
        // so the option can go at its end, and the client's size allows 6 more octets.
        if let Some(at) = opt_at
            && let Ok(rdlen) = wire::u16_at(out, at + 4)
            && at + 6 + rdlen as usize == out.len()
            && out.len() + 6 <= limit
        {
            out.extend_from_slice(&wire::ede::option(wire::ede::STALE_ANSWER));
            out[at + 4..at + 6].copy_from_slice(&(rdlen + 6).to_be_bytes());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::test_query::q_wire;
    use crate::dns::wire::rtype;

    fn asked(q: &[u8]) -> Asked {
        Asked::read(q).expect("readable")
    }

    /// A query for the wire name `name`, A, with ID `id`.
    fn query(name: &[u8], id: u16) -> Vec<u8> {
        q_wire(name, rtype::A).id(id).bytes()
    }

    /// A reply to `q` with one A record of TTL `ttl`.
    fn reply(q: &[u8], ttl: u32) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        r
    }

    #[test]
    fn answers_with_ttl_30_the_clients_id_and_spelling() {
        let c = StaleCache::new(1 << 20, Duration::from_secs(60));
        let q = query(b"\x03www\x07example\x03org\x00", 1);
        let t0 = Instant::now();
        c.store(&q, &asked(&q), &reply(&q, 300), t0);
        let spelled = query(b"\x03WwW\x07example\x03ORG\x00", 0xBEEF);
        let mut out = Vec::new();
        assert!(c.answer(
            &spelled,
            &asked(&spelled),
            512,
            &mut out,
            t0 + Duration::from_secs(10)
        ));
        assert_eq!(&out[..2], &[0xBE, 0xEF]);
        assert_eq!(&out[12..spelled.len()], &spelled[12..]);
        let ttl_at = spelled.len() + 6;
        assert_eq!(&out[ttl_at..ttl_at + 4], &30u32.to_be_bytes());
        // Past TTL + stale window: gone.
        assert!(!c.answer(
            &spelled,
            &asked(&spelled),
            512,
            &mut out,
            t0 + Duration::from_secs(361)
        ));
        // Too big for the client.
        assert!(!c.answer(&spelled, &asked(&spelled), 20, &mut out, t0));
    }

    /// An EDNS client's stale answer says so: EDE 3 in its OPT (RFC 8914 §4.4), if it fits.
    #[test]
    fn a_stale_answer_to_an_edns_client_carries_ede_3() {
        let c = StaleCache::new(1 << 20, Duration::from_secs(60));
        let mut q = query(b"\x03www\x07example\x03org\x00", 1);
        q[11] = 1;
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        let question_end = q.len() - 11;
        // The upstream's reply: the question, one A record, its OPT.
        let mut r = reply(&q[..question_end], 300);
        r[11] = 1;
        r.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        let t0 = Instant::now();
        c.store(&q, &asked(&q), &r, t0);
        let mut out = Vec::new();
        assert!(c.answer(&q, &asked(&q), 1232, &mut out, t0));
        assert_eq!(out.len(), r.len() + 6);
        assert_eq!(
            &out[r.len() - 2..],
            &[0, 6, 0, 15, 0, 2, 0, 3],
            "RDLEN 6, EDE 3"
        );
        // No room for it: the stale answer without it.
        assert!(c.answer(&q, &asked(&q), r.len(), &mut out, t0));
        assert_eq!(out.len(), r.len());
        // Without EDNS nothing is added (and nothing of the EDNS entry is used).
        let plain = &q[..question_end];
        let mut plain = plain.to_vec();
        plain[11] = 0;
        c.store(&plain, &asked(&plain), &reply(&plain, 300), t0);
        assert!(c.answer(&plain, &asked(&plain), 512, &mut out, t0));
        assert_eq!(out.len(), reply(&plain, 300).len());
    }

    /// A reply's TTL counts at most 7 days (RFC 8767 §4): it is never served past that plus the
    /// stale window, whatever TTL it carried.
    #[test]
    fn a_huge_ttl_is_capped_at_seven_days() {
        let c = StaleCache::new(1 << 20, Duration::from_secs(3600));
        let q = query(b"\x01a\x00", 1);
        let t0 = Instant::now();
        c.store(&q, &asked(&q), &reply(&q, 0x7fff_ffff), t0);
        let mut out = Vec::new();
        let week = Duration::from_secs(u64::from(MAX_TTL));
        let edge = t0 + week + Duration::from_secs(3600);
        assert!(c.answer(&q, &asked(&q), 512, &mut out, edge));
        assert!(!c.answer(&q, &asked(&q), 512, &mut out, edge + Duration::from_secs(1)));
    }

    #[test]
    fn keeps_only_good_replies_and_stays_within_its_size() {
        let c = StaleCache::new(2_000, Duration::from_secs(60));
        let t0 = Instant::now();
        let q = query(b"\x01a\x00", 1);
        let mut servfail = reply(&q, 60);
        servfail[3] = 0x82;
        c.store(&q, &asked(&q), &servfail, t0);
        let mut out = Vec::new();
        assert!(
            !c.answer(&q, &asked(&q), 512, &mut out, t0),
            "SERVFAIL is not kept"
        );
        for i in 0..100u8 {
            let name = [1, b'a' + (i % 26), 1, b'0' + i / 26, 0];
            let q = query(&name, 1);
            c.store(&q, &asked(&q), &reply(&q, 60), t0);
        }
        let inner = c.lock();
        assert!(inner.bytes <= 2_000, "{}", inner.bytes);
        assert!(inner.map.len() > 5 && inner.map.len() < 100);
    }
}
