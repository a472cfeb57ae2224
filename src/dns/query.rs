//! A query, read once: [`Query::read`] is the only place a query's header and question are
//! parsed; its records after the question are read on first need and then kept
//! ([`Query::extras`], or [`Asked::extras`] for a query handed on before anyone needed them): a
//! forwarded query's records are the upstream's business, so the forward path never walks them. Everything after it (the local decision, the loop guard, the query log,
//! the relay, the alias lookup, the failure reply, serve-stale) works from what it found, on the
//! stack and without allocation.
//!
//! The lower-cased name lives in a buffer the caller owns, not in the [`Query`]: a `Query`
//! holding its own 255 octets, moved out of `read`, cost 22 ns on a 26 ns forward decision
//! (`cargo bench --bench query_path`); borrowed, the decision is as fast as before the `Query`.
//!
//! The parts a later reply needs travel as [`Asked`], which is `Copy`: the relay keeps it in the
//! query's slot, the alias task and the TCP forward next to the query's bytes. So a SERVFAIL built
//! on the relay thread 2 s later reads the question no more, and the records at most once.

use std::cell::Cell;

use crate::dns::wire::{self, Extras, Header, MAX_NAME_WIRE, Question, WireError};

/// What a reply to a readable one-question query repeats or depends on: its header, its
/// question (located in the query's bytes) and its additional records (EDNS, TSIG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub header: Header,
    pub question: Question,
    /// The records after the question, if they were read before the query was handed on (a
    /// local or alias answer reads them; a forward does not). `Some(Err(..))` for a record
    /// section that does not read (a malformed or duplicate OPT, a record past the end): local
    /// answers are then FORMERR (RFC 6891 §6.1.1), a forwarded query goes upstream unchanged all
    /// the same (it is not ours to judge).
    pub extras: Option<Result<Extras, WireError>>,
}

impl Asked {
    /// Reads `msg` for its [`Asked`] alone (tests, the fuzzer); `None` unless it is a query
    /// with a readable question.
    pub fn read(msg: &[u8]) -> Option<Asked> {
        let mut lower = [0u8; MAX_NAME_WIRE];
        Query::read(msg, &mut lower)?.asked()
    }

    /// The records after the question of `msg` (the query this was read from): as read
    /// before, or read now. A caller that needs them more than once keeps the result.
    pub fn extras(&self, msg: &[u8]) -> Result<Extras, WireError> {
        match self.extras {
            Some(x) => x,
            None => wire::read_extras(msg, &self.header, self.question.end()),
        }
    }

    /// The query's EDNS record when it has a readable one: what our reply echoes (RFC 6891 §7).
    pub fn edns(&self, msg: &[u8]) -> Option<wire::Edns> {
        self.extras(msg).ok().and_then(|x| x.edns)
    }

    /// This, with the records read (if they were not): for a caller that needs them more than
    /// once.
    pub fn with_extras(&self, msg: &[u8]) -> Asked {
        Asked {
            extras: Some(self.extras(msg)),
            ..*self
        }
    }

    /// The asked name as the client spelled it (wire form), from the query's bytes.
    pub fn name<'m>(&self, msg: &'m [u8]) -> &'m [u8] {
        &msg[wire::HEADER_LEN..wire::HEADER_LEN + self.question.name_len]
    }
}

/// A query as read from its bytes, on the stack: header, the question when there is exactly one
/// and it reads, its name lower-cased (what the mapping is keyed by), and the records after it.
pub struct Query<'m> {
    msg: &'m [u8],
    header: Header,
    question: Option<Question>,
    /// Where the records after the question(s) start; `Err` when that cannot be known (an
    /// unreadable question, a response).
    records: Result<usize, WireError>,
    /// Those records, once read.
    extras: Cell<Option<Result<Extras, WireError>>>,
    /// The asked name, lower-cased, in the caller's buffer.
    lower: &'m [u8],
}

