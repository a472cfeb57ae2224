//! Byte-level DNS message reading (RFC 1035 §4.1).
//!
//! Everything here borrows the datagram and writes into caller-owned buffers: the hot path parses a
//! query without allocating. Every read is bounds-checked; a malformed message is an `Err`, never a
//! panic.

/// Fixed header size (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire, length octets and root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_WIRE: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
pub(crate) const MAX_LABEL: usize = 63;
/// Largest UDP payload a client may assume without EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_SIZE: usize = 512;

/// Resource record types we look at (RFC 1035 §3.2.2, RFC 3596, RFC 6891, RFC 8482).
pub mod rtype {
    pub const A: u16 = 1;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
    /// RFC 8945 §4.2.
    pub const TSIG: u16 = 250;
    pub(crate) const IXFR: u16 = 251;
    pub(crate) const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
}

/// Classes (RFC 1035 §3.2.4).
pub mod class {
    pub const IN: u16 = 1;
    pub const ANY: u16 = 255;
}

/// Response codes (RFC 1035 §4.1.1, RFC 2136 §2.2 for NOTAUTH, RFC 6891 §9 for the extended
/// BADVERS, RFC 8945 §3 for the TSIG error BADKEY).
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
    /// Not authorized: the header rcode of a TSIG error (RFC 8945 §5.2).
    pub const NOTAUTH: u8 = 9;
    /// 16: carried as 1 in the OPT record's extended-rcode octet, 0 in the header.
    pub const BADVERS: u16 = 16;
    /// 17: only ever in the Error field of a TSIG record (RFC 8945 §5.2.1), never in a header.
    pub const BADKEY: u16 = 17;
}

/// Extended DNS Errors (RFC 8914): the INFO-CODEs we send, and the option that carries one.
pub mod ede {
    /// §4.4: an answer served stale (RFC 8767).
    pub const STALE_ANSWER: u16 = 3;
    /// §4.23: no upstream answered (silence).
    pub const NO_REACHABLE_AUTHORITY: u16 = 22;
    /// §4.24: the upstreams refused (ICMP port unreachable, TCP refused or reset).
    pub const NETWORK_ERROR: u16 = 23;

    /// The EDNS option carrying `code` and no EXTRA-TEXT (§2: OPTION-CODE 15, OPTION-LENGTH 2).
    pub fn option(code: u16) -> [u8; 6] {
        let c = code.to_be_bytes();
        [0, 15, 0, 2, c[0], c[1]]
    }
}

/// Header flag bits in the second 16-bit word (RFC 1035 §4.1.1, RFC 4035 §3.2 for AD/CD).
pub mod flag {
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub(crate) const CD: u16 = 0x0010;
    pub(crate) const OPCODE_MASK: u16 = 0x7800;
}

/// Why a message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message ends inside a field")]
    Truncated,
    #[error("label longer than 63 octets or reserved label type")]
    BadLabel,
    #[error("name longer than 255 octets")]
    NameTooLong,
    #[error("compression pointer in the question name")]
    PointerInQuestion,
    #[error("more than one OPT record")]
    DuplicateOpt,
    #[error("OPT record outside the additional section or not owned by the root")]
    MisplacedOpt,
    #[error("EDNS option overruns its OPT record")]
    BadOption,
    #[error("compression pointer that does not point to an earlier name")]
    BadPointer,
    #[error("TSIG record that is not the last record of the additional section, or two")]
    MisplacedTsig,
    #[error("TSIG record that cannot be read")]
    BadTsig,
}

#[inline]
pub fn u16_at(msg: &[u8], at: usize) -> Result<u16, WireError> {
    match msg.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(WireError::Truncated),
    }
}

#[inline]
fn u32_at(msg: &[u8], at: usize) -> Result<u32, WireError> {
    match msg.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(WireError::Truncated),
    }
}

