//! Writing replies into the caller's buffer: every builder here returns a [`Reply`] (its length
//! in that buffer and the [`Outcome`] it counts as), and every reply that carries only an rcode
//! is a [`Refusal`], mapped to its rcode, Extended DNS Error and outcome in one place
//! ([`Refusal::code`]). What to reply is decided in [`crate::dns::decide`]; failures after a
//! query was passed on are turned into a [`Refusal`] by `upstream::failure_reply`.
//!
//! Nothing here allocates (but [`records_reply`], the fuzzer's owned-records entry point): the
//! writer is bounded by the caller's buffer and by the transport's limit, and a reply that does
//! not fit is truncated (TC) as RFC 2181 §9 asks.

use crate::dns::outcome::{Outcome, Transport};
use crate::dns::query::Asked;
use crate::dns::wire::{
    self, CLASSIC_UDP_SIZE, Edns, HEADER_LEN, Header, MAX_NAME_WIRE, Question, Tsig, class, flag,
    rcode, rtype,
};

/// The UDP payload size we advertise and cap our own UDP answers at: the 2020 DNS flag day
/// value, which avoids IP fragmentation on every common path (RFC 6891 §6.2.5 lets the responder
/// pick the smaller of the two sizes).
pub const OUR_UDP_PAYLOAD: u16 = 1232;

/// A reply written into the caller's buffer: `out[..len]`, counted as `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub len: usize,
    pub outcome: Outcome,
}

/// A reply that carries only an rcode (and the question, and an OPT when the query had one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A message we cannot interpret (RFC 1035 §4.1.1).
    FormErr,
    /// An opcode other than QUERY (RFC 1035 §4.1.1).
    NotImp,
    /// A class we hold no zone of, or a zone transfer.
    Refused,
    /// An EDNS version we do not speak (RFC 6891 §6.1.3): an extended rcode.
    BadVers,
    /// No upstream answer, with the Extended DNS Error that says why, if one does (RFC 8914).
    ServFail(Option<u16>),
}

