// One mistake in the attribute gives one error: the placeholder impl keeps
// the code that uses the type free of follow-on errors.
use lhcluster::Request as _;
use lhcluster_derive::Request;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "echo", response = String, colour = "blue")]
struct Echo {
    #[request_id]
    id: u64,
    text: String,
}

/// What a client does with a request: its type id, its natural id, its
/// payload.
fn send<R: lhcluster::Request>(request: &R) -> (u32, Option<u64>, Vec<u8>) {
    let payload = lhcluster::encode_frame(request).unwrap_or_default();
    (R::REQUEST_TYPE, request.request_id(), payload)
}

/// What a worker does: decodes the request, answers its response type.
fn serve<R: lhcluster::Request>(
    payload: &[Vec<u8>],
    handler: impl Fn(R) -> R::Response,
) -> Option<R::Response> {
    lhcluster::decode_frames(payload).ok().map(handler)
}

fn main() {
    let (request_type, id, payload) = send(&Echo {
        id: 1,
        text: "hi".into(),
    });
    let text: Option<String> = serve(&[payload], |req: Echo| req.text);
    println!("{request_type} {id:?} {text:?} {}", Echo::REQUEST_TYPE);
}
