//! The typed layer: serde types as requests, responses and notifications.
//!
//! - [`Request`] and [`Notification`] are implemented by
//!   `#[derive(Request)]` / `#[derive(Notification)]` (feature `derive`,
//!   on by default), or by hand.
//! - Workers serve a request type with
//!   [`WorkerBuilder::handle`](crate::worker::WorkerBuilder::handle) and a
//!   closure or function ([`HandlerFn`]: its argument types are inferred;
//!   it returns the response, or a `Result` of it), or with
//!   [`WorkerBuilder::handle_with`](crate::worker::WorkerBuilder::handle_with)
//!   and a type implementing [`Handler`].
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
//! A [`TypedRequestError`] is a [`RequestError`](crate::RequestError) (the
//! request ended without a response, as a raw one would) or a codec error
//! on either side; [`status`](TypedRequestError::status) gives the status
//! the worker or broker answered with.
//!
//! | what happens | the client gets |
//! |---|---|
//! | the payload does not decode as the worker's request type | `Request(Status { status: BAD_REQUEST, .. })`, with the decode error's text |
//! | the handler returns `Err(e)` | `Request(Status { status: FAILED, .. })` with `e`'s text (or the status of a [`HandlerError`](crate::worker::HandlerError)) |
//! | the handler panics | `Request(Status { status: FAILED, .. })` |
//! | the broker refuses or loses it (duplicate, overload, worker death …) | `Request(Status { .. })` with the broker's status |
//! | no outcome in time, broker gone, client stopped | `Request(Timeout(_))`, `Request(Disconnected(_))`, `Request(Stopped)` |
//! | the request does not encode (nothing is sent) | [`TypedRequestError::Encode`] |
//! | the response does not decode as `R::Response` | [`TypedRequestError::Decode`] |
//!
//! # Where it lives
//!
//! This module only gathers the typed API at one path. The traits, the ids
//! and the MessagePack codec are the crate `lhcluster-types` (no ZeroMQ:
//! what derived code needs); the typed client, worker and notification code
//! sits beside its role (`client/typed.rs`, `worker/typed.rs`,
//! `notify/typed.rs`), and [`encode`] / [`decode`] (`payload.rs`, which
//! those use) put the codec into
//! frames.

// A façade: it only gathers the typed API at one path, and no role imports
// it (the roles' frame codec is `crate::payload`).
pub use crate::payload::{decode, encode};
pub use lhcluster_types::{Notification, PayloadError, Request};

pub use crate::client::{TypedRequestBuilder, TypedRequestError, TypedResponse};
pub use crate::notify::typed::on;
pub use crate::notify::{NotifyRouter, TypedPublishError};
pub use crate::worker::{Handler, HandlerFn, IntoHandlerResult};
