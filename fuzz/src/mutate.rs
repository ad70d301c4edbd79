//! Structure-aware configuration fuzzing: take a valid configuration (one of the files in
//! `examples/`), apply a few fuzzed edits to its TOML tree (replace, insert, remove or copy a
//! value anywhere), and write it back as text. The edits use a vocabulary of the keys and
//! the quoted example values of `docs/configuration.md` and of the keys and strings of the
//! examples, so most mutants are nearly valid files that reach deep into validation.
//!
//! The examples and the docs are read once per process from the repository, so a newly
//! added example or documented key is fuzzed without touching this crate.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use toml::{Table, Value};

/// At most this many edits are applied to one file.
const MAX_EDITS: usize = 8;

/// A valid configuration and the edits to make to it.
#[derive(Debug, Arbitrary)]
pub struct Mutant {
    example: u16,
    edits: Vec<Edit>,
}

/// One edit; slots are positions in the list of every value of the tree (depth first),
/// taken modulo its length.
#[derive(Debug, Arbitrary)]
enum Edit {
    /// Replace the value at a slot.
    Set { at: u16, value: FuzzValue },
    /// Insert a key into the table at (or containing) a slot, or push onto an array.
    Insert {
        at: u16,
        key: Word,
        value: FuzzValue,
    },
    /// Remove the value at a slot.
    Remove { at: u16 },
    /// Replace the value at one slot with a copy of the value at another.
    Copy { from: u16, to: u16 },
}

/// A vocabulary word (by index) or any text.
#[derive(Debug, Arbitrary)]
enum Word {
    Known(u16),
    Any(String),
}

/// A value to write.
#[derive(Debug, Arbitrary)]
enum FuzzValue {
    Str(Word),
    Int(i64),
    Small(i8),
    Float(f64),
    Bool(bool),
    Datetime(u8),
    Array(Vec<Scalar>),
    Table(Vec<(Word, Scalar)>),
}

/// A value inside an array or inline table (no deeper nesting).
#[derive(Debug, Arbitrary)]
enum Scalar {
    Str(Word),
    Int(i64),
    Small(i8),
    Bool(bool),
}

/// A path to a value in the tree.
type Slot = Vec<Step>;

/// One step of a path.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// The examples and the vocabulary, read once.
struct Seeds {
    /// `(path, parsed file)` of every example that parses as TOML.
    examples: Vec<(PathBuf, Table)>,
    /// Keys and string values.
    words: Vec<String>,
}

impl Mutant {
    /// The mutated file: the example's path (relative files in it resolve against it, as
    /// for the original) and the new text; `None` when the tree cannot be written as TOML.
    pub fn render(&self) -> Option<(&'static Path, String)> {
        let seeds = seeds();
        if seeds.examples.is_empty() {
            return None;
        }
        let (path, base) = &seeds.examples[usize::from(self.example) % seeds.examples.len()];
        let mut doc = Value::Table(base.clone());
        for edit in self.edits.iter().take(MAX_EDITS) {
            edit.apply(&mut doc, &seeds.words);
        }
        let Value::Table(table) = doc else {
            return None;
        };
        Some((path.as_path(), toml::to_string(&table).ok()?))
    }
}

impl Edit {
    fn apply(&self, doc: &mut Value, words: &[String]) {
        let slots = slots(doc);
        let slot = |i: u16| slots[usize::from(i) % slots.len()].clone();
        match self {
            Self::Set { at, value } => {
                if let Some(v) = get_mut(doc, &slot(*at)) {
                    *v = value.value(words);
                }
            }
            Self::Insert { at, key, value } => {
                let mut path = slot(*at);
                loop {
                    match get_mut(doc, &path) {
                        Some(Value::Table(t)) => {
                            t.insert(key.text(words), value.value(words));
                            return;
                        }
                        Some(Value::Array(a)) => {
                            a.push(value.value(words));
                            return;
                        }
                        _ => {}
                    }
                    if path.pop().is_none() {
                        return;
                    }
                }
            }
            Self::Remove { at } => {
                let mut path = slot(*at);
                let Some(last) = path.pop() else { return };
                match (get_mut(doc, &path), last) {
                    (Some(Value::Table(t)), Step::Key(k)) => {
                        t.remove(&k);
                    }
                    (Some(Value::Array(a)), Step::Index(i)) if i < a.len() => {
                        a.remove(i);
                    }
                    _ => {}
                }
            }
            Self::Copy { from, to } => {
                let from = slot(*from);
                // Not the whole file: a few copies of it would grow it exponentially.
                if from.is_empty() {
                    return;
                }
                let Some(v) = get_mut(doc, &from).map(|v| v.clone()) else {
                    return;
                };
                if let Some(dst) = get_mut(doc, &slot(*to)) {
                    *dst = v;
                }
            }
        }
    }
}

