//! The docs cannot rot: every command of the project's own tools shown in a code block of
//! README.md or docs/*.md must still parse. `kubectl govcloud …`, `govcloud-operator …`
//! and `cargo run -p govcloud-operator -- …` lines are run with `--help` appended (clap
//! checks every subcommand, flag and value before it prints help, so a renamed flag or a
//! removed subcommand fails); `hack/*.sh SUBCOMMAND` lines must name an existing script
//! that handles that subcommand. The scenarios themselves run in the other tests and in
//! `hack/demo.sh`.
//!
//! Every user-facing guide has a Chinese twin (`X.zh-CN.md` beside `X.md`): the two link
//! each other at the top, and the twin shows every command the original shows. Every
//! relative link of README*.md and docs/*.md names a file that exists and, into Markdown,
//! a heading that exists (GitHub's anchors).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
use govcloud_tests::repo_root;

/// Shell-like words of a line: quotes grouped, no expansion.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                any = true;
            }
            None if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            None => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The command lines of the fenced code blocks of a Markdown text (continuations joined,
/// comments, pipes and redirections cut).
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            in_block = !in_block;
            pending.clear();
            continue;
        }
        if !in_block {
            continue;
        }
        let mut l = t.to_string();
        if let Some(i) = l.find(" #") {
            l.truncate(i);
        }
        if let Some(stripped) = l.trim_end().strip_suffix('\\') {
            pending.push_str(stripped);
            pending.push(' ');
            continue;
        }
        pending.push_str(&l);
        let mut full = std::mem::take(&mut pending);
        for cut in [" | ", " > ", " < ", " >> ", " && "] {
            if let Some(i) = full.find(cut) {
                full.truncate(i);
            }
        }
        let full = full.trim().to_string();
        if !full.is_empty() {
            out.push(full);
        }
    }
    out
}

fn doc_files() -> Result<Vec<PathBuf>> {
    let root = repo_root();
    let mut files = Vec::new();
    for e in std::fs::read_dir(&root)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("README") && name.ends_with(".md") {
            files.push(p);
        }
    }
    for e in std::fs::read_dir(root.join("docs"))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

fn run_help(bin: &Path, args: &[String]) -> Result<(bool, String)> {
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "..." && *a != "…")
        .collect();
    let out = Command::new(bin)
        .args(&args)
        .arg("--help")
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    Ok((out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[test]
fn every_documented_command_of_ours_still_parses() -> Result<()> {
    let root = repo_root();
    let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "--bin",
            "govcloud-operator",
            "--bin",
            "kubectl-govcloud",
            "--bin",
            "govcloud-s3-gateway",
        ])
        .current_dir(&root)
        .status()?;
    ensure!(built.success(), "cargo build of the binaries failed");
    // Where that build put them: CARGO_TARGET_DIR (relative to the workspace) or target/.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"));
    let operator = target.join("debug/govcloud-operator");
    let plugin = target.join("debug/kubectl-govcloud");
    let gateway = target.join("debug/govcloud-s3-gateway");
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in doc_files()? {
        let text = std::fs::read_to_string(&file)?;
        let name = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        for cmd in commands(&text) {
            let w = words(&cmd);
            let (ok, why) = match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["kubectl", "govcloud", ..] => run_help(&plugin, &w[2..])?,
                ["govcloud-operator", ..] => run_help(&operator, &w[1..])?,
                ["govcloud-s3-gateway", ..] => run_help(&gateway, &w[1..])?,
                ["./target/debug/govcloud-operator", ..] => run_help(&operator, &w[1..])?,
                ["cargo", "run", "-p", "govcloud-operator", "--", ..] => run_help(&operator, &w[5..])?,
                [script, rest @ ..] if script.starts_with("hack/") => {
                    let path = root.join(script);
                    if !path.is_file() {
                        (false, format!("{script} does not exist"))
                    } else if let Some(sub) = rest.first().filter(|s| !s.starts_with('-') && !s.contains('/')) {
                        let body = std::fs::read_to_string(&path)?;
                        let handled = body.contains(&format!("{sub})"))
                            || body.contains(&format!("{sub}|"))
                            || body.contains(&format!("|{sub}"))
                            || body.contains(&format!("\"{sub}\""));
                        (handled, format!("{script} has no subcommand {sub}"))
                    } else {
                        (true, String::new())
                    }
                }
                _ => continue,
            };
            checked += 1;
            if !ok {
                broken.push(format!("{name}: `{cmd}`: {}", why.lines().next().unwrap_or("")));
            }
        }
    }
    println!("{checked} documented commands checked");
    if !broken.is_empty() {
        bail!("documented commands that no longer parse:\n{}", broken.join("\n"));
    }
    ensure!(
        checked >= 30,
        "only {checked} commands found: is the extraction broken?"
    );
    Ok(())
}

