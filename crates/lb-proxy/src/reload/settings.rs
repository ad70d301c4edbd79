//! What a reload compares between the running configuration and the new one: the
//! settings of the process it cannot change, and the listener addresses configured with
//! port 0 that keep the port they got.

use std::net::SocketAddr;

use crate::config::{Config, ServerConfig};

/// `new` with each port-0 address that `old` also had at the same position replaced by the
/// address it was bound to (`bound`, in listener order).
pub(super) fn pin_ephemeral(
    old: &ServerConfig,
    bound: &[SocketAddr],
    new: &ServerConfig,
) -> ServerConfig {
    let configured: Vec<SocketAddr> = listen_order(old).copied().collect();
    let mut pinned = new.clone();
    let slots = pinned
        .listen
        .iter_mut()
        .chain(pinned.tls.iter_mut().flat_map(|t| t.listen.iter_mut()));
    for (i, addr) in slots.enumerate() {
        if addr.port() == 0 && configured.get(i) == Some(addr) {
            if let Some(actual) = bound.get(i) {
                *addr = *actual;
            }
        }
    }
    pinned
}

/// Every listener address in the order listeners are bound: plain, then TLS tables.
fn listen_order(server: &ServerConfig) -> impl Iterator<Item = &SocketAddr> {
    server
        .listen
        .iter()
        .chain(server.tls.iter().flat_map(|t| t.listen.iter()))
}

/// The process settings that differ between `old` and `new`.
pub(super) fn not_applied(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("server.threads", o.threads != n.threads);
    check("server.pid_file", o.pid_file != n.pid_file);
    check("server.error_log", o.error_log != n.error_log);
    check("server.upgrade_sock", o.upgrade_sock != n.upgrade_sock);
    check("server.log_format", o.log_format != n.log_format);
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn server(text: &str) -> ServerConfig {
        let text = format!(
            "{text}[upstreams.web]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nupstream = \"web\"\n"
        );
        Config::from_toml_str(&text, "lb.toml").unwrap().server
    }

    #[test]
    fn ephemeral_ports_stay_where_they_were() {
        let old = server("[server]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\n");
        let bound: Vec<SocketAddr> = vec![
            "127.0.0.1:4001".parse().unwrap(),
            "127.0.0.1:4002".parse().unwrap(),
        ];
        let new =
            server("[server]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:7000\", \"127.0.0.1:0\"]\n");
        let pinned = pin_ephemeral(&old, &bound, &new);
        let want: Vec<SocketAddr> = ["127.0.0.1:4001", "127.0.0.1:7000", "127.0.0.1:0"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(pinned.listen, want);
    }
}
