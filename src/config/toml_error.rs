//! TOML syntax and type errors as [`Problem`]s named by the dotted key they concern
//! (`limits.max_connections`, `listener[1].port`), like the problems the checks report.
//!
//! The toml crate gives a byte span but no public key path, so the path is rebuilt from the text
//! before the span: the last `[table]` or `[[array]]` header (array entries counted), then the
//! keys of the inline tables and arrays the span sits in, then the key itself (entries of an
//! inline array are not counted: `listener = [{..}]` gives `listener.port`). Only this mapping
//! belongs here; the checks of the values are in the section files.

use super::Problem;

/// A TOML syntax or type error as one problem, named by the dotted key it concerns.
pub(super) fn problem(text: &str, error: &toml::de::Error) -> Problem {
    let message = in_operator_words(&error.message().replace('\n', " "));
    let Some(span) = error.span() else {
        return Problem::new("(file)", message);
    };
    let mut at = span.start.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let line_no = text[..at].matches('\n').count() + 1;
    let mut key = key_at(text, at);
    if let Some(field) = missing_field(&message) {
        key = if key.is_empty() {
            field.to_string()
        } else {
            format!("{key}.{field}")
        };
    }
    if key.is_empty() {
        key = "(file)".to_string();
    }
    Problem::new(key, format!("{message} (line {line_no})"))
}

/// `text` with the line holding byte `at` commented out, when that line is a whole
/// `key = value` (brackets and braces closed on it) outside any header: the rest of the file
/// can then be read on. `None` for a header, a value spread over lines, or a comment already.
pub(super) fn without_line(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[start..end];
    let trimmed = line.trim_start();
    let balanced = |open: char, close: char| {
        line.chars().filter(|&c| c == open).count() == line.chars().filter(|&c| c == close).count()
    };
    let whole = trimmed.contains('=')
        && !trimmed.starts_with('[')
        && !trimmed.starts_with('#')
        && balanced('[', ']')
        && balanced('{', '}');
    whole.then(|| format!("{}# {line}{}", &text[..start], &text[end..]))
}

/// The line (from 1) where `key` (`table.key`, or a top-level `key`) is set in `text`, found
/// by reading the table headers; `None` for keys in arrays of tables or not written at all.
pub(super) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let (table, field) = key.rsplit_once('.').unwrap_or(("", key));
    if table.contains('[') {
        return None;
    }
    let mut current = String::new();
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            current.clear();
            current.push_str(trimmed.trim_matches(|c| c == '[' || c == ']').trim());
            continue;
        }
        let written = trimmed
            .split_once('=')
            .map(|(name, _)| name.trim().trim_matches('"'));
        if current == table && written == Some(field) {
            return Some(number + 1);
        }
    }
    None
}

/// serde's wording of a type error or an unknown key, said as an operator would: what the value
/// must be, and the key that was probably meant. Other messages pass unchanged.
fn in_operator_words(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        let found = match found.split_once(' ') {
            Some(("string", value)) => format!("the text {value}"),
            Some(("integer" | "float", value)) => format!("the number {}", value.trim_matches('`')),
            Some(("boolean", value)) => value.trim_matches('`').to_owned(),
            _ => found.to_owned(),
        };
        let expected = match expected {
            "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => "a whole number".into(),
            "f32" | "f64" => "a number".into(),
            "a boolean" => "true or false".into(),
            "a string" => "text in quotes".into(),
            "a sequence" => "a list in [ ]".into(),
            other => other.to_owned(),
        };
        return format!("must be {expected}, not {found}");
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((unknown, rest)) = rest.split_once('`')
    {
        let known: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        return match closest(unknown, &known) {
            Some(meant) => format!("unknown key `{unknown}`; did you mean `{meant}`?"),
            None => format!(
                "unknown key `{unknown}`; the keys here are {}",
                known.join(", ")
            ),
        };
    }
    message.to_owned()
}

/// The key of `known` nearest to `unknown` by edit distance, when near enough to be a slip.
fn closest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let (distance, meant) = known
        .iter()
        .map(|key| (edit_distance(unknown, key), *key))
        .min()?;
    (distance <= (unknown.chars().count() / 3).max(2)).then_some(meant)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// The field named by serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// The dotted key of the value or key that starts at byte `at` of `text`.
fn key_at(text: &str, at: usize) -> String {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let mut scan = Scan::default();
    scan.feed(&text[..line_start]);
    let line = &text[line_start..line_end];
    if scan.at_top_level() && is_header(line) {
        scan.header(line);
        return scan.header.join(".");
    }
    scan.feed(&text[line_start..at]);
    scan.path(&text[at..line_end])
}