#[test]
fn the_command_extractor_joins_continuations_and_cuts_pipes() {
    let md = "text\n```sh\nkubectl govcloud report x -o json | jq .a   # comment\nkubectl govcloud request a \\\n  --level 3 \"b c\"\n```\n";
    let c = commands(md);
    assert_eq!(
        c,
        [
            "kubectl govcloud report x -o json",
            "kubectl govcloud request a  --level 3 \"b c\""
        ]
    );
    assert_eq!(
        words(&c[1]),
        ["kubectl", "govcloud", "request", "a", "--level", "3", "b c"]
    );
}

/// The user-facing guides; each must have a Chinese twin `*.zh-CN.md` beside it.
const GUIDES: &[&str] = &[
    "README.md",
    "docs/install.md",
    "docs/platform-guide.md",
    "docs/agency-guide.md",
    "docs/operations-guide.md",
    "docs/restore-runbook.md",
    "docs/security.md",
    "docs/kubectl-plugin.md",
    "docs/evidence.md",
    "docs/glossary.md",
];

/// The Chinese twin's path of a guide: `docs/x.md` → `docs/x.zh-CN.md`.
fn twin_of(guide: &str) -> String {
    format!("{}.zh-CN.md", guide.trim_end_matches(".md"))
}

/// Lines of fenced code blocks that run a command (the tools the guides tell readers to run).
fn command_lines(text: &str) -> Vec<String> {
    const TOOLS: &[&str] = &[
        "kubectl",
        "helm",
        "velero",
        "govcloud-operator",
        "cargo",
        "skopeo",
        "curl",
        "kube-apiserver",
        "install",
    ];
    commands(text)
        .into_iter()
        .filter(|c| {
            let first = c.split_whitespace().next().unwrap_or("");
            TOOLS.contains(&first) || first.starts_with("hack/")
        })
        .collect()
}

#[test]
fn every_user_guide_has_a_chinese_twin_linked_both_ways_with_the_same_commands() -> Result<()> {
    let root = repo_root();
    let mut problems = Vec::new();
    for guide in GUIDES {
        let twin = twin_of(guide);
        let (Ok(en), Ok(zh)) = (
            std::fs::read_to_string(root.join(guide)),
            std::fs::read_to_string(root.join(&twin)),
        ) else {
            problems.push(format!("{guide}: no Chinese twin {twin} (or the guide is missing)"));
            continue;
        };
        let file = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
        let head = |t: &str| t.lines().take(5).collect::<Vec<_>>().join("\n");
        if !head(&en).contains(&format!("]({})", file(&twin))) {
            problems.push(format!("{guide}: its first lines do not link {}", file(&twin)));
        }
        if !head(&zh).contains(&format!("]({})", file(guide))) {
            problems.push(format!("{twin}: its first lines do not link {}", file(guide)));
        }
        let theirs = command_lines(&zh);
        for cmd in command_lines(&en) {
            if !theirs.contains(&cmd) {
                problems.push(format!("{twin}: lacks the command `{cmd}` of {guide}"));
            }
        }
    }
    // And no Chinese page without its original.
    for dir in [root.clone(), root.join("docs")] {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if let Some(stem) = name.strip_suffix(".zh-CN.md")
                && !dir.join(format!("{stem}.md")).is_file()
            {
                problems.push(format!("{}: no English original {stem}.md", p.display()));
            }
        }
    }
    ensure!(problems.is_empty(), "Chinese twins:\n{}", problems.join("\n"));
    Ok(())
}

