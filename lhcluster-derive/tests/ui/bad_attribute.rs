// Malformed `#[request_type]` / `#[notification]` attributes: every error is
// reported in one compilation.
use lhcluster_derive::{Notification, Request};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
#[request_type(nmae = "typo", id = "7", one_way = true, response)]
struct Mixed;

#[derive(Serialize, Deserialize, Request)]
#[request_type(name = orders.create, response = 5)]
struct WrongKinds;

#[derive(Serialize, Deserialize, Request)]
#[request_type]
struct NoList;

#[derive(Serialize, Deserialize, Request)]
#[request_type(crate = "not a path")]
struct BadCrate;

#[derive(Serialize, Deserialize, Request)]
struct BadMarker {
    #[request_id(auto)]
    id: u64,
}

#[derive(Serialize, Deserialize, Notification)]
#[notification(name = "ok", topic = "no such key")]
struct BadNotification;

fn main() {}
