// A key given twice, in one attribute or across two, and a doubled marker.
use lhcluster_derive::{Notification, Request};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "a", name = "b")]
struct Twice;

#[derive(Serialize, Deserialize, Request)]
#[request_type(one_way)]
#[request_type(id = 3, one_way)]
struct AcrossAttributes;

#[derive(Serialize, Deserialize, Request)]
struct DoubleMarker {
    #[request_id]
    #[request_id]
    id: u64,
}

#[derive(Serialize, Deserialize, Notification)]
#[notification(name = "x")]
#[notification(name = "y")]
struct TwoTopics;

fn main() {}