/// Whether a line (outside any value) opens a `[table]` or `[[array]]`.
fn is_header(line: &str) -> bool {
    line.trim_start().starts_with('[')
}

/// The state of a left-to-right walk over TOML text: enough to name the key at its end.
#[derive(Debug, Default)]
struct Scan {
    /// Path of the current header, array entries indexed (`listener[1]`).
    header: Vec<String>,
    /// Every `[[array]]` seen, by dotted name, with its entry count.
    arrays: Vec<(String, usize)>,
    /// Open inline tables and arrays, with the key each is the value of.
    frames: Vec<Option<String>>,
    /// The key whose value is being read, once its `=` was seen.
    key: Option<String>,
    /// Text since the last delimiter: a key being read, or value text.
    token: String,
    /// The quote of the string being read, and whether the next character is escaped.
    string: Option<(char, bool)>,
    /// Inside a comment, until the end of the line.
    comment: bool,
}

impl Scan {
    fn at_top_level(&self) -> bool {
        self.frames.is_empty() && self.string.is_none()
    }

    /// Walks `text`, which starts at the beginning of a line.
    fn feed(&mut self, text: &str) {
        for line in text.split_inclusive('\n') {
            if self.at_top_level() && is_header(line) {
                self.header(line);
            } else {
                line.chars().for_each(|c| self.char(c));
            }
        }
    }

    /// Enters the table or array entry a header line opens.
    fn header(&mut self, line: &str) {
        let line = line.trim();
        let array = line.starts_with("[[");
        let name = line.trim_start_matches('[');
        let name = name.split(']').next().unwrap_or(name);
        let parts = split_key(name);
        let dotted = parts.join(".");
        if array {
            let nested = format!("{dotted}.");
            self.arrays.retain(|(other, _)| !other.starts_with(&nested));
            match self.arrays.iter_mut().find(|(other, _)| *other == dotted) {
                Some((_, count)) => *count += 1,
                None => self.arrays.push((dotted, 1)),
            }
        }
        self.header = self.indexed(&parts);
        self.key = None;
        self.token.clear();
    }

    /// `parts` with `[index]` after every segment that names an array of tables.
    fn indexed(&self, parts: &[String]) -> Vec<String> {
        let mut path = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let prefix = parts[..=i].join(".");
            match self.arrays.iter().find(|(name, _)| *name == prefix) {
                Some((_, count)) => path.push(format!("{part}[{}]", count - 1)),
                None => path.push(part.clone()),
            }
        }
        path
    }

    /// One character outside any header line.
    fn char(&mut self, c: char) {
        if let Some((quote, escaped)) = self.string {
            self.string_char(c, quote, escaped);
            return;
        }
        if self.comment && c != '\n' {
            return;
        }
        match c {
            '#' => self.comment = true,
            '\n' => self.end_line(),
            '"' | '\'' => {
                self.string = Some((c, false));
                self.token.push(c);
            }
            '=' => self.key = Some(split_key(&self.token).join(".")),
            '{' | '[' => self.frames.push(self.key.take()),
            '}' | ']' => {
                self.frames.pop();
                self.key = None;
            }
            ',' => self.key = None,
            _ => self.token.push(c),
        }
        if matches!(c, '=' | '{' | '[' | '}' | ']' | ',') {
            self.token.clear();
        }
    }

    /// One character inside a string quoted by `quote` (escapes only in `"` strings).
    fn string_char(&mut self, c: char, quote: char, escaped: bool) {
        self.string = match c {
            _ if escaped => Some((quote, false)),
            '\\' if quote == '"' => Some((quote, true)),
            _ if c == quote => None,
            _ => Some((quote, false)),
        };
        self.token.push(c);
    }

    /// A newline outside inline tables and arrays ends the key/value pair.
    fn end_line(&mut self) {
        self.comment = false;
        if self.frames.is_empty() {
            self.key = None;
            self.token.clear();
        }
    }

    /// The dotted key at the end of the walk; `rest` is the line from there on.
    fn path(&self, rest: &str) -> String {
        let mut path = self.header.clone();
        path.extend(self.frames.iter().flatten().cloned());
        if let Some(key) = &self.key {
            path.push(key.clone());
        } else {
            // The span starts at a key (unknown or duplicate), maybe after `dotted.` parts.
            let here = format!("{}{}", self.token, rest.split('=').next().unwrap_or(""));
            if looks_like_key(&here) {
                path.extend(split_key(&here));
            }
        }
        path.retain(|part| !part.is_empty());
        path.join(".")
    }
}

