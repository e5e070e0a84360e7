//! `lhcluster keygen NAME`: a new CURVE key pair (docs/security.md).

use std::path::PathBuf;
use std::process::ExitCode;

/// Make a CURVE key pair: NAME.key (the secret key, mode 0600) and
/// NAME.pub (the public key, also printed on stdout). Existing files are
/// never overwritten.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  lhcluster keygen broker   # broker.key for `broker --secret-key`, broker.pub for the clients' `--server-key`"
)]
pub struct Args {
    /// Path of the two files, without their extension.
    name: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (secret, public, key) = lhcluster::curve::write_key_pair(&args.name)?;
    eprintln!(
        "wrote {} (secret, keep it private) and {}",
        secret.display(),
        public.display()
    );
    println!("{key}");
    Ok(ExitCode::SUCCESS)
}
