//! Compiled code on disk ([`RuntimeConfig::cache_dir`](crate::RuntimeConfig)), so that a
//! `ferry plugin test` run after the first one skips Cranelift (about 100 ms per component).
//!
//! Deserializing compiled code runs native code produced earlier, so an entry is used only
//! when everything says Ferry wrote it for this very engine:
//! - the file name is the component's SHA-256 and the engine's compatibility hash (wasmtime
//!   version and every setting that changes code): another wasmtime or configuration never
//!   even opens it;
//! - the file starts with Ferry's magic and the SHA-256 of the rest, checked before wasmtime
//!   sees a byte: a truncated or corrupted entry is recompiled and rewritten, never trusted;
//! - the folder is private: created `0700`, and a folder another user owns or may write to is
//!   not used at all (a checksum proves integrity, not authorship; whoever can write the
//!   folder could write a matching checksum). wasmtime checks its own header on top.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// First bytes of every entry: the format, so a future layout is never misread.
const MAGIC: &[u8; 8] = b"FERRYCC1";
const CHECKSUM_LEN: usize = 32;

/// The entry of the component with SHA-256 `digest` for `engine`, in `dir`.
pub(crate) fn entry(dir: &Path, digest: &str, engine: &Engine) -> PathBuf {
    dir.join(format!("{digest}-{:016x}.cwasm", engine_hash(engine)))
}

/// Identifies the engine build and settings, so cached code from another wasmtime version
/// or configuration is never even tried.
fn engine_hash(engine: &Engine) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// The compiled component in `path`, if it is a sound entry in a private folder; any
/// problem means "compile instead" (logged when it is more than a missing entry).
#[allow(unsafe_code)]
pub(crate) fn load(engine: &Engine, path: &Path) -> Option<Component> {
    let dir = path.parent()?;
    if !path.is_file() || private_folder(dir).is_err() {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let Some(code) = verified(&bytes) else {
        tracing::warn!(path = %path.display(), "compiled-code cache entry is damaged; compiling again");
        return None;
    };
    // SAFETY: `code` is what `store` serialized for this engine (the name carries the
    // engine's compatibility hash), unchanged since (its checksum matches), in a folder only
    // this user can write; wasmtime also checks its own header against the engine.
    match unsafe { Component::deserialize(engine, code) } {
        Ok(component) => Some(component),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "ignoring unusable compiled-code cache entry");
            None
        }
    }
}

/// The serialized code of an entry, if its magic and checksum are right.
fn verified(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < CHECKSUM_LEN {
        return None;
    }
    let (checksum, code) = rest.split_at(CHECKSUM_LEN);
    (Sha256::digest(code).as_slice() == checksum).then_some(code)
}

/// Writes `component`'s compiled code as the entry `path`, atomically (a temporary file,
/// then a rename); a failure only costs a compilation next time.
pub(crate) fn store(component: &Component, path: &Path) {
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let dir = path.parent().ok_or("cache path has no parent")?;
        create_private(dir)?;
        private_folder(dir)?;
        let code = component.serialize()?;
        let mut entry = Vec::with_capacity(MAGIC.len() + CHECKSUM_LEN + code.len());
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&Sha256::digest(&code));
        entry.extend_from_slice(&code);
        let tmp: PathBuf = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, entry)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if let Err(error) = result {
        tracing::warn!(path = %path.display(), %error, "cannot write compiled-code cache entry");
    }
}

#[cfg(unix)]
fn create_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Whether only this user can write `dir`: owned by the effective user and not writable by
/// group or others.
#[cfg(unix)]
fn private_folder(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        let why = format!(
            "{} is not private to this user (owner {}, mode {:o}); not using it as a compiled-code cache",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o777
        );
        tracing::warn!("{why}");
        return Err(why);
    }
    Ok(())
}

#[cfg(not(unix))]
fn private_folder(_dir: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled() -> (Engine, Component) {
        let engine = Engine::default();
        let bytes = wat::parse_str("(component)").expect("wat");
        let component = Component::new(&engine, bytes).expect("an empty component");
        (engine, component)
    }

    fn private_tempdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .expect("chmod");
        }
        dir
    }

    #[test]
    fn a_stored_entry_loads_back() {
        let (engine, component) = compiled();
        let dir = private_tempdir();
        let path = entry(dir.path(), "abc", &engine);
        store(&component, &path);
        assert!(path.is_file());
        assert!(load(&engine, &path).is_some());
    }

    #[test]
    fn a_damaged_or_foreign_entry_is_never_deserialized() {
        let (engine, component) = compiled();
        let dir = private_tempdir();
        let path = entry(dir.path(), "abc", &engine);
        store(&component, &path);
        let good = std::fs::read(&path).expect("entry");

        // One flipped bit in the code: the checksum no longer matches.
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).expect("write");
        assert!(load(&engine, &path).is_none());

        // Truncated (a crash mid-write of something that is not Ferry's temporary file).
        std::fs::write(&path, &good[..good.len() / 2]).expect("write");
        assert!(load(&engine, &path).is_none());

        // wasmtime's own serialization without Ferry's header.
        std::fs::write(&path, component.serialize().expect("serialize")).expect("write");
        assert!(load(&engine, &path).is_none());

        // Rewriting it makes it usable again.
        store(&component, &path);
        assert!(load(&engine, &path).is_some());
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_others_may_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let (engine, component) = compiled();
        let dir = private_tempdir();
        let path = entry(dir.path(), "abc", &engine);
        store(&component, &path);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        assert!(load(&engine, &path).is_none(), "a world-writable folder");
    }

    #[test]
    fn the_checksum_covers_every_byte_of_the_code() {
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(&Sha256::digest(b"code"));
        entry.extend_from_slice(b"code");
        assert_eq!(verified(&entry), Some(b"code".as_slice()));
        entry.push(0);
        assert_eq!(verified(&entry), None);
        assert_eq!(verified(b"FERRYCC1short"), None);
    }
}