/// The fixed header, read from a message of at least [`HEADER_LEN`] octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn read(msg: &[u8]) -> Option<Header> {
        if msg.len() < HEADER_LEN {
            return None;
        }
        let w = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
        Some(Header {
            id: w(0),
            flags: w(2),
            qdcount: w(4),
            ancount: w(6),
            nscount: w(8),
            arcount: w(10),
        })
    }

    pub(crate) fn is_response(&self) -> bool {
        self.flags & flag::QR != 0
    }

    pub fn opcode(&self) -> u16 {
        (self.flags & flag::OPCODE_MASK) >> 11
    }
}

/// The single question of a query (RFC 1035 §4.1.2), located in the message it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question {
    /// Wire length of the name, root label included (the name is `msg[12..12 + name_len]`).
    pub name_len: usize,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    /// Offset just past the question section.
    pub fn end(&self) -> usize {
        HEADER_LEN + self.name_len + 4
    }
}

/// Reads the question that starts at offset 12 and writes its name, lower-cased, into `lower`
/// (wire format). Returns the question and the lower-cased name's length.
///
/// A compression pointer cannot point anywhere useful from the first name of a message (nothing
/// before it is a name), so one here is a format error, as are label types 01 and 10 (RFC 6891
/// §5 retired the extended label types).
pub fn read_question(msg: &[u8], lower: &mut [u8; MAX_NAME_WIRE]) -> Result<Question, WireError> {
    let mut at = HEADER_LEN;
    loop {
        let len = *msg.get(at).ok_or(WireError::Truncated)? as usize;
        if len & 0xC0 == 0xC0 {
            return Err(WireError::PointerInQuestion);
        }
        if len > MAX_LABEL {
            return Err(WireError::BadLabel);
        }
        let name_len = at - HEADER_LEN;
        if name_len + 1 + len > MAX_NAME_WIRE {
            return Err(WireError::NameTooLong);
        }
        let label = msg.get(at..at + 1 + len).ok_or(WireError::Truncated)?;
        for (dst, src) in lower[name_len..name_len + 1 + len].iter_mut().zip(label) {
            *dst = src.to_ascii_lowercase();
        }
        // The length octet is < 64, so lower-casing it changed nothing.
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let name_len = at - HEADER_LEN;
    Ok(Question {
        name_len,
        qtype: u16_at(msg, at)?,
        qclass: u16_at(msg, at + 2)?,
    })
}

/// Skips a (possibly compressed) name anywhere in a message; returns the offset after it.
/// Pointers are not followed, so pointer loops cannot trap us.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, WireError> {
    let start = at;
    loop {
        let len = *msg.get(at).ok_or(WireError::Truncated)? as usize;
        match len & 0xC0 {
            0xC0 => {
                if msg.len() < at + 2 {
                    return Err(WireError::Truncated);
                }
                return Ok(at + 2);
            }
            0x00 => {
                at += 1 + len;
                if at - start > MAX_NAME_WIRE {
                    return Err(WireError::NameTooLong);
                }
                if len == 0 {
                    return if at <= msg.len() {
                        Ok(at)
                    } else {
                        Err(WireError::Truncated)
                    };
                }
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

/// Offset just past the `qdcount` questions that follow the header: where the records start.
/// With QDCOUNT 0 that is the header's end (an OPT record is then right after the header).
pub fn skip_questions(msg: &[u8], qdcount: u16) -> Result<usize, WireError> {
    let mut at = HEADER_LEN;
    for _ in 0..qdcount {
        at = skip_name(msg, at)? + 4;
        if at > msg.len() {
            return Err(WireError::Truncated);
        }
    }
    Ok(at)
}

/// Reads the (possibly compressed) name at `at` into `out`, uncompressed, as it is spelled (case
/// kept). Returns its length in `out` and the offset just past the name in `msg`.
///
/// A pointer must point before the previous one (or before the name, for the first): RFC 1035
/// §4.1.4 only ever points to a prior occurrence, and a strictly decreasing target means a
/// pointer loop cannot trap us.
pub fn read_name(
    msg: &[u8],
    mut at: usize,
    out: &mut [u8; MAX_NAME_WIRE],
) -> Result<(usize, usize), WireError> {
    let mut len = 0;
    let mut after: Option<usize> = None;
    let mut bound = at;
    loop {
        let l = *msg.get(at).ok_or(WireError::Truncated)? as usize;
        match l & 0xC0 {
            0xC0 => {
                let low = *msg.get(at + 1).ok_or(WireError::Truncated)? as usize;
                let target = ((l & 0x3F) << 8) | low;
                if target >= bound {
                    return Err(WireError::BadPointer);
                }
                after.get_or_insert(at + 2);
                bound = target;
                at = target;
            }
            0x00 => {
                if len + 1 + l > MAX_NAME_WIRE {
                    return Err(WireError::NameTooLong);
                }
                let label = msg.get(at..at + 1 + l).ok_or(WireError::Truncated)?;
                out[len..len + 1 + l].copy_from_slice(label);
                len += 1 + l;
                at += 1 + l;
                if l == 0 {
                    return Ok((len, after.unwrap_or(at)));
                }
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

/// The EDNS pseudo-record of a query (RFC 6891 §6.1.2-6.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size; values below 512 are treated as 512 (RFC 6891 §6.2.5).
    pub udp_size: u16,
    pub version: u8,
    /// DNSSEC OK (RFC 3225 §3): echoed in our OPT.
    pub dnssec_ok: bool,
}

/// A query's TSIG record (RFC 8945 §4.2), located in the message: what an error reply needs to
/// name the same key and algorithm. Nothing here is verified (we hold no keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tsig {
    /// Offset of the owner name, the key name (possibly compressed: read it with [`read_name`]).
    pub key: usize,
    /// Offset of the algorithm name, first field of the RDATA.
    pub algorithm: usize,
    /// Offset of Time Signed (48 bits), directly followed by Fudge (16 bits).
    pub time_signed: usize,
    /// The Original ID field.
    pub original_id: u16,
}

/// What the records after the question hold for us: the OPT record and the TSIG record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extras {
    pub edns: Option<Edns>,
    /// `Some(Err(..))` for a TSIG record that is misplaced (RFC 8945 §5.1: it must be the only
    /// one and the last record of the additional section) or unreadable: a FORMERR
    /// (RFC 8945 §5.2), which still gets an OPT when the query's OPT is fine.
    pub tsig: Option<Result<Tsig, WireError>>,
}

/// Walks the answer, authority and additional sections after the question and returns the OPT
/// record if there is one. Two OPT records, or one outside the additional section, or options
/// that do not tile the RDATA exactly, are format errors (RFC 6891 §6.1.1). Octets after the last
/// record are ignored.
pub fn read_edns(
    msg: &[u8],
    header: &Header,
    after_question: usize,
) -> Result<Option<Edns>, WireError> {
    read_extras(msg, header, after_question).map(|x| x.edns)
}

/// [`read_edns`], and the TSIG record if there is one. Fails exactly when [`read_edns`] does: a
/// bad TSIG record is reported in [`Extras::tsig`], not as a failure of the walk.
pub fn read_extras(
    msg: &[u8],
    header: &Header,
    after_question: usize,
) -> Result<Extras, WireError> {
    let mut at = after_question;
    let mut edns = None;
    let mut tsig = None;
    let before_additional = header.ancount as usize + header.nscount as usize;
    let total = before_additional + header.arcount as usize;
    for i in 0..total {
        let owner = at;
        at = skip_name(msg, at)?;
        let rtype = u16_at(msg, at)?;
        let rclass = u16_at(msg, at + 2)?;
        let ttl = u32_at(msg, at + 4)?;
        let rdlen = u16_at(msg, at + 8)? as usize;
        let rdata = at + 10;
        let end = rdata + rdlen;
        if end > msg.len() {
            return Err(WireError::Truncated);
        }
        if rtype == rtype::OPT {
            if i < before_additional || msg[owner] != 0 {
                return Err(WireError::MisplacedOpt);
            }
            if edns.is_some() {
                return Err(WireError::DuplicateOpt);
            }
            let mut opt = rdata;
            while opt < end {
                let olen = u16_at(msg, opt + 2)? as usize;
                opt += 4 + olen;
            }
            if opt != end {
                return Err(WireError::BadOption);
            }
            edns = Some(Edns {
                udp_size: rclass.max(CLASSIC_UDP_SIZE as u16),
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
            });
        } else if rtype == rtype::TSIG {
            let last = i + 1 == total && i >= before_additional;
            tsig = Some(match tsig {
                // A second TSIG: the first was not last either, so this stays an error.
                Some(_) => Err(WireError::MisplacedTsig),
                None if !last => Err(WireError::MisplacedTsig),
                // RFC 8945 §4.2: CLASS ANY, TTL 0.
                None if rclass != class::ANY || ttl != 0 => Err(WireError::BadTsig),
                None => read_tsig(msg, owner, rdata, end),
            });
        }
        at = end;
    }
    Ok(Extras { edns, tsig })
}

/// The RDATA of a TSIG record (RFC 8945 §4.2): algorithm name, Time Signed (48), Fudge, MAC
/// Size, MAC, Original ID, Error, Other Len, Other Data, which must fill it exactly.
fn read_tsig(msg: &[u8], key: usize, rdata: usize, end: usize) -> Result<Tsig, WireError> {
    let bad = |_| WireError::BadTsig;
    let rd = &msg[..end];
    // Both names must be readable in full: an error reply writes them out uncompressed.
    let mut scratch = [0u8; MAX_NAME_WIRE];
    read_name(msg, key, &mut scratch).map_err(bad)?;
    let (_, time_signed) = read_name(rd, rdata, &mut scratch).map_err(bad)?;
    let mac_len = u16_at(rd, time_signed + 8).map_err(bad)? as usize;
    let original = time_signed + 10 + mac_len;
    let original_id = u16_at(rd, original).map_err(bad)?;
    let other_len = u16_at(rd, original + 4).map_err(bad)? as usize;
    if original + 6 + other_len != end {
        return Err(WireError::BadTsig);
    }
    Ok(Tsig {
        key,
        algorithm: rdata,
        time_signed,
        original_id,
    })
}

/// Calls `f(rtype, ttl_offset)` for every resource record after the question (answer, authority
/// and additional sections, OPT included), in order. Fails on a record that runs past the end.
pub(crate) fn for_each_record(
    msg: &[u8],
    header: &Header,
    after_question: usize,
    mut f: impl FnMut(u16, usize),
) -> Result<(), WireError> {
    let mut at = after_question;
    let total = header.ancount as usize + header.nscount as usize + header.arcount as usize;
    for _ in 0..total {
        at = skip_name(msg, at)?;
        let rtype = u16_at(msg, at)?;
        let rdlen = u16_at(msg, at + 8)? as usize;
        let end = at + 10 + rdlen;
        if end > msg.len() {
            return Err(WireError::Truncated);
        }
        f(rtype, at + 4);
        at = end;
    }
    Ok(())
}

/// Compares the question sections of a query and a reply, names case-insensitively (the upstream
/// may legitimately change 0x20 case; RFC 4343). Used to reject spoofed or stray replies.
pub fn same_question(query: &[u8], reply: &[u8], query_question_end: usize) -> bool {
    let Some(q) = query.get(HEADER_LEN..query_question_end) else {
        return false;
    };
    let Some(r) = reply.get(HEADER_LEN..query_question_end) else {
        return false;
    };
    if u16_at(reply, 4) != Ok(1) {
        return false;
    }
    q.eq_ignore_ascii_case(r)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
