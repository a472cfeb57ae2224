//! The two ends of an alias target lookup on the wire: the query we put to the upstream for a
//! target, and what we keep of its reply (the records an alias answer is made of).

use rand::{Rng, RngExt};

use crate::dns::wire::{self, HEADER_LEN, MAX_NAME_WIRE, class, flag, rcode, rtype};

/// The UDP payload size our lookups advertise (RFC 6891 §6.2.5; the 2020 flag-day value): a
/// larger answer comes back with TC and is fetched again over TCP.
const LOOKUP_PAYLOAD: u16 = 1232;

/// The query for `target` (lower-cased wire name) and `qtype`: RD set (the upstream is a
/// recursive resolver, the cluster DNS), an OPT with our payload size and no DO, and the name in
/// random 0x20 case (draft-vixie-dnsext-dns0x20): the upstream echoes the question byte for byte
/// and the relay accepts only an exact echo, so a forged reply must guess one more bit per letter.
/// The ID is the relay's to set, per copy.
pub(crate) fn lookup_query(target: &[u8], qtype: u16, rng: &mut impl Rng) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER_LEN + target.len() + 4 + 11);
    q.extend_from_slice(&[0, 0]);
    q.extend_from_slice(&flag::RD.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    let mut bits: u64 = rng.random();
    let mut left = 64;
    for &b in target {
        if b.is_ascii_lowercase() {
            if left == 0 {
                bits = rng.random();
                left = 64;
            }
            let upper = bits & 1 == 1;
            bits >>= 1;
            left -= 1;
            q.push(if upper { b.to_ascii_uppercase() } else { b });
        } else {
            // Length octets (< 64) and non-letters pass unchanged.
            q.push(b);
        }
    }
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&class::IN.to_be_bytes());
    let p = LOOKUP_PAYLOAD.to_be_bytes();
    q.extend_from_slice(&[0, 0, 41, p[0], p[1], 0, 0, 0, 0, 0, 0]);
    q
}

/// What an upstream said about a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The records of the asked type at the end of the CNAME chain (type, RDATA with names
    /// written out in full), and the smallest TTL along the chain.
    Records(Vec<(u16, Box<[u8]>)>, u32),
    /// NXDOMAIN, or no record of the type (NODATA): the pod is not there (yet).
    Negative,
    /// Truncated: ask again over TCP.
    Truncated,
    /// Any other rcode (SERVFAIL, REFUSED, ...), or a reply we cannot read: the upstream could
    /// not answer for the target.
    Failed,
}