impl Refusal {
    /// The one mapping of a refusal to what the reply carries: its rcode (extended rcodes
    /// whole, split between header and OPT by the writer), its Extended DNS Error, and the
    /// outcome it counts as.
    pub fn code(self) -> (u16, Option<u16>, Outcome) {
        match self {
            Refusal::FormErr => (u16::from(rcode::FORMERR), None, Outcome::FormErr),
            Refusal::NotImp => (u16::from(rcode::NOTIMP), None, Outcome::NotImp),
            Refusal::Refused => (u16::from(rcode::REFUSED), None, Outcome::Refused),
            Refusal::BadVers => (rcode::BADVERS, None, Outcome::BadVers),
            Refusal::ServFail(ede) => (u16::from(rcode::SERVFAIL), ede, Outcome::ServFail),
        }
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

/// The size of the buffer an answer over `transport` starts in: our UDP payload size, or for
/// TCP a size most answers fit (one that does not is written again in a full-size buffer, see
/// [`is_truncated`]).
pub(crate) fn reply_limit_for(transport: Transport) -> usize {
    match transport {
        Transport::Udp => OUR_UDP_PAYLOAD as usize,
        Transport::Tcp => 4096,
    }
}

/// Whether the reply `out[..len]` says TC: over TCP, a sign that it was written into a buffer
/// too small (RFC 7766 §8: over TCP the whole answer always fits), to write again in a full one.
pub(crate) fn is_truncated(out: &[u8], len: usize) -> bool {
    len >= 4 && wire::u16_at(out, 2).is_ok_and(|f| f & flag::TC != 0)
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

/// The reply for `refusal` to the query `msg`: the header, the question when there is exactly
/// one and it reads (as knot does), and an OPT when `edns` is the query's readable one (with the
/// refusal's Extended DNS Error in it, when there is room). RFC 6891 §6.1.1: a responder MUST
/// include an OPT in its reply to a query with one, and §7: a reply without it reads as "this
/// server has no EDNS" (dig warns "EDNS query returned status NOTIMP"). The OPT comes after the
/// questions, so with QDCOUNT 0 right after the header. Never an OPT for a query without one
/// (RFC 6891 §7; busybox's resolver rejects it). `None` when `out` cannot hold a header; header,
/// question, OPT and EDE are at most 12 + 259 + 11 + 6 octets, so 512 always do.
pub(crate) fn refusal(
    msg: &[u8],
    header: &Header,
    question: Option<&Question>,
    edns: Option<Edns>,
    refusal: Refusal,
    out: &mut [u8],
) -> Option<Reply> {
    if out.len() < HEADER_LEN {
        return None;
    }
    let (rc, ede, outcome) = refusal.code();
    let limit = out.len().min(u16::MAX as usize);
    let mut w = Writer::new(out, limit);
    w.reply(msg, header, question, edns, rc);
    if let (Some(code), Some(_)) = (ede, edns) {
        w.add_ede(code);
    }
    Some(Reply {
        len: w.len,
        outcome,
    })
}

/// [`refusal`] for a query read earlier into `asked` (the SERVFAIL of a failed forward): the
/// question and the query's EDNS echoed.
pub fn failure(msg: &[u8], asked: &Asked, why: Refusal, out: &mut [u8]) -> Option<Reply> {
    let edns = asked.edns(msg);
    refusal(msg, &asked.header, Some(&asked.question), edns, why, out)
}

/// The answer to the query `msg` made of `records` (owner: the asked name), or NODATA with the
/// synthesized SOA (`soa`: TTL and serial) when there are none, written into `out` up to
/// `limit`; TC instead of the records when they do not fit. `ede` goes into the OPT when the
/// client has EDNS and there is room (RFC 8914 §4.4: a stale answer says so).
#[allow(clippy::too_many_arguments)]
pub(crate) fn answer<'r>(
    msg: &[u8],
    header: &Header,
    question: &Question,
    edns: Option<Edns>,
    records: impl Iterator<Item = (u16, u32, Rdata<'r>)>,
    soa: (u32, u32),
    ede: Option<u16>,
    limit: usize,
    out: &mut [u8],
) -> Reply {
    let mut w = Writer::new(out, limit.min(out.len()));
    let reply = w.answer(msg, header, question, edns, records, soa);
    if let (Some(code), Some(_)) = (ede, edns) {
        w.add_ede(code);
    }
    Reply {
        len: w.len,
        ..reply
    }
}

/// [`answer`] to the query `msg` (read earlier into `asked`) over `transport`: alias answers,
/// built from the target's records (the caller checks [`is_truncated`] for a TCP retry).
pub(crate) fn records_answer<'r>(
    msg: &[u8],
    asked: &Asked,
    transport: Transport,
    records: impl Iterator<Item = (u16, u32, Rdata<'r>)>,
    soa: (u32, u32),
    ede: Option<u16>,
    out: &mut [u8],
) -> Reply {
    let edns = asked.edns(msg);
    let limit = reply_limit(transport, edns);
    let (header, question) = (&asked.header, &asked.question);
    answer(msg, header, question, edns, records, soa, ede, limit, out)
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
    let r = records_answer(msg, asked, transport, iter, (soa_ttl, serial), None, out);
    out.truncate(r.len);
    r.outcome
}

/// NOTAUTH for a TSIG-signed query (we know no keys: RFC 8945 §5.2.1, error BADKEY), written
/// into `out` up to `limit`: see [`Writer::notauth`].
pub(crate) fn notauth(
    msg: &[u8],
    header: &Header,
    question: &Question,
    edns: Option<Edns>,
    tsig: &Tsig,
    limit: usize,
    out: &mut [u8],
) -> Reply {
    let mut w = Writer::new(out, limit.min(out.len()));
    w.notauth(msg, header, question, edns, tsig)
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

    /// Gives our OPT, when it is the last record (ARCOUNT 1) with empty RDATA, the Extended DNS
    /// Error option `code` (RFC 8914 §2), if there is room.
    fn add_ede(&mut self, code: u16) {
        let len = self.len;
        if wire::u16_at(self.buf, 10) == Ok(1) && self.put(&wire::ede::option(code)).is_ok() {
            self.set_u16(len - 2, 6);
        }
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
    ) -> Reply {
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
        Reply {
            len: self.len,
            outcome,
        }
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
    ) -> Reply {
        let mut key = [0u8; MAX_NAME_WIRE];
        let mut algorithm = [0u8; MAX_NAME_WIRE];
        let (Ok((key_len, _)), Ok((alg_len, _)), Some(time_and_fudge)) = (
            wire::read_name(msg, tsig.key, &mut key),
            wire::read_name(msg, tsig.algorithm, &mut algorithm),
            msg.get(tsig.time_signed..tsig.time_signed + 8),
        ) else {
            // `read_extras` checked all of it; stay total anyway.
            let (rc, _, outcome) = Refusal::FormErr.code();
            let len = self.reply(msg, header, Some(question), edns, rc);
            return Reply { len, outcome };
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
        Reply {
            len: self.len,
            outcome: Outcome::NotAuth,
        }
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
