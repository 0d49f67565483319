//! The protocol's WildcardType (spec §1.3): an optional `*` at the start and/or end, matched
//! case-insensitively; `""`, `"*"` and `"**"` match everything; any other `*` is literal.

/// A compiled wildcard pattern, already lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wildcard {
    /// Matches everything.
    Any,
    /// The whole text equals this.
    Exact(String),
    /// The text starts with this.
    Prefix(String),
    /// The text ends with this.
    Suffix(String),
    /// The text contains this.
    Contains(String),
}

impl Wildcard {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Wildcard {
        if matches!(pattern, "" | "*" | "**") {
            return Wildcard::Any;
        }
        let lower = pattern.to_lowercase();
        let starts = lower.starts_with('*');
        let ends = lower.ends_with('*');
        // Both ends are the one-byte `*` when flagged, so these are character boundaries.
        let core = lower[usize::from(starts)..lower.len() - usize::from(ends)].to_owned();
        match (starts, ends) {
            (true, true) => Wildcard::Contains(core),
            (true, false) => Wildcard::Suffix(core),
            (false, true) => Wildcard::Prefix(core),
            (false, false) => Wildcard::Exact(core),
        }
    }

    /// Whether `lowercase_text` (already lower-cased) matches.
    pub fn matches(&self, lowercase_text: &str) -> bool {
        match self {
            Wildcard::Any => true,
            Wildcard::Exact(core) => lowercase_text == core,
            Wildcard::Prefix(core) => lowercase_text.starts_with(core.as_str()),
            Wildcard::Suffix(core) => lowercase_text.ends_with(core.as_str()),
            Wildcard::Contains(core) => lowercase_text.contains(core.as_str()),
        }
    }
}

/// A wildcard made ready to test many texts: a "contains" pattern gets its substring finder
/// built once, instead of once per text.
pub(crate) enum Matcher<'a> {
    /// Any other pattern, tested as it is.
    Plain(&'a Wildcard),
    /// A "contains" pattern.
    Contains(Box<memchr::memmem::Finder<'a>>),
}

impl Wildcard {
    /// The matcher for testing many texts against this pattern.
    pub(crate) fn matcher(&self) -> Matcher<'_> {
        match self {
            Wildcard::Contains(core) => {
                Matcher::Contains(Box::new(memchr::memmem::Finder::new(core)))
            }
            other => Matcher::Plain(other),
        }
    }
}

impl Matcher<'_> {
    /// Whether `lowercase_text` (already lower-cased) matches.
    pub(crate) fn matches(&self, lowercase_text: &str) -> bool {
        match self {
            Matcher::Plain(wildcard) => wildcard.matches(lowercase_text),
            Matcher::Contains(finder) => finder.find(lowercase_text.as_bytes()).is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        let wildcard = Wildcard::new(pattern);
        let lower = text.to_lowercase();
        let plain = wildcard.matches(&lower);
        assert_eq!(
            wildcard.matcher().matches(&lower),
            plain,
            "{pattern:?} on {text:?}"
        );
        plain
    }

    #[test]
    fn wildcard_table() {
        let table = [
            ("", "anything", true),
            ("*", "anything", true),
            ("**", "anything", true),
            ("Mumbai *", "Mumbai 2", true),
            ("Mumbai *", "mumbai 2", true),
            ("Mumbai *", "Mumbai", false),
            ("*ai*", "Buenos Aires", true),
            ("*ai*", "Karachi", false),
            ("*Type B", "Profile Type B", true),
            ("*Type B", "Profile Type BB", false),
            ("profile*", "Profile Type A", true),
            ("Shanghai 1", "Shanghai 1", true),
            ("Shanghai 1", "Shanghai 10", false),
            ("*1", "Mumbai 1", true),
            ("a*b", "a*b", true),
            ("a*b", "axb", false),
            ("*ɐ*", "XɐY", true),
            ("ÄB*", "äbc", true),
        ];
        for (pattern, text, expected) in table {
            assert_eq!(matches(pattern, text), expected, "{pattern:?} on {text:?}");
        }
    }
}
