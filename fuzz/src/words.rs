//! Vocabularies for structured inputs: a fuzzed string is usually one of a few words that
//! matter to the code under test (hosts with wildcards and ports, paths with escapes, header
//! names the proxy treats specially, regular expressions...) and sometimes arbitrary text.
//! libFuzzer finds such tokens slowly on its own; picking them by index lets it combine them.

use arbitrary::{Result, Unstructured};

/// Hosts and host patterns: exact, wildcard, with port, trailing dot, IPv6, malformed.
pub const HOSTS: &[&str] = &[
    "example.com",
    "*.example.com",
    "api.example.com",
    "API.Example.COM.",
    "a.b.example.com",
    "example.com:8080",
    "eu.example.com:8443",
    "user@example.com",
    "[::1]",
    "[::1]:80",
    "127.0.0.1",
    "127.0.0.1:80",
    "*",
    "*.",
    "*.*.com",
    "a*.example.com",
    ".",
    "",
    "xn--bcher-kva.example",
    "exa mple.com",
];

/// Request paths and configured path conditions.
pub const PATHS: &[&str] = &[
    "/",
    "/api/",
    "/api",
    "/apis",
    "/api/users",
    "/%61pi/",
    "/v1/",
    "/v2/x",
    "//",
    "/api/../admin",
    "/a?b",
    "/#frag",
    "api",
    "",
    "*",
    "/é",
];

/// Regular expressions, valid and not.
pub const REGEXES: &[&str] = &[
    "^/v[0-9]+/",
    "(?i)mobile|android",
    "Mobile",
    "^$",
    ".*",
    "^b",
    "(?u)\\w+",
    "a{1000}",
    "(",
    "[",
    "\\",
    "(?<name>x)",
    "(a)\\1",
    "",
];

/// Header names, including those the proxy manages itself and invalid ones.
pub const HEADER_NAMES: &[&str] = &[
    "host",
    "Host",
    "cookie",
    "user-agent",
    "x-canary",
    "x-tenant",
    "x-forwarded-for",
    "x-real-ip",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "server",
    "X-Mixed-Case",
    ":authority",
    "bad name",
    "",
];

/// Header, cookie and query values.
pub const VALUES: &[&str] = &[
    "1",
    "always",
    "b",
    "b e",
    "b+e",
    "b%20e",
    "%zz",
    "%",
    "\"quoted\"",
    "a=1; sess=abc",
    "sess=abc;sess=def",
    " ; ;=; =x",
    "Mozilla/5.0 (iPhone) Mobile/15E148",
    "",
    " ",
    "\t",
    "\u{7f}",
    "é",
];

/// Cookie and query parameter names.
pub const NAMES: &[&str] = &[
    "canary", "variant", "sess", "Sess", "user", "User", "debug", "a%20b", "a b", "a=b", "a;b", "",
];

/// Request methods, standard, extension and invalid.
pub const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "PURGE", "get",
    "", "G ET",
];

/// Usually a word of `list`, sometimes arbitrary text.
pub fn pick(u: &mut Unstructured<'_>, list: &[&str]) -> Result<String> {
    if list.is_empty() || u.ratio(1, 4)? {
        return u.arbitrary();
    }
    Ok(list[u.choose_index(list.len())?].to_owned())
}

/// A host or host pattern.
pub fn host(u: &mut Unstructured<'_>) -> Result<String> {
    pick(u, HOSTS)
}

/// A path.
pub fn path(u: &mut Unstructured<'_>) -> Result<String> {
    pick(u, PATHS)
}

/// A regular expression.
pub fn regex(u: &mut Unstructured<'_>) -> Result<String> {
    pick(u, REGEXES)
}

/// A header name.
pub fn header_name(u: &mut Unstructured<'_>) -> Result<String> {
    pick(u, HEADER_NAMES)
}

/// A header, cookie or query value.
pub fn value(u: &mut Unstructured<'_>) -> Result<String> {
    pick(u, VALUES)
}

/// A cookie or query parameter name.
pub fn name(u: &mut Unstructured<'_>) -> Result<String> {
    pick(u, NAMES)
}

/// A method.
pub fn method(u: &mut Unstructured<'_>) -> Result<String> {
    pick(u, METHODS)
}
