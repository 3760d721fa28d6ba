//! `ferry plugin test <plugin> <cases-dir> [--update]`: runs golden cases (the format of
//! `ferry_wasm::cases`) against a component and reports each, then `N passed, N failed`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use ferry_wasm::cases::{self, Case, CaseError};
use ferry_wasm::{LoadError, PluginOptions};

use super::{Failure, OrUsage, display_name, locate, one_line, runtime};

/// Arguments of `ferry plugin test`.
#[derive(clap::Args)]
pub struct Args {
    /// A plugin folder (its component built by `ferry plugin build`), a path to a `.wasm`
    /// component, or a first-party plugin's name (looked up in `$FERRY_PLUGIN_DIR`, else
    /// `plugins/` beside the binary's directory).
    plugin: String,
    /// Folder holding one sub-folder per case (each with `case.yaml`); default `<plugin>/cases`
    /// for a plugin folder.
    cases: Option<PathBuf>,
    /// Rewrite `expected.yaml` / `error.yaml` of failing cases from what the plugin did.
    #[arg(long)]
    update: bool,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let path = locate(&args.plugin)?;
    let cases_dir = match &args.cases {
        Some(dir) => dir.clone(),
        None if std::path::Path::new(&args.plugin).is_dir() => {
            std::path::Path::new(&args.plugin).join("cases")
        }
        None => {
            return Err(Failure::usage(&anyhow::anyhow!(
                "give the cases folder: `ferry plugin test {} <cases-dir>`",
                args.plugin
            ))
            .into());
        }
    };
    let name = display_name(&path);
    let runtime = runtime()?;
    let options = PluginOptions::default().name(&name);
    // Load once up front: a file that is not a plugin at all fails every case the same way,
    // which is one usage error, not N failures. A refused `null` configuration is fine
    // here: cases bring their own.
    match runtime.load_file(&path, options.clone()) {
        Ok(_) | Err(LoadError::Config { .. }) => {}
        Err(e) => {
            return Err(Failure::usage(
                &anyhow::Error::new(e).context(format!("cannot load {}", path.display())),
            )
            .into());
        }
    }
    let dirs = cases::case_dirs(&cases_dir)
        .context("cannot read the cases folder")
        .or_usage()?;
    if dirs.is_empty() {
        return Err(Failure::usage(&anyhow::anyhow!(
            "no cases in {} (a case is a folder with a case.yaml)",
            cases_dir.display()
        ))
        .into());
    }

    let started = Instant::now();
    let (mut passed, mut failed, mut updated) = (0usize, 0usize, 0usize);
    for dir in &dirs {
        let label = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let case = match Case::load(dir) {
            Ok(case) => case,
            Err(e) => {
                // A broken case is reported and counted; the others still run.
                println!("FAIL  {label}: cannot load the case: {}", one_line(&e));
                failed += 1;
                continue;
            }
        };
        let call_started = Instant::now();
        let outcome = match case.run(&runtime, &path, &options) {
            Ok(outcome) => outcome,
            Err(e) => {
                println!("FAIL  {label}: {}", one_line(&e));
                failed += 1;
                continue;
            }
        };
        let took = call_started.elapsed();
        if outcome.passed {
            println!("ok    {label} ({:.1} ms)", took.as_secs_f64() * 1e3);
            passed += 1;
        } else if args.update {
            write_expected(&case, &outcome.actual)?;
            println!("updated {label}");
            updated += 1;
            passed += 1;
        } else {
            println!("FAIL  {label}");
            if let Some(description) = &case.description {
                println!("      {description}");
            }
            println!("      --- expected  +++ actual ({})", case.hook);
            for line in outcome.diff.as_deref().unwrap_or_default().lines() {
                println!("      {line}");
            }
            failed += 1;
        }
    }
    println!(
        "{} cases of {name} in {:.1} ms{}",
        dirs.len(),
        started.elapsed().as_secs_f64() * 1e3,
        if updated > 0 {
            format!("; {updated} expected files rewritten")
        } else {
            String::new()
        }
    );
    // The last line, on its own: CI and humans read this one.
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        return Err(Failure::plugin(format!("{failed} of {} cases failed", dirs.len())).into());
    }
    Ok(())
}

fn write_expected(case: &Case, actual: &cases::Expected) -> Result<(), Failure> {
    case.write_expected(actual)
        .map_err(|e: CaseError| anyhow::Error::new(e).context("cannot update the case"))
        .or_usage()
}
