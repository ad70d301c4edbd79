//! Keeping a stopped server's ports: while a test keeps a registry down for a long outage,
//! the kernel could hand its port to any other socket on the machine (an outgoing
//! connection's ephemeral port, another test's listener), and the restart would then fail
//! with "address in use". A [`PortHold`] binds the ports without listening: TCP
//! connections to them are refused, as when nothing is bound, and UDP datagrams are
//! dropped unanswered.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Ports bound (not listening) until dropped.
#[derive(Debug)]
pub struct PortHold {
    /// Kept only to be closed on drop.
    _sockets: Vec<Socket>,
}

impl PortHold {
    /// Binds each of `tcp` (without listening) and `udp`; panics when one is taken (a test
    /// helper: the caller just released them).
    pub fn new(tcp: &[SocketAddr], udp: &[SocketAddr]) -> Self {
        let bind = |addr: &SocketAddr, ty: Type, protocol: Protocol| {
            let socket =
                Socket::new(Domain::for_address(*addr), ty, Some(protocol)).expect("socket");
            socket.set_reuse_address(true).expect("SO_REUSEADDR");
            socket
                .bind(&(*addr).into())
                .unwrap_or_else(|e| panic!("cannot hold {addr}: {e}"));
            socket
        };
        let mut held: Vec<Socket> = tcp
            .iter()
            .map(|a| bind(a, Type::STREAM, Protocol::TCP))
            .collect();
        held.extend(udp.iter().map(|a| bind(a, Type::DGRAM, Protocol::UDP)));
        Self { _sockets: held }
    }
}
