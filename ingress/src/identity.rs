//! The host key. Replicas and restarts must share one peer id (clients pin it), so the key comes
//! from the environment (a secret) or a file, and is generated and saved only when neither exists.

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
}
