//! The docs cannot rot: every command of the project's own tools shown in a code block of
//! README.md or docs/*.md must still parse. `kubectl govcloud …`, `govcloud-operator …`
//! and `cargo run -p govcloud-operator -- …` lines are run with `--help` appended (clap
//! checks every subcommand, flag and value before it prints help, so a renamed flag or a
//! removed subcommand fails); `hack/*.sh SUBCOMMAND` lines must name an existing script
//! that handles that subcommand. The scenarios themselves run in the other tests and in
//! `hack/demo.sh`.

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
    let mut files = vec![root.join("README.md")];
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
        ])
        .current_dir(&root)
        .status()?;
    ensure!(built.success(), "cargo build of the binaries failed");
    let operator = root.join("target/debug/govcloud-operator");
    let plugin = root.join("target/debug/kubectl-govcloud");
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
