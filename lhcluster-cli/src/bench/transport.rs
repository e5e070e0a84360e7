//! Endpoints for each transport, fresh for every run.

use std::sync::atomic::{AtomicU64, Ordering};

use clap::ValueEnum;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Inproc,
    Ipc,
    Tcp,
}

impl Transport {
    /// A fresh endpoint to bind (`tcp://127.0.0.1:0`: the OS picks the
    /// port; read it back from the bound socket).
    pub fn bind_endpoint(self, what: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        match self {
            Transport::Tcp => "tcp://127.0.0.1:0".to_owned(),
            Transport::Ipc => format!(
                "ipc://{}/lhcluster-bench-{pid}-{n}-{what}.sock",
                std::env::temp_dir().display()
            ),
            Transport::Inproc => format!("inproc://lhcluster-bench-{pid}-{n}-{what}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Inproc => "inproc",
            Transport::Ipc => "ipc",
            Transport::Tcp => "tcp",
        }
    }
}

/// Removes the socket file of an `ipc://` endpoint (no-op otherwise).
pub fn cleanup(endpoint: &str) {
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        let _ = std::fs::remove_file(path);
    }
}

/// Binds `socket` on a fresh endpoint; returns the endpoint to connect to.
pub fn bind(socket: &zmq::Socket, transport: Transport, what: &str) -> anyhow::Result<String> {
    let endpoint = transport.bind_endpoint(what);
    socket.bind(&endpoint)?;
    Ok(match socket.get_last_endpoint() {
        Ok(Ok(ep)) if !ep.is_empty() => ep,
        _ => endpoint,
    })
}
