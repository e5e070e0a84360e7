// One mistake in the attribute gives one error: the placeholder impl keeps
// the code that uses the type free of follow-on errors.
use lhcluster::worker::{RequestContext, Worker, WorkerConfig};
use lhcluster::{Client, ClientConfig, Request};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Request)]
#[request_type(name = "echo", response = String, colour = "blue")]
struct Echo {
    #[request_id]
    id: u64,
    text: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _worker = Worker::builder(WorkerConfig::new("inproc://x"))
        .handle::<Echo>(|req: Echo, _: &RequestContext| Ok::<_, String>(req.text))
        .start()?;
    let client = Client::connect(ClientConfig::new("inproc://y"))?;
    let text: String = client
        .send_typed(&Echo {
            id: 1,
            text: "hi".into(),
        })?
        .wait()?;
    println!("{text} {}", Echo::REQUEST_TYPE);
    Ok(())
}
