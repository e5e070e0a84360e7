//! One module per subcommand.

pub mod bench;
pub mod broker;
pub mod keygen;
pub mod keys;
pub mod notify_broker;
pub mod proxy;
pub mod publish;
pub mod request;
pub mod stats;
pub mod subscribe;
pub mod up;
pub mod watch;
pub mod worker;
