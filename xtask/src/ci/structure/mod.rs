//! The structure step of `cargo xtask ci`: the shape rules of `docs/architecture.md`
//! ("Module map"), checked on the sources without building anything.
//!
//! - **No module import cycle inside a crate.** For every module, the graph of its child
//!   modules must be acyclic, where `a -> b` means non-test code in `a`'s subtree names
//!   something in `b`'s subtree through a `crate::`, `super::` or `self::` path (in a `use`
//!   or inline). A reference from `x::y::z` to `x::w` is an edge `y -> w` among the children
//!   of `x`: the lowest module containing both decides. References to an ancestor add no
//!   edge. Code under `#[cfg(test)]` and the `tests` modules are left out, since tests may
//!   look anywhere. Paths through a re-export are resolved to the module that names them
//!   (the re-export is where the dependency is written), and a path naming an external crate
//!   adds nothing (cycles across crates are impossible: cargo refuses them).
//! - **Short files.** No `.rs` file under a crate's `src/`, `examples/` or `benches/`, nor
//!   under `xtask/`, `soak/` or `fuzz/`, is over [`MAX_LINES`] lines, test
//!   files (`tests.rs`, `*_tests.rs`, anything under a `tests/` folder) excepted; a binary's
//!   `src/main.rs` is at most [`MAX_MAIN_LINES`]: it parses the command line and calls the
//!   library.
//!
//! The scanner reads Rust lexically (comments, strings and character literals skipped; `use`
//! trees expanded), which is enough for paths; it does not expand macros, so a path written
//! only inside a `macro_rules!` body is seen where the macro is defined.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::cmd::echo;

mod source;

use source::{paths, strip};

/// The longest a source file may be (tests excepted).
pub(crate) const MAX_LINES: usize = 500;
/// The longest a binary's `src/main.rs` may be.
pub(crate) const MAX_MAIN_LINES: usize = 80;

/// A module's path from its crate root (`[]` is the root).
type ModPath = Vec<String>;

/// Checks every crate under `crates/`; the error lists every violation found.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut crates = 0;
    let dir = root.join("crates");
    let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("src").is_dir())
        .collect();
    entries.sort();
    for krate in &entries {
        crates += 1;
        check_crate(root, krate, &mut problems)?;
    }
    // Code beside the crates' `src/`: examples, benches, the xtask itself, soak and fuzz.
    let mut others: Vec<PathBuf> = entries
        .iter()
        .flat_map(|k| [k.join("examples"), k.join("benches")])
        .collect();
    others.extend(OTHER_SOURCES.iter().map(|d| root.join(d)));
    for dir in others.into_iter().filter(|d| d.is_dir()) {
        check_lengths(root, &dir, &mut problems)?;
    }
    if !problems.is_empty() {
        bail!(
            "xtask ci: structure: {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    echo(&format!(
        "xtask ci: structure: {crates} crates, no module import cycle, no file over {MAX_LINES} lines"
    ));
    Ok(())
}

fn check_crate(root: &Path, krate: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let src = krate.join("src");
    let mut files = Vec::new();
    collect(&src, &mut files)?;
    let mut modules: BTreeMap<ModPath, String> = BTreeMap::new();
    for file in &files {
        let text =
            fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let rel = file.strip_prefix(&src).unwrap_or(file);
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        let lines = text.lines().count();
        if rel == Path::new("main.rs") && lines > MAX_MAIN_LINES {
            problems.push(format!(
                "{shown}: {lines} lines (a main.rs parses the command line and calls the library: at most {MAX_MAIN_LINES})"
            ));
        } else if !is_test_file(rel) && lines > MAX_LINES {
            problems.push(format!("{shown}: {lines} lines (at most {MAX_LINES})"));
        }
        // A binary under src/bin/ is a crate of its own; main.rs and lib.rs are roots.
        if rel.starts_with("bin") || rel == Path::new("main.rs") {
            continue;
        }
        let path = module_path(rel);
        if path.iter().any(|s| is_test_name(s)) {
            continue;
        }
        modules.insert(path, text);
    }
    let name = krate
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for cycle in cycles(&modules) {
        problems.push(format!("{name}: module import cycle: {cycle}"));
    }
    Ok(())
}

/// Source folders outside `crates/` held to the same file length.
const OTHER_SOURCES: &[&str] = &["xtask/src", "soak/src", "fuzz/src", "fuzz/fuzz_targets"];

/// Files over [`MAX_LINES`] under `dir` (test files excepted), which holds no crate root
/// whose modules are checked for cycles.
fn check_lengths(root: &Path, dir: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    for file in files {
        let rel = file.strip_prefix(dir).unwrap_or(&file);
        if is_test_file(rel) {
            continue;
        }
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let lines = text.lines().count();
        if lines > MAX_LINES {
            let shown = file.strip_prefix(root).unwrap_or(&file).display();
            problems.push(format!("{shown}: {lines} lines (at most {MAX_LINES})"));
        }
    }
    Ok(())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    Ok(())
}

fn is_test_name(segment: &str) -> bool {
    segment == "tests" || segment.ends_with("_tests")
}

