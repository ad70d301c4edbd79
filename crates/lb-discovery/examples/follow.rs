//! Follows one discovery source and prints every backend set it pushes, the way a load
//! balancer consumes it: one `discover()` first, then the `watch()` stream, keeping the last
//! good set on errors.
//!
//! ```sh
//! cargo run -p lb-discovery --example follow -- file backends.toml
//! cargo run -p lb-discovery --example follow -- dns example.com 443
//! cargo run -p lb-discovery --example follow -- srv _http._tcp.example.com
//! cargo run -p lb-discovery --example follow -- etcd http://127.0.0.1:2379 /services/web/
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use futures_util::StreamExt;
use lb_discovery::dns::Dns;
use lb_discovery::etcd::{Etcd, EtcdConfig};
use lb_discovery::file::File;
use lb_discovery::{Discovered, ServiceDiscovery};

fn print(found: &Discovered) {
    println!("{} backend(s):", found.backends.len());
    for b in found.backends.iter() {
        let mut flags = Vec::new();
        if !found.is_enabled(b.addr()) {
            flags.push("disabled");
        }
        if found.is_backup(b.addr()) {
            flags.push("backup");
        }
        println!(
            "  {} at {} weight {} {}",
            b.name(),
            b.addr(),
            b.weight(),
            flags.join(" ")
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let source: Arc<dyn ServiceDiscovery> = match args.as_slice() {
        ["file", path] => Arc::new(File::new(*path)?),
        ["dns", name, port] => Arc::new(Dns::a_aaaa(*name, port.parse()?)?),
        ["srv", name] => Arc::new(Dns::srv(*name)?),
        ["etcd", endpoint, prefix] => Arc::new(Etcd::new(EtcdConfig::new([*endpoint], *prefix))?),
        _ => {
            eprintln!("usage: follow file PATH | dns NAME PORT | srv NAME | etcd ENDPOINT PREFIX");
            std::process::exit(2);
        }
    };

    let mut last_good = source.discover().await?;
    print(&last_good);
    let Some(mut stream) = source.watch() else {
        return Ok(());
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(found) if found == last_good => {}
            Ok(found) => {
                print(&found);
                last_good = found;
            }
            // The source already logged it; the last good set stays.
            Err(e) => eprintln!("error ({} so far): {}", source.error_count(), e.chain()),
        }
    }
    Ok(())
}
