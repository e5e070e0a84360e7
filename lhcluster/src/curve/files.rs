//! Key files, as `lhcluster keygen` writes them and the daemons read them:
//! `NAME.key` holds a secret key and is readable by its owner only,
//! `NAME.pub` the public key; a key list holds a key per line (see
//! [`KeyList`]). In each, blank lines and lines starting with `#` are
//! skipped.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{KeyError, KeyList, KeyListError, PublicKey, SecretKey};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading or writing it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A secret key file that group or others may read (or write).
    #[error(
        "{path}: a secret key file must be readable by its owner only (mode {mode:03o}; \
         run `chmod 600 {path}`)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line that is not a key.
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The line and what is wrong with it.
        #[source]
        source: KeyListError,
    },
    /// No key in it, or more than one where one is expected.
    #[error("{path}: {reason}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

fn read(path: &Path) -> Result<String, KeyFileError> {
    std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The one key of a file: its line number and text.
fn single_key(path: &Path, text: &str) -> Result<(usize, String), KeyFileError> {
    let mut keys = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let shape = |reason| KeyFileError::Shape {
        path: path.to_owned(),
        reason,
    };
    let (line, key) = keys.next().ok_or(shape("no key in the file"))?;
    if keys.next().is_some() {
        return Err(shape("more than one key in the file"));
    }
    Ok((line, key.to_owned()))
}

fn key_error(path: &Path, line: usize, source: KeyError) -> KeyFileError {
    KeyFileError::Key {
        path: path.to_owned(),
        source: KeyListError { line, source },
    }
}

/// Reads a secret key file, refusing one that group or others can read.
pub fn read_secret_key(path: impl AsRef<Path>) -> Result<SecretKey, KeyFileError> {
    let path = path.as_ref();
    check_private(path)?;
    let (line, key) = single_key(path, &read(path)?)?;
    SecretKey::from_z85(&key).map_err(|e| key_error(path, line, e))
}

/// Reads a public key file (`NAME.pub`).
pub fn read_public_key(path: impl AsRef<Path>) -> Result<PublicKey, KeyFileError> {
    let path = path.as_ref();
    let (line, key) = single_key(path, &read(path)?)?;
    PublicKey::from_z85(&key).map_err(|e| key_error(path, line, e))
}

/// Reads a key list file (see [`KeyList`]).
pub fn read_key_list(path: impl AsRef<Path>) -> Result<KeyList, KeyFileError> {
    let path = path.as_ref();
    KeyList::parse(&read(path)?).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Writes a new key pair: `NAME.key` (the secret key, mode 0600) and
/// `NAME.pub` (the public key). Refuses to overwrite either file. Returns
/// their paths and the public key.
pub fn write_key_pair(
    name: impl AsRef<Path>,
) -> Result<(PathBuf, PathBuf, PublicKey), KeyFileError> {
    let name = name.as_ref();
    let with = |ext: &str| {
        let mut p = name.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (secret_path, public_path) = (with(".key"), with(".pub"));
    let secret = SecretKey::generate().map_err(|e| KeyFileError::Io {
        path: secret_path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let public = secret.public_key();
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyFileError::Io { path, source }
    };
    let mut file = create_new(&secret_path, 0o600).map_err(io(&secret_path))?;
    writeln!(
        file,
        "# lhcluster CURVE secret key: keep this file private (mode 0600)\n{}",
        secret.to_z85()
    )
    .map_err(io(&secret_path))?;
    let mut file = create_new(&public_path, 0o644).map_err(io(&public_path))?;
    writeln!(file, "{public}").map_err(io(&public_path))?;
    Ok((secret_path, public_path, public))
}

#[cfg(unix)]
fn create_new(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

#[cfg(not(unix))]
fn create_new(path: &Path, _mode: u32) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Elsewhere file modes do not say who may read: not checked.
#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), KeyFileError> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lhcluster-keys-{}-{}",
            std::process::id(),
            crate::peer::random_u64()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn keygen_files_read_back() {
        let name = scratch("broker");
        let (secret_path, public_path, public) = write_key_pair(&name).unwrap();
        let mode = std::fs::metadata(&secret_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_secret_key(&secret_path).unwrap().public_key(), public);
        assert_eq!(read_public_key(&public_path).unwrap(), public);
        // Never over an existing key.
        assert!(matches!(
            write_key_pair(&name),
            Err(KeyFileError::Io { .. })
        ));
        // A public key file is a key list of one.
        assert!(read_key_list(&public_path).unwrap().contains(&public));
    }

    #[test]
    fn a_secret_key_others_can_read_is_refused() {
        let (secret_path, _, _) = write_key_pair(scratch("loose")).unwrap();
        std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_secret_key(&secret_path).unwrap_err();
        assert!(
            matches!(err, KeyFileError::Permissions { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_malformed_key_is_refused_with_its_line() {
        let path = scratch("clients.keys");
        std::fs::write(&path, "# clients\n\nshort\n").unwrap();
        let err = read_key_list(&path).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("line 3: a CURVE key is 40 Z85 characters, this one has 5"),
            "{err}"
        );
        let err = read_public_key(&path).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
    }
}
