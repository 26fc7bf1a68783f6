//! The shape of `src/`, checked: no import cycle between top-level modules
//! (`config` is plain data that the rest reads; nothing it imports may
//! import it back). The check reads the source, not the compiler's view:
//! every `crate::name` and `super::…::name` that reaches the crate root is
//! an edge from the module whose file holds it, comments and string
//! literals left out, `#[cfg(test)]` code included. A path it cannot
//! resolve fails the check rather than being skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Where an edge was seen: file and line.
type Site = (PathBuf, usize);

/// `from -> to`, with the first place each edge was seen.
type Graph = BTreeMap<String, BTreeMap<String, Site>>;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// The tokens of a Rust file that matter for paths, each with its line:
/// identifiers, `::` and single punctuation; comments, strings, character
/// literals, lifetimes and numbers are dropped.
fn tokens(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            _ if c.is_whitespace() => i += 1,
            '/' if at(i + 1) == '/' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                loop {
                    if i >= chars.len() {
                        break;
                    }
                    if chars[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '"' => i = skip_string(&chars, i + 1, &mut line),
            'r' | 'b' if raw_string_start(&chars, i).is_some() => {
                let (hashes, quote) = raw_string_start(&chars, i).unwrap();
                i = quote + 1;
                loop {
                    if i >= chars.len() {
                        break;
                    }
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
            }
            'b' if at(i + 1) == '"' => i = skip_string(&chars, i + 2, &mut line),
            'b' if at(i + 1) == '\'' => i = skip_char(&chars, i + 1),
            '\'' => i = skip_char(&chars, i),
            _ if c.is_ascii_digit() => {
                while at(i).is_ascii_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
            _ if c.is_alphabetic() || c == '_' => {
                // A raw identifier (`r#type`) is the identifier.
                if c == 'r' && at(i + 1) == '#' {
                    i += 2;
                }
                let start = i;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
                out.push((Token::Ident(chars[start..i].iter().collect()), line));
            }
            ':' if at(i + 1) == ':' => {
                out.push((Token::Path, line));
                i += 2;
            }
            _ => {
                out.push((Token::Punct(c), line));
                i += 1;
            }
        }
    }
    out
}

/// After an opening quote: past the closing one.
fn skip_string(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            '\n' => {
                *line += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    i
}

/// `r"`, `r#"`, `br##"` …: the number of `#` and where the quote is.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes_start = j;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((j - hashes_start, j))
}

/// At a `'`: past a character literal, or past the `'` of a lifetime.
fn skip_char(chars: &[char], i: usize) -> usize {
    if chars.get(i + 1) == Some(&'\\') {
        let mut j = i + 2;
        while j < chars.len() && chars[j] != '\'' {
            j += 1;
        }
        return j + 1;
    }
    if chars.get(i + 2) == Some(&'\'') {
        return i + 3;
    }
    i + 1
}

/// The top-level modules `src/lib.rs` declares.
fn top_modules(src: &Path) -> Vec<String> {
    let lib = fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let tokens = tokens(&lib);
    tokens
        .windows(3)
        .filter_map(|window| match window {
            [
                (Token::Ident(keyword), _),
                (Token::Ident(name), _),
                (Token::Punct(';'), _),
            ] if keyword == "mod" => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Every `.rs` file of a top-level module, with its module depth (1 for
/// `src/name.rs` and `src/name/mod.rs`, 2 for `src/name/part.rs` …).
fn module_files(src: &Path, module: &str) -> Vec<(PathBuf, usize)> {
    let mut files = Vec::new();
    let single = src.join(format!("{module}.rs"));
    if single.exists() {
        files.push((single, 1));
    }
    let directory = src.join(module);
    if directory.is_dir() {
        walk(&directory, 1, &mut files);
    }
    files
}

fn walk(directory: &Path, depth: usize, files: &mut Vec<(PathBuf, usize)>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, depth + 1, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            let file_depth = if path.file_name().unwrap() == "mod.rs" {
                depth
            } else {
                depth + 1
            };
            files.push((path, file_depth));
        }
    }
}

/// The names a file's paths reach at the crate root (`crate::name`,
/// `crate::{a, b}`, `super::super::name` from depth 2 …), with their
/// lines; `Err` for a path this check cannot follow.
fn root_names(text: &str, file_depth: usize) -> Result<Vec<(String, usize)>, String> {
    let tokens = tokens(text);
    let mut names = Vec::new();
    // Inline modules (`mod tests { … }`) open at these brace depths.
    let mut inline: Vec<usize> = Vec::new();
    let mut braces = 0;
    let mut i = 0;
    let ident = |i: usize| match tokens.get(i) {
        Some((Token::Ident(name), _)) => Some(name.as_str()),
        _ => None,
    };
    let is = |i: usize, token: Token| tokens.get(i).map(|(t, _)| t) == Some(&token);
    while i < tokens.len() {
        let line = tokens[i].1;
        match &tokens[i].0 {
            Token::Punct('{') => braces += 1,
            Token::Punct('}') => {
                braces -= 1;
                if inline.last() == Some(&braces) {
                    inline.pop();
                }
            }
            Token::Ident(word)
                if word == "mod" && ident(i + 1).is_some() && is(i + 2, Token::Punct('{')) =>
            {
                inline.push(braces);
            }
            Token::Ident(word) if word == "crate" && is(i + 1, Token::Path) => {
                // `pub(crate)` and `pub(in crate::x)` are visibility, not a
                // dependency; `crate::` is always followed by `::`.
                let after = i + 2;
                names.extend(reached(&tokens, after, line)?);
            }
            Token::Ident(word) if word == "super" && !is(i.wrapping_sub(1), Token::Path) => {
                let mut ups = 0;
                let mut j = i;
                while ident(j) == Some("super") && is(j + 1, Token::Path) {
                    ups += 1;
                    j += 2;
                }
                let depth = file_depth + inline.len();
                if ups == 0 {
                    // `pub(super)`: visibility.
                    j = i + 1;
                } else if ups == depth {
                    names.extend(reached(&tokens, j, line)?);
                } else if ups > depth {
                    return Err(format!("line {line}: super:: past the crate root"));
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(names)
}

/// At the token after `crate::` (or the last `super::` to the root): the
/// root names it reaches.
fn reached(
    tokens: &[(Token, usize)],
    at: usize,
    line: usize,
) -> Result<Vec<(String, usize)>, String> {
    match tokens.get(at) {
        Some((Token::Ident(name), _)) => Ok(vec![(name.clone(), line)]),
        Some((Token::Punct('{'), _)) => {
            // `crate::{a::b, c}`: the first name of each item at this level.
            let mut names = Vec::new();
            let mut depth = 0;
            let mut item_start = true;
            for (token, token_line) in &tokens[at..] {
                match token {
                    Token::Punct('{') => {
                        depth += 1;
                        if depth > 1 {
                            item_start = false;
                        }
                    }
                    Token::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(names);
                        }
                    }
                    Token::Punct(',') if depth == 1 => item_start = true,
                    Token::Ident(name) if depth == 1 && item_start => {
                        names.push((name.clone(), *token_line));
                        item_start = false;
                    }
                    Token::Punct('*') if depth == 1 && item_start => {
                        return Err(format!("line {line}: a glob of the crate root"));
                    }
                    _ => {}
                }
            }
            Err(format!("line {line}: unclosed use group"))
        }
        Some((Token::Punct('*'), _)) => Err(format!(
            "line {line}: a glob of the crate root (which modules it uses cannot be told)"
        )),
        _ => Err(format!("line {line}: a crate path this check cannot read")),
    }
}

/// The edges between top-level modules of the crate at `src`.
fn graph(src: &Path) -> Result<Graph, Vec<String>> {
    let modules = top_modules(src);
    assert!(!modules.is_empty(), "no modules in {}", src.display());
    // Exported macros live at the crate root: `crate::client_log!` is a
    // use of the module that defines it.
    let mut macros: BTreeMap<String, String> = BTreeMap::new();
    let mut files = Vec::new();
    for module in &modules {
        for (path, depth) in module_files(src, module) {
            let text = fs::read_to_string(&path).unwrap();
            for window in tokens(&text).windows(3) {
                if let [
                    (Token::Ident(keyword), _),
                    (Token::Punct('!'), _),
                    (Token::Ident(name), _),
                ] = window
                    && keyword == "macro_rules"
                {
                    macros.insert(name.clone(), module.clone());
                }
            }
            files.push((module.clone(), path, depth, text));
        }
    }
    let mut graph = Graph::new();
    let mut errors = Vec::new();
    for (module, path, depth, text) in &files {
        let edges = graph.entry(module.clone()).or_default();
        match root_names(text, *depth) {
            Ok(names) => {
                for (name, line) in names {
                    let target = if modules.contains(&name) {
                        name
                    } else if let Some(owner) = macros.get(&name) {
                        owner.clone()
                    } else {
                        errors.push(format!(
                            "{}:{line}: crate::{name} is neither a top-level module nor an exported macro",
                            path.display()
                        ));
                        continue;
                    };
                    if &target != module {
                        edges.entry(target).or_insert_with(|| (path.clone(), line));
                    }
                }
            }
            Err(why) => errors.push(format!("{}: {why}", path.display())),
        }
    }
    if errors.is_empty() {
        Ok(graph)
    } else {
        Err(errors)
    }
}

/// The strongly connected components with more than one module (Tarjan):
/// each is a set of modules that import each other, in a ring.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let number = self.index.len();
            self.index.insert(node, number);
            self.low.insert(node, number);
            self.stack.push(node);
            self.on_stack.insert(node);
            let graph = self.graph;
            for next in graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
                if !self.index.contains_key(next.as_str()) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next.as_str()]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next.as_str()) {
                    let low = self.low[node].min(self.index[next.as_str()]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                loop {
                    let member = self.stack.pop().unwrap();
                    self.on_stack.remove(member);
                    component.push(member.to_owned());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

/// A cycle as a reader can fix it: each edge inside it, with where it is.
fn describe(graph: &Graph, component: &[String]) -> String {
    let mut text = format!("import cycle between {}:\n", component.join(", "));
    for from in component {
        for (to, (path, line)) in &graph[from] {
            if component.contains(to) {
                text += &format!("  {from} -> {to}  ({}:{line})\n", path.display());
            }
        }
    }
    text
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = match graph(&src) {
        Ok(graph) => graph,
        Err(errors) => panic!("paths the check cannot follow:\n{}", errors.join("\n")),
    };
    // The check saw the crate: edges everyone knows are there.
    assert!(graph["worker"].contains_key("session"), "{graph:?}");
    assert!(graph["balancer"].contains_key("config"), "{graph:?}");
    let found: Vec<String> = cycles(&graph)
        .iter()
        .map(|component| describe(&graph, component))
        .collect();
    assert!(found.is_empty(), "\n{}", found.join("\n"));
}

/// The check fails when it should: a small crate with a cycle through a
/// `use` group, a `super::super` path and an exported macro, and the
/// paths it must not count (comments, strings, `pub(crate)`).
#[test]
fn the_cycle_check_finds_a_cycle() {
    let src = std::env::temp_dir().join(format!("rsp-module-hygiene-{}", std::process::id()));
    let _ = fs::remove_dir_all(&src);
    fs::create_dir_all(src.join("config")).unwrap();
    fs::create_dir_all(src.join("state")).unwrap();
    fs::write(
        src.join("lib.rs"),
        "pub mod config;\npub mod state;\npub mod log;\npub mod leaf;\n",
    )
    .unwrap();
    fs::write(
        src.join("config/mod.rs"),
        "mod read;\n// crate::log is only named here\npub(crate) fn f() { let _ = \"crate::log\"; }\n",
    )
    .unwrap();
    fs::write(
        src.join("config/read.rs"),
        "fn g() -> char { let _ = r#\"crate::log\"#; 'x' }\nuse super::super::state::Dict;\n",
    )
    .unwrap();
    fs::write(
        src.join("state/mod.rs"),
        "use crate::{leaf, config::Config};\nmod tests { use super::*; fn t<'a>(_: &'a str) { crate::say!(); } }\n",
    )
    .unwrap();
    fs::write(
        src.join("log.rs"),
        "#[macro_export]\nmacro_rules! say { () => {} }\n",
    )
    .unwrap();
    fs::write(src.join("leaf.rs"), "pub struct Leaf;\n").unwrap();
    let graph = graph(&src).unwrap();
    fs::remove_dir_all(&src).unwrap();
    assert_eq!(
        graph["config"].keys().collect::<Vec<_>>(),
        ["state"],
        "comments, strings and visibility are no edge"
    );
    assert_eq!(
        graph["state"].keys().collect::<Vec<_>>(),
        ["config", "leaf", "log"]
    );
    assert_eq!(graph["config"]["state"].1, 2, "the line of the edge");
    assert_eq!(
        cycles(&graph),
        vec![vec!["config".to_owned(), "state".to_owned()]]
    );
}
