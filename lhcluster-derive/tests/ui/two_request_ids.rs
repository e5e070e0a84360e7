// A request has one id.
use lhcluster_derive::Request;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
struct TwoIds {
    #[request_id]
    order: u64,
    #[request_id]
    customer: u64,
}

fn main() {}
