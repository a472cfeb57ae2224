//! The vocabulary every path shares: where a query came in ([`Transport`]) and what happened to
//! it ([`Outcome`], the unit of the query counters).

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