/// Reads an upstream's `reply` to our lookup of `target` (lower-cased wire name), `qtype`.
/// `question_end` is where our query's question ends (the relay checked the reply repeats it).
pub(crate) fn read_reply(reply: &[u8], target: &[u8], qtype: u16, question_end: usize) -> Reply {
    let Some(h) = wire::Header::read(reply) else {
        return Reply::Failed;
    };
    if h.flags & flag::TC != 0 {
        return Reply::Truncated;
    }
    match (h.flags & 0x000f) as u8 {
        rcode::NOERROR => {}
        rcode::NXDOMAIN => return Reply::Negative,
        _ => return Reply::Failed,
    }
    // The answer section: follow CNAMEs from the target (RFC 1034 §3.6.2: a resolver returns the
    // chain it followed), keep the records of `qtype` owned by the chain's end.
    let mut records: Vec<(u16, Box<[u8]>)> = Vec::new();
    let mut ttl = u32::MAX;
    let mut current = [0u8; MAX_NAME_WIRE];
    current[..target.len()].copy_from_slice(target);
    let mut current_len = target.len();
    let mut answers = Vec::with_capacity(h.ancount as usize);
    let mut at = question_end;
    for _ in 0..h.ancount {
        let mut owner = [0u8; MAX_NAME_WIRE];
        let Ok((owner_len, after)) = wire::read_name(reply, at, &mut owner) else {
            return Reply::Failed;
        };
        let (Ok(t), Ok(rdlen)) = (wire::u16_at(reply, after), wire::u16_at(reply, after + 8))
        else {
            return Reply::Failed;
        };
        let rd_start = after + 10;
        let rd_end = rd_start + rdlen as usize;
        if rd_end > reply.len() {
            return Reply::Failed;
        }
        let rttl = u32::from_be_bytes([
            reply[after + 4],
            reply[after + 5],
            reply[after + 6],
            reply[after + 7],
        ]);
        owner[..owner_len].make_ascii_lowercase();
        answers.push((owner, owner_len, t, rttl, rd_start, rd_end));
        at = rd_end;
    }
    // At most a chain as long as the answer section: each step moves to another owner.
    for _ in 0..=answers.len() {
        let mut next: Option<([u8; MAX_NAME_WIRE], usize)> = None;
        for (owner, owner_len, t, rttl, rd_start, rd_end) in &answers {
            if owner[..*owner_len] != current[..current_len] {
                continue;
            }
            if *t == qtype {
                let Some(rdata) = uncompressed(reply, *t, *rd_start, *rd_end) else {
                    return Reply::Failed;
                };
                records.push((*t, rdata.into()));
                ttl = ttl.min(*rttl);
            } else if *t == CNAME && next.is_none() {
                let mut target = [0u8; MAX_NAME_WIRE];
                let Ok((len, _)) = wire::read_name(reply, *rd_start, &mut target) else {
                    return Reply::Failed;
                };
                target[..len].make_ascii_lowercase();
                ttl = ttl.min(*rttl);
                next = Some((target, len));
            }
        }
        match next {
            Some((name, len)) if records.is_empty() => {
                current = name;
                current_len = len;
            }
            _ => break,
        }
    }
    if records.is_empty() {
        Reply::Negative
    } else {
        Reply::Records(records, ttl.min(wire_ttl_max()))
    }
}

const CNAME: u16 = 5;

/// RFC 2181 §8: TTLs above 2^31 - 1 are read as 0... or capped; we cap (the cache caps far lower
/// anyway).
fn wire_ttl_max() -> u32 {
    0x7fff_ffff
}

