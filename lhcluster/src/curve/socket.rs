//! CURVE on a socket: the options a server or a client sets before it binds
//! or connects, and the warning of a role that binds in clear.

use super::zap::ZapDomain;
use super::{PublicKey, SecretKey};
use crate::error::Error;
use crate::io::set_option;

/// The CURVE side of one socket, decided when its role starts.
#[derive(Clone, Debug)]
pub(crate) enum SocketCurve {
    /// A bound socket: it proves it holds `secret` to every client.
    Server {
        /// The server's secret key.
        secret: SecretKey,
        /// The ZAP domain its allow list is registered under, if it has one.
        zap_domain: Option<String>,
    },
    /// A connecting socket: it talks only to the holder of `server`'s
    /// secret key, and shows its own key (`secret`'s public half).
    Client {
        /// The server's public key.
        server: PublicKey,
        /// This client's own secret key.
        secret: SecretKey,
    },
}

impl SocketCurve {
    /// A bound socket's side: CURVE server when the role has a secret key.
    pub(crate) fn server(secret: Option<&SecretKey>) -> Option<Self> {
        secret.map(|secret| SocketCurve::Server {
            secret: secret.clone(),
            zap_domain: None,
        })
    }

    /// This server side, checking client keys through `zap` (its allow
    /// list's domain); a client side is returned as it is.
    pub(crate) fn with_zap(mut self, zap: &ZapDomain) -> Self {
        if let SocketCurve::Server { zap_domain, .. } = &mut self {
            *zap_domain = Some(zap.name().to_owned());
        }
        self
    }

    /// A connecting socket's side: CURVE client when the role has the
    /// server's key. Without a key of its own, the role gets a new one
    /// here, kept for its life (across reconnects): enough when the server
    /// does not check client keys.
    pub(crate) fn client(
        server: Option<&PublicKey>,
        own: Option<&SecretKey>,
    ) -> Result<Option<Self>, Error> {
        let Some(server) = server else {
            return Ok(None);
        };
        let secret = match own {
            Some(own) => own.clone(),
            None => SecretKey::generate()?,
        };
        Ok(Some(SocketCurve::Client {
            server: *server,
            secret,
        }))
    }

    /// Sets the CURVE options on `socket`; before it binds or connects
    /// (libzmq copies them into each new connection then).
    pub(crate) fn apply(&self, socket: &zmq::Socket) -> Result<(), Error> {
        match self {
            SocketCurve::Server { secret, zap_domain } => {
                if let Some(domain) = zap_domain {
                    set_option!(socket, set_zap_domain(domain), "ZMQ_ZAP_DOMAIN")?;
                }
                set_option!(socket, set_curve_server(true), "ZMQ_CURVE_SERVER")?;
                set_option!(
                    socket,
                    set_curve_secretkey(secret.as_bytes()),
                    "ZMQ_CURVE_SECRETKEY"
                )
            }
            SocketCurve::Client { server, secret } => {
                set_option!(
                    socket,
                    set_curve_serverkey(server.as_bytes()),
                    "ZMQ_CURVE_SERVERKEY"
                )?;
                set_option!(
                    socket,
                    set_curve_publickey(secret.public_key().as_bytes()),
                    "ZMQ_CURVE_PUBLICKEY"
                )?;
                set_option!(
                    socket,
                    set_curve_secretkey(secret.as_bytes()),
                    "ZMQ_CURVE_SECRETKEY"
                )
            }
        }
    }
}

/// Sets `curve` on `socket` when there is one.
pub(crate) fn apply(curve: Option<&SocketCurve>, socket: &zmq::Socket) -> Result<(), Error> {
    curve.map_or(Ok(()), |curve| curve.apply(socket))
}

/// Logs one warning when a role without CURVE binds an endpoint other
/// hosts can reach: anyone who can reach it can connect, and everything
/// it carries travels in clear. `ipc://`, `inproc://` and loopback TCP
/// stay on this host and are not warned about.
pub(crate) fn warn_if_clear(role: &'static str, curve: bool, endpoints: &[&str]) {
    if curve {
        return;
    }
    let exposed: Vec<&str> = endpoints
        .iter()
        .copied()
        .filter(|ep| reachable_from_other_hosts(ep))
        .collect();
    if !exposed.is_empty() {
        tracing::warn!(
            role,
            endpoints = %exposed.join(", "),
            "no CURVE keys: traffic on these endpoints is unauthenticated and in clear \
             (docs/security.md)"
        );
    }
}

/// A `tcp://` endpoint whose host is not a loopback address (a wildcard
/// or an interface name counts as reachable).
fn reachable_from_other_hosts(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return false;
    };
    // A connect-style "source;host:port" names the host after ';'.
    let rest = rest.rsplit(';').next().unwrap_or(rest);
    let host = match rest.rsplit_once(':') {
        Some((host, _port)) => host,
        None => rest,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" {
        return false;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.is_loopback(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_endpoints_other_hosts_reach() {
        for ep in [
            "tcp://127.0.0.1:5555",
            "tcp://127.0.0.2:1",
            "tcp://localhost:5555",
            "tcp://[::1]:5555",
            "ipc:///tmp/x",
            "inproc://x",
        ] {
            assert!(!reachable_from_other_hosts(ep), "{ep}");
        }
        for ep in [
            "tcp://*:5555",
            "tcp://0.0.0.0:5555",
            "tcp://10.1.2.3:5555",
            "tcp://eth0:5555",
            "tcp://[::]:5555",
            "tcp://example.org:1",
        ] {
            assert!(reachable_from_other_hosts(ep), "{ep}");
        }
    }

    #[test]
    fn a_client_without_its_own_key_gets_one_for_life() {
        let server = SecretKey::generate().unwrap().public_key();
        assert!(SocketCurve::client(None, None).unwrap().is_none());
        let Some(SocketCurve::Client { server: s, .. }) =
            SocketCurve::client(Some(&server), None).unwrap()
        else {
            panic!("a client side");
        };
        assert_eq!(s, server);
    }
}
