//! The listeners: UDP workers ([`udp`]) and the TCP acceptor ([`tcp`]), over one per-query
//! dispatch ([`dispatch`]).

pub(crate) mod allow;
pub(crate) mod dispatch;
pub(crate) mod tcp;
pub(crate) mod udp;
