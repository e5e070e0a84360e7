// `crate = "..."` is followed: a path that does not exist is an error
// there, not a silent fallback to `::lhcluster`.
use lhcluster_derive::Request;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
#[request_type(crate = "no_such_crate")]
struct Ping;

fn main() {}
