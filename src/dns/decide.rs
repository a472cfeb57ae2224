//! Deciding what to do with a query.
//!
//! [`decide`] is the whole per-query decision over a [`Query`] read once: drop, answer locally
//! (written by [`crate::dns::reply`] into the caller's reused buffer, no allocation), or forward
//! the bytes unchanged. Every error of the query itself becomes a [`Refusal`] here; a query that
//! fails later (no upstream answered, no slot free) gets its reply from `upstream`'s one failure
//! path. [`local_records`] is the one lookup of a mapped name's records, for local answers here
//! and for alias targets that are themselves mapped (`alias::chain`).

use crate::dns::outcome::{Outcome, Transport};
use crate::dns::query::Query;
use crate::dns::reply::{self, Rdata, Refusal, Reply};
use crate::dns::wire::{Edns, Extras, MAX_NAME_WIRE, Question, Tsig, class, rtype};
use crate::mapping::{Found, Snapshot};

/// The largest UDP query taken (see [`decide`]): room for a TSIG or SIG(0) and large EDNS
/// options, far below what would let a flood of queries hold the relay's memory.
pub const MAX_UDP_QUERY: usize = 4096;

/// The decision for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send `out[..len]` back to the client.
    Reply { len: usize, outcome: Outcome },
    /// Not ours: relay the query bytes upstream. `question_end` lets the relay check the reply.
    Forward { question_end: usize },
    /// Ours, but answered by resolving another name (rule `rule`'s alias): the caller hands the
    /// query to [`crate::alias`], which answers asynchronously.
    Alias { rule: usize },
    /// Say nothing (RFC 1035 §4.1.1 gives no way to answer a message we cannot read, and a
    /// response must never be answered, or two servers could ping-pong forever).
    Drop,
}

impl From<Reply> for Decision {
    fn from(r: Reply) -> Decision {
        Decision::Reply {
            len: r.len,
            outcome: r.outcome,
        }
    }
}

/// Why a query is not answered with records: a signature we cannot check (the query's TSIG
/// record, with its EDNS), or a refusal.
enum Stop {
    NotAuth(Option<Edns>, Tsig),
    Refuse(Refusal),
}

/// Decides what to do with `query`, writing any local reply into `out` (for TCP, a reply that
/// does not fit `out` comes back with TC: the caller decides again in a 65535-octet buffer; for
/// UDP `out` holds at least [`reply::OUR_UDP_PAYLOAD`]). Reads nothing of the message that
/// [`Query::read`] has not read already.
pub fn decide(
    query: &Query<'_>,
    snapshot: &Snapshot,
    transport: Transport,
    out: &mut [u8],
) -> Decision {
    let (msg, header) = (query.bytes(), query.header());
    if header.is_response() {
        return Decision::Drop;
    }
    let question = match screen(query, transport) {
        Ok(q) => q,
        Err(Stop::Refuse(r)) => {
            let (question, edns) = (query.question(), query.edns());
            let reply = reply::refusal(msg, header, question, edns, r, out);
            return reply.map_or(Decision::Drop, Decision::from);
        }
        Err(Stop::NotAuth(edns, tsig)) => {
            // `screen` stops with NotAuth only for a query with its one question.
            let Some(q) = query.question() else {
                return Decision::Drop;
            };
            let limit = reply::reply_limit(transport, edns);
            return reply::notauth(msg, header, q, edns, &tsig, limit, out).into();
        }
    };
    let found = snapshot.find(query.name_lower());
    if let Found::None = found {
        return Decision::Forward {
            question_end: question.end(),
        };
    }
    // From here on the name is ours and never leaves this process (forwarding it would return
    // the public address: the hairpin this daemon exists to prevent).
    let Ok(extras) = query.extras() else {
        // RFC 6891 §6.1.1: malformed or duplicate OPT -> FORMERR, without an OPT of our own.
        let reply = reply::refusal(msg, header, Some(question), None, Refusal::FormErr, out);
        return reply.map_or(Decision::Drop, Decision::from);
    };
    let edns = extras.edns;
    let limit = reply::reply_limit(transport, edns);
    match ours(question, &extras) {
        Ok(()) => {}
        Err(Stop::NotAuth(edns, tsig)) => {
            return reply::notauth(msg, header, question, edns, &tsig, limit, out).into();
        }
        Err(Stop::Refuse(r)) => {
            let reply = reply::refusal(msg, header, Some(question), edns, r, out);
            return reply.map_or(Decision::Drop, Decision::from);
        }
    }
    let Some((records, ttl)) = local_records(snapshot, found, question.qtype) else {
        return match found {
            Found::Alias(rule) => Decision::Alias { rule },
            _ => Decision::Forward {
                question_end: question.end(),
            },
        };
    };
    let soa = (ttl.unwrap_or(0), snapshot.content_hash as u32);
    reply::answer(msg, header, question, edns, records, soa, None, limit, out).into()
}

