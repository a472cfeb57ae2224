//! The listeners: UDP workers ([`udp`]) and the TCP acceptor ([`tcp`]).

pub mod tcp;
pub mod udp;
