//! Every relative link in the repository's Markdown resolves: `README.md`, `docs/*.md` and every
//! other `*.md` file in the checkout (build output and VCS data left out). A link's file (or
//! directory) must exist inside the repository, and a `#anchor` into a Markdown file must be a
//! heading there, with GitHub's slug rules: the heading's text lower-cased, every character that
//! is not a letter, a digit, a space, `-` or `_` dropped, each space a `-`, and the second,
//! third … heading with the same slug `-1`, `-2` …. External links (`https:`, `mailto:` …) are
//! not fetched. Links inside code (fenced blocks, `code spans`) are not links.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

/// Directories never walked: VCS data, build output (fakepve's venv lives there too) and the
/// fuzzers' work areas.
const SKIP_DIRS: &[&str] = &[".git", "target", "corpus-work", "artifacts", "node_modules"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Every `*.md` file below `dir`, sorted.
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if !SKIP_DIRS.contains(&name.as_str()) {
                markdown_files(&path, out);
            }
        } else if kind.is_file() && name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// Whether a line opens or closes a fenced code block (```` ``` ```` or `~~~`, up to three
/// spaces of indentation).
fn is_fence(line: &str) -> bool {
    let t = line.trim_start_matches(' ');
    line.len() - t.len() <= 3 && (t.starts_with("```") || t.starts_with("~~~"))
}

/// The line without its code spans (a run of N backticks up to the next run of exactly N).
/// An unclosed run is kept as text, as CommonMark does.
fn strip_code_spans(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'`' {
            let next = line[i..].find('`').map_or(b.len(), |n| i + n);
            out.push_str(&line[i..next]);
            i = next;
            continue;
        }
        let run = b[i..].iter().take_while(|&&c| c == b'`').count();
        let mut j = i + run;
        let mut close = None;
        while j < b.len() {
            if b[j] == b'`' {
                let r = b[j..].iter().take_while(|&&c| c == b'`').count();
                if r == run {
                    close = Some(j + r);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.push(' ');
                i = end;
            }
            None => {
                out.push_str(&line[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// The lines of a Markdown text outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if is_fence(line) {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((n + 1, line));
        }
    }
    out
}

/// The destinations of a text's inline links and images (`[text](dest "title")`) and
/// reference definitions (`[label]: dest`), with their line numbers.
fn link_destinations(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, raw) in prose_lines(text) {
        let line = strip_code_spans(raw);
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') && !trimmed.starts_with("[^") {
            if let Some(end) = trimmed.find("]:") {
                if !trimmed[..end].contains("](") {
                    if let Some(dest) = trimmed[end + 2..].split_whitespace().next() {
                        out.push((n, dest.trim_matches(['<', '>']).to_string()));
                    }
                    continue;
                }
            }
        }
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let mut depth = 0usize;
            let mut end = after.len();
            for (k, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = k;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            let inner = after[..end].trim();
            let dest = if let Some(stripped) = inner.strip_prefix('<') {
                stripped.split('>').next().unwrap_or("")
            } else {
                inner.split_whitespace().next().unwrap_or("")
            };
            out.push((n, dest.to_string()));
            rest = &after[end.min(after.len())..];
        }
    }
    out
}

/// A heading's rendered text: code spans keep their content, links and images their text,
/// emphasis markers go.
fn heading_text(raw: &str) -> String {
    let mut s = String::new();
    let mut rest = raw;
    // [text](dest) → text (and ![alt](src) → alt).
    while let Some(open) = rest.find('[') {
        let Some(close_rel) = rest[open..].find("](") else {
            break;
        };
        let close = open + close_rel;
        let Some(paren_rel) = rest[close + 2..].find(')') else {
            break;
        };
        s.push_str(rest[..open].trim_end_matches('!'));
        s.push_str(&rest[open + 1..close]);
        rest = &rest[close + 2 + paren_rel + 1..];
    }
    s.push_str(rest);
    s.chars().filter(|&c| c != '`' && c != '*').collect()
}

/// GitHub's anchor for a heading text (before the `-N` of duplicates).
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in heading_text(text).trim().chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if c == ' ' {
            out.push('-');
        } else if c == '-' || c == '_' {
            out.push(c);
        }
    }
    out
}

/// Every anchor a Markdown text's ATX headings (`# …` to `###### …`) give, duplicates
/// numbered as GitHub numbers them.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = HashSet::new();
    for (_, line) in prose_lines(text) {
        let t = line.trim_start_matches(' ');
        if line.len() - t.len() > 3 {
            continue;
        }
        let hashes = t.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) {
            continue;
        }
        let rest = &t[hashes..];
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
            continue;
        }
        // A closing run of #s (after a space) is not part of the text.
        let mut body = rest.trim();
        let without = body.trim_end_matches('#');
        if without.len() < body.len() && (without.is_empty() || without.ends_with(' ')) {
            body = without.trim_end();
        }
        let base = slug(body);
        let n = seen.entry(base.clone()).or_insert(0);
        let anchor = if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        *n += 1;
        out.insert(anchor);
    }
    out
}

/// `%XX` escapes decoded (a path with a space is written `%20` in a link).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a destination names a scheme (`https:`, `mailto:`, `file:` …): not checked.
fn is_external(dest: &str) -> bool {
    match dest.find(':') {
        Some(colon) => {
            let scheme = &dest[..colon];
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !dest[..colon].contains('/')
        }
        None => false,
    }
}

