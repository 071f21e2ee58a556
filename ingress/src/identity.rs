//! The host key. Replicas and restarts must share one peer id (clients pin it), so the key comes
//! from the environment (a secret) or a file. A new key is generated only when the operator
//! asked for one: the default key file on first start, or an explicit key file with
//! `--generate-key`. An explicitly configured key file that is missing or unreadable fails the
//! start: silently minting a new identity would strand every collector pinned to the old one.

use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// Errors loading or saving the host key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key material is not a protobuf-encoded libp2p keypair.
    #[error("{origin}: not a protobuf-encoded libp2p keypair: {detail}")]
    Decode {
        /// Where the key came from.
        origin: String,
        /// Decoder message.
        detail: String,
    },
    /// A configured key file does not exist (and generating one was not asked for).
    #[error("key file {path} does not exist; refusing to mint a new peer id (pass --generate-key to create it)")]
    Missing {
        /// The key file.
        path: PathBuf,
    },
    /// File system error.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Where the key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// Hex in the environment / flag.
    Inline,
    /// Read from the key file.
    File,
    /// Generated now and written to the key file.
    Generated,
}

fn decode(bytes: &[u8], origin: &str) -> Result<Keypair, IdentityError> {
    Keypair::from_protobuf_encoding(bytes).map_err(|e| IdentityError::Decode {
        origin: origin.to_owned(),
        detail: e.to_string(),
    })
}

/// Where the key file setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFile<'a> {
    /// Named by the operator: must exist unless `generate`.
    Configured {
        /// The file.
        path: &'a Path,
        /// Create it if absent.
        generate: bool,
    },
    /// The default path: created on first start.
    Default(&'a Path),
}

/// Loads the host key per the operator's configuration: `inline_hex` wins; else the key file,
/// which is generated only for [`KeyFile::Default`] or with `generate`.
pub fn load(
    inline_hex: Option<&str>,
    file: KeyFile<'_>,
) -> Result<(Keypair, KeySource), IdentityError> {
    match file {
        KeyFile::Default(path)
        | KeyFile::Configured {
            path,
            generate: true,
        } => load_or_create(inline_hex, path),
        KeyFile::Configured {
            path,
            generate: false,
        } => {
            if inline_hex.map(str::trim).is_some_and(|h| !h.is_empty()) {
                return load_or_create(inline_hex, path);
            }
            match std::fs::read(path) {
                Ok(bytes) => Ok((
                    decode(&bytes, &path.display().to_string())?,
                    KeySource::File,
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(IdentityError::Missing {
                    path: path.to_owned(),
                }),
                Err(source) => Err(IdentityError::Io {
                    path: path.to_owned(),
                    source,
                }),
            }
        }
    }
}

/// Loads the host key: `inline_hex` (hex of the protobuf encoding, e.g. from a secret) wins;
/// else `path` is read (raw protobuf bytes); else a new Ed25519 key is generated and written to
/// `path` with mode 0600.
pub fn load_or_create(
    inline_hex: Option<&str>,
    path: &Path,
) -> Result<(Keypair, KeySource), IdentityError> {
    if let Some(h) = inline_hex.map(str::trim).filter(|h| !h.is_empty()) {
        let bytes = hex::decode(h.trim_start_matches("0x")).map_err(|e| IdentityError::Decode {
            origin: "INGRESS_KEY".into(),
            detail: e.to_string(),
        })?;
        return Ok((decode(&bytes, "INGRESS_KEY")?, KeySource::Inline));
    }
    let io = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => Ok((
            decode(&bytes, &path.display().to_string())?,
            KeySource::File,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Decode {
                    origin: "generated key".into(),
                    detail: e.to_string(),
                })?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok((key, KeySource::Generated))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_saved_private_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/key");
        let (k1, s1) = load_or_create(None, &path).expect("generate");
        assert_eq!(s1, KeySource::Generated);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (k2, s2) = load_or_create(None, &path).expect("reload");
        assert_eq!(s2, KeySource::File);
        assert_eq!(k1.public().to_peer_id(), k2.public().to_peer_id());
        let hex_key = hex::encode(k1.to_protobuf_encoding().expect("encode"));
        let (k3, s3) = load_or_create(Some(&hex_key), &dir.path().join("absent")).expect("inline");
        assert_eq!(s3, KeySource::Inline);
        assert_eq!(k3.public().to_peer_id(), k1.public().to_peer_id());
        assert!(load_or_create(Some("zz"), &path).is_err());
    }

    #[test]
    fn a_configured_key_file_that_is_missing_fails_instead_of_minting_a_new_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("typo.key");
        let err = load(
            None,
            KeyFile::Configured {
                path: &path,
                generate: false,
            },
        )
        .expect_err("missing configured key must fail");
        assert!(matches!(err, IdentityError::Missing { .. }), "{err}");
        assert!(!path.exists(), "nothing was written");
        // Unreadable (a directory where the file should be) fails too, without generating.
        let err = load(
            None,
            KeyFile::Configured {
                path: dir.path(),
                generate: false,
            },
        )
        .expect_err("unreadable key must fail");
        assert!(matches!(err, IdentityError::Io { .. }), "{err}");
        // A garbage file is not replaced by a fresh key.
        std::fs::write(&path, b"not a key").expect("write");
        let err = load(
            None,
            KeyFile::Configured {
                path: &path,
                generate: true,
            },
        )
        .expect_err("garbage key must fail");
        assert!(matches!(err, IdentityError::Decode { .. }), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), b"not a key");
        // Asked for: generated once, then reloaded as the same identity.
        let fresh = dir.path().join("new.key");
        let (k1, s1) = load(
            None,
            KeyFile::Configured {
                path: &fresh,
                generate: true,
            },
        )
        .expect("gen");
        assert_eq!(s1, KeySource::Generated);
        let (k2, s2) = load(
            None,
            KeyFile::Configured {
                path: &fresh,
                generate: false,
            },
        )
        .expect("load");
        assert_eq!(s2, KeySource::File);
        assert_eq!(k1.public().to_peer_id(), k2.public().to_peer_id());
        // The default path is created on first start.
        let default = dir.path().join("default.key");
        let (_, s3) = load(None, KeyFile::Default(&default)).expect("default");
        assert_eq!(s3, KeySource::Generated);
    }
}
