//! The listeners: UDP workers ([`udp`]) and the TCP acceptor ([`tcp`]), over one per-query
//! dispatch ([`dispatch`]).

pub mod dispatch;
pub mod tcp;
pub mod udp;
