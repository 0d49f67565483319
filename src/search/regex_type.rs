//! The protocol's restricted RegexType dialect (spec §1.3): a validator that refuses everything
//! outside the grammar, and a translation into the `regex` crate, which matches in linear time.

use regex::{Regex, RegexBuilder};

/// Escapes of one punctuation character that the grammar allows.
const ESCAPED_PUNCTUATION: &str = ".*-+[]\\?^|(){}";
/// Character-class escapes the grammar allows.
const CLASS_ESCAPES: &str = "wWsSdD";
/// Compiled programs are capped so a pattern like `(a{999}){999}` cannot eat memory.
const COMPILED_SIZE_LIMIT: usize = 1 << 20;

/// Why a pattern is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected;

/// Validates `pattern` against the dialect and compiles it (dot matches newline, like .NET's
/// Singleline option).
pub fn compile(pattern: &str) -> Result<Regex, Rejected> {
    let translated = translate(pattern)?;
    RegexBuilder::new(&format!("(?s){translated}"))
        .size_limit(COMPILED_SIZE_LIMIT)
        .dfa_size_limit(COMPILED_SIZE_LIMIT)
        .build()
        .map_err(|_| Rejected)
}

/// Checks the escapes and forbidden constructs; returns the pattern in `regex` syntax.
fn translate(pattern: &str) -> Result<String, Rejected> {
    let mut out = String::with_capacity(pattern.len() + 8);
    // The pattern with every valid escape replaced by a neutral character, for the checks below.
    let mut plain = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            plain.push(c);
            continue;
        }
        let next = chars.next().ok_or(Rejected)?;
        if next == 'x' || next == 'u' {
            let digits = if next == 'x' { 2 } else { 4 };
            let hex: String = (0..digits).filter_map(|_| chars.next()).collect();
            if hex.len() != digits || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                return Err(Rejected);
            }
            out.push_str("\\x{");
            out.push_str(&hex);
            out.push('}');
        } else if ESCAPED_PUNCTUATION.contains(next) || CLASS_ESCAPES.contains(next) {
            out.push('\\');
            out.push(next);
        } else {
            return Err(Rejected);
        }
        plain.push('_');
    }
    if has_named_reference(&plain) || has_lazy_or_group_option(&plain) {
        return Err(Rejected);
    }
    Ok(out)
}

/// `\{[^0-9]*\}`: a brace pair with no digit inside (named references).
fn has_named_reference(plain: &str) -> bool {
    let bytes = plain.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'{')
        .any(|(start, _)| {
            bytes[start + 1..]
                .iter()
                .take_while(|b| !b.is_ascii_digit())
                .any(|b| *b == b'}')
        })
}

/// `[(*+?}]\?`: `(?` groups and lazy quantifiers.
fn has_lazy_or_group_option(plain: &str) -> bool {
    plain
        .as_bytes()
        .windows(2)
        .any(|pair| b"(*+?}".contains(&pair[0]) && pair[1] == b'?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_patterns() {
        for pattern in [
            "(^|;)t=(|[^=]+,)running([;,]|$)",
            ".+",
            "water",
            "a{2}b{1,}c{1,3}",
            "[a-z]+\\d\\D\\w\\W\\s\\S",
            "\\x41\\u0042",
            "\\.\\*\\-\\+\\[\\]\\\\\\?\\^\\|\\(\\)\\{\\}",
            "^(a|b)*$",
            "[^;]?",
        ] {
            assert!(compile(pattern).is_ok(), "{pattern}");
        }
    }

    #[test]
    fn rejected_patterns() {
        for pattern in [
            "(^|;)key=([^=]+;)?va(?'alpha')lue($|,|;)",
            "iuawhefiuhawef\\aaerwergj",
            "aerghearg\\beraarg",
            "afewafawefwaef\\",
            "(^|;)key=([^=]+;)?(?<double>A)B<double>($|,|;)",
            "(^|;)key=rai??n($|,|;)",
            "a*?",
            "a+?",
            "a{2}?",
            "(?:x)",
            "(?i)x",
            "\\x4",
            "\\u12G4",
            "\\k<name>",
            "\\p{L}",
            "a{name}",
            "(unclosed",
        ] {
            assert_eq!(compile(pattern).err(), Some(Rejected), "{pattern}");
        }
    }

    #[test]
    fn matching_follows_the_dialect() {
        let rx = compile("(^|;)t=(|[^=]+,)running([;,]|$)").expect("valid");
        assert!(rx.is_match("t=running,Cycling,ice hockey,water polo"));
        assert!(rx.is_match("t=running;l=Mumbai,IN"));
        assert!(!rx.is_match("running"));
        let dot = compile("a.b").expect("valid");
        assert!(dot.is_match("a\nb"), "dot matches newline");
        assert!(compile("\\u0250").expect("valid").is_match("ɐ"));
    }
}
