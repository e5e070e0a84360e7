// Generic types, unions and `#[request_id]` in an enum are refused.
use lhcluster_derive::{Notification, Request};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
struct Generic<T> {
    value: T,
}

#[derive(Request)]
union Bits {
    a: u32,
    b: f32,
}

#[derive(Serialize, Deserialize, Request)]
enum Command {
    Start {
        #[request_id]
        job: u64,
    },
    Stop,
}

#[derive(Serialize, Deserialize, Notification)]
struct Event<'a> {
    text: &'a str,
}

fn main() {}
