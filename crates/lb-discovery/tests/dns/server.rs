//! A real DNS server for the tests: hickory-server answering over UDP (and TCP, same port)
//! on a loopback port,
//! from an in-memory zone `test.` that the test edits while it runs, and that the test can
//! stop and start again on the same port (a resolver outage).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::authority::{AuthorityObject, Catalog, ZoneType};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use tokio::net::{TcpListener, UdpSocket};

/// The zone every test record lives in.
pub(crate) const ZONE: &str = "test.";

/// A running (or stopped) authoritative server for `test.`.
pub(crate) struct DnsServer {
    zone: Arc<InMemoryAuthority>,
    addr: SocketAddr,
    server: Option<ServerFuture<Catalog>>,
    serial: u32,
}

impl DnsServer {
    /// Starts a server on a free UDP port of 127.0.0.1, with only the zone's SOA.
    pub(crate) async fn start() -> Self {
        let origin = Name::from_str(ZONE).unwrap();
        let mut zone = InMemoryAuthority::empty(origin.clone(), ZoneType::Primary, false);
        let soa = SOA::new(
            Name::from_str("ns.test.").unwrap(),
            Name::from_str("admin.test.").unwrap(),
            1,
            3600,
            600,
            86400,
            1, // negative answers may be cached for 1 s at most
        );
        assert!(zone.upsert_mut(Record::from_rdata(origin, 1, RData::SOA(soa)), 1));
        // A free UDP port whose TCP twin is free too (another process may hold it): retry.
        let mut attempts = 0;
        let (socket, addr, listener) = loop {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            match TcpListener::bind(addr).await {
                Ok(listener) => break (socket, addr, listener),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts < 50 => {
                    attempts += 1
                }
                Err(e) => panic!("cannot bind TCP {addr}: {e}"),
            }
        };
        let mut this = Self {
            zone: Arc::new(zone),
            addr,
            server: None,
            serial: 1,
        };
        this.serve(socket, listener);
        this
    }

    fn serve(&mut self, socket: UdpSocket, listener: TcpListener) {
        let mut catalog = Catalog::new();
        let zone: Arc<dyn AuthorityObject> = self.zone.clone();
        catalog.upsert(LowerName::from(Name::from_str(ZONE).unwrap()), vec![zone]);
        let mut server = ServerFuture::new(catalog);
        server.register_socket(socket);
        server.register_listener(listener, Duration::from_secs(5));
        self.server = Some(server);
    }

    /// Where the server listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering: the port is closed until [`restart`](Self::restart).
    pub(crate) async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.shutdown_gracefully().await.unwrap();
        }
    }

    /// Serves again on the same port, with the zone as it is now.
    pub(crate) async fn restart(&mut self) {
        let socket = UdpSocket::bind(self.addr).await.unwrap();
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(socket, listener);
    }

    /// Replaces every record of `name` of the type of `data` at once (empty `data` deletes
    /// them; then `record_type` says which type).
    pub(crate) async fn set(
        &mut self,
        name: &str,
        record_type: RecordType,
        ttl: u32,
        data: Vec<RData>,
    ) {
        self.serial += 1;
        let name = Name::from_str(name).unwrap();
        let mut set = RecordSet::new(name.clone(), record_type, self.serial);
        for d in data {
            assert_eq!(d.record_type(), record_type);
            assert!(set.insert(Record::from_rdata(name.clone(), ttl, d), self.serial));
        }
        let key = RrKey::new(LowerName::from(&name), record_type);
        let mut records = self.zone.records_mut().await;
        if set.is_empty() {
            records.remove(&key);
        } else {
            records.insert(key, Arc::new(set));
        }
    }

    /// The A and AAAA records of `name`: `ips` as given (both types replaced).
    pub(crate) async fn set_ips(&mut self, name: &str, ttl: u32, ips: &[&str]) {
        let ips: Vec<IpAddr> = ips.iter().map(|ip| ip.parse().unwrap()).collect();
        let v4 = ips.iter().filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(RData::A(A(*v4))),
            IpAddr::V6(_) => None,
        });
        let v6 = ips.iter().filter_map(|ip| match ip {
            IpAddr::V6(v6) => Some(RData::AAAA(AAAA(*v6))),
            IpAddr::V4(_) => None,
        });
        self.set(name, RecordType::A, ttl, v4.collect()).await;
        self.set(name, RecordType::AAAA, ttl, v6.collect()).await;
    }

    /// The SRV records of `name`: `(priority, weight, port, target)`.
    pub(crate) async fn set_srv(
        &mut self,
        name: &str,
        ttl: u32,
        records: &[(u16, u16, u16, &str)],
    ) {
        let data = records
            .iter()
            .map(|&(p, w, port, target)| {
                RData::SRV(SRV::new(p, w, port, Name::from_str(target).unwrap()))
            })
            .collect();
        self.set(name, RecordType::SRV, ttl, data).await;
    }
}
