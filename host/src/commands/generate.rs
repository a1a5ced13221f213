//! `kres-kafka generate DIR`: the man pages and the shell completions, made from this command
//! line's own definitions, so that they never disagree with `--help`. Hidden: packaging runs it
//! (`host/packaging/build-deb`), not an operator.

use clap::CommandFactory as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kres-kafka generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write: `DIR/man/` (`kres-kafka.1` and one page per command) and
    /// `DIR/completions/` (`kres-kafka.bash`, `_kres-kafka` for zsh, `kres-kafka.fish`).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// The shells completions are made for.
const SHELLS: [clap_complete::Shell; 3] = [
    clap_complete::Shell::Bash,
    clap_complete::Shell::Zsh,
    clap_complete::Shell::Fish,
];

/// Run `kres-kafka generate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let man = args.dir.join("man");
    let completions = args.dir.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    clap_mangen::generate_to(super::Cli::command(), &man)
        .map_err(|e| anyhow::anyhow!("writing the man pages into {}: {e}", man.display()))?;
    for shell in SHELLS {
        clap_complete::generate_to(
            shell,
            &mut super::Cli::command(),
            "kres-kafka",
            &completions,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "writing the {shell} completions into {}: {e}",
                completions.display()
            )
        })?;
    }
    println!(
        "man pages in {}, completions in {}",
        man.display(),
        completions.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_and_completions_come_from_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        run(Args {
            dir: dir.path().to_owned(),
        })
        .unwrap();
        let page = std::fs::read_to_string(dir.path().join("man/kres-kafka-run.1")).unwrap();
        assert!(page.contains("\\-\\-check"), "{page}");
        assert!(
            !dir.path().join("man/kres-kafka-generate.1").exists(),
            "the hidden command has no page"
        );
        for file in ["kres-kafka.bash", "_kres-kafka", "kres-kafka.fish"] {
            let text = std::fs::read_to_string(dir.path().join("completions").join(file)).unwrap();
            assert!(text.contains("send"), "{file}: {text}");
        }
    }
}
