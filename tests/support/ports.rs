//! A free loopback port for a process the test starts (it binds the port itself).

/// A port nothing listens on right now (bound and released at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
