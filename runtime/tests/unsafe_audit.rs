//! `unsafe` audit of the runtime's sources: `unsafe` code appears only in the modules allowed to
//! hold it (SIMD intrinsics, clock registers, the C API), and every `unsafe` block says why it is
//! sound in a `// SAFETY:` comment just above it (or on its line).
//!
//! The crate root's `#![deny(unsafe_code)]` makes the compiler refuse `unsafe` anywhere a module
//! does not `#![allow(unsafe_code)]`; this test pins down which modules may allow it.

use std::path::{Path, PathBuf};

/// Source files (relative to `runtime/src`, `/`-separated) allowed to contain `unsafe` code, by
/// prefix.
const ALLOWED: &[&str] = &["simd/", "profile/", "capi.rs"];

/// Lines above an `unsafe` block in which its `// SAFETY:` comment must start.
const SAFETY_WINDOW: usize = 6;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("runtime/src is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code part of a line: without a `//` comment (string literals holding `//` are rare in
/// the runtime and would only hide code from this check, never flag correct code).
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |at| &line[..at])
}

/// Whether `text` holds the keyword `unsafe` (not part of a longer identifier).
fn has_unsafe_keyword(text: &str) -> bool {
    text.match_indices("unsafe").any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + "unsafe".len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

/// `(file, line, problem)` for every violation in the runtime's sources.
fn violations() -> Vec<(String, usize, &'static str)> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut found = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let allowed = ALLOWED.iter().any(|a| rel.starts_with(a));
        let text = std::fs::read_to_string(&path).expect("utf-8 source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let c = code(line);
            if c.contains("allow(unsafe_code)") && !allowed {
                found.push((
                    rel.clone(),
                    i + 1,
                    "allows unsafe_code outside the allowed modules",
                ));
            }
            if !has_unsafe_keyword(c) {
                continue;
            }
            if !allowed {
                found.push((rel.clone(), i + 1, "unsafe outside the allowed modules"));
                continue;
            }
            // A block (`unsafe {`, also `=> unsafe {`, `let x = unsafe {`) needs its reason.
            let is_block = c.contains("unsafe {") || c.trim_end().ends_with("unsafe");
            if is_block {
                let from = i.saturating_sub(SAFETY_WINDOW);
                let justified = lines[from..=i].iter().any(|l| l.contains("SAFETY:"));
                if !justified {
                    found.push((
                        rel.clone(),
                        i + 1,
                        "unsafe block without a // SAFETY: comment",
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn unsafe_only_in_allowed_modules_and_every_block_justified() {
    let found = violations();
    for (file, line, problem) in &found {
        eprintln!("runtime/src/{file}:{line}: {problem}");
    }
    assert!(found.is_empty(), "{} unsafe audit violations", found.len());
}

#[test]
fn the_audit_sees_unsafe_blocks() {
    // The check is only meaningful if it finds the blocks that exist (SIMD dispatch, C API).
    assert!(has_unsafe_keyword("let t = unsafe { f() };"));
    assert!(has_unsafe_keyword("    Tier::Avx2 => unsafe {"));
    assert!(!has_unsafe_keyword("let unsafe_count = 1;"));
    assert!(!has_unsafe_keyword(code("x // unsafe in a comment")));
}