/// A dotted key's parts, whitespace and quotes removed.
fn split_key(key: &str) -> Vec<String> {
    key.split('.')
        .map(|part| part.trim().trim_matches(['"', '\'']).to_string())
        .filter(|part| !part.is_empty())
        .collect()
}

/// Whether text could be a (dotted, maybe quoted) key rather than a piece of a value.
fn looks_like_key(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'' | ' '))
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    /// The key of the only problem of a file the parser refuses.
    fn key(text: &str) -> String {
        let found = problems(text);
        assert_eq!(found.len(), 1, "{found:?}");
        found[0].key.clone()
    }

    #[test]
    fn type_error_names_the_dotted_key() {
        let found = problems("[limits]\nmax_connections = \"many\"\n");
        assert_eq!(found[0].key, "limits.max_connections");
        assert!(found[0].message.contains("line 2"), "{found:?}");
        assert_eq!(
            key("[timeouts]\nclient_idle_secs = \"soon\"\n"),
            "timeouts.client_idle_secs"
        );
        assert_eq!(
            key("[loc]\nreconnect_secs = true # why\n"),
            "loc.reconnect_secs"
        );
        assert_eq!(key("test_mode = 3\n"), "test_mode");
        assert_eq!(key("[limits]\nmax_relays = -1\n"), "limits.max_relays");
    }

    #[test]
    fn array_entries_are_counted() {
        let text = "[[listener]]\nport = 1\nroles = [\"primary\"]\n\
                    [[listener]] # second\nport = \"x\"\nroles = []\n";
        assert_eq!(key(text), "listener[1].port");
        let text = "[[listener]]\nport = 70000\nroles = [\"primary\"]\n";
        assert_eq!(key(text), "listener[0].port");
        let text = "[[listener]]\nport = 1\nroles = [\n  \"primary\", # the plain port\n  5,\n]\n";
        assert_eq!(key(text), "listener[0].roles");
    }

    #[test]
    fn unknown_and_missing_fields_name_the_dotted_key() {
        let found = problems("[limits]\nmax_conections = 5\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "limits.max_conections");
        assert!(found[0].message.contains("max_conections"), "{found:?}");
        assert_eq!(key("bogus = 1\n"), "bogus");
        assert_eq!(key("[bogus]\nx = 1\n"), "bogus");
        assert_eq!(key("limits.bogus = 1\n"), "limits.bogus");
        let text = "[[listener]]\nport = 1\nroles = [\"primary\"]\n[[listener]]\nport = 2\n";
        assert_eq!(key(text), "listener[1].roles");
    }

    #[test]
    fn type_errors_and_unknown_keys_are_said_in_the_operators_words() {
        let found = problems("[[listener]]\nport = \"16987\"\nroles = [\"primary\"]\n");
        assert!(
            found[0]
                .message
                .starts_with("must be a whole number, not the text \"16987\" (line 2)"),
            "{found:?}"
        );
        let found = problems("[limits]\nmax_conections = 10\n");
        assert_eq!(found[0].key, "limits.max_conections");
        assert!(
            found[0]
                .message
                .starts_with("unknown key `max_conections`; did you mean `max_connections`?"),
            "{found:?}"
        );
        let found = problems("[limits]\ncolour = 1\n");
        assert!(
            found[0]
                .message
                .contains("the keys here are max_connections, "),
            "{found:?}"
        );
        let found = problems("test_mode = \"yes\"\n");
        assert!(
            found[0]
                .message
                .starts_with("must be true or false, not the text \"yes\""),
            "{found:?}"
        );
    }

    #[test]
    fn inline_tables_and_dotted_keys() {
        assert_eq!(
            key("location = { latitude = \"x\" }\n"),
            "location.latitude"
        );
        assert_eq!(
            key("location = { latitude = 1.0, longitude = \"x\" }\n"),
            "location.longitude"
        );
        assert_eq!(key("limits.max_relays = \"x\"\n"), "limits.max_relays");
        // `=` and `#` inside a string are not syntax (the URL's own problem comes after).
        let text = "[can]\napi_url = \"http://a=b#c\"\n[limits]\n\"max_relays\" = \"x\"\n";
        assert_eq!(problems(text)[0].key, "limits.max_relays");
    }

    #[test]
    fn syntax_errors_keep_a_line_number() {
        let found = problems("[limits]\nmax_relays = = 1\n");
        assert_eq!(found[0].key, "limits.max_relays");
        assert!(found[0].message.contains("line 2"), "{found:?}");
        let found = problems("[limits\n");
        assert!(found[0].message.contains("line 1"), "{found:?}");
    }
}
