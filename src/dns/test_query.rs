//! The one query builder of the unit tests in `src`: a query built field by field, so that a
//! test says what it asks and nothing else (ID 0xabcd, RD, class IN unless told otherwise).
//!
//! ```text
//! q("db-0.db.example.com", rtype::A).edns(1232).bytes()       text name, OPT with DO
//! q_wire(b"\x03WwW\x00", rtype::A).id(7).bytes()              wire name as given (case, pointers)
//! Q::none().opcode(4).tsig(2).bytes()                          no question, a TSIG record
//! ```

use crate::dns::wire::{class, flag, rtype};

/// A query, built field by field.
#[derive(Clone)]
pub(crate) struct Q {
    id: u16,
    flags: u16,
    questions: Vec<Vec<u8>>,
    /// (section: 0 answer, 1 authority, 2 additional; record bytes)
    records: Vec<(usize, Vec<u8>)>,
}

/// `text` (dots between labels, a trailing dot optional) as a wire name.
pub(crate) fn wire_name(text: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for l in text.split('.').filter(|l| !l.is_empty()) {
        w.push(l.len() as u8);
        w.extend_from_slice(l.as_bytes());
    }
    w.push(0);
    w
}

/// A query for `name` (text), `qtype`, class IN.
pub(crate) fn q(name: &str, qtype: u16) -> Q {
    Q::none().question(name, qtype, class::IN)
}

/// A query for the wire name `name` exactly as given (any case, a pointer, an over-long label),
/// `qtype`, class IN.
pub(crate) fn q_wire(name: &[u8], qtype: u16) -> Q {
    Q::none().question_wire(name, qtype, class::IN)
}

impl Q {
    /// No question, no records: ID 0xabcd, RD.
    pub(crate) fn none() -> Q {
        Q {
            id: 0xabcd,
            flags: flag::RD,
            questions: Vec::new(),
            records: Vec::new(),
        }
    }

    pub(crate) fn id(mut self, id: u16) -> Q {
        self.id = id;
        self
    }

    pub(crate) fn question(self, name: &str, qtype: u16, qclass: u16) -> Q {
        self.question_wire(&wire_name(name), qtype, qclass)
    }

    pub(crate) fn question_wire(mut self, name: &[u8], qtype: u16, qclass: u16) -> Q {
        let mut b = name.to_vec();
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&qclass.to_be_bytes());
        self.questions.push(b);
        self
    }

    /// The last question's class.
    pub(crate) fn class(mut self, qclass: u16) -> Q {
        if let Some(b) = self.questions.last_mut() {
            let n = b.len();
            b[n - 2..].copy_from_slice(&qclass.to_be_bytes());
        }
        self
    }

    pub(crate) fn flags(mut self, flags: u16) -> Q {
        self.flags = flags;
        self
    }

    pub(crate) fn opcode(self, opcode: u16) -> Q {
        let f = self.flags | (opcode << 11);
        self.flags(f)
    }

    /// A record in `section` (0 answer, 1 authority, 2 additional), written in the order given.
    pub(crate) fn record(mut self, section: usize, bytes: Vec<u8>) -> Q {
        self.records.push((section, bytes));
        self
    }

    /// An OPT record: UDP size `size`, `version`, DO as `dnssec_ok`, no options.
    pub(crate) fn opt(self, size: u16, version: u8, dnssec_ok: bool) -> Q {
        let s = size.to_be_bytes();
        let do_bit = if dnssec_ok { 0x80 } else { 0 };
        self.record(2, vec![0, 0, 41, s[0], s[1], 0, version, do_bit, 0, 0, 0])
    }

    /// OPT with UDP size `size`, `version`, DO set.
    pub(crate) fn edns_v(self, size: u16, version: u8) -> Q {
        self.opt(size, version, true)
    }

    /// OPT with UDP size `size`, version 0, DO set.
    pub(crate) fn edns(self, size: u16) -> Q {
        self.edns_v(size, 0)
    }

    /// A TSIG record, key `k.`, hmac-sha256, empty MAC.
    pub(crate) fn tsig(self, section: usize) -> Q {
        let mut r = b"\x01k\x00".to_vec();
        r.extend_from_slice(&rtype::TSIG.to_be_bytes());
        r.extend_from_slice(&[0, 255, 0, 0, 0, 0, 0, 29]);
        r.extend_from_slice(b"\x0bhmac-sha256\x00");
        r.extend_from_slice(&[0, 0, 0x65, 0, 0, 0, 1, 44, 0, 0, 0xab, 0xcd, 0, 0, 0, 0]);
        self.record(section, r)
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        let count = |s| self.records.iter().filter(|(x, _)| *x == s).count() as u16;
        let mut m = self.id.to_be_bytes().to_vec();
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
