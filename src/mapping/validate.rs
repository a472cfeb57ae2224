//! Validation shared by both syntaxes (the YAML schema and the operator's JSON): addresses, TTLs
//! and rules, each error located at the node it is about. It knows neither syntax: the readers
//! hand it values and places ([`RuleSpec`], [`Pos`]), so nothing here imports them. Names are checked by [`super::name`], duplicates by the snapshot builder.

use std::net::IpAddr;

use super::Entry;
use super::error::{MappingError, Pos};
use super::name;
use super::rules::{self, Rule, RuleResult};

/// One rule as either syntax wrote it (`rules:` of a YAML mapping, `rules` of the operator's
/// JSON), with the place of each part: the one input of [`parse_rule`].
pub(super) struct RuleSpec {
    pub(super) host: String,
    pub(super) host_at: Pos,
    pub(super) result: String,
    pub(super) result_at: Pos,
    pub(super) regex: bool,
    pub(super) ttl: Option<(u32, Pos)>,
}

/// RFC 2181 §8: a TTL is an unsigned 31-bit number.
pub(crate) const MAX_TTL: u32 = 0x7fff_ffff;

pub(super) fn check_ttl(origin: &str, ttl: u32, at: impl Into<Pos>) -> Result<u32, MappingError> {
    if ttl > MAX_TTL {
        return Err(MappingError::at(
            origin,
            at,
            format!("ttl {ttl} is larger than {MAX_TTL} (RFC 2181 §8)"),
        ));
    }
    Ok(ttl)
}

/// Collects validated addresses into an [`Entry`]; `what` names the owner in messages.
pub(super) struct AddrCollector<'a> {
    origin: &'a str,
    what: &'a str,
    v4: Vec<std::net::Ipv4Addr>,
    v6: Vec<std::net::Ipv6Addr>,
}

impl<'a> AddrCollector<'a> {
    pub(super) fn new(origin: &'a str, what: &'a str) -> AddrCollector<'a> {
        AddrCollector {
            origin,
            what,
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }

    pub(super) fn add(&mut self, text: &str, loc: impl Into<Pos>) -> Result<(), MappingError> {
        match text.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if !self.v4.contains(&a) => self.v4.push(a),
            Ok(IpAddr::V6(a)) if !self.v6.contains(&a) => self.v6.push(a),
            Ok(_) => {} // the same address twice: harmless, answered once
            Err(_) => {
                return Err(MappingError::at(
                    self.origin,
                    loc,
                    format!("invalid IP address {text:?} for {}", self.what),
                ));
            }
        }
        Ok(())
    }

    /// The error for an address list with nothing in it, at `at`.
    pub(super) fn empty(&self, at: impl Into<Pos>) -> MappingError {
        MappingError::at(
            self.origin,
            at,
            format!("{} has an empty address list", self.what),
        )
    }

    pub(super) fn entry(self, ttl: u32) -> Entry {
        Entry {
            v4: self.v4.into(),
            v6: self.v6.into(),
            ttl,
        }
    }
}

/// Validates rule number `n` (1-based): its host (name or regex), its result (address, or host
/// name template whose `${n}` refer to existing groups) and its TTL.
pub(super) fn parse_rule(
    origin: &str,
    n: usize,
    r: RuleSpec,
    ttl: u32,
) -> Result<(Rule, String), MappingError> {
    let host = r.host.trim().to_owned();
    let err = |at: Pos, why: String| {
        MappingError::at(origin, at, format!("rule {n} (host {host:?}): {why}"))
    };
    if host.is_empty() {
        return Err(err(r.host_at, "host is empty".into()));
    }
    if !r.regex {
        name::to_wire_lower(&host).map_err(|why| err(r.host_at, format!("invalid name: {why}")))?;
    }
    let regex = rules::compile_one(&host, r.regex).map_err(|why| err(r.host_at, why))?;
    let rule_ttl = match r.ttl {
        Some((t, at)) => check_ttl(origin, t, at)?,
        None => ttl,
    };
    let result_text = r.result.trim();
    if result_text.is_empty() {
        return Err(err(r.result_at, "result is empty".into()));
    }
    let result = if let Ok(ip) = result_text.parse::<IpAddr>() {
        let mut addrs = AddrCollector::new(origin, &host);
        addrs.add(&ip.to_string(), r.result_at)?;
        RuleResult::Local(addrs.entry(rule_ttl))
    } else {
        rules::check_template(result_text, &regex).map_err(|why| err(r.result_at, why))?;
        // The literal parts must make a host name: check it with every group reference
        // replaced by a plain label character.
        name::to_wire_lower(&rules::template_probe(result_text)).map_err(|why| {
            err(
                r.result_at,
                format!("result {result_text:?} is neither an IP address nor a host name: {why}"),
            )
        })?;
        RuleResult::Alias(result_text.to_owned())
    };
    let pattern = rules::pattern(&host, r.regex);
    Ok((
        Rule {
            host,
            regex,
            result,
            ttl: rule_ttl,
        },
        pattern,
    ))
}
