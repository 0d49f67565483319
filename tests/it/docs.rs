//! The documentation against the tree and the binary: every relative link in README.md and
//! docs/*.md leads to an existing file, and every option written there after
//! `iop-profile-server` is one the binary's help lists.
//!
//! Both checks read markdown in blocks (a paragraph, a table, a list, or one fenced code
//! block), so that a link or a code span that wraps onto the next line is still seen whole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::kit::server_command;

/// The name of the binary, as commands in the documentation start it.
const BINARY: &str = "iop-profile-server";

/// A run of lines of one markdown file: prose, or the body of one fenced code block.
struct Block {
    /// Line number (from 1) of the block's first line.
    line: usize,
    text: String,
    code: bool,
}

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md.
fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repository().join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    docs.insert(0, repository().join("README.md"));
    docs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Splits markdown into prose blocks (separated by blank lines) and fenced code blocks.
fn blocks(text: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut current: Option<Block> = None;
    let mut fenced = false;
    for (index, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```") || line.trim_start().starts_with("~~~");
        if fence || (!fenced && line.trim().is_empty()) {
            found.extend(current.take());
            fenced ^= fence;
            continue;
        }
        let block = current.get_or_insert_with(|| Block {
            line: index + 1,
            text: String::new(),
            code: fenced,
        });
        block.text.push_str(line);
        block.text.push('\n');
    }
    found.extend(current);
    found
}

/// The contents of the inline code spans of a prose block, each on one line.
fn code_spans(prose: &str) -> Vec<String> {
    let span = Regex::new(r"`([^`]+)`").expect("span pattern");
    span.captures_iter(prose)
        .map(|found| found[1].replace('\n', " "))
        .collect()
}

/// The link targets of a prose block, outside code spans: `[text](target)`,
/// `[text](target "title")` and reference definitions `[name]: target`.
fn link_targets(prose: &str) -> Vec<String> {
    let span = Regex::new(r"`[^`]*`").expect("span pattern");
    let inline = Regex::new(r#"\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)"#).expect("link pattern");
    let reference = Regex::new(r"(?m)^\s*\[[^\]]+\]:\s*(\S+)").expect("reference pattern");
    let text = span.replace_all(prose, "");
    inline
        .captures_iter(&text)
        .chain(reference.captures_iter(&text))
        .map(|found| found[1].to_owned())
        .collect()
}

/// The relative links of `text` (the contents of `file`) that lead nowhere, as
/// `file:line: target`, and how many relative links were checked.
fn broken_links(file: &Path, text: &str) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut broken = Vec::new();
    for block in blocks(text).into_iter().filter(|block| !block.code) {
        for target in link_targets(&block.text) {
            let external = ["http://", "https://", "mailto:"]
                .iter()
                .any(|scheme| target.starts_with(scheme));
            let path = target.split('#').next().unwrap_or_default();
            if external || path.is_empty() {
                continue;
            }
            checked += 1;
            let resolved = match path.strip_prefix('/') {
                Some(from_root) => repository().join(from_root),
                None => file.parent().expect("a file has a parent").join(path),
            };
            if !resolved.exists() {
                broken.push(format!("{}:{}: {target}", file.display(), block.line));
            }
        }
    }
    (checked, broken)
}

#[test]
fn docs_relative_links_resolve() {
    // The check itself: a missing file is reported (anchor or not); web, mail and in-page links
    // and links inside code are not checked.
    let sample = "See [ops](operators.md#logs), [gone](no-such-file.md#x), [bare](gone.md),\n\
                  [web](https://example.org/a.md), [mail](mailto:a@example.org), [top](#top)\n\
                  and `[code](nowhere.md)`.\n\n```\n[fenced](nowhere.md)\n```\n";
    let (checked, broken) = broken_links(&repository().join("docs/sample.md"), sample);
    assert_eq!(checked, 3, "{broken:?}");
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].ends_with(":1: no-such-file.md#x"), "{broken:?}");

    let mut checked = 0;
    let mut broken = Vec::new();
    for file in documents() {
        let (count, missing) = broken_links(&file, &read(&file));
        checked += count;
        broken.extend(missing);
    }
    assert!(
        checked >= 10,
        "only {checked} relative links found: is the scan broken?"
    );
    assert!(
        broken.is_empty(),
        "links to files that do not exist:\n{}",
        broken.join("\n")
    );
}

/// One command line of the documentation that starts the binary.
#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    /// The first argument when it is not an option: a subcommand, or a placeholder such as
    /// `<command>`.
    subcommand: Option<String>,
    /// Every `--option` on the command line, without its value.
    flags: Vec<String>,
}

