//! Deciding what to do with a query, and writing local answers.
//!
//! [`decide`] is the whole per-query decision over a [`Query`] read once: drop, answer locally
//! (into the caller's reused buffer, no allocation), or forward the bytes unchanged. Every error
//! of the query itself becomes an rcode here; a query that fails later (no upstream answered,
//! no slot free) gets its reply from `upstream`'s one failure path, written by
//! [`error_reply`].

use crate::dns::query::{Asked, Query};
use crate::dns::wire::{
    self, CLASSIC_UDP_SIZE, Edns, HEADER_LEN, Header, MAX_NAME_WIRE, Question, Tsig, class, flag,
    rcode, rtype,
};
use crate::mapping::{Entry, Found, Snapshot};

/// The UDP payload size we advertise and cap our own UDP answers at: the 2020 DNS flag day
/// value, which avoids IP fragmentation on every common path (RFC 6891 §6.2.5 lets the responder
/// pick the smaller of the two sizes).
pub const OUR_UDP_PAYLOAD: u16 = 1232;

/// The largest UDP query taken (see [`decide`]): room for a TSIG or SIG(0) and large EDNS
/// options, far below what would let a flood of queries hold the relay's memory.
pub const MAX_UDP_QUERY: usize = 4096;

/// Where a query came in: bounds the size of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What happened to a query: the unit of the query counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Outcome {
    /// A mapped name answered with addresses.
    Answer = 0,
    /// A mapped name with nothing of the asked type: NOERROR, SOA in authority.
    NoData,
    /// Sent to the upstream.
    Forwarded,
    /// Upstream failed or timed out, or no forwarding slot was free.
    ServFail,
    FormErr,
    NotImp,
    /// Class other than IN for a mapped name, or a zone transfer.
    Refused,
    /// EDNS version we do not speak (RFC 6891 §6.1.3).
    BadVers,
    /// Not answered at all: unreadable header or a response (QR=1), never reflected.
    Dropped,
    /// No upstream answered in time; served the last good reply, TTL 30 (RFC 8767).
    Stale,
    /// A mapped name asked with a TSIG signature: we hold no keys, so NOTAUTH / BADKEY
    /// (RFC 8945 §5.2.1).
    NotAuth,
}

impl Outcome {
    pub(crate) const COUNT: usize = 11;
    pub(crate) const ALL: [Outcome; Outcome::COUNT] = [
        Outcome::Answer,
        Outcome::NoData,
        Outcome::Forwarded,
        Outcome::ServFail,
        Outcome::FormErr,
        Outcome::NotImp,
        Outcome::Refused,
        Outcome::BadVers,
        Outcome::Dropped,
        Outcome::Stale,
        Outcome::NotAuth,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Answer => "local_answer",
            Outcome::NoData => "local_nodata",
            Outcome::Forwarded => "forwarded",
            Outcome::ServFail => "servfail",
            Outcome::FormErr => "formerr",
            Outcome::NotImp => "notimp",
            Outcome::Refused => "refused",
            Outcome::BadVers => "badvers",
            Outcome::Dropped => "dropped",
            Outcome::Stale => "stale",
            Outcome::NotAuth => "notauth",
        }
    }
}

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

