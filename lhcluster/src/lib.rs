//! lhcluster: brokered request queuing and notifications over ZeroMQ.
#![warn(missing_docs)]

#[doc(hidden)]
pub mod protocol;
