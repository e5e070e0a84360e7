//! Derive macros for [lhcluster](https://docs.rs/lhcluster):
//! `#[derive(Request)]` and `#[derive(Notification)]`.
//!
//! Use them through the `lhcluster` crate (its default `derive` feature
//! re-exports them); the traits they implement, and the guide, are there.
//!
//! The derive is a pipeline, one module per stage: `attr` reads the
//! attributes, `model` describes the type, `validate` checks it and makes a
//! plan, `expand` writes the code. Every error is a spanned
//! [`syn::Error`]; all of them are reported together, next to a placeholder
//! implementation so that one mistake does not cascade into others.

mod attr;
mod errors;
mod expand;
mod model;
#[cfg(test)]
mod tests;
mod validate;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

use crate::errors::Errors;

/// Implements `lhcluster::Request` for a serde struct or enum, making it a
/// typed request with a stable request type id.
///
/// The type must also derive (or implement) `serde::Serialize` and
/// `serde::Deserialize`: the payload is MessagePack with named fields.
///
/// ```
/// # // `lhcluster` re-exports the trait and the derive under one name; here
/// # // `lhcluster` is `lhcluster-types` (the trait) and the derive is this crate.
/// # use lhcluster_derive::Request;
/// use lhcluster::Request;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Request)]
/// #[request_type(name = "orders.create", response = OrderCreated)]
/// struct CreateOrder {
///     #[request_id]
///     order_no: u64,
///     item: String,
/// }
///
/// #[derive(Serialize, Deserialize)]
/// struct OrderCreated {
///     accepted: bool,
/// }
///
/// assert_eq!(CreateOrder::REQUEST_TYPE, 0x1D4F_B242); // request_type_id("orders.create")
/// let order = CreateOrder { order_no: 7, item: "tea".into() };
/// assert_eq!(order.request_id(), Some(7));
/// ```
///
/// # `#[request_type(...)]`
///
/// Every key is optional:
///
/// | key | meaning | default |
/// |---|---|---|
/// | `name = "..."` | the name (`Request::NAME`), hashed into the id | the type's name |
/// | `id = N` | an explicit 32-bit request type id (not 0) | `lhcluster::request_type_id(name)`: FNV-1a of the name |
/// | `response = T` | the response type (`Serialize + DeserializeOwned`) | `()` |
/// | `one_way` | a one-way request: delivery only, no response (so no `response`) | two-way |
/// | `crate = "path"` | where the `lhcluster` crate is, when renamed in `Cargo.toml` | `::lhcluster` |
///
/// Give names that stay unique across the system (`"orders.create"` rather
/// than the default `"CreateOrder"`): the id is what workers register and
/// clients send, and a Python or C peer computes the same id from the name.
///
/// # `#[request_id]`
///
/// On at most one struct field: the request's natural id, the broker's
/// dedupe key within the type (`Request::request_id`). Its type is `u64` or
/// a `Copy` type that converts into `u64` (`u8`, `u16`, `u32`, a newtype
/// with `impl From<MyId> for u64`). Without it the client assigns a fresh
/// id to each send.
///
/// # Not supported
///
/// Generic types (every instantiation would share one name and id) and
/// unions are refused with an error. Enums are supported, without
/// `#[request_id]`.
#[proc_macro_derive(Request, attributes(request_type, request_id))]
pub fn derive_request(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input, model::request, validate::request, expand::request)
}

/// Implements `lhcluster::Notification` for a serde struct or enum, making
/// it a typed notification published on a fixed topic.
///
/// ```
/// # use lhcluster_derive::Notification;
/// use lhcluster::Notification;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Notification)]
/// #[notification(name = "orders.created")]
/// struct OrderCreated {
///     order_no: u64,
/// }
///
/// assert_eq!(OrderCreated::TOPIC, "orders.created");
/// ```
///
/// # `#[notification(...)]`
///
/// | key | meaning | default |
/// |---|---|---|
/// | `name = "..."` | the topic (`Notification::TOPIC`): not empty, no NUL | the type's name |
/// | `crate = "path"` | where the `lhcluster` crate is, when renamed | `::lhcluster` |
///
/// Generic types and unions are refused, as for `Request`.
#[proc_macro_derive(Notification, attributes(notification))]
pub fn derive_notification(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(
        &input,
        model::notification,
        validate::notification,
        expand::notification,
    )
}

/// Runs the pipeline on `input`: `model` reads it, `validate` checks the
/// model and makes a plan, `expand` writes the plan's code. Returns the
/// implementation (a placeholder if there were errors) followed by the
/// errors of every stage.
fn derive<M, P>(
    input: &DeriveInput,
    model: fn(&DeriveInput, &mut Errors) -> M,
    validate: fn(M, &mut Errors) -> Option<P>,
    expand: fn(&P) -> proc_macro2::TokenStream,
) -> TokenStream {
    let mut errors = Errors::default();
    let model = model(input, &mut errors);
    let plan = validate(model, &mut errors);
    let mut out = plan.as_ref().map(expand).unwrap_or_default();
    if !errors.is_empty() {
        out.extend(errors.into_compile_errors());
    }
    out.into()
}
