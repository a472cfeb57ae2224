//! `rules:`: the KurrentDB operator's `splitDNSExtraRules`, `{host, result, regex}`.
//!
//! `host` is an exact name or, with `regex: true`, a regular expression (RE2 syntax and
//! semantics via the `regex` crate: linear time, no backtracking) matched against the whole
//! name, case-insensitively. `result` is an IP address (answered locally) or a host name to look
//! up instead (an alias), which may use `${1}`-style groups of the match, as Go's
//! `Regexp.Expand` does (the operator is written in Go; the `regex` crate expands `$1`, `${1}`
//! and `${name}` the same way).
//!
//! All rules are compiled into one multi-pattern automaton, so finding the first matching rule
//! (in file order) is one pass over the name whatever the number of rules; the per-rule regex
//! is only used afterwards, for the groups of an alias.

use regex_automata::meta;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};

use super::Entry;

/// What a rule answers with.
#[derive(Debug)]
pub enum RuleResult {
    /// An address: answered locally like a `hosts` entry.
    Local(Entry),
    /// Another name to resolve (possibly with `${n}` references), answered under the asked name.
    Alias(String),
}

#[derive(Debug)]
pub struct Rule {
    /// As written in the file, for messages.
    pub host: String,
    /// The rule's own regex (anchored, case-insensitive), for expanding `${n}`.
    pub regex: regex::Regex,
    pub result: RuleResult,
    /// TTL cap of the answers (alias answers use the smaller of this and the target's TTL).
    pub ttl: u32,
}

/// The compiled rules of a snapshot.
#[derive(Debug)]
pub struct Rules {
    set: meta::Regex,
    pub rules: Vec<Rule>,
}

/// A name as a rule pattern: a regex as given, or an exact name escaped; both anchored.
pub(crate) fn pattern(host: &str, is_regex: bool) -> String {
    if is_regex {
        format!("^(?:{host})$")
    } else {
        format!("^{}$", regex::escape(host.trim_end_matches('.')))
    }
}

/// Compiles one rule's regex, or says why it is invalid.
pub(crate) fn compile_one(host: &str, is_regex: bool) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&pattern(host, is_regex))
        .case_insensitive(true)
        .build()
        .map_err(|e| {
            // Say it about the pattern as written, not about our anchored wrapping of it.
            let e = regex::Regex::new(host).err().unwrap_or(e);
            format!("invalid regular expression: {e}")
        })
}

/// Checks that every `$n` / `${n}` / `${name}` in `template` refers to a group of `re`.
pub(crate) fn check_template(template: &str, re: &regex::Regex) -> Result<(), String> {
    let bytes = template.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'$') {
            i += 2; // "$$" is a literal dollar
            continue;
        }
        let (name, next) = if bytes.get(i + 1) == Some(&b'{') {
            match template[i + 2..].find('}') {
                Some(end) => (&template[i + 2..i + 2 + end], i + 3 + end),
                None => return Err(format!("unclosed '${{' in {template:?}")),
            }
        } else {
            let len = template[i + 1..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            (&template[i + 1..i + 1 + len], i + 1 + len)
        };
        let known = match name.parse::<usize>() {
            Ok(n) => n < re.captures_len(),
            Err(_) => !name.is_empty() && re.capture_names().flatten().any(|c| c == name),
        };
        if !known {
            return Err(format!(
                "result {template:?} refers to group ${{{name}}}, but the pattern has {} group(s)",
                re.captures_len() - 1
            ));
        }
        i = next;
    }
    Ok(())
}

/// `template` with every group reference replaced by `x`, to check that its literal parts make
/// a host name. A reference is `$` then `{...}` (up to the first `}`) or a run of
/// `[A-Za-z0-9_]`; a `$` followed by anything else stays as it is (so `$$` does too, and the
/// name check then rejects the `$`). Hand-written rather than a regex compiled per rule on
/// every load; the same result as replacing `\$(\{[^}]*\}|[A-Za-z0-9_]+)` with `x`.
pub(crate) fn template_probe(template: &str) -> String {
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut literal = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let end = match bytes.get(i + 1) {
            Some(b'{') => template[i + 2..].find('}').map(|e| i + 3 + e),
            Some(b) if b.is_ascii_alphanumeric() || *b == b'_' => {
                let run = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                Some(i + 1 + run)
            }
            _ => None,
        };
        match end {
            Some(end) => {
                out.push_str(&template[literal..i]);
                out.push('x');
                literal = end;
                i = end;
            }
            None => i += 1,
        }
    }
    out.push_str(&template[literal..]);
    out
}