/// The words of `command` after the program, when the program is this binary: started by
/// path or name (after `sudo` and variable assignments), or through `cargo run ... --`.
fn arguments_of_binary(command: &str) -> Option<Vec<String>> {
    let mut words = command
        .split_whitespace()
        .map(|word| word.trim_matches(|c| c == '"' || c == '\''))
        .skip_while(|word| {
            *word == "sudo"
                || *word == "$"
                || word
                    .split_once('=')
                    .is_some_and(|(name, _)| is_variable_name(name))
        });
    let program = words.next()?;
    if program.rsplit('/').next() == Some(BINARY) {
        return Some(words.map(str::to_owned).collect());
    }
    if program == "cargo" && words.next() == Some("run") {
        let mut rest = words.skip_while(|word| *word != "--");
        return rest.next().map(|_| rest.map(str::to_owned).collect());
    }
    None
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// The invocations of the binary in one command line or code span; commands of other tools
/// (`systemctl status iop-profile-server`, `journalctl -u iop-profile-server --since today`) are
/// not invocations.
fn invocations(snippet: &str) -> Vec<Invocation> {
    let separators = Regex::new(r"\|\||&&|\$\(|[|;()]").expect("separator pattern");
    let flag = Regex::new(r"^[\[\x22']*(--[A-Za-z0-9][A-Za-z0-9-]*)").expect("flag pattern");
    // A shell comment ends the command.
    let command = snippet.split(" #").next().unwrap_or_default();
    separators
        .split(command)
        .filter_map(arguments_of_binary)
        .map(|arguments| Invocation {
            subcommand: arguments
                .first()
                .filter(|first| !first.starts_with('-') && !first.starts_with('['))
                .cloned(),
            flags: arguments
                .iter()
                .filter_map(|word| flag.captures(word).map(|found| found[1].to_owned()))
                .collect(),
        })
        .collect()
}

/// The command lines of a fenced code block, with `\` continuations joined.
fn command_lines(code: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in code.lines() {
        if let Some(start) = line.trim_end().strip_suffix('\\') {
            pending.push_str(start);
        } else {
            pending.push_str(line);
            lines.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        lines.push(pending);
    }
    lines
}

/// Every invocation of the binary in a markdown text: in fenced code, and in inline code
/// spans of the prose, each with the line its block starts on.
fn documented_invocations(text: &str) -> Vec<(usize, Invocation)> {
    let mut found = Vec::new();
    for block in blocks(text) {
        let snippets = if block.code {
            command_lines(&block.text)
        } else {
            code_spans(&block.text)
        };
        for snippet in snippets {
            found.extend(invocations(&snippet).into_iter().map(|i| (block.line, i)));
        }
    }
    found
}

/// Runs the binary with `arguments` and returns what it printed; it must succeed.
fn help_text(arguments: &[&str]) -> String {
    let out = server_command()
        .args(arguments)
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{BINARY} {}: {}",
        arguments.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The options a help text names.
fn options_in(help: &str) -> BTreeSet<String> {
    let option = Regex::new(r"--[A-Za-z0-9][A-Za-z0-9-]*").expect("option pattern");
    option
        .find_iter(help)
        .map(|found| found.as_str().to_owned())
        .collect()
}

/// What the binary's help says: the options of `--help`, and those of each subcommand's.
struct Help {
    general: BTreeSet<String>,
    subcommands: BTreeMap<String, BTreeSet<String>>,
}

impl Help {
    fn of_the_binary() -> Help {
        let overview = help_text(&["--help"]);
        let names: Vec<String> = overview
            .lines()
            .skip_while(|line| !line.starts_with("Commands:"))
            .skip(1)
            .take_while(|line| !line.trim().is_empty())
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        assert!(names.len() >= 5, "no subcommands in the help:\n{overview}");
        let subcommands = names
            .into_iter()
            .map(|name| {
                // `help --help` is not a command line the binary takes; `help` has no options.
                let options = if name == "help" {
                    BTreeSet::new()
                } else {
                    options_in(&help_text(&[&name, "--help"]))
                };
                (name, options)
            })
            .collect();
        Help {
            general: options_in(&overview),
            subcommands,
        }
    }

    /// What is wrong with an invocation: an unknown subcommand, or options its help lacks.
    fn problems(&self, invocation: &Invocation) -> Vec<String> {
        let mut known = self.general.clone();
        let mut problems = Vec::new();
        match invocation.subcommand.as_deref() {
            // `<command>`, `<subcommand>`: a placeholder, not a subcommand.
            Some(name) if name.starts_with('<') => {}
            Some(name) => match self.subcommands.get(name) {
                Some(options) => known.extend(options.iter().cloned()),
                None => problems.push(format!("unknown subcommand '{name}'")),
            },
            None => {}
        }
        problems.extend(
            invocation
                .flags
                .iter()
                .filter(|flag| !known.contains(*flag))
                .map(|flag| format!("unknown option '{flag}'")),
        );
        problems
    }
}

#[test]
fn docs_flags_exist_in_help() {
    // The scan: options of the binary are found in code spans, wrapped spans and code lines;
    // other tools' options on lines that merely name the service are not.
    let sample = "Run `sudo iop-profile-server run --config FILE --bogus`, `iop-profile-server\n\
                  status [--json]`, `journalctl -u iop-profile-server --since today` and\n\
                  `systemctl status iop-profile-server`.\n\n```sh\n\
                  cargo test --locked             # not the binary\n\
                  IOP_X=1 target/release/iop-profile-server \\\n    probe h --timeout-secs 3\n```\n";
    let found = documented_invocations(sample);
    let flags: Vec<(Option<&str>, Vec<&str>)> = found
        .iter()
        .map(|(_, i)| {
            let flags = i.flags.iter().map(String::as_str).collect();
            (i.subcommand.as_deref(), flags)
        })
        .collect();
    assert_eq!(
        flags,
        [
            (Some("run"), vec!["--config", "--bogus"]),
            (Some("status"), vec!["--json"]),
            (Some("probe"), vec!["--timeout-secs"]),
        ],
    );

    let help = Help::of_the_binary();
    // The check: an unknown option or subcommand is a problem; a placeholder is not.
    assert_eq!(help.problems(&found[0].1), ["unknown option '--bogus'"]);
    assert!(help.problems(&found[1].1).is_empty());
    let made_up = invocations("iop-profile-server serve");
    assert_eq!(help.problems(&made_up[0]), ["unknown subcommand 'serve'"]);
    assert!(
        help.problems(&invocations("iop-profile-server <command> --help")[0])
            .is_empty()
    );

    let mut checked = 0;
    let mut problems = Vec::new();
    for file in documents() {
        for (line, invocation) in documented_invocations(&read(&file)) {
            checked += invocation.flags.len();
            for problem in help.problems(&invocation) {
                problems.push(format!("{}:{line}: {problem}", file.display()));
            }
        }
    }
    assert!(
        checked >= 5,
        "only {checked} options found: is the scan broken?"
    );
    assert!(
        problems.is_empty(),
        "options or subcommands the binary does not have:\n{}",
        problems.join("\n")
    );
}