/// What any query must pass, whoever's the name: its size, its opcode, one question.
fn screen<'q>(query: &'q Query<'_>, transport: Transport) -> Result<&'q Question, Stop> {
    // No DNS query needs more than a few hundred octets (a name is at most 255, an OPT padded to
    // a block 468, RFC 8467); a UDP datagram of many kilobytes is an attempt to make us hold
    // memory (a slot keeps a forwarded query for its whole budget). FORMERR, not silence, so a
    // confused client learns why (RFC 1035 §4.1.1: "unable to interpret"); it is never larger
    // than the query, so it amplifies nothing. TCP carries what it needs (its own budget).
    if transport == Transport::Udp && query.bytes().len() > MAX_UDP_QUERY {
        return Err(Stop::Refuse(Refusal::FormErr));
    }
    // RFC 1035 §4.1.1: only standard queries; NOTIFY, UPDATE, ... are not implemented here.
    if query.header().opcode() != 0 {
        // RFC 8945 §5.2: a signature is checked before anything else is acted on, the opcode
        // included, and we hold no keys: a signed NOTIFY or UPDATE gets NOTAUTH / BADKEY (as
        // knot answers it). Such messages are never forwarded, whoever's the name.
        if let (Some(_), Ok(extras)) = (query.question(), query.extras())
            && let Some(Ok(tsig)) = extras.tsig
        {
            return Err(Stop::NotAuth(extras.edns, tsig));
        }
        return Err(Stop::Refuse(Refusal::NotImp));
    }
    // RFC 1035 §4.1.2 allows several questions in theory; in practice exactly one (RFC 9619).
    // [`Query::read`] reads the question only when there is exactly one.
    query.question().ok_or(Stop::Refuse(Refusal::FormErr))
}

/// What a query for a name of ours must pass before it is answered (or aliased): its signature,
/// its EDNS version, its class and type.
fn ours(question: &Question, extras: &Extras) -> Result<(), Stop> {
    // RFC 8945 §5.2: the signature is checked before anything else in the message is acted on.
    // Only names we answer get here: a forwarded query keeps its TSIG and goes upstream
    // unchanged (the upstream may know the key).
    match extras.tsig {
        None => {}
        Some(Ok(tsig)) => return Err(Stop::NotAuth(extras.edns, tsig)),
        // Misplaced (not last, or two) or unreadable: FORMERR (RFC 8945 §5.2).
        Some(Err(_)) => return Err(Stop::Refuse(Refusal::FormErr)),
    }
    // RFC 6891 §6.1.3: unknown version -> BADVERS, with an OPT carrying our version (0).
    if extras.edns.is_some_and(|e| e.version > 0) {
        return Err(Stop::Refuse(Refusal::BadVers));
    }
    // Another class, or AXFR and IXFR: there is no zone of that class, nor one to transfer.
    if (question.qclass != class::IN && question.qclass != class::ANY)
        || matches!(question.qtype, rtype::AXFR | rtype::IXFR)
    {
        return Err(Stop::Refuse(Refusal::Refused));
    }
    Ok(())
}

/// The records of type `qtype` a mapped name has in `snapshot` (`found` is what
/// [`Snapshot::find`] made of it), each with its TTL, and the TTL of the name's answers (its
/// SOA's; `None` for a reverse name whose owners are gone). `None` for a name that is not
/// answered from the mapping (an alias, or not ours). A `hosts` entry or address rule gives
/// its A / AAAA records (RFC 8482 §4.1: ANY gets every address), a reverse name the PTR records
/// of every name mapped to that address. No allocation. Always inlined: LLVM keeps it out of
/// line (two callers), and its result, an iterator of closures, then goes through memory on
/// every local answer (measured: about 3 ns of a 60 ns local answer).
#[inline(always)]
pub(crate) fn local_records<'s>(
    snapshot: &'s Snapshot,
    found: Found<'s>,
    qtype: u16,
) -> Option<(
    impl Iterator<Item = (u16, u32, Rdata<'s>)> + Clone,
    Option<u32>,
)> {
    match found {
        Found::Entry(entry) => {
            let v4 = matches!(qtype, rtype::A | rtype::ANY);
            let v6 = matches!(qtype, rtype::AAAA | rtype::ANY);
            let ttl = entry.ttl;
            let a = entry
                .v4
                .iter()
                .filter(move |_| v4)
                .map(move |a| (rtype::A, ttl, Rdata::V4(a.octets())));
            let aaaa = entry
                .v6
                .iter()
                .filter(move |_| v6)
                .map(move |a| (rtype::AAAA, ttl, Rdata::V6(a.octets())));
            Some((Either::Left(a.chain(aaaa)), Some(ttl)))
        }
        Found::Ptr(ip) => {
            let wanted = matches!(qtype, rtype::PTR | rtype::ANY);
            let records = snapshot
                .owners(ip)
                .filter(move |_| wanted)
                .map(|(owner, ttl)| (rtype::PTR, ttl, Rdata::Bytes(owner)));
            let ttl = snapshot.owners(ip).map(|(_, t)| t).min();
            Some((Either::Right(records), ttl))
        }
        Found::Alias(_) | Found::None => None,
    }
}

/// One of two iterators of the same items: [`local_records`]' two kinds of name, without a box.
#[derive(Clone)]
enum Either<L, R> {
    Left(L),
    Right(R),
}

impl<T, L: Iterator<Item = T>, R: Iterator<Item = T>> Iterator for Either<L, R> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        match self {
            Either::Left(l) => l.next(),
            Either::Right(r) => r.next(),
        }
    }
}

/// [`Query::read`] then [`decide`]: the decision on a raw message, as a worker makes it per
/// datagram (for benches, the fuzzer and tests; the servers keep the [`Query`] for what follows).
pub fn decide_bytes(
    msg: &[u8],
    snapshot: &Snapshot,
    transport: Transport,
    out: &mut [u8],
) -> Decision {
    let mut lower = [0u8; MAX_NAME_WIRE];
    match Query::read(msg, &mut lower) {
        Some(query) => decide(&query, snapshot, transport, out),
        None => Decision::Drop,
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