impl Rules {
    /// Builds the multi-pattern matcher over already validated rules.
    pub fn new(rules: Vec<Rule>, patterns: &[String]) -> Result<Rules, String> {
        let set = meta::Regex::builder()
            .syntax(syntax::Config::new().case_insensitive(true))
            .build_many(patterns)
            .map_err(|e| format!("cannot compile the rules together: {e}"))?;
        Ok(Rules { set, rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule, in file order, whose pattern matches the whole `name` (lower case,
    /// without the trailing dot).
    #[inline]
    pub(crate) fn first_match(&self, name: &str) -> Option<usize> {
        // Every pattern is anchored at both ends, so any match covers the whole name; among
        // patterns matching at the same place, leftmost-first semantics prefers the lowest
        // pattern ID, i.e. the first rule in the file.
        let input = Input::new(name).anchored(Anchored::Yes);
        self.set.search(&input).map(|m| m.pattern().as_usize())
    }

    /// The alias target of rule `i` for `name`, with groups expanded.
    pub fn expand(&self, i: usize, name: &str) -> Option<String> {
        let rule = self.rules.get(i)?;
        let RuleResult::Alias(template) = &rule.result else {
            return None;
        };
        let caps = rule.regex.captures(name)?;
        let mut out = String::new();
        caps.expand(template, &mut out);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked_against_the_groups() {
        let re = compile_one(r"db-(\d+)\.(?P<zone>[a-z]+)\.example\.com", true).unwrap();
        assert!(check_template("db-${1}.x", &re).is_ok());
        assert!(check_template("db-$1.${zone}.x", &re).is_ok());
        assert!(check_template("cost-$$5", &re).is_ok());
        assert!(
            check_template("db-${3}.x", &re)
                .unwrap_err()
                .contains("2 group")
        );
        assert!(check_template("db-${nope}.x", &re).is_err());
        assert!(check_template("db-${1.x", &re).is_err());
    }

    #[test]
    fn template_probe_replaces_what_the_reference_regex_replaces() {
        let reference = regex::Regex::new(r"\$(\{[^}]*\}|[A-Za-z0-9_]+)").unwrap();
        for t in [
            "db-replica-${1}.db-replica.prod.svc.cluster.local",
            "${pod}.db.example.com",
            "y$1.z",
            "$1$2${3}x",
            "cost-$$5",
            "$",
            "a$",
            "a${",
            "a${1",
            "${}",
            "$-1.x",
            "${a}}${b}",
            "é$1ü${x\ny}",
            "no-groups.example.com",
            "",
        ] {
            assert_eq!(
                template_probe(t),
                reference.replace_all(t, "x"),
                "template {t:?}"
            );
        }
    }

    #[test]
    fn first_rule_in_file_order_wins_and_groups_expand() {
        let hosts = [
            (r"db-(\d+)\.replica\.example\.com", true),
            ("db-7.replica.example.com", false),
        ];
        let mut rules = Vec::new();
        let mut patterns = Vec::new();
        for (h, r) in hosts {
            patterns.push(pattern(h, r));
            rules.push(Rule {
                host: h.into(),
                regex: compile_one(h, r).unwrap(),
                result: RuleResult::Alias("db-replica-${1}.prod.svc".into()),
                ttl: 5,
            });
        }
        let rules = Rules::new(rules, &patterns).unwrap();
        assert_eq!(rules.first_match("db-7.replica.example.com"), Some(0));
        assert_eq!(rules.first_match("DB-7.Replica.example.com"), Some(0));
        assert_eq!(
            rules.first_match("x.db-7.replica.example.com"),
            None,
            "anchored"
        );
        assert_eq!(
            rules.first_match("db-7.replica.example.com.evil"),
            None,
            "anchored"
        );
        assert_eq!(
            rules.expand(0, "db-42.replica.example.com").unwrap(),
            "db-replica-42.prod.svc"
        );
    }
}
