//! The paths of before `answer.rs` was split into [`crate::dns::decide`] (what to do with a
//! query) and [`crate::dns::reply`] (writing replies), kept for the integration tests, the
//! benches and the fuzzer, which name them.

pub use crate::dns::decide::{Decision, MAX_UDP_QUERY, decide, decide_bytes};
pub use crate::dns::outcome::{Outcome, Transport};
pub use crate::dns::reply::{OUR_UDP_PAYLOAD, records_reply};

use crate::dns::query::Asked;
use crate::dns::reply::{self, Refusal};
use crate::dns::wire::rcode;

/// The reply with rcode `rc` (FORMERR, SERVFAIL, NOTIMP or REFUSED; `None` for any other, and
/// when `out` cannot hold a header) to a query we could not complete, as [`Refusal`]s are
/// written: for SERVFAIL with the Extended DNS Error `ede` when the query had EDNS. The fuzzer
/// calls it with SERVFAIL; the daemon itself goes through [`reply::failure`].
pub fn error_reply(
    msg: &[u8],
    asked: &Asked,
    rc: u8,
    ede: Option<u16>,
    out: &mut [u8],
) -> Option<usize> {
    let why = match rc {
        rcode::FORMERR => Refusal::FormErr,
        rcode::SERVFAIL => Refusal::ServFail(ede),
        rcode::NOTIMP => Refusal::NotImp,
        rcode::REFUSED => Refusal::Refused,
        _ => return None,
    };
    reply::failure(msg, asked, why, out).map(|r| r.len)
}
