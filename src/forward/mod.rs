//! Relaying queries for names we do not own to the upstream DNS servers, bytes in, bytes out.

pub mod alias;
pub mod health;
pub mod probe;
pub mod tcp;
pub mod udp;
