//! Shell habits: completions and manual pages, both generated from the clap
//! definitions so they never drift from the real options.

use super::{Cli, EXIT_ERROR, EXIT_OK};
use clap::CommandFactory;
use std::path::Path;

/// `prodops completions SHELL`: the completion script on stdout.
pub(super) fn completions(shell: clap_complete::Shell) -> i32 {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "prodops",
        &mut std::io::stdout(),
    );
    EXIT_OK
}

/// `prodops man`: prodops(1) in roff on stdout, or with `--dir` one page per
/// command (`prodops.1`, `prodops-request-edit.1`, …) written there.
pub(super) fn man(dir: Option<&Path>) -> i32 {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let written = match dir {
        None => page(command).and_then(|(_, text)| {
            std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())
        }),
        Some(dir) => write_pages(command, dir),
    };
    match written {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: cannot write the manual: {e}");
            EXIT_ERROR
        }
    }
}

fn write_pages(command: clap::Command, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut pages = Vec::new();
    collect_pages(command, &mut pages)?;
    for (name, text) in &pages {
        std::fs::write(dir.join(name), text)?;
    }
    eprintln!("{} manual pages written to {}", pages.len(), dir.display());
    Ok(())
}

/// The pages of a command and of its visible subcommands, depth first.
fn collect_pages(command: clap::Command, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect_pages(sub.clone(), out)?;
    }
    out.push(page(command)?);
    Ok(())
}

/// One page as `(file name, roff)`, opening with its `.TH` line as man(7)
/// pages do (the roff writer puts its quote-string preamble first).
fn page(command: clap::Command) -> std::io::Result<(String, String)> {
    let man = clap_mangen::Man::new(command);
    let mut roff = Vec::new();
    man.render(&mut roff)?;
    let text = String::from_utf8_lossy(&roff);
    let (title, rest): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with(".TH "));
    let mut page = title.join("\n");
    for line in rest {
        page.push('\n');
        page.push_str(line);
    }
    page.push('\n');
    Ok((man.get_filename(), page))
}