/// Decides what to do with `query`, writing any local reply into `out` (which must hold at least
/// 65535 octets for TCP; for UDP at least [`OUR_UDP_PAYLOAD`]). Reads nothing of the message
/// that [`Query::read`] has not read already.
pub fn decide(
    query: &Query<'_>,
    snapshot: &Snapshot,
    transport: Transport,
    out: &mut [u8],
) -> Decision {
    let header = query.header();
    if header.is_response() {
        return Decision::Drop;
    }
    // No DNS query needs more than a few hundred octets (a name is at most 255, an OPT padded to
    // a block 468, RFC 8467); a UDP datagram of many kilobytes is an attempt to make us hold
    // memory (a slot keeps a forwarded query for its whole budget). FORMERR, not silence, so a
    // confused client learns why (RFC 1035 §4.1.1: "unable to interpret"); it is never larger
    // than the query, so it amplifies nothing. TCP carries what it needs (its own budget).
    if transport == Transport::Udp && query.bytes().len() > MAX_UDP_QUERY {
        return error(query, rcode::FORMERR, Outcome::FormErr, out);
    }
    // RFC 1035 §4.1.1: only standard queries; NOTIFY, UPDATE, ... are not implemented here.
    if header.opcode() != 0 {
        // RFC 8945 §5.2: a signature is checked before anything else is acted on, the opcode
        // included, and we hold no keys: a signed NOTIFY or UPDATE gets NOTAUTH / BADKEY (as
        // knot answers it). Such messages are never forwarded, whoever's the name.
        if let (Some(question), Ok(extras)) = (query.question(), query.extras())
            && let Some(Ok(tsig)) = extras.tsig
        {
            let limit = reply_limit(transport, extras.edns).min(out.len());
            let mut w = Writer::new(out, limit);
            let (len, outcome) = w.notauth(query.bytes(), header, question, extras.edns, &tsig);
            return Decision::Reply { len, outcome };
        }
        return error(query, rcode::NOTIMP, Outcome::NotImp, out);
    }
    // RFC 1035 §4.1.2 allows several questions in theory; in practice exactly one (RFC 9619).
    // [`Query::read`] reads the question only when there is exactly one.
    let Some(question) = query.question() else {
        return error(query, rcode::FORMERR, Outcome::FormErr, out);
    };
    let found = snapshot.find(query.name_lower());
    if let Found::None = found {
        return Decision::Forward {
            question_end: question.end(),
        };
    }
    // From here on the name is ours and never leaves this process (forwarding it would return
    // the public address: the hairpin this daemon exists to prevent).
    let msg = query.bytes();
    let extras = match query.extras() {
        Ok(x) => x,
        // RFC 6891 §6.1.1: malformed or duplicate OPT -> FORMERR, without an OPT of our own.
        Err(_) => {
            let mut w = Writer::new(out, out.len().min(u16::MAX as usize));
            let len = w.reply(msg, header, Some(question), None, u16::from(rcode::FORMERR));
            return Decision::Reply {
                len,
                outcome: Outcome::FormErr,
            };
        }
    };
    let edns = extras.edns;
    let limit = reply_limit(transport, edns).min(out.len());
    let mut w = Writer::new(out, limit);
    // RFC 8945 §5.2: the signature is checked before anything else in the message is acted on.
    // Only names we answer get here: a forwarded query keeps its TSIG and goes upstream
    // unchanged (the upstream may know the key).
    match extras.tsig {
        None => {}
        Some(Ok(tsig)) => {
            let (len, outcome) = w.notauth(msg, header, question, edns, &tsig);
            return Decision::Reply { len, outcome };
        }
        // Misplaced (not last, or two) or unreadable: FORMERR (RFC 8945 §5.2).
        Some(Err(_)) => {
            return w.rcode(
                msg,
                header,
                question,
                edns,
                u16::from(rcode::FORMERR),
                Outcome::FormErr,
            );
        }
    }
    if let Some(e) = edns
        && e.version > 0
    {
        // RFC 6891 §6.1.3: unknown version -> BADVERS, with an OPT carrying our version (0).
        return w.rcode(
            msg,
            header,
            question,
            edns,
            rcode::BADVERS,
            Outcome::BadVers,
        );
    }
    // Another class, or AXFR and IXFR: there is no zone of that class, nor one to transfer.
    if (question.qclass != class::IN && question.qclass != class::ANY)
        || matches!(question.qtype, rtype::AXFR | rtype::IXFR)
    {
        return w.rcode(
            msg,
            header,
            question,
            edns,
            u16::from(rcode::REFUSED),
            Outcome::Refused,
        );
    }
    let serial = snapshot.content_hash as u32;
    let (len, outcome) = match found {
        Found::Entry(entry) => {
            let records = entry_records(entry, question.qtype);
            w.answer(msg, header, question, edns, records, (entry.ttl, serial))
        }
        Found::Ptr(ip) => {
            let wanted = matches!(question.qtype, rtype::PTR | rtype::ANY);
            let records = snapshot
                .owners(ip)
                .filter(|_| wanted)
                .map(|(owner, ttl)| (rtype::PTR, ttl, Rdata::Bytes(owner)));
            let ttl = snapshot.owners(ip).map(|(_, t)| t).min().unwrap_or(0);
            w.answer(msg, header, question, edns, records, (ttl, serial))
        }
        Found::Alias(rule) => return Decision::Alias { rule },
        Found::None => {
            return Decision::Forward {
                question_end: question.end(),
            };
        }
    };
    Decision::Reply { len, outcome }
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

/// The largest reply `transport` carries to a client with `edns`: over UDP its advertised size
/// capped at ours, or 512 without EDNS (RFC 6891 §6.2.3-6.2.5); over TCP a whole message.
pub(crate) fn reply_limit(transport: Transport, edns: Option<Edns>) -> usize {
    match transport {
        Transport::Tcp => u16::MAX as usize,
        Transport::Udp => edns.map_or(CLASSIC_UDP_SIZE, |e| {
            e.udp_size.min(OUR_UDP_PAYLOAD) as usize
        }),
    }
}

/// The A / AAAA records of an entry for `qtype` (RFC 8482 §4.1: ANY gets every address).
fn entry_records(entry: &Entry, qtype: u16) -> impl Iterator<Item = (u16, u32, Rdata<'_>)> {
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
    a.chain(aaaa)
}

/// RDATA of a record we write, without allocation for addresses.
#[derive(Debug, Clone)]
pub(crate) enum Rdata<'a> {
    V4([u8; 4]),
    V6([u8; 16]),
    Bytes(&'a [u8]),
}

impl Rdata<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Rdata::V4(b) => b,
            Rdata::V6(b) => b,
            Rdata::Bytes(b) => b,
        }
    }
}

/// The answer to the query `msg` (read earlier into `asked`) made of `records` (owner: the asked
/// name), or NODATA with the synthesized SOA when there are none, written into `out` (at most its
/// length, and the transport's limit): alias answers, built from the target's records. `ede`
/// goes into the OPT when the client has EDNS and there is room (RFC 8914 §4.4: a stale answer
/// says so). Returns the length, the outcome, and whether it was truncated (TC).
pub(crate) fn records_answer<'r>(
    msg: &[u8],
    asked: &Asked,
    transport: Transport,
    records: impl Iterator<Item = (u16, u32, Rdata<'r>)>,
    soa: (u32, u32),
    ede: Option<u16>,
    out: &mut [u8],
) -> (usize, Outcome, bool) {
    let edns = asked.edns(msg);
    let limit = reply_limit(transport, edns).min(out.len());
    let mut w = Writer::new(out, limit);
    let (mut len, outcome) = w.answer(msg, &asked.header, &asked.question, edns, records, soa);
    let truncated = wire::u16_at(w.buf, 2).is_ok_and(|f| f & flag::TC != 0);
    if let (Some(code), Some(_)) = (ede, edns)
        && wire::u16_at(w.buf, 10) == Ok(1)
        && w.put(&wire::ede::option(code)).is_ok()
    {
        // Our OPT is the last record and has empty RDATA: give it the one option.
        w.set_u16(len - 2, 6);
        len = w.len;
    }
    (len, outcome, truncated)
}

