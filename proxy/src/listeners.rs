//! The public listening sockets, one per worker thread.
//!
//! Pingora accepts a service's connections on one thread and hands each to a random
//! thread of the service. Without work stealing a socket's readiness is reported to the
//! thread that accepted it, so a connection served by another thread costs two wake-ups
//! per request. Instead each worker thread is a service of its own, with one thread and
//! its own `SO_REUSEPORT` socket on the listen address: the kernel spreads new
//! connections over the sockets, and each connection stays on the thread that accepted
//! it, as with nginx's workers.

use std::io;
use std::net::SocketAddr;

use pingora::listeners::TcpSocketOptions;

/// One spelling of `addr` per thread, all distinct. Pingora keys its listening sockets,
/// and those it hands to a new binary in a graceful upgrade, by the address as written,
/// so each socket needs its own key; a leading zero in the port leaves the address as
/// it is (`127.0.0.1:08080` is `127.0.0.1:8080`).
pub fn per_thread_keys(addr: SocketAddr, threads: usize) -> Vec<String> {
    let port = addr.port();
    let written = addr.to_string();
    // The host as written, brackets and any IPv6 scope included.
    let host = &written[..written.len() - port.to_string().len() - 1];
    (0..threads)
        .map(|zeros| format!("{host}:{}{port}", "0".repeat(zeros)))
        .collect()
}

/// Socket options of the per-thread sockets.
pub fn per_thread_options() -> TcpSocketOptions {
    let mut options = TcpSocketOptions::default();
    options.so_reuseport = Some(true);
    options
}

/// Fails, naming the address, when another socket already listens on `addr`. Pingora
/// would retry the bind for a while and then panic; and with `SO_REUSEPORT` a second
/// proxy of the same user (a second stack on the machine, say) would share the port
/// silently and take part of its connections. `SO_REUSEADDR` as Pingora sets it, so
/// connections of an earlier run still in TIME_WAIT do not count.
pub fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e} (is another proxy running there?)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_distinct_and_names_the_same_address() {
        for addr in ["127.0.0.1:8080", "[::1]:80", "0.0.0.0:1"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let keys = per_thread_keys(addr, 4);
            let distinct: std::collections::HashSet<_> = keys.iter().collect();
            assert_eq!(distinct.len(), 4, "{keys:?}");
            for key in &keys {
                assert_eq!(key.parse::<SocketAddr>().unwrap(), addr, "{key}");
            }
        }
    }

    #[test]
    fn a_port_in_use_is_refused_and_a_free_one_is_not() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = ensure_free(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        drop(taken);
        ensure_free(addr).unwrap();
    }
}
