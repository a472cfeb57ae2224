//! Validation of what the schema read: addresses, TTLs and rules, each error located at the node
//! it is about. Names are checked by [`super::name`], duplicates by the snapshot builder.

use std::net::IpAddr;

use serde_saphyr::{Location, Spanned};

use super::Entry;
use super::error::MappingError;
use super::name;
use super::rules::{self, Rule, RuleResult};
use super::schema::{RawAddrList, RawHost, RawRule};

/// RFC 2181 §8: a TTL is an unsigned 31-bit number.
pub(crate) const MAX_TTL: u32 = 0x7fff_ffff;

/// Validates one host's value into an entry; also says whether it set its own TTL.
pub(super) fn host_entry(
    origin: &str,
    key: &Spanned<String>,
    value: Spanned<RawHost>,
    ttl: u32,
) -> Result<(Entry, bool), MappingError> {
    let mut addrs = AddrCollector {
        origin,
        what: &key.value,
        v4: Vec::new(),
        v6: Vec::new(),
    };
    match value.value {
        RawHost::Addrs(list) => {
            addrs.add_all(Spanned::new(list, value.referenced, value.defined))?;
            Ok((addrs.entry(ttl), false))
        }
        RawHost::Detailed(d) => {
            addrs.add_all(d.addresses)?;
            match &d.ttl {
                Some(t) => Ok((addrs.entry(check_ttl(origin, t)?), true)),
                None => Ok((addrs.entry(ttl), false)),
            }
        }
    }
}

pub(super) fn check_ttl(origin: &str, t: &Spanned<u32>) -> Result<u32, MappingError> {
    if t.value > MAX_TTL {
        return Err(MappingError::at(
            origin,
            t.referenced,
            format!("ttl {} is larger than {MAX_TTL} (RFC 2181 §8)", t.value),
        ));
    }
    Ok(t.value)
}

/// Collects validated addresses into an [`Entry`]; `what` names the owner in messages.
struct AddrCollector<'a> {
    origin: &'a str,
    what: &'a str,
    v4: Vec<std::net::Ipv4Addr>,
    v6: Vec<std::net::Ipv6Addr>,
}

impl AddrCollector<'_> {
    fn add(&mut self, text: &str, loc: Location) -> Result<(), MappingError> {
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

    fn add_all(&mut self, addrs: Spanned<RawAddrList>) -> Result<(), MappingError> {
        match addrs.value {
            RawAddrList::One(a) => self.add(&a, addrs.referenced),
            RawAddrList::Many(list) if list.is_empty() => Err(MappingError::at(
                self.origin,
                addrs.referenced,
                format!("{} has an empty address list", self.what),
            )),
            RawAddrList::Many(list) => list
                .into_iter()
                .try_for_each(|a| self.add(&a.value, a.referenced)),
        }
    }

    fn entry(self, ttl: u32) -> Entry {
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
    raw: Spanned<RawRule>,
    ttl: u32,
) -> Result<(Rule, String), MappingError> {
    let r = raw.value;
    let host = r.host.value.trim().to_owned();
    let err = |at: Location, why: String| {
        MappingError::at(origin, at, format!("rule {n} (host {host:?}): {why}"))
    };
    if !r.regex {
        name::to_wire_lower(&host)
            .map_err(|why| err(r.host.referenced, format!("invalid name: {why}")))?;
    }
    let regex = rules::compile_one(&host, r.regex).map_err(|why| err(r.host.referenced, why))?;
    let rule_ttl = match &r.ttl {
        Some(t) => check_ttl(origin, t)?,
        None => ttl,
    };
    let result_text = r.result.value.trim();
    let result = if let Ok(ip) = result_text.parse::<IpAddr>() {
        let mut addrs = AddrCollector {
            origin,
            what: &host,
            v4: Vec::new(),
            v6: Vec::new(),
        };
        addrs.add(&ip.to_string(), r.result.referenced)?;
        RuleResult::Local(addrs.entry(rule_ttl))
    } else {
        rules::check_template(result_text, &regex).map_err(|why| err(r.result.referenced, why))?;
        // The literal parts must make a host name: check it with every group reference
        // replaced by a plain label character.
        name::to_wire_lower(&rules::template_probe(result_text)).map_err(|why| {
            err(
                r.result.referenced,
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