/// [`records_answer`] into a buffer of its own, for owned records (the fuzzer's checks): the
/// reply in `out`, and its outcome.
pub fn records_reply(
    msg: &[u8],
    asked: &Asked,
    transport: Transport,
    records: &[(u16, u32, Vec<u8>)],
    soa_ttl: u32,
    serial: u32,
    out: &mut Vec<u8>,
) -> Outcome {
    out.clear();
    out.resize(reply_limit(transport, asked.edns(msg)), 0);
    let iter = records
        .iter()
        .map(|(t, ttl, rd)| (*t, *ttl, Rdata::Bytes(rd)));
    let (len, outcome, _) =
        records_answer(msg, asked, transport, iter, (soa_ttl, serial), None, out);
    out.truncate(len);
    outcome
}

/// The size of the buffer an answer over `transport` starts in: our UDP payload size, or for
/// TCP a size most answers fit (one that does not is written again in a full-size buffer).
pub(crate) fn reply_limit_for(transport: Transport) -> usize {
    match transport {
        Transport::Udp => OUR_UDP_PAYLOAD as usize,
        Transport::Tcp => 4096,
    }
}

/// Builds the reply with rcode `rc` to a query we could not complete (`SERVFAIL` after the
/// upstreams failed), from what was read of it: the question and the query's EDNS echoed, with
/// the Extended DNS Error `ede` (RFC 8914 §2: an EDNS option, so only when the query had EDNS).
/// `out` must hold 512 octets (header, question, OPT and EDE are at most 12 + 259 + 11 + 6).
pub fn error_reply(
    msg: &[u8],
    asked: &Asked,
    rc: u8,
    ede: Option<u16>,
    out: &mut [u8],
) -> Option<usize> {
    if out.len() < HEADER_LEN {
        return None;
    }
    let limit = out.len().min(u16::MAX as usize);
    let mut w = Writer::new(out, limit);
    let edns = asked.edns(msg);
    let len = w.reply(
        msg,
        &asked.header,
        Some(&asked.question),
        edns,
        u16::from(rc),
    );
    if let (Some(code), Some(_)) = (ede, edns)
        && wire::u16_at(w.buf, 10) == Ok(1)
    {
        // Our OPT is the last record (ARCOUNT 1) and has empty RDATA: give it the one option.
        if w.put(&wire::ede::option(code)).is_ok() {
            w.set_u16(len - 2, 6);
        }
    }
    Some(w.len)
}

/// An error reply to a query that is not (or cannot be) answered: the header, the question when
/// there is exactly one and it reads (as knot does), and an OPT when the query has a readable
/// one. RFC 6891 §6.1.1: a responder MUST include an OPT in its reply to a query with one, and
/// §7: a reply without it reads as "this server has no EDNS" (dig warns "EDNS query returned
/// status NOTIMP"). The OPT comes after the questions, so with QDCOUNT 0 right after the
/// header. Never an OPT for a query without one (RFC 6891 §7; busybox's resolver rejects it).
fn error(query: &Query<'_>, rc: u8, outcome: Outcome, out: &mut [u8]) -> Decision {
    if out.len() < HEADER_LEN {
        return Decision::Drop;
    }
    // Header, question and OPT: at most 12 + 259 + 11 octets, under 512.
    let limit = out.len().min(u16::MAX as usize);
    let mut w = Writer::new(out, limit);
    let len = w.reply(
        query.bytes(),
        query.header(),
        query.question(),
        query.edns(),
        u16::from(rc),
    );
    Decision::Reply { len, outcome }
}

/// A bounded writer over the caller's buffer: a write that would pass `limit` fails, and the
/// caller then truncates (RFC 2181 §9).
struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    limit: usize,
}

/// Size of our OPT record: root owner, type, class, TTL, empty RDATA.
const OPT_LEN: usize = 11;