impl Word {
    fn text(&self, words: &[String]) -> String {
        match self {
            Self::Known(i) if !words.is_empty() => words[usize::from(*i) % words.len()].clone(),
            Self::Known(_) => String::new(),
            Self::Any(s) => s.clone(),
        }
    }
}

impl FuzzValue {
    fn value(&self, words: &[String]) -> Value {
        match self {
            Self::Str(w) => Value::String(w.text(words)),
            Self::Int(i) => Value::Integer(*i),
            Self::Small(i) => Value::Integer(i64::from(*i)),
            Self::Float(f) => Value::Float(*f),
            Self::Bool(b) => Value::Boolean(*b),
            Self::Datetime(n) => {
                let text = ["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00"][usize::from(*n) % 3];
                text.parse().map_or(Value::Integer(0), Value::Datetime)
            }
            Self::Array(items) => Value::Array(items.iter().map(|s| s.value(words)).collect()),
            Self::Table(pairs) => Value::Table(
                pairs
                    .iter()
                    .map(|(k, v)| (k.text(words), v.value(words)))
                    .collect(),
            ),
        }
    }
}

impl Scalar {
    fn value(&self, words: &[String]) -> Value {
        match self {
            Self::Str(w) => Value::String(w.text(words)),
            Self::Int(i) => Value::Integer(*i),
            Self::Small(i) => Value::Integer(i64::from(*i)),
            Self::Bool(b) => Value::Boolean(*b),
        }
    }
}

/// Every value of the tree, depth first; the root is the empty path.
fn slots(doc: &Value) -> Vec<Slot> {
    fn walk(v: &Value, path: &mut Slot, out: &mut Vec<Slot>) {
        out.push(path.clone());
        match v {
            Value::Table(t) => {
                for (k, child) in t {
                    path.push(Step::Key(k.clone()));
                    walk(child, path, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    path.push(Step::Index(i));
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

/// The value at `path`.
fn get_mut<'a>(doc: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |v, step| match (v, step) {
        (Value::Table(t), Step::Key(k)) => t.get_mut(k),
        (Value::Array(a), Step::Index(i)) => a.get_mut(*i),
        _ => None,
    })
}

/// The examples and vocabulary of this checkout.
fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
            .map(|dir| {
                dir.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut words = Vec::new();
        let examples: Vec<(PathBuf, Table)> = files
            .into_iter()
            .filter_map(|p| {
                let text = std::fs::read_to_string(&p).ok()?;
                let table: Table = text.parse().ok()?;
                collect_words(&Value::Table(table.clone()), &mut words);
                Some((p, table))
            })
            .collect();
        let docs = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap_or_default();
        doc_words(&docs, &mut words);
        words.sort();
        words.dedup();
        Seeds { examples, words }
    })
}

/// Keys and string values of a tree.
fn collect_words(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Table(t) => {
            for (k, child) in t {
                out.push(k.clone());
                collect_words(child, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| collect_words(c, out)),
        _ => {}
    }
}

/// From the tables of `docs/configuration.md`: the key of each row (its first cell, the last
/// dotted part) and every quoted string in backticks (`"10s"`, `"header:x-user"`).
fn doc_words(docs: &str, out: &mut Vec<String>) {
    for line in docs.lines().filter(|l| l.starts_with("| `")) {
        let mut ticks = line.split('`').skip(1).step_by(2);
        if let Some(key) = ticks.next() {
            if let Some(leaf) = key.rsplit('.').next().filter(|k| !k.contains(' ')) {
                out.push(leaf.to_owned());
            }
        }
        for snippet in line.split('`').skip(1).step_by(2) {
            if let Some(inner) = snippet
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .filter(|s| !s.contains('"'))
            {
                out.push(inner.to_owned());
            }
        }
    }
}