/// The RDATA at `reply[start..end]` of a record of type `t`, with every domain name in it
/// written out in full: copied into our reply at another offset, a compression pointer would
/// point into our own header. RFC 3597 §4 limits compression inside RDATA to the types of
/// RFC 1035 (and MX's kin); every other type is copied as it is.
fn uncompressed(reply: &[u8], t: u16, start: usize, end: usize) -> Option<Vec<u8>> {
    // (fixed octets before the first name, number of names) for the types that may compress.
    let (prefix, names) = match t {
        // CNAME, NS, PTR, MB, MD, MF, MG, MR
        2 | 3 | 4 | 5 | 7 | 8 | 9 | 12 => (0, 1),
        // MX, AFSDB, RT: a 16-bit preference then a name
        15 | 18 | 21 => (2, 1),
        // SOA: MNAME, RNAME, then 20 octets; MINFO: two names
        rtype::SOA | 14 => (0, 2),
        _ => return reply.get(start..end).map(<[u8]>::to_vec),
    };
    let mut out = reply.get(start..start + prefix)?.to_vec();
    let mut at = start + prefix;
    for _ in 0..names {
        let mut name = [0u8; MAX_NAME_WIRE];
        let (len, after) = wire::read_name(reply, at, &mut name).ok()?;
        out.extend_from_slice(&name[..len]);
        at = after;
    }
    if at > end {
        return None;
    }
    out.extend_from_slice(reply.get(at..end)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &[u8] = b"\x05kdb-0\x03kdb\x02ns\x03svc\x07cluster\x05local\x00";

    #[test]
    fn the_lookup_query_is_a_recursive_query_with_edns_in_random_case() {
        let mut rng = rand::rng();
        let q = lookup_query(TARGET, rtype::A, &mut rng);
        let asked = crate::dns::query::Asked::read(&q).expect("readable");
        assert_eq!(asked.header.flags, flag::RD);
        assert_eq!(asked.question.qtype, rtype::A);
        assert_eq!(asked.name(&q).to_ascii_lowercase(), TARGET);
        assert_eq!(asked.edns(&q).map(|e| e.udp_size), Some(1232));
        // 24 letters: the spelling differs between two queries but for one chance in 2^24.
        let other = lookup_query(TARGET, rtype::A, &mut rng);
        assert_ne!(q, other);
        assert!(q.len() == other.len() && q.eq_ignore_ascii_case(&other));
    }

    /// A reply to `q` with the given answer records (owner, type, ttl, rdata) and rcode.
    fn reply(q: &[u8], rc: u8, answers: &[(&[u8], u16, u32, &[u8])]) -> Vec<u8> {
        let end = q.len() - 11;
        let mut r = q[..end].to_vec();
        r[2] |= 0x80;
        r[3] = 0x80 | rc;
        r[7] = answers.len() as u8;
        r[11] = 0;
        for (owner, t, ttl, rdata) in answers {
            r.extend_from_slice(owner);
            r.extend_from_slice(&t.to_be_bytes());
            r.extend_from_slice(&[0, 1]);
            r.extend_from_slice(&ttl.to_be_bytes());
            r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            r.extend_from_slice(rdata);
        }
        r
    }

    #[test]
    fn keeps_the_records_at_the_end_of_the_cname_chain() {
        let q = lookup_query(TARGET, rtype::A, &mut rand::rng());
        let end = q.len() - 11;
        let read = |r: &[u8]| read_reply(r, TARGET, rtype::A, end);
        // Two A records, owner compressed to the question: the smallest TTL.
        let r = reply(
            &q,
            0,
            &[
                (b"\xc0\x0c", 1, 5, &[10, 0, 0, 1]),
                (b"\xc0\x0c", 1, 3, &[10, 0, 0, 2]),
            ],
        );
        assert_eq!(
            read(&r),
            Reply::Records(
                vec![(1, [10, 0, 0, 1].into()), (1, [10, 0, 0, 2].into())],
                3
            )
        );
        // target CNAME other.example (TTL 2), other.example A: the chain's smallest TTL.
        let r = reply(
            &q,
            0,
            &[
                (b"\xc0\x0c", CNAME, 60, b"\x05other\x07example\x00"),
                (b"\x05OTHER\x07example\x00", 1, 30, &[10, 0, 0, 3]),
                (b"\x05stray\x07example\x00", 1, 30, &[10, 0, 0, 4]),
            ],
        );
        assert_eq!(
            read(&r),
            Reply::Records(vec![(1, [10, 0, 0, 3].into())], 30)
        );
        assert_eq!(read(&reply(&q, rcode::NXDOMAIN, &[])), Reply::Negative);
        assert_eq!(read(&reply(&q, 0, &[])), Reply::Negative);
        assert_eq!(read(&reply(&q, rcode::SERVFAIL, &[])), Reply::Failed);
        let mut tc = reply(&q, 0, &[]);
        tc[2] |= 0x02;
        assert_eq!(read(&tc), Reply::Truncated);
        // A record running past the end, a pointer loop in an owner: unreadable, not a crash.
        let mut cut = reply(&q, 0, &[(b"\xc0\x0c", 1, 5, &[10, 0, 0, 1])]);
        cut.truncate(cut.len() - 2);
        assert_eq!(read(&cut), Reply::Failed);
        let looped = reply(&q, 0, &[(b"\xc0\x30", 1, 5, &[10, 0, 0, 1])]);
        assert_eq!(read(&looped), Reply::Failed);
    }

    #[test]
    fn names_inside_rdata_are_written_out() {
        let q = lookup_query(TARGET, 15, &mut rand::rng());
        let end = q.len() - 11;
        // MX 10 <pointer to the question name>
        let r = reply(&q, 0, &[(b"\xc0\x0c", 15, 60, b"\x00\x0a\xc0\x0c")]);
        let Reply::Records(records, _) = read_reply(&r, TARGET, 15, end) else {
            panic!("records")
        };
        let mut want = vec![0, 10];
        want.extend_from_slice(&q[12..12 + TARGET.len()]);
        assert_eq!(&*records[0].1, &want[..]);
    }
}
