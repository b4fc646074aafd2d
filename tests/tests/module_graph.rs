//! No import cycle between modules: in every crate under `operator/`, the modules (one per
//! file) that name each other through `crate::…`, `super::…`, `self::…` or a child
//! module's name must form a graph without cycles. Crates themselves cannot depend on each
//! other in a circle (Cargo refuses it); this test does the same for the modules inside
//! each crate. Run it alone with `cargo test -p govcloud-tests --test module_graph`.
//!
//! The graph is read from the source text, not from the compiler: comments are skipped, a
//! path is resolved to the longest module it names, and an inline module (`mod tests {`)
//! counts as part of its file.
//!
//! The same source reading checks that no function under `operator/` is longer than
//! [`MAX_FN_LINES`] lines (`no_function_over_120_lines`), test code aside; the few long
//! controller functions still to be split are listed by name, and the list may only shrink.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module: its path from the crate root (`["controller", "agency"]`), its file and the
/// names of its child modules.
#[derive(Debug)]
struct Module {
    file: PathBuf,
    children: BTreeSet<String>,
}

/// One crate: modules by path.
type Crate = BTreeMap<Vec<String>, Module>;

/// Where a dependency was seen, for the failure message.
type Edges = BTreeMap<(Vec<String>, Vec<String>), String>;

/// The code of a line: what precedes a `//` comment, with string contents blanked so that
/// text inside strings does not count as paths.
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    in_str = false;
                    out.push('"');
                }
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push('"');
            }
            '/' if chars.peek() == Some(&'/') => break,
            _ => out.push(c),
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `mod NAME;` declarations of a file (any visibility, any indentation).
fn declared_mods(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = code_of(line);
        let t = code.trim();
        let rest = t
            .strip_prefix("pub ")
            .or_else(|| t.strip_prefix("pub(crate) "))
            .unwrap_or(t);
        if let Some(name) = rest.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            out.push(name.trim().to_string());
        }
    }
    out
}

/// Walks the module tree from a crate root file.
fn load_crate(root: &Path) -> Crate {
    let mut krate = Crate::new();
    let mut todo = vec![(Vec::<String>::new(), root.to_path_buf())];
    while let Some((path, file)) = todo.pop() {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "main.rs" | "mod.rs") => file.parent().map(Path::to_path_buf),
            _ => file.parent().map(|p| p.join(file.file_stem().unwrap_or_default())),
        }
        .unwrap_or_default();
        let mut children = BTreeSet::new();
        for name in declared_mods(&text) {
            let flat = dir.join(format!("{name}.rs"));
            let nested = dir.join(&name).join("mod.rs");
            let child_file = if flat.exists() { flat } else { nested };
            assert!(child_file.exists(), "{}: mod {name} has no file", file.display());
            let mut child = path.clone();
            child.push(name.clone());
            todo.push((child, child_file));
            children.insert(name);
        }
        krate.insert(path, Module { file, children });
    }
    krate
}

/// The longest module of `krate` that `path` starts with.
fn module_of(krate: &Crate, path: &[String]) -> Option<Vec<String>> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| krate.contains_key(p))
}

/// The identifiers a path names after `start` (exclusive): `a::b::{c, d::e}` gives
/// `[[a, b, c], [a, b, d, e]]`, cut at the first non-identifier.
fn path_tails(code: &str, start: usize) -> Vec<Vec<String>> {
    let rest = &code[start..];
    let mut segs = Vec::new();
    let mut i = 0;
    let bytes: Vec<char> = rest.chars().collect();
    loop {
        if bytes.get(i) == Some(&'{') {
            // A group: split its top-level items and read each as a path.
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for &c in &bytes[i + 1..] {
                match c {
                    '{' => {
                        depth += 1;
                        item.push(c);
                    }
                    '}' if depth == 0 => break,
                    '}' => {
                        depth -= 1;
                        item.push(c);
                    }
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ => item.push(c),
                }
            }
            items.push(item);
            let mut out = Vec::new();
            for it in items {
                let it = it.trim();
                if it.is_empty() {
                    continue;
                }
                for tail in path_tails(it, 0) {
                    let mut p = segs.clone();
                    p.extend(tail);
                    out.push(p);
                }
            }
            return out;
        }
        let ident: String = bytes[i..].iter().take_while(|c| is_ident(**c)).collect();
        if ident.is_empty() {
            break;
        }
        i += ident.chars().count();
        segs.push(ident);
        if bytes.get(i) == Some(&':') && bytes.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            break;
        }
    }
    vec![segs]
}

