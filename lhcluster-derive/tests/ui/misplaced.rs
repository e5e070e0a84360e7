// Attributes in the wrong place.
use lhcluster_derive::{Notification, Request};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
#[request_id]
struct MarkerOnType {
    #[request_type(name = "x")]
    id: u64,
}

#[derive(Serialize, Deserialize, Request)]
enum OnVariant {
    #[request_type(one_way)]
    A,
}

#[derive(Serialize, Deserialize, Notification)]
struct NotificationField {
    #[notification(name = "x")]
    n: u32,
}

fn main() {}
