//! A small JSON reader (RFC 8259) that keeps the place of every value and key, for the
//! operator's config file: its errors, like the YAML mapping's, name file, line and column.
//!
//! Why not serde_json: it reports where the text stops being JSON, but not where a well-formed
//! value sits, and "rule 3 (host ...): invalid regular expression" must point at rule 3's host.
//! The file is a few hundred octets written by a program, so a tree is cheap; the reader is
//! bounded all the same (nesting depth, and the text is at most what the source reader accepts).
//!
//! Semantics follow Go's `encoding/json`, which the operator's own sidecar uses to read the same
//! file: a UTF-8 text holding one value and nothing after it but whitespace; duplicate keys are
//! kept (the schema takes the last, as Go does); a lone UTF-16 surrogate in a `\u` escape becomes
//! U+FFFD, as Go does. A UTF-8 byte-order mark at the start is skipped (Go refuses it; some
//! editors write it, and refusing a file for it would take a pod's DNS down for nothing).

use super::error::Pos;

/// How deeply arrays and objects may nest: the operator's file nests three levels; the bound
/// keeps a hostile file from exhausting the stack.
const MAX_DEPTH: usize = 64;

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) at: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    /// The number as written (the schema has no numbers; kept for messages).
    Number(String),
    String(String),
    Array(Vec<Node>),
    /// Members in file order, duplicates included.
    Object(Vec<Member>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Member {
    pub(crate) key: String,
    pub(crate) key_at: Pos,
    pub(crate) value: Node,
}

impl Value {
    /// The JSON type's name, for "expected a string, found a number" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

/// Why the text is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) at: Pos,
    pub(crate) message: String,
}

/// Parses `text` as one JSON value.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut r = Reader {
        bytes: text.as_bytes(),
        at: 0,
        line: 1,
        line_start: 0,
    };
    r.skip_ws();
    if r.peek().is_none() {
        return Err(r.error("the file is empty; expected a JSON object"));
    }
    let node = r.value(0)?;
    r.skip_ws();
    if r.peek().is_some() {
        return Err(r.error("unexpected text after the JSON value"));
    }
    Ok(node)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    line: u64,
    /// Offset of the current line's first octet (columns count characters from there).
    line_start: usize,
}