/// GitHub's anchor of a heading: lower case, letters (any script), digits, `-` and `_`
/// kept, spaces to `-`, everything else (punctuation, backticks, 、（）) dropped.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings (outside code blocks), with GitHub's `-1`,
/// `-2` … for repeated ones.
fn anchors(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = anchor(line[hashes..].trim());
        let mut a = base.clone();
        let mut n = 0;
        while out.contains(&a) {
            n += 1;
            a = format!("{base}-{n}");
        }
        out.push(a);
    }
    out
}

/// The targets of the inline links `[text](target)` of a Markdown text, with their line
/// numbers, outside code blocks and code spans.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        // Drop code spans: a run of n backticks up to the next run of exactly n.
        let mut plain = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut j = 0;
        while j < chars.len() {
            if chars[j] == '`' {
                let n = chars[j..].iter().take_while(|c| **c == '`').count();
                let mut k = j + n;
                let mut closed = None;
                while k < chars.len() {
                    let m = chars[k..].iter().take_while(|c| **c == '`').count();
                    if m == n {
                        closed = Some(k + m);
                        break;
                    }
                    k += m.max(1);
                }
                match closed {
                    Some(end) => j = end,
                    None => {
                        plain.extend(&chars[j..j + n]);
                        j += n;
                    }
                }
            } else {
                plain.push(chars[j]);
                j += 1;
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let tail = &rest[at + 2..];
            let Some(end) = tail.find(')') else { break };
            let target = &tail[..end];
            if !target.is_empty() && !target.contains(char::is_whitespace) {
                out.push((i + 1, target.to_string()));
            }
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_names_a_file_and_heading_that_exist() -> Result<()> {
    let root = repo_root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in doc_files()? {
        let text = std::fs::read_to_string(&file)?;
        let name = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        let dir = file.parent().unwrap_or(&root).to_path_buf();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() { file.clone() } else { dir.join(path) };
            if !dest.exists() {
                broken.push(format!("{name}:{line}: {target}: no such file"));
                continue;
            }
            if let Some(fragment) = fragment
                && dest.extension().is_some_and(|x| x == "md")
                && !anchors(&std::fs::read_to_string(&dest)?).iter().any(|a| a == fragment)
            {
                broken.push(format!("{name}:{line}: {target}: no such heading"));
            }
        }
    }
    println!("{checked} relative links checked");
    ensure!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    ensure!(checked >= 50, "only {checked} links found: is the extraction broken?");
    Ok(())
}

#[test]
fn anchors_and_links_are_extracted_as_github_does() {
    let md = "# Guide\n## 11. Backups (容灾备份)\n### 9.3 访问关系\n## 一、提前准备\n### The operator's permissions\n### `kubectl govcloud`\n```sh\n# not a heading\n```\n## Install\n## Install\nsee [a](x.md#install-1), `[b](code.md)` and [c](#一提前准备)\n";
    assert_eq!(
        anchors(md),
        [
            "guide",
            "11-backups-容灾备份",
            "93-访问关系",
            "一提前准备",
            "the-operators-permissions",
            "kubectl-govcloud",
            "install",
            "install-1"
        ]
    );
    assert_eq!(
        links(md),
        [(12, "x.md#install-1".to_string()), (12, "#一提前准备".to_string())]
    );
    assert_eq!(twin_of("docs/install.md"), "docs/install.zh-CN.md");
}
