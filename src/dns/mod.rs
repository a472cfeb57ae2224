//! DNS on the wire: reading messages ([`wire`]) and deciding and writing local answers ([`answer`]).

pub mod answer;
pub mod wire;
