// A request type and a response type without serde impls.
use lhcluster_derive::{Notification, Request};

struct Reply {
    ok: bool,
}

#[derive(Request)]
#[request_type(response = Reply)]
struct NoSerde {
    n: u32,
}

#[derive(serde::Serialize, serde::Deserialize, Request)]
#[request_type(response = Reply)]
struct ResponseWithoutSerde {
    n: u32,
}

#[derive(Notification)]
struct EventWithoutSerde;

fn main() {}