/// `base/rel` with `.` and `..` resolved lexically; `None` when it climbs out of `root`.
fn resolve(root: &Path, base: &Path, rel: &str) -> Option<PathBuf> {
    let start = if rel.starts_with('/') { root } else { base };
    let mut parts: Vec<Component> = start.components().collect();
    let floor = root.components().count();
    for c in Path::new(rel.trim_start_matches('/')).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.len() <= floor {
                    return None;
                }
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    Some(parts.iter().collect())
}

/// Every broken link in the Markdown files below `root`, one line each
/// (`FILE:LINE: DEST: why`), and how many relative links were checked.
fn check(root: &Path) -> (Vec<String>, usize) {
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    let mut anchor_cache: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(root).unwrap().display().to_string();
        for (line, dest) in link_destinations(&text) {
            if dest.is_empty() || is_external(&dest) {
                continue;
            }
            checked += 1;
            let (path_part, fragment) = match dest.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (dest.as_str(), None),
            };
            let target = if path_part.is_empty() {
                file.clone()
            } else {
                let decoded = percent_decode(path_part);
                match resolve(root, file.parent().unwrap(), &decoded) {
                    Some(t) => t,
                    None => {
                        problems.push(format!("{shown}:{line}: {dest}: leaves the repository"));
                        continue;
                    }
                }
            };
            if !target.exists() {
                problems.push(format!("{shown}:{line}: {dest}: no such file or directory"));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            if target.extension().is_none_or(|e| e != "md") || !target.is_file() {
                continue; // #L10 into source, say: GitHub's, not a heading.
            }
            let known = anchor_cache
                .entry(target.clone())
                .or_insert_with(|| anchors(&std::fs::read_to_string(&target).unwrap()));
            let fragment = percent_decode(fragment);
            if !known.contains(&fragment) {
                problems.push(format!(
                    "{shown}:{line}: {dest}: no heading with the anchor #{fragment} in {}",
                    target.strip_prefix(root).unwrap_or(&target).display()
                ));
            }
        }
    }
    (problems, checked)
}

#[test]
fn every_relative_link_in_the_repository_markdown_resolves() {
    let root = repo_root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    // The walk must see the documents this check exists for.
    for needed in [
        "README.md",
        "docs/install.md",
        "docs/guide.md",
        "docs/security.md",
    ] {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} not found among {names:?}"
        );
    }
    let (problems, checked) = check(&root);
    eprintln!(
        "{} Markdown files, {checked} relative links checked",
        files.len()
    );
    assert!(checked > 0, "no relative link found in {names:?}");
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_missing_file_a_missing_anchor_and_a_link_out_of_the_repository_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::create_dir_all(root.join("target")).unwrap();
    std::fs::write(
        root.join("README.md"),
        "# Top\n\
         [ok](docs/a.md#the-helpers-view) [ok](docs/a.md#same-1) [ok](docs/) [ok](#top)\n\
         [ok](https://example.com/x.md#nowhere) `[code](gone.md)`\n\
         ```\n[fenced](gone.md)\n```\n\
         [missing file](docs/gone.md)\n\
         [missing anchor](docs/a.md#same-2)\n\
         [out](../elsewhere.md)\n\
         [ref]: docs/a.md#nope\n",
    )
    .unwrap();
    std::fs::write(
        root.join("docs/a.md"),
        "# The helper's view\n## Same\n## Same\n[back](../README.md#top)\n",
    )
    .unwrap();
    // Build output is not walked: its broken link is not reported.
    std::fs::write(root.join("target/x.md"), "[gone](gone.md)\n").unwrap();
    let (problems, checked) = check(&root);
    assert_eq!(checked, 9, "{problems:?}");
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(
        problems[0].starts_with("README.md:7: docs/gone.md: no such file"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("README.md:8: docs/a.md#same-2: no heading"),
        "{problems:?}"
    );
    assert!(
        problems[2].starts_with("README.md:9: ../elsewhere.md: leaves the repository"),
        "{problems:?}"
    );
    assert!(
        problems[3].starts_with("README.md:10: docs/a.md#nope: no heading"),
        "{problems:?}"
    );
}

#[test]
fn anchors_follow_github_s_slug_rules() {
    // What GitHub renders for headings of this repository's documents.
    for (heading, anchor) in [
        (
            "`wait_task` against fixed one-second polling",
            "wait_task-against-fixed-one-second-polling",
        ),
        ("Agent ↔ helper round trips", "agent--helper-round-trips"),
        (
            "The helper's view of the host",
            "the-helpers-view-of-the-host",
        ),
        (
            "Install guide (Proxmox VE host)",
            "install-guide-proxmox-ve-host",
        ),
        ("Hostile inputs, counted", "hostile-inputs-counted"),
        (
            "Where the privilege line runs, and how it is enforced",
            "where-the-privilege-line-runs-and-how-it-is-enforced",
        ),
        ("A [linked](x.md) **bold** Title", "a-linked-bold-title"),
    ] {
        assert_eq!(slug(heading), anchor, "{heading}");
    }
    let found = anchors("# A\n## A\n```\n# A\n```\n    # indented code\n### A ###\n#nospace\n");
    let mut found: Vec<_> = found.into_iter().collect();
    found.sort();
    assert_eq!(found, ["a", "a-1", "a-2"]);
}