fn is_test_file(rel: &Path) -> bool {
    rel.components().any(|c| {
        let s = c.as_os_str().to_string_lossy();
        is_test_name(s.strip_suffix(".rs").unwrap_or(&s))
    })
}

/// `a/b/mod.rs` and `a/b.rs` are `a::b`; `lib.rs` is the root.
fn module_path(rel: &Path) -> ModPath {
    let mut parts: ModPath = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// Every cycle among sibling modules, each as `parent: a -> b -> a`.
fn cycles(modules: &BTreeMap<ModPath, String>) -> Vec<String> {
    // edges[parent][child a] = children b of parent that a's subtree names.
    let mut edges: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, text) in modules {
        for path in paths(&strip(text), from) {
            let to = longest_module(modules, &path);
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                edges
                    .entry(from[..common].to_vec())
                    .or_default()
                    .entry(from[common].clone())
                    .or_default()
                    .insert(to[common].clone());
            }
        }
    }
    let mut found = Vec::new();
    for (parent, graph) in &edges {
        for (cycle, knot) in find_cycles(graph) {
            let at = if parent.is_empty() {
                "crate".to_owned()
            } else {
                parent.join("::")
            };
            let mut line = format!("under {at}: {}", cycle.join(" -> "));
            if knot.len() + 1 > cycle.len() {
                line.push_str(&format!(
                    " (one knot of {} modules: {})",
                    knot.len(),
                    knot.join(", ")
                ));
            }
            found.push(line);
        }
    }
    found
}

/// Each strongly connected component of more than one node (Tarjan): a cycle through it,
/// written as a closed walk, and all its nodes, sorted.
fn find_cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<(Vec<String>, Vec<String>)> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        components: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                if let Some(l) = s.low.get_mut(v) {
                    *l = (*l).min(lw);
                }
            } else if s.stack.contains(&w) {
                let iw = s.index[w];
                if let Some(l) = s.low.get_mut(v) {
                    *l = (*l).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.components.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.components
        .iter()
        .map(|component| {
            let mut knot: Vec<String> = component.iter().map(|s| (*s).to_owned()).collect();
            knot.sort();
            (walk(graph, component), knot)
        })
        .collect()
}

/// A closed walk inside one component: from its smallest node, breadth-first back to it.
fn walk(graph: &BTreeMap<String, BTreeSet<String>>, component: &[&str]) -> Vec<String> {
    let start = component.iter().min().copied().unwrap_or_default();
    let inside: BTreeSet<&str> = component.iter().copied().collect();
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if w == start {
                // came_from leads back from v to start: [v, ..., start], reversed.
                let mut cycle = vec![v.to_owned()];
                let mut at = v;
                while at != start {
                    at = came_from[at];
                    cycle.push(at.to_owned());
                }
                cycle.reverse();
                cycle.push(start.to_owned());
                return cycle;
            }
            if inside.contains(w) && !came_from.contains_key(w) && w != start {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    component.iter().map(|s| (*s).to_owned()).collect()
}

/// The longest prefix of `path` that is a module of the crate.
fn longest_module(modules: &BTreeMap<ModPath, String>, path: &[String]) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains_key(p))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ModPath {
        s.split("::")
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn use_trees_are_expanded_relative_to_the_module() {
        let text =
            "use crate::a::{b::C, d, e::{self, F}};\nuse super::g as h; fn x() { self::k::f(); }";
        let found = paths(&strip(text), &p("m::n"));
        assert_eq!(
            found,
            vec![
                p("a::b::C"),
                p("a::d"),
                p("a::e"),
                p("a::e::F"),
                p("m::g"),
                p("m::n::k::f")
            ]
        );
    }

    #[test]
    fn comments_strings_and_test_code_are_skipped() {
        let text =
            "// crate::a::x\n/* crate::b */ let s = \"crate::c\"; let r = r#\"crate::d\"#;\n\
                    let ch = '\\''; #[cfg(test)]\nmod tests { use crate::e; }\nuse crate::f;";
        assert_eq!(paths(&strip(text), &[]), vec![p("f")]);
    }

    #[test]
    fn a_cycle_between_siblings_is_found_at_their_lowest_common_parent() {
        let mut modules = BTreeMap::new();
        modules.insert(p(""), String::new());
        modules.insert(p("a"), String::new());
        modules.insert(p("a::x"), "use crate::a::y::Y;".to_owned());
        modules.insert(p("a::y"), "use super::x::X;".to_owned());
        modules.insert(p("b"), "use crate::a::x::X;".to_owned());
        assert_eq!(cycles(&modules), vec!["under a: x -> y -> x".to_owned()]);
        modules.insert(p("a::y"), String::new());
        assert!(cycles(&modules).is_empty());
        // Up to an ancestor is no edge; a -> b -> a across the root is.
        modules.insert(p("a::x"), "use crate::b::B; use super::Thing;".to_owned());
        assert_eq!(
            cycles(&modules),
            vec!["under crate: a -> b -> a".to_owned()]
        );
    }
}
