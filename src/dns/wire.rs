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
pub const MAX_LABEL: usize = 63;
/// Largest UDP payload a client may assume without EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_SIZE: usize = 512;

/// Resource record types we look at (RFC 1035 §3.2.2, RFC 3596, RFC 6891, RFC 8482).
pub mod rtype {
    pub const A: u16 = 1;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
    pub const ANY: u16 = 255;
}

/// Classes (RFC 1035 §3.2.4).
pub mod class {
    pub const IN: u16 = 1;
    pub const ANY: u16 = 255;
}

/// Response codes (RFC 1035 §4.1.1, RFC 6891 §9 for the extended BADVERS).
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
    /// 16: carried as 1 in the OPT record's extended-rcode octet, 0 in the header.
    pub const BADVERS: u16 = 16;
}

/// Header flag bits in the second 16-bit word (RFC 1035 §4.1.1, RFC 4035 §3.2 for AD/CD).
pub mod flag {
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const CD: u16 = 0x0010;
    pub const OPCODE_MASK: u16 = 0x7800;
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

    pub fn is_response(&self) -> bool {
        self.flags & flag::QR != 0
    }

    pub fn opcode(&self) -> u16 {
        (self.flags & flag::OPCODE_MASK) >> 11
    }

    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000f) as u8
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

/// The EDNS pseudo-record of a query (RFC 6891 §6.1.2-6.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size; values below 512 are treated as 512 (RFC 6891 §6.2.5).
    pub udp_size: u16,
    pub version: u8,
    /// DNSSEC OK (RFC 3225 §3): echoed in our OPT.
    pub dnssec_ok: bool,
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
    let mut at = after_question;
    let mut edns = None;
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
        }
        at = end;
    }
    Ok(edns)
}

/// Calls `f(rtype, ttl_offset)` for every resource record after the question (answer, authority
/// and additional sections, OPT included), in order. Fails on a record that runs past the end.
pub fn for_each_record(
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
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(name);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    #[test]
    fn reads_question_and_lowercases() {
        let m = query(b"\x03WwW\x07Example\x03com\x00", rtype::A);
        let mut lower = [0u8; MAX_NAME_WIRE];
        let q = read_question(&m, &mut lower).unwrap();
        assert_eq!(&lower[..q.name_len], b"\x03www\x07example\x03com\x00");
        assert_eq!(q.qtype, rtype::A);
        assert_eq!(q.end(), m.len());
    }

    #[test]
    fn rejects_bad_question_names() {
        let mut lower = [0u8; MAX_NAME_WIRE];
        let ptr = query(b"\xC0\x0C", 1);
        assert_eq!(
            read_question(&ptr, &mut lower),
            Err(WireError::PointerInQuestion)
        );
        let mut long_label = vec![64u8];
        long_label.extend_from_slice(&[b'a'; 64]);
        long_label.push(0);
        assert_eq!(
            read_question(&query(&long_label, 1), &mut lower),
            Err(WireError::BadLabel)
        );
        let mut long_name = Vec::new();
        for _ in 0..5 {
            long_name.push(63);
            long_name.extend_from_slice(&[b'a'; 63]);
        }
        long_name.push(0);
        assert_eq!(
            read_question(&query(&long_name, 1), &mut lower),
            Err(WireError::NameTooLong)
        );
        let short = &query(b"\x03www\x00", 1)[..17];
        assert_eq!(read_question(short, &mut lower), Err(WireError::Truncated));
    }

    #[test]
    fn reads_edns_and_rejects_two_opts() {
        let mut m = query(b"\x01a\x00", 1);
        m[11] = 1;
        let opt = [0u8, 0, 41, 0x04, 0xD0, 0, 1, 0x80, 0, 0, 4, 0, 10, 0, 0];
        m.extend_from_slice(&opt);
        let h = Header::read(&m).unwrap();
        let e = read_edns(&m, &h, 12 + 3 + 4).unwrap().unwrap();
        assert_eq!(
            e,
            Edns {
                udp_size: 1232,
                version: 1,
                dnssec_ok: true
            }
        );
        m[11] = 2;
        m.extend_from_slice(&opt);
        let h = Header::read(&m).unwrap();
        assert_eq!(read_edns(&m, &h, 19), Err(WireError::DuplicateOpt));
    }
}
