//! Loading a rule set from files: a `.rules` file, or a folder of them read in name order.

use leadscore_rules::diagnostic::{render, SourceFile};
use leadscore_rules::{compile, Compiled, Program};
use std::path::{Path, PathBuf};

/// Why a rule set could not be loaded.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    /// A file or folder could not be read.
    #[error("cannot read `{path}`: {source}")]
    #[diagnostic(code(leadscore::io))]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A folder holds no `.rules` file.
    #[error("`{0}` holds no `.rules` file")]
    #[diagnostic(code(leadscore::empty), help("rule files end in `.rules`"))]
    Empty(String),
    /// The rules have errors; the rendered diagnostics.
    #[error("{count} error(s) in the rules\n{rendered}")]
    #[diagnostic(code(leadscore::rules))]
    Invalid {
        /// How many errors.
        count: usize,
        /// Every diagnostic, rendered.
        rendered: String,
    },
}

/// Reads the source files of a rule set: the paths as given; a folder contributes its
/// `*.rules` files in name order.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<SourceFile>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        let io = |source| LoadError::Io {
            path: path.display().to_string(),
            source,
        };
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(io)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "rules") && p.is_file())
                .collect();
            entries.sort();
            if entries.is_empty() {
                return Err(LoadError::Empty(path.display().to_string()));
            }
            for p in entries {
                files.push(read_one(&p)?);
            }
        } else {
            files.push(read_one(path)?);
        }
    }
    Ok(files)
}

fn read_one(path: &Path) -> Result<SourceFile, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(SourceFile {
        name: path.display().to_string(),
        text,
    })
}

/// Reads and compiles a rule set; errors come back rendered.
pub fn load(paths: &[PathBuf]) -> Result<(Program, Compiled, Vec<SourceFile>), LoadError> {
    compile_sources(read_sources(paths)?)
}

/// Compiles source files; errors come back rendered.
/// Compiles rules kept as text (published in the table, or kept by `serve`), named `name` in
/// diagnostics.
pub fn compile_text(
    name: &str,
    text: &str,
) -> Result<(Program, Compiled, Vec<SourceFile>), LoadError> {
    compile_sources(vec![SourceFile {
        name: name.to_string(),
        text: text.to_string(),
    }])
}

fn compile_sources(
    files: Vec<SourceFile>,
) -> Result<(Program, Compiled, Vec<SourceFile>), LoadError> {
    let mut compiled = compile(&files);
    match compiled.program.take() {
        Some(program) => Ok((program, compiled, files)),
        None => {
            let errors: Vec<_> = compiled
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .collect();
            let rendered = errors.iter().map(|d| render(d, &files)).collect::<String>();
            Err(LoadError::Invalid {
                count: errors.len(),
                rendered,
            })
        }
    }
}

/// The rules built into the binary (SPEC §6: the default when `LEADSCORE_RULES` is not set):
/// the B2B SaaS example set `rules/b2b-saas/acme.rules`.
pub const BUILTIN_RULES: &str = include_str!("../../../rules/b2b-saas/acme.rules");

/// The name the built-in rules carry in diagnostics.
pub const BUILTIN_NAME: &str = "<built-in rules/b2b-saas/acme.rules>";

/// Loads the rule set at `path`, or the built-in rules when there is none.
pub fn load_or_builtin(
    path: Option<PathBuf>,
) -> Result<(Program, Compiled, Vec<SourceFile>), LoadError> {
    match path {
        Some(path) => load(&[path]),
        None => compile_sources(vec![SourceFile {
            name: BUILTIN_NAME.to_string(),
            text: BUILTIN_RULES.to_string(),
        }]),
    }
}

/// The value of `LEADSCORE_RULES` that names the built-in rules explicitly: a deployed
/// function runs them only when told so.
pub const BUILTIN_SETTING: &str = "builtin";

/// What `LEADSCORE_RULES` says: nothing, the built-in rules (`builtin`), or a file or folder.
fn configured_path() -> Option<Option<PathBuf>> {
    let value = std::env::var_os("LEADSCORE_RULES").filter(|p| !p.is_empty())?;
    Some((value != BUILTIN_SETTING).then(|| PathBuf::from(value)))
}

/// Loads the rules at `path` (the built-in ones for `None`), logging their warnings.
fn load_logged(path: Option<PathBuf>) -> Result<Program, LoadError> {
    let (program, compiled, files) = load_or_builtin(path)?;
    for warning in &compiled.diagnostics {
        tracing::warn!(diagnostic = %render(warning, &files), "rules warning");
    }
    Ok(program)
}

/// The rule set of the command line's DynamoDB commands and `serve` (SPEC §6): the file or
/// folder in `LEADSCORE_RULES`, else the built-in rules; loaded, checked and compiled once.
/// Warnings are logged; errors stop the start with every diagnostic rendered in the error.
pub fn load_from_env() -> Result<Program, LoadError> {
    load_logged(configured_path().flatten())
}

/// The rule set configured for a deployed function: the file or folder in `LEADSCORE_RULES`,
/// the built-in rules when it says `builtin`, and `None` when it is not set. A function never
/// falls back to the example rules by itself: with `None` it runs the rules published in its
/// table or refuses to start ([`crate::store::dynamo::DynamoStore::for_function`]).
pub fn load_for_function() -> Result<Option<Program>, LoadError> {
    configured_path().map(load_logged).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_rules_compile_without_diagnostics() {
        let loaded = load_or_builtin(None);
        assert!(loaded.is_ok(), "{:?}", loaded.err());
        if let Ok((program, compiled, _)) = loaded {
            assert_eq!(program.name, "acme-b2b");
            assert!(
                compiled.diagnostics.is_empty(),
                "{:?}",
                compiled.diagnostics
            );
        }
    }
}
