//! A fuzzed `[[routes]]` table: every condition kind and header rule, with values from the
//! vocabularies, written out as a TOML configuration with three upstreams (`a`, `b`, `c`).
//! The router is then built the way the proxy builds it, from the loaded file, so route
//! values go through the same parsing and validation.

use arbitrary::{Arbitrary, Result, Unstructured};
use toml::{Table, Value};

use crate::words;

/// The upstreams every generated configuration defines.
pub const UPSTREAMS: [&str; 3] = ["a", "b", "c"];

/// One `[[routes]]` entry.
#[derive(Debug, Arbitrary)]
pub struct FuzzRoute {
    #[arbitrary(with = upstream)]
    upstream: String,
    host: Option<Hosts>,
    path: Option<PathCondition>,
    #[arbitrary(with = methods)]
    methods: Option<Vec<String>>,
    headers: Vec<Condition<HeaderWord>>,
    cookies: Vec<Condition<NameWord>>,
    query: Vec<Condition<NameWord>>,
    request_headers: Option<Rules>,
    response_headers: Option<Rules>,
}

/// `host = "..."` or `host = [...]`.
#[derive(Debug, Arbitrary)]
enum Hosts {
    One(#[arbitrary(with = words::host)] String),
    List(#[arbitrary(with = hosts)] Vec<String>),
}

/// One of the three path keys (occasionally two, which the loader must refuse).
#[derive(Debug, Arbitrary)]
enum PathCondition {
    Exact(#[arbitrary(with = words::path)] String),
    Prefix(#[arbitrary(with = words::path)] String),
    Regex(#[arbitrary(with = words::regex)] String),
    Both(
        #[arbitrary(with = words::path)] String,
        #[arbitrary(with = words::regex)] String,
    ),
}

/// A header name word.
#[derive(Debug)]
struct HeaderWord(String);

/// A cookie or query name word.
#[derive(Debug)]
struct NameWord(String);

/// `{ name = ... }`, `{ name, value }`, `{ name, regex }` or (refused) both.
#[derive(Debug, Arbitrary)]
struct Condition<N> {
    name: N,
    test: Test,
}

/// The test of a condition.
#[derive(Debug, Arbitrary)]
enum Test {
    Present,
    Value(#[arbitrary(with = words::value)] String),
    Regex(#[arbitrary(with = words::regex)] String),
    Both(
        #[arbitrary(with = words::value)] String,
        #[arbitrary(with = words::regex)] String,
    ),
}

/// `{ set = {...}, add = {...}, remove = [...] }`.
#[derive(Debug, Arbitrary)]
struct Rules {
    set: Vec<Pair>,
    add: Vec<Pair>,
    remove: Vec<HeaderWord>,
}

/// `"name" = "value"` in a header rule.
#[derive(Debug, Arbitrary)]
struct Pair {
    name: HeaderWord,
    #[arbitrary(with = words::value)]
    value: String,
}

impl<'a> Arbitrary<'a> for HeaderWord {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        words::header_name(u).map(Self)
    }
}

impl<'a> Arbitrary<'a> for NameWord {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        words::name(u).map(Self)
    }
}

/// Names the condition generic takes.
trait Word {
    fn word(&self) -> &str;
}

impl Word for HeaderWord {
    fn word(&self) -> &str {
        &self.0
    }
}

impl Word for NameWord {
    fn word(&self) -> &str {
        &self.0
    }
}

fn upstream(u: &mut Unstructured<'_>) -> Result<String> {
    // Mostly defined upstreams; sometimes one the loader must refuse.
    words::pick(u, &["a", "b", "c", "a", "b", "c", "missing", ""])
}

fn hosts(u: &mut Unstructured<'_>) -> Result<Vec<String>> {
    let n = u.int_in_range(0..=4)?;
    (0..n).map(|_| words::host(u)).collect()
}

fn methods(u: &mut Unstructured<'_>) -> Result<Option<Vec<String>>> {
    if !u.arbitrary()? {
        return Ok(None);
    }
    let n = u.int_in_range(0..=4)?;
    (0..n)
        .map(|_| words::method(u))
        .collect::<Result<_>>()
        .map(Some)
}

/// The whole configuration: a listener, the three upstreams and `routes`, as TOML text.
pub fn config_text(routes: &[FuzzRoute]) -> Option<String> {
    let mut root = Table::new();
    root.insert(
        "server".into(),
        table([("listen", strings(["127.0.0.1:8080"]))]),
    );
    let mut upstreams = Table::new();
    for (i, name) in UPSTREAMS.iter().enumerate() {
        let backend = format!("127.0.0.{}:80", i + 1);
        upstreams.insert(
            (*name).into(),
            table([("backends", strings([backend.as_str()]))]),
        );
    }
    root.insert("upstreams".into(), Value::Table(upstreams));
    root.insert(
        "routes".into(),
        Value::Array(routes.iter().map(FuzzRoute::to_toml).collect()),
    );
    toml::to_string(&root).ok()
}

impl FuzzRoute {
    fn to_toml(&self) -> Value {
        let mut t = Table::new();
        t.insert("upstream".into(), self.upstream.clone().into());
        match &self.host {
            None => {}
            Some(Hosts::One(h)) => {
                t.insert("host".into(), h.clone().into());
            }
            Some(Hosts::List(l)) => {
                t.insert("host".into(), strings(l.iter().map(String::as_str)));
            }
        }
        match &self.path {
            None => {}
            Some(PathCondition::Exact(p)) => {
                t.insert("path".into(), p.clone().into());
            }
            Some(PathCondition::Prefix(p)) => {
                t.insert("path_prefix".into(), p.clone().into());
            }
            Some(PathCondition::Regex(r)) => {
                t.insert("path_regex".into(), r.clone().into());
            }
            Some(PathCondition::Both(p, r)) => {
                t.insert("path_prefix".into(), p.clone().into());
                t.insert("path_regex".into(), r.clone().into());
            }
        }
        if let Some(m) = &self.methods {
            t.insert("methods".into(), strings(m.iter().map(String::as_str)));
        }
        for (key, conditions) in [
            ("headers", conditions(&self.headers)),
            ("cookies", conditions(&self.cookies)),
            ("query", conditions(&self.query)),
        ] {
            if let Some(c) = conditions {
                t.insert(key.into(), c);
            }
        }
        for (key, rules) in [
            ("request_headers", &self.request_headers),
            ("response_headers", &self.response_headers),
        ] {
            if let Some(r) = rules {
                t.insert(key.into(), r.to_toml());
            }
        }
        Value::Table(t)
    }
}

impl Rules {
    fn to_toml(&self) -> Value {
        let pairs = |p: &[Pair]| {
            Value::Table(
                p.iter()
                    .map(|p| (p.name.0.clone(), Value::from(p.value.clone())))
                    .collect(),
            )
        };
        let mut t = Table::new();
        if !self.set.is_empty() {
            t.insert("set".into(), pairs(&self.set));
        }
        if !self.add.is_empty() {
            t.insert("add".into(), pairs(&self.add));
        }
        if !self.remove.is_empty() {
            t.insert(
                "remove".into(),
                strings(self.remove.iter().map(|w| w.0.as_str())),
            );
        }
        Value::Table(t)
    }
}

fn conditions<N: Word>(list: &[Condition<N>]) -> Option<Value> {
    if list.is_empty() {
        return None;
    }
    let items = list
        .iter()
        .map(|c| {
            let mut t = Table::new();
            t.insert("name".into(), c.name.word().into());
            match &c.test {
                Test::Present => {}
                Test::Value(v) => {
                    t.insert("value".into(), v.clone().into());
                }
                Test::Regex(r) => {
                    t.insert("regex".into(), r.clone().into());
                }
                Test::Both(v, r) => {
                    t.insert("value".into(), v.clone().into());
                    t.insert("regex".into(), r.clone().into());
                }
            }
            Value::Table(t)
        })
        .collect();
    Some(Value::Array(items))
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    Value::Array(items.into_iter().map(Value::from).collect())
}

fn table<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Table(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}