/// Paths a line of module `at` names in its crate, each resolved from the crate root.
fn named_paths(code: &str, at: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = code.char_indices().collect();
    for (k, &(pos, c)) in chars.iter().enumerate() {
        if !is_ident(c) || (k > 0 && (is_ident(chars[k - 1].1) || chars[k - 1].1 == ':')) {
            continue;
        }
        let word: String = code[pos..].chars().take_while(|c| is_ident(*c)).collect();
        let after = pos + word.len();
        if !code[after..].starts_with("::") {
            continue;
        }
        let tails = path_tails(code, after + 2);
        let base: Option<Vec<String>> = match word.as_str() {
            "crate" => Some(Vec::new()),
            "self" => Some(at.to_vec()),
            "super" => {
                // `super::super::x` climbs once per `super`.
                let mut base = at.to_vec();
                base.pop();
                Some(base)
            }
            w if children.contains(w) => Some({
                let mut b = at.to_vec();
                b.push(w.to_string());
                b
            }),
            _ => None,
        };
        let Some(base) = base else { continue };
        for tail in tails {
            let mut base = base.clone();
            let mut tail = tail.as_slice();
            while let Some(("super", rest)) = tail.split_first().map(|(h, r)| (h.as_str(), r)) {
                base.pop();
                tail = rest;
            }
            let mut p = base;
            p.extend(tail.iter().cloned());
            out.push(p);
        }
    }
    out
}

/// A file's path from the repository root.
fn shown(file: &Path) -> String {
    let root = govcloud_tests::repo_root();
    let root = root.canonicalize().unwrap_or(root);
    let file = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    file.strip_prefix(&root).unwrap_or(&file).display().to_string()
}

/// Dependencies between the modules of a crate.
fn edges(krate: &Crate) -> Edges {
    let mut edges = Edges::new();
    for (at, module) in krate {
        let text = std::fs::read_to_string(&module.file).unwrap_or_default();
        // Inline modules (`mod tests {`) count as their file: paths inside them are read
        // from the file's module, one level down.
        let mut inline = false;
        for (n, line) in text.lines().enumerate() {
            let code = code_of(line);
            let t = code.trim_start();
            if !line.starts_with(char::is_whitespace)
                && (t.starts_with("mod ") || t.starts_with("pub mod "))
                && t.trim_end().ends_with('{')
            {
                inline = true;
                continue;
            }
            if inline && line.starts_with('}') {
                inline = false;
                continue;
            }
            let mut here = at.clone();
            if inline {
                here.push("(inline)".into());
            }
            let children = if inline {
                BTreeSet::new()
            } else {
                module.children.clone()
            };
            for p in named_paths(&code, &here, &children) {
                let Some(to) = module_of(krate, &p) else { continue };
                if &to == at {
                    continue;
                }
                edges
                    .entry((at.clone(), to))
                    .or_insert_with(|| format!("{}:{}: {}", shown(&module.file), n + 1, line.trim()));
            }
        }
    }
    edges
}

