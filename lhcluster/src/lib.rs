//! lhcluster: brokered request queuing and notifications over ZeroMQ.
#![warn(missing_docs)]

pub mod broker;
pub mod client;
mod context;
mod endpoint;
mod error;
mod io;
mod peer;
#[doc(hidden)]
pub mod protocol;
mod role;
mod slab;
mod wake;
pub mod worker;

pub use broker::{Broker, BrokerConfig, BrokerStats, TypeStats};
pub use client::{Client, ClientConfig, RequestError, ResponseHandle};
pub use context::context;
pub use error::{ConfigError, Error};
pub use protocol::{Flags, Frame, Payload, RequestId, RequestType, Status};
pub use worker::{Worker, WorkerConfig};