/// Pointer to the question name at offset 12 (RFC 1035 §4.1.4): the owner of every record we
/// write, so answers carry the name exactly as the client spelled it (0x20 preserved).
const QNAME_PTR: [u8; 2] = [0xC0, 0x0C];

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8], limit: usize) -> Writer<'a> {
        Writer { buf, len: 0, limit }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let end = self.len + bytes.len();
        if end > self.limit {
            return Err(());
        }
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn set_u16(&mut self, at: usize, v: u16) {
        self.buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Header + echoed question (if any) + OPT, no records: error and refusal replies.
    /// `rc` may be an extended rcode (> 15), split between header and OPT (RFC 6891 §6.1.3).
    fn reply(
        &mut self,
        msg: &[u8],
        header: &Header,
        question: Option<&Question>,
        edns: Option<Edns>,
        rc: u16,
    ) -> usize {
        self.len = 0;
        self.header(header, 0, rc);
        // Both fit any buffer of 512 octets or more: a question is at most 12 + 255 + 4 octets.
        if let Some(q) = question
            && self.put(&msg[HEADER_LEN..q.end()]).is_ok()
        {
            self.set_u16(4, 1);
        }
        if let Some(e) = edns
            && self.opt(e, rc).is_ok()
        {
            self.set_u16(10, 1);
        }
        self.len
    }

    /// The header of a reply: ID, QR, the query's opcode (RFC 1035 §4.1.1: copied; not QUERY
    /// only in NOTIMP replies), RD and CD copied, RA (we recurse, through the upstream).
    /// A reply carrying only `rc` (and the question, and an OPT when the query had one), as
    /// the decision for `outcome`.
    fn rcode(
        &mut self,
        msg: &[u8],
        header: &Header,
        question: &Question,
        edns: Option<Edns>,
        rc: u16,
        outcome: Outcome,
    ) -> Decision {
        let len = self.reply(msg, header, Some(question), edns, rc);
        Decision::Reply { len, outcome }
    }

    fn header(&mut self, header: &Header, flags_extra: u16, rc: u16) {
        let flags = flag::QR
            | flag::RA
            | flags_extra
            | (header.flags & (flag::OPCODE_MASK | flag::RD | flag::CD))
            | (rc & 0x000f);
        let _ = self.put(&header.id.to_be_bytes());
        let _ = self.put(&flags.to_be_bytes());
        let _ = self.put(&[0; 8]);
    }

    /// Our OPT record (RFC 6891 §6.1.2): payload size, extended rcode, version 0, DO echoed
    /// (RFC 3225 §3), no options.
    fn opt(&mut self, e: Edns, rc: u16) -> Result<(), ()> {
        let ext = (rc >> 4) as u8;
        let do_bit: u8 = if e.dnssec_ok { 0x80 } else { 0 };
        let p = OUR_UDP_PAYLOAD.to_be_bytes();
        self.put(&[0, 0, 41, p[0], p[1], ext, 0, do_bit, 0, 0, 0])
    }

    /// Header, question, `records` (owner: the asked name), or the SOA when there are none,
    /// then OPT; TC instead of the records when they do not fit.
    ///
    /// The synthesized SOA is owned by the asked name, so it says "this name is the apex of a
    /// zone of its own". That is the one owner that claims nothing about names we do not own:
    /// an SOA at the parent or the root would tell a caching resolver that we are the source
    /// of truth for `db.example.com.` or `.` (it may cache that SOA and answer the real zone's
    /// SOA queries with it). Resolvers take the authority SOA of a NODATA as the SOA of the
    /// zone holding the name (RFC 2308 §3, its owner an ancestor-or-self of the name), so the
    /// claim has to hold everywhere: an SOA query for the name gets that same SOA in the
    /// answer section, not a NODATA whose SOA contradicts it. Negative answers stay cacheable
    /// for the TTL (SOA TTL = MINIMUM = the name's TTL, RFC 2308 §5).
    fn answer<'r>(
        &mut self,
        msg: &[u8],
        header: &Header,
        question: &Question,
        edns: Option<Edns>,
        records: impl Iterator<Item = (u16, u32, Rdata<'r>)>,
        (soa_ttl, serial): (u32, u32),
    ) -> (usize, Outcome) {
        self.header(header, flag::AA, u16::from(rcode::NOERROR));
        let _ = self.put(&msg[HEADER_LEN..question.end()]);
        self.set_u16(4, 1);
        // The OPT record must fit after the records: keep its room out of their budget (the
        // fuzzer found replies whose OPT was counted but cut off).
        let full_limit = self.limit;
        if edns.is_some() {
            self.limit -= OPT_LEN;
        }
        let mut count: u16 = 0;
        let fits = (|| -> Result<(), ()> {
            for (rtype, ttl, rdata) in records {
                self.record(rtype, ttl, rdata.as_slice())?;
                count += 1;
            }
            if count == 0 {
                self.soa(soa_ttl, serial, question.name_len)?;
                if question.qtype == rtype::SOA {
                    // The name is the apex its own NODATA answers claim (see above).
                    count = 1;
                    self.set_u16(6, 1);
                } else {
                    // NODATA (RFC 2308 §2.2): SOA in authority so the negative is cacheable.
                    self.set_u16(8, 1);
                }
            } else {
                self.set_u16(6, count);
            }
            Ok(())
        })()
        .is_ok();
        if !fits {
            // RFC 2181 §9: an RRset that does not fit is not split; send TC and let the client
            // retry over TCP. Keep the question and the OPT.
            self.len = question.end();
            self.set_u16(6, 0);
            self.set_u16(8, 0);
            let flags = wire::u16_at(self.buf, 2).unwrap_or(0) | flag::TC;
            self.set_u16(2, flags);
        }
        self.limit = full_limit;
        if let Some(e) = edns {
            let _ = self.opt(e, 0);
            self.set_u16(10, 1);
        }
        let outcome = if count == 0 && fits {
            Outcome::NoData
        } else {
            Outcome::Answer
        };
        (self.len, outcome)
    }

    /// NOTAUTH for a TSIG-signed query (we know no keys: RFC 8945 §5.2.1, error BADKEY), with
    /// the TSIG record of an unsigned error (§5.3.2): the query's key name and algorithm (both
    /// written out uncompressed), its Time Signed and Fudge, MAC Size 0 and no MAC, its Original
    /// ID, Error BADKEY, no Other Data. The TSIG record is the last of the additional section,
    /// after our OPT. TC (question and OPT kept) if it does not fit the client's size.
    fn notauth(
        &mut self,
        msg: &[u8],
        header: &Header,
        question: &Question,
        edns: Option<Edns>,
        tsig: &Tsig,
    ) -> (usize, Outcome) {
        let mut key = [0u8; MAX_NAME_WIRE];
        let mut algorithm = [0u8; MAX_NAME_WIRE];
        let (Ok((key_len, _)), Ok((alg_len, _)), Some(time_and_fudge)) = (
            wire::read_name(msg, tsig.key, &mut key),
            wire::read_name(msg, tsig.algorithm, &mut algorithm),
            msg.get(tsig.time_signed..tsig.time_signed + 8),
        ) else {
            // `read_extras` checked all of it; stay total anyway.
            let len = self.reply(msg, header, Some(question), edns, u16::from(rcode::FORMERR));
            return (len, Outcome::FormErr);
        };
        self.len = 0;
        self.header(header, 0, u16::from(rcode::NOTAUTH));
        let _ = self.put(&msg[HEADER_LEN..question.end()]);
        self.set_u16(4, 1);
        let opt_len = if edns.is_some() { OPT_LEN } else { 0 };
        let tsig_len = key_len + 10 + alg_len + 16;
        let fits = self.len + opt_len + tsig_len <= self.limit;
        let mut arcount = 0;
        if let Some(e) = edns {
            let _ = self.opt(e, 0);
            arcount += 1;
        }
        if fits {
            let t = rtype::TSIG.to_be_bytes();
            let c = class::ANY.to_be_bytes();
            let rdlen = ((alg_len + 16) as u16).to_be_bytes();
            let id = tsig.original_id.to_be_bytes();
            let badkey = rcode::BADKEY.to_be_bytes();
            // Owner, TYPE, CLASS ANY, TTL 0, RDLENGTH; RDATA: algorithm, Time Signed + Fudge,
            // MAC Size 0, Original ID, Error, Other Len 0.
            let _ = self.put(&key[..key_len]);
            let _ = self.put(&[t[0], t[1], c[0], c[1], 0, 0, 0, 0, rdlen[0], rdlen[1]]);
            let _ = self.put(&algorithm[..alg_len]);
            let _ = self.put(time_and_fudge);
            let _ = self.put(&[0, 0, id[0], id[1], badkey[0], badkey[1], 0, 0]);
            arcount += 1;
        } else {
            let flags = wire::u16_at(self.buf, 2).unwrap_or(0) | flag::TC;
            self.set_u16(2, flags);
        }
        self.set_u16(10, arcount);
        (self.len, Outcome::NotAuth)
    }

    fn record(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) -> Result<(), ()> {
        let t = rtype.to_be_bytes();
        let ttl = ttl.to_be_bytes();
        let l = (rdata.len() as u16).to_be_bytes();
        self.put(&[
            QNAME_PTR[0],
            QNAME_PTR[1],
            t[0],
            t[1],
            0,
            1,
            ttl[0],
            ttl[1],
            ttl[2],
            ttl[3],
            l[0],
            l[1],
        ])?;
        self.put(rdata)
    }

    /// A synthesized SOA owned by the asked name: MNAME is the name itself, RNAME
    /// `hostmaster.<name>`, SERIAL follows the mapping's content hash (changes on reload), and
    /// MINIMUM equals the TTL so the negative-cache time is the mapping's TTL (RFC 2308 §5).
    /// `hostmaster.` + a name near 255 octets would exceed the limit (RFC 1035 §2.3.4): such
    /// names get `hostmaster.invalid.` (found by the fuzzer).
    fn soa(&mut self, ttl: u32, serial: u32, name_len: usize) -> Result<(), ()> {
        const HOSTMASTER: &[u8] = b"\x0ahostmaster";
        let mut rdata = [0u8; 2 + 11 + 9 + 20];
        rdata[..2].copy_from_slice(&QNAME_PTR);
        rdata[2..13].copy_from_slice(HOSTMASTER);
        let rname_end = if name_len + HOSTMASTER.len() <= MAX_NAME_WIRE {
            rdata[13..15].copy_from_slice(&QNAME_PTR);
            15
        } else {
            rdata[13..22].copy_from_slice(b"\x07invalid\x00");
            22
        };
        let fields = [serial, 3600, 600, 86400, ttl];
        for (i, f) in fields.iter().enumerate() {
            let at = rname_end + 4 * i;
            rdata[at..at + 4].copy_from_slice(&f.to_be_bytes());
        }
        self.record(rtype::SOA, ttl, &rdata[..rname_end + 20])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::file::parse;

    fn query(name: &[u8], qtype: u16, edns_size: Option<u16>) -> Vec<u8> {
        let mut m = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(name);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        if let Some(size) = edns_size {
            m[11] = 1;
            let s = size.to_be_bytes();
            m.extend_from_slice(&[0, 0, 41, s[0], s[1], 0, 0, 0, 0, 0, 0]);
        }
        m
    }

    /// Regression (fuzzer): with EDNS, the records must leave room for the OPT record.
    #[test]
    fn opt_always_fits_after_the_records() {
        let ips: Vec<String> = (1..=40).map(|i| format!("10.1.0.{i}")).collect();
        let snap = parse(
            &format!("hosts:\n  many.db.example.com: [{}]\n", ips.join(",")),
            "t",
            5,
        )
        .unwrap();
        let mut out = vec![0u8; 65535];
        for size in 512..=1232u16 {
            let q = query(
                b"\x04MANY\x02db\x07example\x03com\x00",
                rtype::A,
                Some(size),
            );
            let Decision::Reply { len, .. } = decide_bytes(&q, &snap, Transport::Udp, &mut out)
            else {
                panic!("a reply");
            };
            assert!(len <= size as usize);
            // The last 11 octets are our OPT record, and ARCOUNT says 1.
            assert_eq!(&out[len - 11..len - 8], &[0, 0, 41], "size {size}");
            assert_eq!(u16::from_be_bytes([out[10], out[11]]), 1);
        }
    }

    /// Regression (fuzzer): `hostmaster.` + a 253-character name would pass 255 octets.
    #[test]
    fn soa_rname_stays_within_255_octets() {
        let labels = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ];
        let name = labels.join(".");
        let snap = parse(&format!("hosts:\n  {name}: 10.0.0.1\n"), "t", 5).unwrap();
        let mut wire = Vec::new();
        for l in &labels {
            wire.push(l.len() as u8);
            wire.extend_from_slice(l.as_bytes());
        }
        wire.push(0);
        let q = query(&wire, rtype::AAAA, None);
        let mut out = vec![0u8; 1232];
        let Decision::Reply { len, outcome } = decide_bytes(&q, &snap, Transport::Udp, &mut out)
        else {
            panic!("a reply");
        };
        assert_eq!(outcome, Outcome::NoData);
        // SOA RDATA: MNAME pointer (2), RNAME "hostmaster.invalid." (20), five u32 (20).
        let rdlen = u16::from_be_bytes([out[len - 44], out[len - 43]]);
        assert_eq!(rdlen, 2 + 20 + 20);
        assert_eq!(&out[len - 40..len - 20], b"\x0ahostmaster\x07invalid\x00");
    }
}

