//! `lhcluster worker`: a generic worker (echo, or a shell command per
//! request).

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use lhcluster::worker::{HandlerError, RequestContext, Worker, WorkerConfig};
use lhcluster::{Payload, RequestType};
use serde::Deserialize;

use crate::commands::keys::ConnectKeyFlags;
use crate::common::{TypeArg, parse_type_arg, set, shutdown_signal};
use crate::daemon::{SharedFlags, SharedOptions, until_signal};

/// Run a generic worker for one or more request types.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["echo", "exec"])))]
#[command(
    after_help = "With --exec, each request runs `sh -c CMD` with the payload on stdin and \
LHCLUSTER_REQUEST_TYPE, LHCLUSTER_REQUEST_ID and LHCLUSTER_ATTEMPT in the environment; stdout is \
the response; a non-zero exit is FAILED with stderr as the error text.\n\nExample:\n  lhcluster worker --broker tcp://127.0.0.1:5556 --type echo --echo --capacity 4"
)]
pub struct Args {
    /// The broker's backend endpoint; repeat it to give several (one is
    /// used at a time, the next when it is gone).
    #[arg(long, required = true)]
    broker: Vec<String>,
    /// Request type served (repeatable): a number or a name (a name is
    /// also sent to the broker, which shows it in stats and logs).
    #[arg(long = "type", value_parser = parse_type_arg, required = true)]
    types: Vec<TypeArg>,
    /// Answer each request with its own payload.
    #[arg(long)]
    echo: bool,
    /// Run this shell command per request.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Requests run at once (default 1).
    #[arg(long)]
    capacity: Option<u32>,
    /// Requests the broker may hand this worker beyond `--capacity`, held
    /// here in order until a handler is free (default 0): for fast
    /// handlers, saves a round trip to the broker per request.
    #[arg(long)]
    prefetch: Option<u32>,
    /// Run the handler on the worker's own thread, one request at a time
    /// (for quick handlers: saves two thread hand-offs per request);
    /// `--capacity` then bounds how many requests wait here.
    #[arg(long, conflicts_with = "exec")]
    inline: bool,
    /// Name shown in the broker's logs.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    keys: ConnectKeyFlags,
    #[command(flatten)]
    shared: SharedFlags,
}

/// A generic worker in a cluster file (`[[worker]]`): what it serves and
/// how, beside the library's worker settings (`broker`, `capacity`, `prefetch`,
/// `inline`, `heartbeat`, `name`…, read straight into [`WorkerConfig`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerTable {
    /// Request types: numbers or names.
    pub types: Vec<TypeName>,
    /// Echo handler.
    #[serde(default)]
    pub echo: bool,
    /// Shell command handler.
    pub exec: Option<String>,
    /// The worker's own settings.
    #[serde(flatten)]
    pub config: WorkerConfig,
}

/// A request type in a config file: a number or a name.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum TypeName {
    /// A number.
    Id(u32),
    /// A name.
    Name(String),
}

impl TypeName {
    fn resolve(&self) -> anyhow::Result<TypeArg> {
        match self {
            TypeName::Id(id) => parse_type_arg(&id.to_string()),
            TypeName::Name(name) => parse_type_arg(name),
        }
        .map_err(anyhow::Error::msg)
    }
}

/// What a generic worker does with a request.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Answer with the payload.
    Echo,
    /// Run `sh -c` with this command.
    Exec(String),
}

impl WorkerTable {
    /// Starts the worker this table describes.
    pub fn start(&self) -> anyhow::Result<Worker> {
        let behaviour = match (&self.exec, self.echo) {
            (Some(cmd), false) => Behaviour::Exec(cmd.clone()),
            (None, true) => Behaviour::Echo,
            _ => anyhow::bail!("a worker needs exactly one of `echo = true` or `exec = \"...\"`"),
        };
        if self.config.inline && !self.echo {
            anyhow::bail!("`inline = true` is for the echo handler only");
        }
        let types = self
            .types
            .iter()
            .map(TypeName::resolve)
            .collect::<anyhow::Result<Vec<_>>>()?;
        start(self.config.clone(), &types, &behaviour)
    }
}

/// Starts a generic worker; the types given by name are registered with
/// their names.
pub fn start(
    config: WorkerConfig,
    types: &[TypeArg],
    behaviour: &Behaviour,
) -> anyhow::Result<Worker> {
    let mut builder = Worker::builder(config);
    for t in types {
        let name = t.name.clone().unwrap_or_default();
        builder = match behaviour.clone() {
            Behaviour::Echo => {
                builder.handle_raw_named(t.id, name, |payload: Payload, _: &RequestContext| {
                    Ok(payload)
                })
            }
            Behaviour::Exec(cmd) => builder.handle_raw_named(
                t.id,
                name,
                move |payload: Payload, ctx: &RequestContext| exec(&cmd, &payload, ctx),
            ),
        };
    }
    Ok(builder.start()?)
}

fn exec(cmd: &str, payload: &Payload, ctx: &RequestContext) -> Result<Payload, HandlerError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("LHCLUSTER_REQUEST_TYPE", ctx.request_type.to_string())
        .env("LHCLUSTER_REQUEST_ID", ctx.request_id.to_string())
        .env("LHCLUSTER_ATTEMPT", ctx.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HandlerError::failed(format!("cannot run sh: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        for frame in payload {
            // A command that does not read its input is not an error.
            if stdin.write_all(frame).is_err() {
                break;
            }
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| HandlerError::failed(format!("waiting for the command: {e}")))?;
    if output.status.success() {
        Ok(vec![output.stdout.into()])
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        Err(HandlerError::failed(format!(
            "command exited with {}: {stderr}",
            output.status
        )))
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let behaviour = match args.exec {
        Some(cmd) => Behaviour::Exec(cmd),
        None => Behaviour::Echo,
    };
    let mut config = WorkerConfig::new(&args.broker[0]);
    config.brokers.clone_from(&args.broker);
    set(&mut config.capacity, &args.capacity);
    set(&mut config.prefetch, &args.prefetch);
    config.inline = args.inline;
    args.keys
        .apply(&mut config.curve_server_key, &mut config.curve_secret_key)?;
    config.name = args.name;
    config.apply(&args.shared);
    let signal = shutdown_signal()?;
    let worker = start(config, &args.types, &behaviour)?;
    let ids: Vec<RequestType> = args.types.iter().map(|t| t.id).collect();
    println!("worker serving types {ids:?}");
    until_signal(&signal, || worker.stop())
}
