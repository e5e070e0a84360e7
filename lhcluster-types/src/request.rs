//! The traits that `#[derive(Request)]` and `#[derive(Notification)]`
//! implement.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ids::{RequestId, RequestType};

/// A typed request: a serde type sent as one MessagePack payload frame,
/// routed by a fixed [`RequestType`], answered with a
/// [`Response`](Request::Response).
///
/// Derive it with `#[derive(Request)]` (see
/// [`lhcluster::Request`](https://docs.rs/lhcluster/latest/lhcluster/derive.Request.html)
/// for the attributes), or implement it by hand:
///
/// ```
/// # extern crate lhcluster_types as lhcluster;
/// use lhcluster::{RequestId, RequestType, request_type_id};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Resize {
///     image: u64,
///     width: u32,
/// }
///
/// impl lhcluster::Request for Resize {
///     const REQUEST_TYPE: RequestType = request_type_id(Self::NAME);
///     const NAME: &'static str = "images.resize";
///     type Response = Vec<u8>;
///     fn request_id(&self) -> Option<RequestId> {
///         Some(self.image) // resizing one image twice at once is pointless
///     }
/// }
/// ```
///
/// # Compatibility
///
/// Requests and responses travel as MessagePack maps keyed by field name
/// (`rmp_serde::to_vec_named`). A field added as an `Option` (or with
/// `#[serde(default)]`) keeps old and new peers compatible both ways: an
/// older decoder ignores fields it does not know, a newer one fills in the
/// ones that are missing. Renaming a field or changing its type is a
/// breaking change; so is changing [`NAME`](Request::NAME) (and so the id).
pub trait Request: Serialize + DeserializeOwned {
    /// The request type id workers register and the broker routes by. The
    /// derive uses [`request_type_id(NAME)`](crate::request_type_id) (a
    /// documented hash that other languages compute the same way) unless
    /// given `id = N`. Never 0.
    const REQUEST_TYPE: RequestType;

    /// The request type's name, as in logs (and hashed into the id).
    const NAME: &'static str;

    /// Whether the request is one-way: the client learns that it was
    /// delivered (or refused), never a response. A one-way request's
    /// [`Response`](Request::Response) is `()`.
    const ONE_WAY: bool = false;

    /// What the worker's handler answers.
    type Response: Serialize + DeserializeOwned;

    /// The request's natural id, the broker's dedupe key within the type:
    /// two requests with the same type and id never run at the same time,
    /// and a duplicate sent while the first is pending is rejected. `None`
    /// (the default) lets the client assign a fresh id to each send.
    fn request_id(&self) -> Option<RequestId> {
        None
    }
}

/// A typed notification: a serde type published as one MessagePack payload
/// frame on a fixed topic.
///
/// Derive it with `#[derive(Notification)]`
/// (`#[notification(name = "topic")]`, see
/// [`lhcluster::Notification`](https://docs.rs/lhcluster/latest/lhcluster/derive.Notification.html)),
/// or implement it by hand:
///
/// ```
/// # extern crate lhcluster_types as lhcluster;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct PriceChanged {
///     sku: String,
///     cents: u64,
/// }
///
/// impl lhcluster::Notification for PriceChanged {
///     const TOPIC: &'static str = "prices.changed";
/// }
/// ```
///
/// The compatibility rules of [`Request`] apply.
pub trait Notification: Serialize + DeserializeOwned {
    /// The topic (NotifyType) it is published on and subscribed to: any
    /// UTF-8 text without NUL, not empty.
    const TOPIC: &'static str;
}

/// The id a `#[request_id]` field holds (called by derived code).
#[doc(hidden)]
#[inline]
pub fn request_id_of<T: Copy + Into<u64>>(value: &T) -> RequestId {
    (*value).into()
}
