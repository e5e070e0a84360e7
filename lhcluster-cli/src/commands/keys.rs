//! The CURVE key flags (docs/security.md): files read into a role's config.

use std::path::PathBuf;

use lhcluster::curve::{KeyList, PublicKey, SecretKey};

/// `--secret-key FILE`: the role's own secret key (a bound role's server
/// key, a connecting role's own key).
#[derive(Debug, Default, clap::Args)]
pub struct SecretKeyFlag {
    /// CURVE secret key file, as `lhcluster keygen` writes it (readable by
    /// its owner only).
    #[arg(long, value_name = "FILE")]
    secret_key: Option<PathBuf>,
}

impl SecretKeyFlag {
    /// Sets `field` from the file, when the flag is given.
    pub fn apply(&self, field: &mut Option<SecretKey>) -> anyhow::Result<()> {
        if let Some(path) = &self.secret_key {
            *field = Some(lhcluster::curve::read_secret_key(path)?);
        }
        Ok(())
    }
}

/// `--server-key FILE`: the public key of the server a role connects to.
#[derive(Debug, Default, clap::Args)]
pub struct ServerKeyFlag {
    /// The server's CURVE public key file (its NAME.pub): the connection is
    /// then encrypted and goes only to the holder of its secret key.
    #[arg(long, value_name = "FILE")]
    server_key: Option<PathBuf>,
}

impl ServerKeyFlag {
    /// Sets `field` from the file, when the flag is given.
    pub fn apply(&self, field: &mut Option<PublicKey>) -> anyhow::Result<()> {
        if let Some(path) = &self.server_key {
            *field = Some(lhcluster::curve::read_public_key(path)?);
        }
        Ok(())
    }
}

/// `--server-key FILE` and `--secret-key FILE`, the two keys of a role that
/// connects to a CURVE server: the server's public key and our own secret
/// key.
#[derive(Debug, Default, clap::Args)]
pub struct ConnectKeyFlags {
    #[command(flatten)]
    server_key: ServerKeyFlag,
    #[command(flatten)]
    secret_key: SecretKeyFlag,
}

impl ConnectKeyFlags {
    /// Sets `server` and `own` from their files, each when its flag is
    /// given.
    pub fn apply(
        &self,
        server: &mut Option<PublicKey>,
        own: &mut Option<SecretKey>,
    ) -> anyhow::Result<()> {
        self.server_key.apply(server)?;
        self.secret_key.apply(own)
    }

    /// The server's key and our own, each `None` when its flag is not
    /// given.
    pub fn read(&self) -> anyhow::Result<(Option<PublicKey>, Option<SecretKey>)> {
        let (mut server, mut own) = (None, None);
        self.apply(&mut server, &mut own)?;
        Ok((server, own))
    }
}

/// Reads a key list file into `field`, when its flag is given.
pub fn apply_list(path: &Option<PathBuf>, field: &mut Option<KeyList>) -> anyhow::Result<()> {
    if let Some(path) = path {
        *field = Some(lhcluster::curve::read_key_list(path)?);
    }
    Ok(())
}