/// The cycles of a graph: its strongly connected components of more than one module.
fn cycles(nodes: &[Vec<String>], edges: &Edges) -> Vec<Vec<Vec<String>>> {
    let index: BTreeMap<&Vec<String>, usize> = nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
    let mut adj = vec![Vec::new(); nodes.len()];
    for (from, to) in edges.keys() {
        if let (Some(&f), Some(&t)) = (index.get(from), index.get(to)) {
            adj[f].push(t);
        }
    }
    // Tarjan's algorithm, iterative.
    let n = nodes.len();
    let (mut idx, mut low, mut on) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut next, mut out) = (Vec::new(), 0, Vec::new());
    for s in 0..n {
        if idx[s] != usize::MAX {
            continue;
        }
        let mut call = vec![(s, 0usize)];
        idx[s] = next;
        low[s] = next;
        next += 1;
        stack.push(s);
        on[s] = true;
        while let Some(&mut (v, ref mut i)) = call.last_mut() {
            if let Some(&w) = adj[v].get(*i) {
                *i += 1;
                if idx[w] == usize::MAX {
                    idx[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on[w] = true;
                    call.push((w, 0));
                } else if on[w] {
                    low[v] = low[v].min(idx[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(u, _)) = call.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == idx[v] {
                let mut scc = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    scc.push(nodes[w].clone());
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    out.push(scc);
                }
            }
        }
    }
    out
}

fn name(crate_name: &str, path: &[String]) -> String {
    if path.is_empty() {
        crate_name.to_string()
    } else {
        format!("{crate_name}::{}", path.join("::"))
    }
}

/// Every crate root under `operator/`: `src/lib.rs` and `src/main.rs` are separate crates.
fn crate_roots() -> Vec<(String, PathBuf)> {
    let operator = govcloud_tests::repo_root().join("operator");
    let mut roots = Vec::new();
    let dirs = std::fs::read_dir(&operator).unwrap_or_else(|e| panic!("cannot list {}: {e}", operator.display()));
    for dir in dirs.flatten() {
        for root in ["lib.rs", "main.rs"] {
            let file = dir.path().join("src").join(root);
            if file.exists() {
                let crate_dir = dir.file_name().to_string_lossy().into_owned();
                roots.push((format!("{crate_dir}/src/{root}"), file));
            }
        }
    }
    roots.sort();
    roots
}

/// Checks one crate; the cycles as readable text, each with the lines that close it.
fn check(label: &str, root: &Path) -> Vec<String> {
    let krate = load_crate(root);
    let nodes: Vec<Vec<String>> = krate.keys().cloned().collect();
    let edges = edges(&krate);
    cycles(&nodes, &edges)
        .into_iter()
        .map(|scc| {
            let members: BTreeSet<&Vec<String>> = scc.iter().collect();
            let mut text = format!(
                "{label}: cycle between {}",
                scc.iter().map(|m| name("crate", m)).collect::<Vec<_>>().join(", ")
            );
            for ((from, to), seen) in &edges {
                if members.contains(from) && members.contains(to) {
                    text.push_str(&format!(
                        "\n    {} -> {}   ({seen})",
                        name("crate", from),
                        name("crate", to)
                    ));
                }
            }
            text
        })
        .collect()
}

#[test]
fn no_import_cycle_between_modules() {
    let roots = crate_roots();
    assert!(roots.len() >= 4, "expected the crates under operator/, found {roots:?}");
    let mut problems = Vec::new();
    for (label, root) in &roots {
        let problem = check(label, root);
        println!(
            "{label}: {} modules checked, {} cycles",
            load_crate(root).len(),
            problem.len()
        );
        problems.extend(problem);
    }
    assert!(
        problems.is_empty(),
        "modules import each other in a circle:\n{}",
        problems.join("\n")
    );
}

/// The checker itself finds a cycle through `super::`, a child's name and a `crate::` group.
#[test]
fn the_checker_sees_each_kind_of_path() {
    let dir = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(src.join("a")).unwrap_or_else(|e| panic!("{e}"));
    let write = |f: &str, text: &str| std::fs::write(src.join(f), text).unwrap_or_else(|e| panic!("{e}"));
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
    write("a/mod.rs", "pub mod x;\npub fn f() { x::g() }\n");
    write(
        "a/x.rs",
        "use super::super::b;\npub fn g() { b::h() }\n// crate::c::z in a comment\n",
    );
    write(
        "b.rs",
        "use crate::{a::f, c};\npub fn h() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
    );
    write("c.rs", "pub fn z() { let _ = \"crate::a::f\"; }\n");
    let found = check("fixture", &src.join("lib.rs"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("cycle between crate::a, crate::a::x, crate::b"),
        "{}",
        found[0]
    );
}

/// Longest a function may be, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 120;

/// Functions longer than [`MAX_FN_LINES`] still to be split, as `file::name`. The check
/// fails when one of them is gone or shorter, so that the list only shrinks: remove it here.
const LONG_FUNCTIONS_TO_SPLIT: &[&str] = &[
    "operator/operator/src/controller/agency.rs::apply",
    "operator/operator/src/controller/agency.rs::cleanup",
    "operator/operator/src/controller/backup.rs::apply",
    "operator/operator/src/controller/evidence.rs::collect",
    "operator/operator/src/controller/hosted.rs::apply",
    "operator/operator/src/controller/tenancy.rs::reconcile",
    "operator/operator/src/metrics.rs::new",
    "operator/operator/src/runtime.rs::run",
];

/// The text of a Rust file with comments and the contents of string and character
/// literals blanked (line breaks kept), so that only code braces and words remain.
fn blank_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied();
        // Where a literal or comment starting here ends (exclusive), if one does.
        let end = match (at(0), at(1)) {
            (Some('/'), Some('/')) => Some(c[i..].iter().position(|&x| x == '\n').map_or(c.len(), |p| i + p)),
            (Some('/'), Some('*')) => Some(block_comment_end(&c, i)),
            (Some('r'), Some('"' | '#'))
                if i == 0 || !is_ident(c[i - 1]) || (c[i - 1] == 'b' && (i < 2 || !is_ident(c[i - 2]))) =>
            {
                raw_string_end(&c, i)
            }
            (Some('"'), _) => Some(string_end(&c, i)),
            (Some('\''), Some('\\')) => c
                .get(i + 3..)
                .and_then(|r| r.iter().position(|&q| q == '\''))
                .map(|p| i + p + 4),
            (Some('\''), Some(_)) if at(2) == Some('\'') => Some(i + 3),
            _ => None,
        };
        match end {
            Some(end) => {
                let end = end.min(c.len());
                out.extend(c[i..end].iter().map(|&ch| blank(ch)));
                i = end;
            }
            None => {
                out.push(c[i]);
                i += 1;
            }
        }
    }
    out
}

/// End (exclusive) of the block comment starting at `i`; block comments nest.
fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    c.len()
}

