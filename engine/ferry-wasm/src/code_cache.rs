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

/// Most bytes of compiled code the folder keeps. Every rebuilt plugin adds an entry (a Rust
/// component's code is about 0.4 MB, a Python or JS one tens of MB), so without a bound a
/// plugin author's cache grows for ever; past this size the least recently used entries go.
const MAX_BYTES: u64 = 1 << 30;
/// Name ending of a finished entry; anything else in the folder is not an entry.
const ENTRY_SUFFIX: &str = ".cwasm";
/// A temporary file older than this was left by a writer that died; it is removed.
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// First bytes of every entry: the format, so a future layout is never misread.
const MAGIC: &[u8; 8] = b"FERRYCC1";
const CHECKSUM_LEN: usize = 32;

/// The entry of the component with SHA-256 `digest` for `engine`, in `dir`.
pub(crate) fn entry(dir: &Path, digest: &str, engine: &Engine) -> PathBuf {
    dir.join(format!(
        "{digest}-{:016x}{ENTRY_SUFFIX}",
        engine_hash(engine)
    ))
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
        Ok(component) => {
            mark_used(path);
            Some(component)
        }
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
        prune(dir, MAX_BYTES);
        Ok(())
    })();
    if let Err(error) = result {
        tracing::warn!(path = %path.display(), %error, "cannot write compiled-code cache entry");
    }
}

/// Records that the entry was used now (its modification time), which is what [`prune`]
/// orders by; a failure only makes the entry look older than it is.
fn mark_used(path: &Path) {
    let touched = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(std::time::SystemTime::now()));
    if let Err(error) = touched {
        tracing::debug!(path = %path.display(), %error, "cannot mark compiled-code cache entry as used");
    }
}

/// Keeps the entries in `dir` within `max_bytes` by removing the least recently used ones,
/// and removes temporary files a dead writer left behind. Runs after each write (writes are
/// rare: one per new component version), never on the load path. Errors are ignored: the
/// worst outcome is a folder a little over its bound until the next write.
fn prune(dir: &Path, max_bytes: u64) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let mut entries = Vec::new();
    for item in read.flatten() {
        let path = item.path();
        let Ok(meta) = item.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        let name = item.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(ENTRY_SUFFIX) {
            entries.push((modified, meta.len(), path));
        } else if name.contains(".tmp")
            && now.duration_since(modified).unwrap_or_default() > STALE_TMP
        {
            let _ = std::fs::remove_file(&path);
        }
    }
    let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
    // Oldest first.
    entries.sort();
    for (_, len, path) in entries {
        if total <= max_bytes {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            tracing::debug!(path = %path.display(), "evicted compiled-code cache entry");
            total -= len;
        }
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
    fn the_least_recently_used_entries_go_past_the_bound() {
        use std::time::{Duration, SystemTime};
        let dir = private_tempdir();
        let at = |name: &str, age_s: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, [0u8; 100]).expect("write");
            let file = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open");
            file.set_modified(SystemTime::now() - Duration::from_secs(age_s))
                .expect("mtime");
            path
        };
        let oldest = at("a-0.cwasm", 300);
        let middle = at("b-0.cwasm", 200);
        let newest = at("c-0.cwasm", 100);
        let other = at("notes.txt", 400);
        let dead_tmp = at("d-0.tmp42", 7200);
        let live_tmp = at("e-0.tmp43", 10);

        // 300 bytes of entries, 250 allowed: only the oldest goes.
        prune(dir.path(), 250);
        assert!(!oldest.exists());
        assert!(middle.exists() && newest.exists());
        // Not entries: kept, except a temporary file a dead writer left an hour ago.
        assert!(other.exists() && live_tmp.exists());
        assert!(!dead_tmp.exists());

        // Using an entry makes it the most recent: the other one goes first.
        mark_used(&middle);
        prune(dir.path(), 100);
        assert!(middle.exists());
        assert!(!newest.exists());
    }

    #[test]
    fn loading_an_entry_marks_it_used() {
        use std::time::{Duration, SystemTime};
        let (engine, component) = compiled();
        let dir = private_tempdir();
        let path = entry(dir.path(), "abc", &engine);
        store(&component, &path);
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(old))
            .expect("mtime");
        assert!(load(&engine, &path).is_some());
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert!(modified > old + Duration::from_secs(1800));
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
