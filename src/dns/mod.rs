//! DNS on the wire: reading messages ([`wire`]), reading a query once ([`query`]), and deciding
//! and writing local answers ([`answer`]).

pub mod answer;
pub mod query;
pub mod wire;
