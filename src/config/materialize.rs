//! What a config needs from the world: names resolved to addresses (once,
//! as the config is read) and certificates read into the TLS
//! configurations listeners run with (again on each reload).

use std::net::{SocketAddr, ToSocketAddrs};

use super::lua::Script;
use super::types::{Config, ConfigError};

/// `"host:port"` or `"[v6]:port"`; a host name is resolved once, here.
pub fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let has_port = text
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        return Err(format!("expected \"host:port\", got \"{text}\""));
    }
    let addresses: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve \"{text}\": {error}"))?
        .collect();
    // Prefer IPv4 for names like localhost, as most backends listen there.
    addresses
        .iter()
        .find(|address| address.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| format!("cannot resolve \"{text}\""))
}

/// The TLS configurations of the listeners that terminate TLS, by address.
#[derive(Default, Clone)]
pub struct Certificates {
    by_listener: Vec<(SocketAddr, crate::tls::ServerTls)>,
}

impl Certificates {
    /// Reads every listener's certificate files.
    pub fn read(config: &Config, script: &Script) -> Result<Certificates, ConfigError> {
        let mut by_listener = Vec::new();
        for listener in &config.listen {
            if let Some(files) = &listener.tls {
                let server_config = crate::tls::server_config(files)
                    .map_err(|why| script.error("listen", format!("listen: tls: {why}")))?;
                by_listener.push((listener.address, server_config));
            }
        }
        Ok(Certificates { by_listener })
    }

    /// The TLS configuration of the listener on `address`, if it has one.
    pub fn of(&self, address: SocketAddr) -> Option<crate::tls::ServerTls> {
        self.by_listener
            .iter()
            .find(|(listener, _)| *listener == address)
            .map(|(_, config)| config.clone())
    }
}
