//! Host names as written in the mapping file, checked and turned into wire format.

use crate::dns::wire::{MAX_LABEL, MAX_NAME_WIRE};

/// Converts `db-0.DB.example.com` or `db-0.db.example.com.` into the lower-cased wire form
/// (`\x04db-0\x02db\x07example\x03com\x00`), or says why it is not a valid host name.
///
/// Rules (RFC 1035 §2.3.1/§2.3.4, RFC 2181 §11): labels of 1-63 octets, at most 253 characters
/// without the trailing dot (255 octets on the wire). Characters are restricted to letters,
/// digits, `-` and `_` (the latter appears in service names): anything else in a mapping file is a
/// typo, not a name a database server would advertise.
pub fn to_wire_lower(name: &str) -> Result<Vec<u8>, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("empty name".into());
    }
    if trimmed.len() > MAX_NAME_WIRE - 2 {
        return Err(format!(
            "name is {} characters long; at most 253 are allowed",
            trimmed.len()
        ));
    }
    let mut wire = Vec::with_capacity(trimmed.len() + 2);
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > MAX_LABEL {
            return Err(format!(
                "label '{}…' is {} octets long; at most 63 are allowed",
                label.chars().take(16).collect::<String>(),
                label.len()
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "character {bad:?} is not allowed in a host name (letters, digits, '-', '_')"
            ));
        }
        wire.push(label.len() as u8);
        wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    wire.push(0);
    Ok(wire)
}

/// The presentation form of a wire-format name (for messages and `check` output).
pub fn wire_to_text(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut at = 0;
    while let Some(&len) = wire.get(at) {
        if len == 0 {
            break;
        }
        let label = wire.get(at + 1..at + 1 + len as usize).unwrap_or_default();
        out.push_str(&String::from_utf8_lossy(label));
        out.push('.');
        at += 1 + len as usize;
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// Writes the presentation form of a lower-cased wire name, without the trailing dot, into
/// `buf` (no allocation: the rules are matched against it on the query path). `None` if the
/// name is not UTF-8 or has a '.' inside a label (found by fuzzing: `\x0aweb-1.pods\x07example`
/// would read as three labels and match a rule written for three); no rule can match those.
pub fn wire_to_text_in<'a>(wire: &[u8], buf: &'a mut [u8; 256]) -> Option<&'a str> {
    let mut at = 0;
    let mut len = 0;
    while let Some(&l) = wire.get(at) {
        if l == 0 {
            break;
        }
        let label = wire.get(at + 1..at + 1 + l as usize)?;
        if label.contains(&b'.') {
            return None;
        }
        if len > 0 {
            *buf.get_mut(len)? = b'.';
            len += 1;
        }
        buf.get_mut(len..len + label.len())?.copy_from_slice(label);
        len += label.len();
        at += 1 + l as usize;
    }
    std::str::from_utf8(&buf[..len]).ok()
}

/// The address a lower-cased reverse name stands for: `d.c.b.a.in-addr.arpa.` (RFC 1035 §3.5,
/// canonical decimal octets) or 32 nibbles under `ip6.arpa.` (RFC 3596 §2.5). `None` for any
/// other name, including partial reverse names (those are forwarded).
pub fn reverse_to_ip(wire: &[u8]) -> Option<std::net::IpAddr> {
    if wire.ends_with(b"\x07in-addr\x04arpa\x00") {
        let mut octets = [0u8; 4];
        let mut at = 0;
        for o in octets.iter_mut().rev() {
            let len = *wire.get(at)? as usize;
            let label = wire.get(at + 1..at + 1 + len)?;
            let canonical = (1..=3).contains(&len) && (len == 1 || label[0] != b'0');
            if !canonical || !label.iter().all(u8::is_ascii_digit) {
                return None;
            }
            *o = std::str::from_utf8(label).ok()?.parse().ok()?;
            at += 1 + len;
        }
        return (at + 14 == wire.len()).then_some(std::net::IpAddr::from(octets));
    }
    if wire.ends_with(b"\x03ip6\x04arpa\x00") && wire.len() == 64 + 10 {
        let mut octets = [0u8; 16];
        for i in 0..32 {
            if wire[2 * i] != 1 {
                return None;
            }
            let nibble = match wire[2 * i + 1] {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            // Label i is nibble i counted from the least significant end.
            let byte = 15 - i / 2;
            octets[byte] |= if i % 2 == 0 { nibble } else { nibble << 4 };
        }
        return Some(std::net::IpAddr::from(octets));
    }
    None
}

/// `d.c.b.a.in-addr.arpa.` in wire form (RFC 1035 §3.5).
pub fn reverse_v4(a: std::net::Ipv4Addr) -> Vec<u8> {
    let mut w = Vec::with_capacity(30);
    for o in a.octets().iter().rev() {
        let s = o.to_string();
        w.push(s.len() as u8);
        w.extend_from_slice(s.as_bytes());
    }
    w.extend_from_slice(b"\x07in-addr\x04arpa\x00");
    w
}

/// The 32 reversed nibbles under `ip6.arpa.` in wire form (RFC 3596 §2.5).
pub fn reverse_v6(a: std::net::Ipv6Addr) -> Vec<u8> {
    let mut w = Vec::with_capacity(74);
    for o in a.octets().iter().rev() {
        for nibble in [o & 0x0f, o >> 4] {
            w.push(1);
            w.push(b"0123456789abcdef"[nibble as usize]);
        }
    }
    w.extend_from_slice(b"\x03ip6\x04arpa\x00");
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_normalises() {
        assert_eq!(
            to_wire_lower("Db-0.Example.COM.").unwrap(),
            b"\x04db-0\x07example\x03com\x00"
        );
        assert_eq!(to_wire_lower("a").unwrap(), b"\x01a\x00");
        assert_eq!(
            wire_to_text(b"\x04db-0\x07example\x03com\x00"),
            "db-0.example.com."
        );
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            wire_to_text(&reverse_v4("10.42.0.12".parse().unwrap())),
            "12.0.42.10.in-addr.arpa."
        );
        let v6 = wire_to_text(&reverse_v6("fd00::13".parse().unwrap()));
        assert!(v6.starts_with("3.1.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with("0.0.d.f.ip6.arpa."), "{v6}");
        let mut buf = [0u8; 256];
        assert_eq!(
            wire_to_text_in(b"\x02db\x03com\x00", &mut buf),
            Some("db.com")
        );
    }

    #[test]
    fn rejects_invalid_names() {
        assert!(to_wire_lower("").unwrap_err().contains("empty"));
        assert!(to_wire_lower(".").unwrap_err().contains("empty"));
        assert!(to_wire_lower("a..b").unwrap_err().contains("empty label"));
        assert!(to_wire_lower(&"a".repeat(64)).unwrap_err().contains("63"));
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(to_wire_lower(&long).unwrap_err().contains("253"));
        assert!(
            to_wire_lower("a b.com")
                .unwrap_err()
                .contains("not allowed")
        );
    }
}
