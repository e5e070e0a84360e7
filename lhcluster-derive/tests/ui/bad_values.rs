// Well-formed attributes whose values make no sense.
use lhcluster_derive::{Notification, Request};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
#[request_type(id = 0)]
struct Reserved;

#[derive(Serialize, Deserialize, Request)]
#[request_type(id = 4294967296)]
struct TooBig;

#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "")]
struct Unnamed;

#[derive(Serialize, Deserialize, Request)]
#[request_type(one_way, response = u32)]
struct OneWayWithResponse;

#[derive(Serialize, Deserialize, Notification)]
#[notification(name = "")]
struct NoTopic;

#[derive(Serialize, Deserialize, Notification)]
#[notification(name = "a\0b")]
struct NulTopic;

fn main() {}