impl Reader<'_> {
    fn pos(&self) -> Pos {
        // Columns count characters, not octets: the UTF-8 continuation octets are skipped.
        let chars = self.bytes[self.line_start..self.at]
            .iter()
            .filter(|b| (**b & 0xC0) != 0x80)
            .count();
        Pos {
            line: self.line,
            column: chars as u64 + 1,
        }
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            at: self.pos(),
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// What is at the current place, for messages: the character, or "the end of the file".
    fn found(&self) -> String {
        match std::str::from_utf8(&self.bytes[self.at..])
            .ok()
            .and_then(|s| s.chars().next())
        {
            Some(c) => format!("{c:?}"),
            None => "the end of the file".into(),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' => self.at += 1,
                b'\n' => {
                    self.at += 1;
                    self.line += 1;
                    self.line_start = self.at;
                }
                _ => break,
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let at = self.pos();
        let value = match self.peek() {
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b'"') => Value::String(self.string()?),
            Some(b't') => self.literal("true", Value::Bool(true))?,
            Some(b'f') => self.literal("false", Value::Bool(false))?,
            Some(b'n') => self.literal("null", Value::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(self.error(format!("expected a JSON value, found {}", self.found()))),
        };
        Ok(Node { value, at })
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, SyntaxError> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error(format!("expected a JSON value, found {}", self.found())))
        }
    }

    /// RFC 8259 §6: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.at;
        let digits = |r: &mut Self| {
            let from = r.at;
            while r.peek().is_some_and(|b| b.is_ascii_digit()) {
                r.at += 1;
            }
            r.at > from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        if self.peek() == Some(b'0') {
            self.at += 1;
        } else if !digits(self) {
            return Err(self.error("invalid number: expected a digit"));
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return Err(self.error("invalid number: expected a digit after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return Err(self.error("invalid number: expected a digit in the exponent"));
            }
        }
        // Only ASCII was consumed.
        let text = String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned();
        Ok(Value::Number(text))
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.at += 1; // the opening quote
        let mut out = String::new();
        loop {
            // Copy the run up to the next quote, backslash or control character at once.
            let run = self.bytes[self.at..]
                .iter()
                .position(|b| *b == b'"' || *b == b'\\' || *b < 0x20)
                .unwrap_or(self.bytes.len() - self.at);
            // The input is a &str and the run ends before an ASCII octet: valid UTF-8.
            out.push_str(&String::from_utf8_lossy(
                &self.bytes[self.at..self.at + run],
            ));
            self.at += run;
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err(self.error(
                        "control character in a string (RFC 8259 §7: write it as an escape)",
                    ));
                }
            }
        }
    }

    /// After a backslash: `"\/bfnrt` or `uXXXX` (with a surrogate pair as two escapes).
    fn escape(&mut self, out: &mut String) -> Result<(), SyntaxError> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.at += 1;
                let first = self.hex4()?;
                let c = if (0xD800..0xDC00).contains(&first)
                    && self.bytes[self.at..].starts_with(b"\\u")
                {
                    let save = self.at;
                    self.at += 2;
                    let second = self.hex4()?;
                    if (0xDC00..0xE000).contains(&second) {
                        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        char::from_u32(code).unwrap_or('\u{fffd}')
                    } else {
                        // Not a pair: the first is a lone surrogate, the second read again.
                        self.at = save;
                        '\u{fffd}'
                    }
                } else {
                    char::from_u32(first).unwrap_or('\u{fffd}')
                };
                out.push(c);
                return Ok(());
            }
            _ => {
                return Err(self.error(format!(
                    "invalid escape '\\{}' in a string",
                    self.found().trim_matches('\'')
                )));
            }
        };
        self.at += 1;
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        match digits {
            Some(v) => {
                self.at += 4;
                Ok(v)
            }
            None => Err(self.error("invalid \\u escape: expected four hex digits")),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.enter(depth)?;
        self.at += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                _ => {
                    return Err(self.error(format!(
                        "expected ',' or ']' in an array, found {}",
                        self.found()
                    )));
                }
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        self.enter(depth)?;
        self.at += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error(format!(
                    "expected a string key in an object, found {}",
                    self.found()
                )));
            }
            let key_at = self.pos();
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error(format!("expected ':' after a key, found {}", self.found())));
            }
            self.at += 1;
            self.skip_ws();
            let value = self.value(depth + 1)?;
            members.push(Member { key, key_at, value });
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Value::Object(members));
                }
                _ => {
                    return Err(self.error(format!(
                        "expected ',' or '}}' in an object, found {}",
                        self.found()
                    )));
                }
            }
        }
    }

    fn enter(&self, depth: usize) -> Result<(), SyntaxError> {
        if depth >= MAX_DEPTH {
            Err(self.error(format!("nested more than {MAX_DEPTH} levels deep")))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64, column: u64) -> Pos {
        Pos { line, column }
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn reads_values_with_their_places() {
        let text = "{\n  \"listen\": \"127.0.0.1:53\",\n  \"rules\": [ {\"regex\": true}, null, -1.5e3 ]\n}\n";
        let root = parse(text).expect("valid");
        assert_eq!(root.at, at(1, 1));
        let Value::Object(members) = root.value else {
            panic!("object")
        };
        assert_eq!(members[0].key, "listen");
        assert_eq!(members[0].key_at, at(2, 3));
        assert_eq!(members[0].value.value, s("127.0.0.1:53"));
        assert_eq!(members[0].value.at, at(2, 13));
        let Value::Array(items) = &members[1].value.value else {
            panic!("array")
        };
        assert_eq!(items[0].at, at(3, 14));
        assert_eq!(items[1].value, Value::Null);
        assert_eq!(items[2].value, Value::Number("-1.5e3".into()));
        assert_eq!(items[2].at, at(3, 37));
    }

    #[test]
    fn strings_unescape_as_go_does() {
        let rows = [
            (r#""a\"b\\c\/d""#, "a\"b\\c/d"),
            (r#""\b\f\n\r\t""#, "\u{8}\u{c}\n\r\t"),
            (r#""\u00e9\u20AC""#, "é€"),
            (r#""\ud83d\ude00""#, "😀"),
            (r#""\ud83dx""#, "\u{fffd}x"),
            (r#""\ude00""#, "\u{fffd}"),
            (r#""\ud83d\u0041""#, "\u{fffd}A"),
            (r#""x\\\\\\(kdb""#, r"x\\\(kdb"),
            ("\"é ü\"", "é ü"),
        ];
        for (json, want) in rows {
            assert_eq!(parse(json).map(|n| n.value), Ok(s(want)), "{json}");
        }
    }

    #[test]
    fn errors_say_where_and_why() {
        let rows = [
            ("", 1, 1, "empty"),
            ("  \n ", 2, 2, "empty"),
            ("{\"a\": 1,}", 1, 9, "expected a string key"),
            ("{\"a\" 1}", 1, 6, "expected ':'"),
            ("[1 2]", 1, 4, "expected ',' or ']'"),
            ("{\"a\": tru}", 1, 7, "expected a JSON value"),
            ("{\"a\": \"x\ny\"}", 1, 9, "control character"),
            ("{\"a\": \"x", 1, 9, "unterminated"),
            ("\"\\x\"", 1, 3, "invalid escape"),
            ("\"\\u12G4\"", 1, 4, "four hex digits"),
            ("01", 1, 2, "after the JSON value"),
            ("-", 1, 2, "expected a digit"),
            ("1.", 1, 3, "after '.'"),
            ("1e+", 1, 4, "exponent"),
            ("{} {}", 1, 4, "after the JSON value"),
            ("{\"é\": x}", 1, 7, "expected a JSON value, found 'x'"),
            ("'a'", 1, 1, "expected a JSON value"),
        ];
        for (text, line, column, what) in rows {
            let e = parse(text).expect_err(text);
            assert_eq!(e.at, at(line, column), "{text:?}: {}", e.message);
            assert!(e.message.contains(what), "{text:?}: {}", e.message);
        }
    }

    #[test]
    fn bounded_nesting_and_a_byte_order_mark() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        assert_eq!(
            parse("\u{feff}{}").map(|n| n.value),
            Ok(Value::Object(vec![]))
        );
    }
}
