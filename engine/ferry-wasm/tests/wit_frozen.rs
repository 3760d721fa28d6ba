//! Released WIT folders never change (wit/README.md). Each `wit/v*/` folder is compared with
//! the commit that first added it; any difference in the working tree fails.

use std::path::Path;
use std::process::Command;

fn git(root: &Path, args: &[&str]) -> Option<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
}

#[test]
fn released_wit_folders_are_identical_to_their_first_commit() {
    let root = ferry_wasm::testing::repo_root();
    if git(&root, &["rev-parse", "--git-dir"]).is_none() {
        eprintln!("not a git checkout: cannot check that released WIT folders are frozen");
        return;
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("wit")).expect("wit/ exists") {
        let name = entry
            .expect("readable wit/")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !name.starts_with('v') {
            continue;
        }
        let folder = format!("wit/{name}");
        let Some(log) = git(
            &root,
            &[
                "log",
                "--diff-filter=A",
                "--reverse",
                "--format=%H",
                "--",
                &folder,
            ],
        ) else {
            continue;
        };
        let Some(first) = String::from_utf8_lossy(&log.stdout)
            .lines()
            .next()
            .map(str::to_owned)
        else {
            // Not committed yet: a version being written, not a released one.
            continue;
        };
        let diff = Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["diff", "--stat", &first, "--", &folder])
            .output()
            .expect("git diff runs");
        let changes = String::from_utf8_lossy(&diff.stdout);
        assert!(
            changes.trim().is_empty(),
            "{folder} was released in {first} and must never change; copy it to a new version instead:\n{changes}"
        );
        checked += 1;
    }
    assert!(
        checked > 0 || std::env::var_os("CI").is_none(),
        "no released WIT folder found"
    );
}