/// [`decide`] as a table: one row per branch, from the query bytes to what comes out.
#[cfg(test)]
mod decide_table {
    use super::*;
    use crate::mapping::file::parse;

    const MAPPING: &str = r#"
ttl: 5
hosts:
  db-0.db.example.com: 10.42.0.12
  db-1.db.example.com: [10.42.0.13, "fd00::13"]
  sixty.db.example.com: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 10.0.0.5, 10.0.0.6, 10.0.0.7, 10.0.0.8, 10.0.0.9, 10.0.0.10, 10.0.0.11, 10.0.0.12, 10.0.0.13, 10.0.0.14, 10.0.0.15, 10.0.0.16, 10.0.0.17, 10.0.0.18, 10.0.0.19, 10.0.0.20, 10.0.0.21, 10.0.0.22, 10.0.0.23, 10.0.0.24, 10.0.0.25, 10.0.0.26, 10.0.0.27, 10.0.0.28, 10.0.0.29, 10.0.0.30, 10.0.0.31, 10.0.0.32, 10.0.0.33, 10.0.0.34, 10.0.0.35, 10.0.0.36, 10.0.0.37, 10.0.0.38, 10.0.0.39, 10.0.0.40, 10.0.0.41, 10.0.0.42, 10.0.0.43, 10.0.0.44, 10.0.0.45, 10.0.0.46, 10.0.0.47, 10.0.0.48, 10.0.0.49, 10.0.0.50, 10.0.0.51, 10.0.0.52, 10.0.0.53, 10.0.0.54, 10.0.0.55, 10.0.0.56, 10.0.0.57, 10.0.0.58, 10.0.0.59, 10.0.0.60]