impl<'m> Query<'m> {
    /// Reads `msg`; `None` when it has no complete header (nothing can be answered). A response
    /// (QR set) is not read past its header: it is never answered (see
    /// [`crate::dns::decide::Decision::Drop`]), so there is no point walking its records.
    /// `lower` is the caller's scratch for the lower-cased name (a stack array).
    #[inline]
    pub fn read(msg: &'m [u8], lower: &'m mut [u8; MAX_NAME_WIRE]) -> Option<Query<'m>> {
        let header = Header::read(msg)?;
        let (question, records) = if header.is_response() {
            (None, Err(WireError::Truncated))
        } else {
            match header.qdcount {
                // RFC 1035 §4.1.2 allows several questions in theory; in practice exactly one
                // (RFC 9619). With any other count the query is an error, but the records after
                // the questions still tell whether the error reply carries an OPT.
                1 => match wire::read_question(msg, lower) {
                    Ok(q) => (Some(q), Ok(q.end())),
                    Err(e) => (None, Err(e)),
                },
                n => (None, wire::skip_questions(msg, n)),
            }
        };
        let name_len = question.map_or(0, |q| q.name_len);
        Some(Query {
            msg,
            header,
            question,
            records,
            extras: Cell::new(None),
            lower: &lower[..name_len],
        })
    }

    /// The message the query was read from.
    pub fn bytes(&self) -> &'m [u8] {
        self.msg
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The single question, when QDCOUNT is 1 and it reads.
    pub fn question(&self) -> Option<&Question> {
        self.question.as_ref()
    }

    /// The records after the question(s): the OPT and TSIG records. Read on the first call.
    pub fn extras(&self) -> Result<Extras, WireError> {
        if let Some(x) = self.extras.get() {
            return x;
        }
        let x = self
            .records
            .and_then(|at| wire::read_extras(self.msg, &self.header, at));
        self.extras.set(Some(x));
        x
    }

    /// The query's readable EDNS record, if any.
    pub fn edns(&self) -> Option<wire::Edns> {
        self.extras().ok().and_then(|x| x.edns)
    }

    /// The asked name, lower-cased (wire form); empty without a readable question.
    pub fn name_lower(&self) -> &'m [u8] {
        self.lower
    }

    /// The parts a later reply needs, for a query with a readable question (with its records
    /// if they have been read).
    pub fn asked(&self) -> Option<Asked> {
        Some(Asked {
            header: self.header,
            question: self.question?,
            extras: self.extras.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::test_query::q_wire;
    use crate::dns::wire::rtype;

    /// A query for the wire name `name`, A, with an OPT (1232, DO) when `opt`.
    fn query(name: &[u8], opt: bool) -> Vec<u8> {
        let q = q_wire(name, rtype::A).id(0x1234);
        if opt { q.edns(1232) } else { q }.bytes()
    }

    #[test]
    fn reads_header_question_name_and_edns_once() {
        let msg = query(b"\x04Db-0\x07EXAMPLE\x00", true);
        let mut lower = [0; MAX_NAME_WIRE];
        let q = Query::read(&msg, &mut lower).expect("header");
        assert_eq!(q.header().id, 0x1234);
        let question = *q.question().expect("question");
        assert_eq!(question.qtype, rtype::A);
        assert_eq!(q.name_lower(), b"\x04db-0\x07example\x00");
        let edns = q.edns().expect("opt");
        assert_eq!((edns.udp_size, edns.dnssec_ok), (1232, true));
        let asked = q.asked().expect("asked");
        assert_eq!(asked.name(&msg), b"\x04Db-0\x07EXAMPLE\x00");
        assert_eq!(asked.extras, Some(q.extras()), "read once, handed on");
        assert_eq!(asked.extras(&msg).expect("extras").edns, Some(edns));
    }

    #[test]
    fn no_header_no_query_and_responses_are_not_read() {
        assert!(Query::read(&[0; 11], &mut [0; MAX_NAME_WIRE]).is_none());
        let mut msg = query(b"\x01a\x00", true);
        msg[2] |= 0x80;
        let mut lower = [0; MAX_NAME_WIRE];
        let q = Query::read(&msg, &mut lower).expect("header");
        assert!(q.question().is_none() && q.asked().is_none() && q.edns().is_none());
    }

    #[test]
    fn records_after_several_questions_are_still_found() {
        // QDCOUNT 0 with an OPT right after the header: the FORMERR reply must carry an OPT.
        let msg = [
            0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0,
        ];
        let mut lower = [0; MAX_NAME_WIRE];
        let q = Query::read(&msg, &mut lower).expect("header");
        assert!(q.question().is_none());
        assert!(q.edns().is_some());
        assert_eq!(q.name_lower(), b"");
    }

    #[test]
    fn a_malformed_opt_is_an_error_of_the_records_not_of_the_question() {
        let mut msg = query(b"\x01a\x00", true);
        msg.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        msg[11] = 2;
        let mut lower = [0; MAX_NAME_WIRE];
        let q = Query::read(&msg, &mut lower).expect("header");
        assert!(q.question().is_some());
        let unread = q.asked().expect("asked");
        assert_eq!(unread.extras, None, "not read until needed");
        assert_eq!(unread.extras(&msg), Err(WireError::DuplicateOpt));
        assert_eq!(q.extras(), Err(WireError::DuplicateOpt));
    }
}
