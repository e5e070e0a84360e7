// `#[request_id]` fields that cannot be an id.
use lhcluster_derive::Request;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
struct Text {
    #[request_id]
    key: String,
}

#[derive(Serialize, Deserialize, Request)]
struct Signed {
    #[request_id]
    key: i64,
}

#[derive(Serialize, Deserialize, Request)]
struct Pair(#[request_id] (u32, u32));

// Not caught by a glance at the type: the type system says why.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct OrderNo(u64);

#[derive(Serialize, Deserialize, Request)]
struct NoConversion {
    #[request_id]
    order: OrderNo,
}

fn main() {}
