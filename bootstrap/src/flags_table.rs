//! README.md's table of `stockade serve` settings is rendered from the command line's own
//! definition, so it lists every flag with its environment variable and default and cannot
//! drift: the test fails when the README differs, and `STOCKADE_WRITE_README=1 cargo test -p
//! stockade flags_table` writes it again.

use crate::config::Cli;
use clap::CommandFactory;
use std::fmt::Write as _;

const START: &str = "<!-- serve-flags:start (generated from bootstrap/src/config.rs) -->";
const END: &str = "<!-- serve-flags:end -->";

/// One row per flag of `stockade serve`: flag, environment variable, default, help.
fn table() -> String {
    let cli = Cli::command();
    let serve = cli
        .find_subcommand("serve")
        .expect("the serve subcommand exists");
    let mut out = String::from("| flag | env | default | what it sets |\n|---|---|---|---|\n");
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if long == "help" || arg.is_hide_set() {
            continue;
        }
        let env = arg
            .get_env()
            .map_or_else(|| "—".to_owned(), |e| format!("`{}`", e.to_string_lossy()));
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            "—".to_owned()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let mut help = arg
            .get_help()
            .map(ToString::to_string)
            .unwrap_or_default()
            .replace('|', "\\|");
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        if !values.is_empty() && arg.get_action().takes_values() {
            let _ = write!(help, " ({})", values.join(", "));
        }
        let _ = writeln!(out, "| `--{long}` | {env} | {default} | {help} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_every_serve_flag_with_its_env_and_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let start = readme.find(START).expect("README has the start marker") + START.len();
        let end = readme.find(END).expect("README has the end marker");
        let want = format!("\n{}", table());
        if readme[start..end] != want {
            if std::env::var_os("STOCKADE_WRITE_README").is_some() {
                let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
                std::fs::write(path, updated).expect("README.md written");
                return;
            }
            panic!(
                "README.md's flag table is out of date: run \
                 `STOCKADE_WRITE_README=1 cargo test -p stockade flags_table`"
            );
        }
    }
}
