//! The client proxy: sits between clients and a broker and makes delivery
//! eventual. Clients connect to it exactly as to a broker (same [`Client`],
//! same protocol).
//!
//! It keeps every request whose flags ask for a response or a receipt until
//! that level is confirmed, bounded by count and bytes (`OVERLOADED` over
//! the bound), and re-sends it on every new broker session and on a timer
//! with backoff. The broker recognises a re-send from the same origin and
//! neither rejects nor runs it twice while it is pending or in progress.
//! See `docs/guarantees.md` for what that promises, and what it does not.
//!
//! [`Client`]: crate::Client
//!
//! ```no_run
//! use lhcluster::client_proxy::{ClientProxy, ClientProxyConfig};
//!
//! let proxy = ClientProxy::start(ClientProxyConfig::new("tcp://*:5550", "tcp://broker:5555"))?;
//! // clients connect to tcp://this-host:5550
//! proxy.stop()?;
//! # Ok::<(), lhcluster::Error>(())
//! ```

mod config;
pub(crate) mod core;
mod driver;
mod stats;
#[cfg(test)]
mod tests;
mod timers;

use std::sync::Arc;

pub use config::ClientProxyConfig;
pub use stats::ClientProxyStats;

use crate::curve::KeyList;
use crate::error::Error;
use crate::role::RoleHandle;

/// A running client proxy. Cheap to clone; it stops when
/// [`ClientProxy::stop`] is called or the last clone is dropped.
#[derive(Clone, Debug)]
pub struct ClientProxy {
    role: Arc<RoleHandle<driver::Command>>,
    endpoint: String,
}

#[cfg(test)]
crate::role::inject_panic!(ClientProxy, role);

impl ClientProxy {
    /// Binds the client-facing endpoint and starts the driver thread; it
    /// connects to the broker in the background.
    pub fn start(config: ClientProxyConfig) -> Result<ClientProxy, Error> {
        config.validate()?;
        let (role, endpoint) = driver::spawn(config)?;
        Ok(ClientProxy {
            role: Arc::new(role),
            endpoint,
        })
    }

    /// The client-facing endpoint actually bound.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A snapshot of the proxy's statistics.
    pub fn stats(&self) -> Result<ClientProxyStats, Error> {
        self.role.request(driver::Command::Stats)
    }

    /// Puts a new client key list in force (docs/security.md, "Reloading
    /// keys"): it replaces `curve_client_keys`. A proxy started without a
    /// list cannot get one (an error; restart it).
    ///
    /// New CURVE handshakes are judged by the new list; connections
    /// already made are kept, but held to it: from now on every REQUEST's
    /// key is checked, and one whose key is no longer listed is answered
    /// `FORBIDDEN` (an ERROR with that status to a client older than
    /// protocol 1.4) and counted in `requests_forbidden`, never buffered
    /// or forwarded. A connection that is still allowed sees nothing of
    /// the reload. Returns once the list is in force. `lhcluster proxy`
    /// calls it on SIGHUP.
    pub fn reload_keys(&self, clients: KeyList) -> Result<(), Error> {
        self.role
            .request(|done| driver::Command::ReloadKeys { clients, done })?
    }

    /// Tells clients the proxy is going away and stops. Buffered requests
    /// are lost (the proxy keeps them in memory only). Idempotent.
    pub fn stop(&self) -> Result<(), Error> {
        self.role.stop(driver::Command::Stop)
    }
}
