//! The typed layer: serde types as requests, responses and notifications.
//!
//! - [`Request`] and [`Notification`] are implemented by
//!   `#[derive(Request)]` / `#[derive(Notification)]` (feature `derive`,
//!   on by default), or by hand.
//! - Workers serve a request type with
//!   [`WorkerBuilder::handle`](crate::worker::WorkerBuilder::handle) and a
//!   [`Handler`] (closures are handlers).
//! - Clients send with [`Client::send_typed`](crate::Client::send_typed) or
//!   [`Client::request_typed`](crate::Client::request_typed) (with options)
//!   and get a [`TypedResponse`] that resolves to the decoded response or a
//!   [`TypedRequestError`].
//! - Publishers publish with
//!   [`NotifyPublisher::publish_typed`](crate::NotifyPublisher::publish_typed);
//!   subscribers route by type with [`NotifyRouter`] (or the [`on`]
//!   shortcut).
//!
//! # Payloads
//!
//! A typed value travels as **one MessagePack payload frame**, structs as
//! maps keyed by field name ([`encode`], [`decode`]; `rmp_serde`'s
//! `to_vec_named`). An empty payload decodes as MessagePack `nil`. A peer in
//! another language sends the request type id
//! ([`request_type_id`](crate::request_type_id) of the name, unless the
//! type sets an explicit `id`) and a MessagePack map, and gets one back.
//!
//! # Failures
//!
//! | what happens | the client gets |
//! |---|---|
//! | the payload does not decode as the worker's request type | [`TypedRequestError::BadRequest`] with the decode error |
//! | the handler returns `Err(e)` | [`TypedRequestError::Failed`] with `e`'s text (or the status of a [`HandlerError`](crate::worker::HandlerError)) |
//! | the handler panics | [`TypedRequestError::Failed`] |
//! | the response does not decode as `R::Response` | [`TypedRequestError::Decode`] |
//! | the broker refuses or loses it (duplicate, overload, worker death …) | [`TypedRequestError::Broker`] with the status |
//! | no outcome in time, broker gone, client stopped | `Timeout`, `Disconnected`, `Stopped` |

// The leaf: the frame codec over `lhcluster-types`, which the roles use.
pub(crate) mod codec;

// The rest only gathers the typed API at one path; no role imports it.
pub use codec::{decode, encode};
pub use lhcluster_types::{Notification, PayloadError, Request};

pub use crate::client::{TypedRequestBuilder, TypedRequestError, TypedResponse};
pub use crate::notify::typed::on;
pub use crate::notify::{NotifyRouter, TypedPublishError};
pub use crate::worker::Handler;