rules:
  - host: legacy.example.com
    result: 10.1.2.3
  - host: 'db-(\d+)\.replica\.test'
    regex: true
    result: 'db-${1}.db.example.com'
"#;

    const DB0: &str = "Db-0.db.example.com";

    /// A query, built field by field.
    #[derive(Clone)]
    struct Q {
        flags: u16,
        questions: Vec<Vec<u8>>,
        /// (section: 0 answer, 1 authority, 2 additional; record bytes)
        records: Vec<(usize, Vec<u8>)>,
    }

    fn wire_name(text: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for l in text.split('.').filter(|l| !l.is_empty()) {
            w.push(l.len() as u8);
            w.extend_from_slice(l.as_bytes());
        }
        w.push(0);
        w
    }

    fn q(name: &str, qtype: u16) -> Q {
        Q::none().question(name, qtype, class::IN)
    }

    impl Q {
        fn none() -> Q {
            Q {
                flags: flag::RD,
                questions: Vec::new(),
                records: Vec::new(),
            }
        }
        fn question(mut self, name: &str, qtype: u16, qclass: u16) -> Q {
            let mut b = wire_name(name);
            b.extend_from_slice(&qtype.to_be_bytes());
            b.extend_from_slice(&qclass.to_be_bytes());
            self.questions.push(b);
            self
        }
        fn class(self, qclass: u16) -> Q {
            let mut s = self;
            let b = s.questions.last_mut().unwrap();
            let n = b.len();
            b[n - 2..].copy_from_slice(&qclass.to_be_bytes());
            s
        }
        fn flags(mut self, flags: u16) -> Q {
            self.flags = flags;
            self
        }
        fn opcode(self, opcode: u16) -> Q {
            let f = self.flags | (opcode << 11);
            self.flags(f)
        }
        fn record(mut self, section: usize, bytes: Vec<u8>) -> Q {
            self.records.push((section, bytes));
            self
        }
        /// OPT with UDP size `size`, `version`, DO set.
        fn edns_v(self, size: u16, version: u8) -> Q {
            let s = size.to_be_bytes();
            self.record(2, vec![0, 0, 41, s[0], s[1], 0, version, 0x80, 0, 0, 0])
        }
        fn edns(self, size: u16) -> Q {
            self.edns_v(size, 0)
        }
        /// A TSIG record, key `k.`, hmac-sha256, empty MAC.
        fn tsig(self, section: usize) -> Q {
            let mut r = b"\x01k\x00".to_vec();
            r.extend_from_slice(&rtype::TSIG.to_be_bytes());
            r.extend_from_slice(&[0, 255, 0, 0, 0, 0, 0, 29]);
            r.extend_from_slice(b"\x0bhmac-sha256\x00");
            r.extend_from_slice(&[0, 0, 0x65, 0, 0, 0, 1, 44, 0, 0, 0xab, 0xcd, 0, 0, 0, 0]);
            self.record(section, r)
        }
        fn bytes(&self) -> Vec<u8> {
            let count = |s| self.records.iter().filter(|(x, _)| *x == s).count() as u16;
            let mut m = vec![0xab, 0xcd];
            for w in [
                self.flags,
                self.questions.len() as u16,
                count(0),
                count(1),
                count(2),
            ] {
                m.extend_from_slice(&w.to_be_bytes());
            }
            for b in &self.questions {
                m.extend_from_slice(b);
            }
            // In the order given: a test may put records out of section order on purpose.
            for (_, r) in &self.records {
                m.extend_from_slice(r);
            }
            m
        }
    }

    /// What a row expects.
    #[derive(Debug, PartialEq, Eq)]
    enum Want {
        /// rcode (extended rcodes whole), AA, TC, [QD, AN, NS, AR], outcome.
        Reply(u16, bool, bool, [u16; 4], Outcome),
        Forward,
        Alias(usize),
        Drop,
    }
    use Outcome as O;
    use Transport::{Tcp, Udp};
    use Want::Reply as R;

    const NOERROR: u16 = rcode::NOERROR as u16;
    const FORMERR: u16 = rcode::FORMERR as u16;
    const NOTIMP: u16 = rcode::NOTIMP as u16;
    const REFUSED: u16 = rcode::REFUSED as u16;
    const NOTAUTH: u16 = rcode::NOTAUTH as u16;

    /// What `decide` made of the query, in the terms of [`Want`].
    fn got(msg: &[u8], d: Decision, out: &[u8]) -> Want {
        match d {
            Decision::Drop => Want::Drop,
            Decision::Alias { rule } => Want::Alias(rule),
            Decision::Forward { question_end } => {
                assert!(question_end > HEADER_LEN && question_end <= msg.len());
                Want::Forward
            }
            Decision::Reply { len, outcome } => {
                let r = &out[..len];
                assert_eq!(r[..2], msg[..2], "ID");
                let h = Header::read(r).unwrap();
                assert!(h.is_response());
                assert_eq!(
                    h.opcode(),
                    Header::read(msg).unwrap().opcode(),
                    "opcode echoed"
                );
                assert_eq!(h.flags & flag::RD, flag::RD, "RD copied");
                let mut rc = h.flags & 0x000f;
                if h.arcount > 0 {
                    // When our OPT (11 octets) is the last record, its extended-rcode octet
                    // holds the high bits (a TSIG record, last, needs none: NOTAUTH is 9).
                    let opt = r.len() - 11;
                    if r[opt..opt + 3] == [0, 0, 41] {
                        rc |= u16::from(r[opt + 5]) << 4;
                    }
                }
                R(
                    rc,
                    h.flags & flag::AA != 0,
                    h.flags & flag::TC != 0,
                    [h.qdcount, h.ancount, h.nscount, h.arcount],
                    outcome,
                )
            }
        }
    }

    #[test]
    fn every_branch() {
        let snap = parse(MAPPING, "t", 5).unwrap();
        let ptr = "12.0.42.10.in-addr.arpa";
        #[rustfmt::skip]
        let rows: Vec<(&str, Transport, Vec<u8>, Want)> = vec![
            // Answers.
            ("A", Udp, q(DB0, rtype::A).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("A, EDNS", Udp, q(DB0, rtype::A).edns(1232).bytes(), R(NOERROR, true, false, [1, 1, 0, 1], O::Answer)),
            ("A, TCP", Tcp, q(DB0, rtype::A).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("AAAA", Udp, q("db-1.db.example.com", rtype::AAAA).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("ANY: every address", Udp, q("db-1.db.example.com", rtype::ANY).bytes(), R(NOERROR, true, false, [1, 2, 0, 0], O::Answer)),
            ("class ANY", Udp, q(DB0, rtype::A).class(class::ANY).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("rule with an address", Udp, q("legacy.example.com", rtype::A).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("PTR of a mapped address", Udp, q(ptr, rtype::PTR).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("SOA: the NODATA's SOA, as the answer", Udp, q(DB0, rtype::SOA).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            ("SOA of a reverse name", Udp, q(ptr, rtype::SOA).bytes(), R(NOERROR, true, false, [1, 1, 0, 0], O::Answer)),
            // NODATA: SOA in authority.
            ("AAAA, no IPv6", Udp, q(DB0, rtype::AAAA).bytes(), R(NOERROR, true, false, [1, 0, 1, 0], O::NoData)),
            ("MX", Udp, q(DB0, 15).bytes(), R(NOERROR, true, false, [1, 0, 1, 0], O::NoData)),
            ("A of a reverse name", Udp, q(ptr, rtype::A).bytes(), R(NOERROR, true, false, [1, 0, 1, 0], O::NoData)),
            ("NODATA, EDNS", Udp, q(DB0, rtype::AAAA).edns(512).bytes(), R(NOERROR, true, false, [1, 0, 1, 1], O::NoData)),
            // Size: 60 A records are 972 octets of answer.
            ("no EDNS: 512, TC", Udp, q("sixty.db.example.com", rtype::A).bytes(), R(NOERROR, true, true, [1, 0, 0, 0], O::Answer)),
            ("EDNS 600: TC, OPT kept", Udp, q("sixty.db.example.com", rtype::A).edns(600).bytes(), R(NOERROR, true, true, [1, 0, 0, 1], O::Answer)),
            ("EDNS 1232: fits", Udp, q("sixty.db.example.com", rtype::A).edns(1232).bytes(), R(NOERROR, true, false, [1, 60, 0, 1], O::Answer)),
            ("EDNS 4096: capped at 1232, fits", Udp, q("sixty.db.example.com", rtype::A).edns(4096).bytes(), R(NOERROR, true, false, [1, 60, 0, 1], O::Answer)),
            ("EDNS below 512 counts as 512", Udp, q("sixty.db.example.com", rtype::A).edns(100).bytes(), R(NOERROR, true, true, [1, 0, 0, 1], O::Answer)),
            ("TCP: whole", Tcp, q("sixty.db.example.com", rtype::A).bytes(), R(NOERROR, true, false, [1, 60, 0, 0], O::Answer)),
            // Refusals and EDNS version.
            ("class CH", Udp, q(DB0, rtype::A).class(3).bytes(), R(REFUSED, false, false, [1, 0, 0, 0], O::Refused)),
            ("class CH, EDNS", Udp, q(DB0, rtype::A).class(3).edns(1232).bytes(), R(REFUSED, false, false, [1, 0, 0, 1], O::Refused)),
            ("AXFR", Tcp, q(DB0, rtype::AXFR).bytes(), R(REFUSED, false, false, [1, 0, 0, 0], O::Refused)),
            ("IXFR", Udp, q(DB0, rtype::IXFR).bytes(), R(REFUSED, false, false, [1, 0, 0, 0], O::Refused)),
            ("EDNS version 1", Udp, q(DB0, rtype::A).edns_v(1232, 1).bytes(), R(rcode::BADVERS, false, false, [1, 0, 0, 1], O::BadVers)),
            // Opcode and question count: OPT exactly when the query had one.
            ("NOTIFY", Udp, q(DB0, rtype::SOA).opcode(4).bytes(), R(NOTIMP, false, false, [1, 0, 0, 0], O::NotImp)),
            ("UPDATE, EDNS", Udp, q(DB0, rtype::SOA).opcode(5).edns(1232).bytes(), R(NOTIMP, false, false, [1, 0, 0, 1], O::NotImp)),
            ("NOTIFY, TSIG: the signature first", Udp, q(DB0, rtype::SOA).opcode(4).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 1], O::NotAuth)),
            ("UPDATE of a zone not ours, EDNS, TSIG", Tcp, q("example.org", rtype::SOA).opcode(5).edns(1232).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 2], O::NotAuth)),
            ("NOTIFY, TSIG misplaced: NOTIMP", Udp, q(DB0, rtype::SOA).opcode(4).tsig(1).bytes(), R(NOTIMP, false, false, [1, 0, 0, 0], O::NotImp)),
            ("opcode 15 without a question, EDNS", Udp, Q::none().opcode(15).edns(1232).bytes(), R(NOTIMP, false, false, [0, 0, 0, 1], O::NotImp)),
            ("QDCOUNT 0", Udp, Q::none().bytes(), R(FORMERR, false, false, [0, 0, 0, 0], O::FormErr)),
            ("QDCOUNT 0, EDNS right after the header", Udp, Q::none().edns(1232).bytes(), R(FORMERR, false, false, [0, 0, 0, 1], O::FormErr)),
            ("QDCOUNT 2", Udp, q(DB0, rtype::A).question(DB0, rtype::A, 1).bytes(), R(FORMERR, false, false, [0, 0, 0, 0], O::FormErr)),
            ("QDCOUNT 2, EDNS", Tcp, q(DB0, rtype::A).question(DB0, rtype::A, 1).edns(1232).bytes(), R(FORMERR, false, false, [0, 0, 0, 1], O::FormErr)),
            ("unreadable question", Udp, q(DB0, rtype::A).bytes()[..20].to_vec(), R(FORMERR, false, false, [0, 0, 0, 0], O::FormErr)),
            ("two OPT records: no OPT back", Udp, q(DB0, rtype::A).edns(1232).edns(1232).bytes(), R(FORMERR, false, false, [1, 0, 0, 0], O::FormErr)),
            ("OPT in the answer section", Udp, q(DB0, rtype::A).record(0, vec![0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]).bytes(), R(FORMERR, false, false, [1, 0, 0, 0], O::FormErr)),
            // TSIG: NOTAUTH / BADKEY for our names, forwarded otherwise.
            ("TSIG", Udp, q(DB0, rtype::A).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 1], O::NotAuth)),
            ("TSIG, EDNS", Tcp, q(DB0, rtype::A).edns(1232).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 2], O::NotAuth)),
            ("TSIG on an alias name", Udp, q("db-1.replica.test", rtype::A).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 1], O::NotAuth)),
            ("TSIG, EDNS version 1: TSIG first", Udp, q(DB0, rtype::A).edns_v(1232, 1).tsig(2).bytes(), R(NOTAUTH, false, false, [1, 0, 0, 2], O::NotAuth)),
            ("TSIG before the OPT", Udp, q(DB0, rtype::A).tsig(2).edns(1232).bytes(), R(FORMERR, false, false, [1, 0, 0, 1], O::FormErr)),
            ("TSIG in the authority section", Udp, q(DB0, rtype::A).tsig(1).bytes(), R(FORMERR, false, false, [1, 0, 0, 0], O::FormErr)),
            ("TSIG for a forwarded name", Udp, q("example.org", rtype::A).tsig(2).bytes(), Want::Forward),
            // Not ours, and not answered at all.
            ("forwarded", Udp, q("example.org", rtype::A).edns(1232).bytes(), Want::Forward),
            ("forwarded, bad OPT: the upstream's business", Udp, q("example.org", rtype::A).edns(1232).edns(1232).bytes(), Want::Forward),
            ("PTR of an unmapped address", Udp, q("13.0.0.99.in-addr.arpa", rtype::PTR).bytes(), Want::Forward),
            ("alias rule", Tcp, q("DB-7.replica.test", rtype::AAAA).bytes(), Want::Alias(1)),
            ("a response", Udp, q(DB0, rtype::A).flags(flag::QR).bytes(), Want::Drop),
            ("shorter than a header", Udp, q(DB0, rtype::A).bytes()[..11].to_vec(), Want::Drop),
        ];
        let mut out = vec![0u8; u16::MAX as usize];
        let mut failed = Vec::new();
        for (what, transport, msg, want) in rows {
            let limit = match transport {
                Udp => OUR_UDP_PAYLOAD as usize,
                Tcp => u16::MAX as usize,
            };
            let d = decide_bytes(&msg, &snap, transport, &mut out[..limit]);
            let got = got(&msg, d, &out);
            if got != want {
                failed.push(format!("{what}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failed.is_empty(), "\n{}", failed.join("\n"));
    }
}