/// End (exclusive) of the raw string `r"…"`, `r#"…"#`, … starting at `i`; None when the
/// `r` starts no raw string.
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
    if c.get(i + 1 + hashes) != Some(&'"') {
        return None;
    }
    let mut k = i + 2 + hashes;
    while k < c.len() {
        if c[k] == '"' && c[k + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes {
            return Some(k + 1 + hashes);
        }
        k += 1;
    }
    Some(c.len())
}

/// End (exclusive) of the string starting at `i` (escapes skipped).
fn string_end(c: &[char], mut i: usize) -> usize {
    i += 1;
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    c.len()
}

/// Line (0-based) of each char offset's start, for a blanked text.
fn line_at(text: &[char], pos: usize) -> usize {
    text[..pos].iter().filter(|&&c| c == '\n').count()
}

/// The offset of the brace closing the one at `open`.
fn closing_brace(text: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, &c) in text.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

/// Functions of a file: (name, first line (1-based), lines).
type Functions = Vec<(String, usize, usize)>;

/// Functions of a file outside `#[cfg(test)]` items, and the names of the modules declared
/// `#[cfg(test)] mod NAME;` (test files).
fn functions(text: &str) -> (Functions, Vec<String>) {
    let code: Vec<char> = blank_literals(text).chars().collect();
    let mut fns = Vec::new();
    let mut test_mods = Vec::new();
    let word_at = |k: usize| -> String { code[k..].iter().take_while(|c| is_ident(**c)).collect() };
    let cfg_test: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i < code.len() {
        let starts_word = is_ident(code[i]) && (i == 0 || !is_ident(code[i - 1]));
        if code[i..].starts_with(&cfg_test) {
            // The item after the attribute: skip it whole (a module, a function, a use).
            let mut k = i + cfg_test.len();
            while k < code.len() && code[k] != '{' && code[k] != ';' {
                k += 1;
            }
            let item: String = code[i + cfg_test.len()..k].iter().collect();
            let item = item.split_whitespace().collect::<Vec<_>>();
            if code.get(k) == Some(&';')
                && let Some(name) = item.iter().position(|w| *w == "mod").and_then(|p| item.get(p + 1))
            {
                test_mods.push(name.to_string());
            }
            i = if code.get(k) == Some(&'{') {
                closing_brace(&code, k).unwrap_or(code.len())
            } else {
                k
            } + 1;
            continue;
        }
        if starts_word && word_at(i) == "fn" {
            let mut k = i + 2;
            while k < code.len() && code[k].is_whitespace() {
                k += 1;
            }
            let name = word_at(k);
            if k > i + 2 && !name.is_empty() {
                let mut b = k;
                while b < code.len() && code[b] != '{' && code[b] != ';' {
                    b += 1;
                }
                if code.get(b) == Some(&'{')
                    && let Some(end) = closing_brace(&code, b)
                {
                    let first = line_at(&code, i);
                    fns.push((name, first + 1, line_at(&code, end) - first + 1));
                }
            }
            i = k.max(i + 1);
            continue;
        }
        i += 1;
    }
    (fns, test_mods)
}

