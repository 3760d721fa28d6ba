//! Released WIT folders never change (wit/README.md). Each `wit/v*/` folder is compared with
//! the commit that released it; any difference in the working tree fails. A folder holding a
//! `DRAFT` file is a version still being designed and may change; it is released by the
//! commit that deletes that file (or, for a folder that never had one, the commit that added it).

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
        if root.join(&folder).join("DRAFT").exists() {
            continue;
        }
        let draft = format!("{folder}/DRAFT");
        let released_from_draft = git(
            &root,
            &["log", "--diff-filter=D", "-1", "--format=%H", "--", &draft],
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|commit| !commit.is_empty());
        let added = || {
            git(
                &root,
                &[
                    "log",
                    "--diff-filter=A",
                    "--reverse",
                    "--format=%H",
                    "--",
                    &folder,
                ],
            )
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
        };
        let Some(first) = released_from_draft.or_else(added) else {
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
