//! Reading Rust lexically for the structure step: the source without comments, literals
//! and test items, and every `crate::`/`super::`/`self::` path it names.

use super::ModPath;

/// The source without comments, string and character literals, and `#[cfg(test)]` items.
pub(super) fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'#' | b'"'))
                && !b[..i]
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') =>
            {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                i += 2 + hashes;
                while i < b.len() {
                    if b[i] == b'"' && b[i + 1..].iter().take(hashes).all(|c| *c == b'#') {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A character literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            b'\'' => {
                let close = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|c| *c == b'\'')
                        .map(|p| i + 2 + p)
                } else if b.get(i + 2) == Some(&b'\'') {
                    Some(i + 2)
                } else {
                    None
                };
                match close {
                    Some(end) => {
                        out.push_str("' '");
                        i = end + 1;
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(char::from(c));
                i += 1;
            }
        }
    }
    // Non-ASCII bytes were pushed one by one above; identifiers that matter are ASCII.
    drop_cfg_test(&out)
}

/// `text` without the items that follow `#[cfg(test)]` (up to their `;` or closing brace).
fn drop_cfg_test(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let b = after.as_bytes();
        let brace = after.find('{');
        let semi = after.find(';');
        let end = match (brace, semi) {
            (Some(open), Some(s)) if s < open => s + 1,
            (Some(open), _) => {
                let mut depth = 0usize;
                let mut k = open;
                while k < b.len() {
                    match b[k] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    k += 1;
                }
                k + 1
            }
            (None, Some(s)) => s + 1,
            (None, None) => after.len(),
        };
        rest = &after[end.min(after.len())..];
    }
    out.push_str(rest);
    out
}

/// Every path starting with `crate`, `super` or `self` in `text` (module `at`), resolved
/// to a path from the crate root; `use` trees give one path per leaf.
pub(super) fn paths(text: &str, at: &[String]) -> Vec<ModPath> {
    let tokens = tokens(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let starts = matches!(t, "crate" | "super" | "self")
            && tokens.get(i + 1).is_some_and(|n| n == "::")
            && !(i > 0 && tokens[i - 1] == "::");
        if !starts {
            i += 1;
            continue;
        }
        let base: ModPath = match t {
            "crate" => Vec::new(),
            "self" => at.to_vec(),
            _ => at[..at.len().saturating_sub(1)].to_vec(),
        };
        i = tree(&tokens, i + 2, base, &mut out);
    }
    out
}

/// Reads `seg::seg::{tree, ...}` from `tokens[i..]` (after a `::`), pushing each leaf onto
/// `out`; returns the index after it.
fn tree(tokens: &[String], mut i: usize, mut path: ModPath, out: &mut Vec<ModPath>) -> usize {
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                loop {
                    match tokens.get(i).map(String::as_str) {
                        Some("}") => return i + 1,
                        Some(",") => i += 1,
                        None => return i,
                        Some(_) => i = tree(tokens, i, path.clone(), out),
                    }
                }
            }
            Some("super") => {
                path.pop();
                i += 1;
            }
            Some("self") => i += 1,
            Some(seg) if seg.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                path.push(seg.to_owned());
                i += 1;
            }
            _ => {
                out.push(path);
                return i;
            }
        }
        if tokens.get(i).is_some_and(|t| t == "::") {
            i += 1;
        } else {
            out.push(path);
            // Skip `as name`.
            if tokens.get(i).is_some_and(|t| t == "as") {
                i += 2;
            }
            return i;
        }
    }
}

/// Identifiers, `::`, and single punctuation characters.
fn tokens(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(text[start..i].to_owned());
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push("::".to_owned());
            i += 2;
        } else if c.is_ascii_whitespace() || !c.is_ascii() {
            i += 1;
        } else {
            out.push(char::from(c).to_string());
            i += 1;
        }
    }
    out
}
