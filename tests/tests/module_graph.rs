//! No import cycle between modules: in every crate under `operator/`, the modules (one per
//! file) that name each other through `crate::…`, `super::…`, `self::…` or a child
//! module's name must form a graph without cycles. Crates themselves cannot depend on each
//! other in a circle (Cargo refuses it); this test does the same for the modules inside
//! each crate. Run it alone with `cargo test -p govcloud-tests --test module_graph`.
//!
//! The graph is read from the source text, not from the compiler: comments are skipped, a
//! path is resolved to the longest module it names, and an inline module (`mod tests {`)
//! counts as part of its file.

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