/// Every `.rs` file under `dir`, except in `tests/` and `target/` folders.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "tests" && name != "target" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The file of module `name` declared in `file` (as `load_crate` resolves it).
fn module_file(file: &Path, name: &str) -> PathBuf {
    let dir = match file.file_name().and_then(|n| n.to_str()) {
        Some("lib.rs" | "main.rs" | "mod.rs") => file.parent().map(Path::to_path_buf),
        _ => file.parent().map(|p| p.join(file.file_stem().unwrap_or_default())),
    }
    .unwrap_or_default();
    let flat = dir.join(format!("{name}.rs"));
    if flat.exists() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    }
}

/// Functions over [`MAX_FN_LINES`] in the `.rs` files under `root`, test code aside, as
/// (`file::name`, where, lines); `file` is relative to `root`'s parent.
fn long_functions(root: &Path) -> Vec<(String, String, usize)> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let parsed: Vec<(PathBuf, Functions, Vec<String>)> = files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
            let (fns, test_mods) = functions(&text);
            (f, fns, test_mods)
        })
        .collect();
    let test_files: BTreeSet<PathBuf> = parsed
        .iter()
        .flat_map(|(f, _, mods)| mods.iter().map(|m| module_file(f, m)))
        .collect();
    let base = root.parent().unwrap_or(root);
    let mut out = Vec::new();
    for (file, fns, _) in &parsed {
        if test_files.contains(file) {
            continue;
        }
        let rel = file.strip_prefix(base).unwrap_or(file).display().to_string();
        for (name, line, len) in fns {
            if *len > MAX_FN_LINES {
                out.push((format!("{rel}::{name}"), format!("{rel}:{line}"), *len));
            }
        }
    }
    out
}

/// The problems of a list of long functions against the allowlist.
fn long_function_problems(found: &[(String, String, usize)], allowed: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, at, len) in found {
        if !allowed.contains(&key.as_str()) {
            problems.push(format!(
                "{at}: fn {} is {len} lines (at most {MAX_FN_LINES}): split it into named steps",
                key.rsplit("::").next().unwrap_or(key)
            ));
        }
    }
    for key in allowed {
        if !found.iter().any(|(k, _, _)| k == key) {
            problems.push(format!(
                "{key} is no longer over {MAX_FN_LINES} lines (or is gone): remove it from LONG_FUNCTIONS_TO_SPLIT"
            ));
        }
    }
    problems
}

#[test]
fn no_function_over_120_lines() {
    let operator = govcloud_tests::repo_root().join("operator");
    let found = long_functions(&operator);
    for (key, _, len) in &found {
        println!("{len:4} lines  {key}");
    }
    let problems = long_function_problems(&found, LONG_FUNCTIONS_TO_SPLIT);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The function checker reads past braces in strings, characters and comments, skips
/// test code, and fails both for a new long function and for a stale allowlist entry.
#[test]
fn the_function_checker_measures_and_skips_tests() {
    let body = |n: usize| "    let _ = 1;\n".repeat(n);
    let long = [
        "pub fn long() {\n",
        "    let s = \"}\\\"}\"; let c = '{'; let q = '\\''; let r = r#\"}\"#; let b = br\"}\"; // }\n",
        "    /* } /* } */ } */\n",
        &body(MAX_FN_LINES - 3),
        "}\n",
    ]
    .concat();
    let short = [
        "fn short<'a>(x: &'a str) -> &'a str {\n",
        &body(MAX_FN_LINES - 2),
        "}\n",
    ]
    .concat();
    let tests = [
        "#[cfg(test)]\nmod tests {\n    fn in_test() {\n",
        &body(200),
        "    }\n}\n",
    ]
    .concat();
    let text = [long, short, tests, "#[cfg(test)]\nmod more;\n".into()].concat();
    let (fns, test_mods) = functions(&text);
    let lens: Vec<(&str, usize)> = fns.iter().map(|(n, _, l)| (n.as_str(), *l)).collect();
    assert_eq!(lens, vec![("long", MAX_FN_LINES + 1), ("short", MAX_FN_LINES)]);
    assert_eq!(test_mods, vec!["more".to_string()]);
    let found = vec![("src/a.rs::long".to_string(), "src/a.rs:1".to_string(), 121)];
    assert_eq!(
        long_function_problems(&found, &["src/a.rs::long"]),
        Vec::<String>::new()
    );
    let new = long_function_problems(&found, &[]);
    assert!(new.len() == 1 && new[0].contains("fn long is 121 lines"), "{new:?}");
    let stale = long_function_problems(&[], &["src/a.rs::long"]);
    assert!(stale[0].contains("remove it from LONG_FUNCTIONS_TO_SPLIT"), "{stale:?}");
}
