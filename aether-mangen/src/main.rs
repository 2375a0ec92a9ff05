//! aether-mangen: writes the man pages of `aetherd` (section 8) and
//! `aether-cli` (section 1, plus one `aether-cli-SUBCOMMAND.1` page per
//! subcommand, as git and cargo do) into a directory.
//!
//! The pages are rendered with clap_mangen from the binaries' own clap
//! definitions, which live in `aetherd/src/cli.rs` and `aether-cli/src/cli.rs`
//! and are compiled here as modules: a flag added to a binary shows up in its
//! man page without anyone editing this file. Used by `scripts/package.sh`:
//!
//! ```sh
//! cargo run --release -p aether-mangen -- OUT_DIR
//! ```

use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use std::io::Write;
use std::path::{Path, PathBuf};

// The binaries read these fields; the generator only needs the definitions.
#[allow(dead_code)]
#[path = "../../aetherd/src/cli.rs"]
mod aetherd_cli;

#[allow(dead_code)]
#[path = "../../aether-cli/src/cli.rs"]
mod aether_cli_cli;

const MANUAL: &str = "Aether Manual";
const SOURCE: &str = concat!("aether ", env!("CARGO_PKG_VERSION"));

/// Extra sections appended after clap's own: (heading, paragraphs); a
/// paragraph whose text starts with a path or name is rendered bold up to the
/// first tab.
type Extra = &'static [(&'static str, &'static [&'static str])];

const AETHERD_EXTRA: Extra = &[
    (
        "FILES",
        &[
            "/etc/aether/aetherd.toml\tConfiguration of the system broker (a conffile of the Debian package). Every key is described in /usr/share/doc/aether/OPERATIONS.md; a commented example is /usr/share/doc/aether/examples/aetherd.toml.",
            "/run/aether/aetherd.sock\tControl socket of the system broker (aetherd.service, made by aetherd.socket); members of the group aether may connect. Next to it: the admin pipe aetherd.sock.admin and its reply directory aetherd.sock.replies, the lock aetherd.sock.lock and, after SIGUSR1, aetherd.stats.json.",
            "/usr/lib/systemd/system/aetherd.service, aetherd.socket\tThe system broker's units: the service runs aetherd --config /etc/aether/aetherd.toml as user aether; the socket starts it on the first connection.",
            "/usr/lib/tmpfiles.d/aetherd.conf\tMakes /run/aether (owned by aether) at boot.",
            "$XDG_RUNTIME_DIR/aether/aetherd.sock, /tmp/aether-UID/aetherd.sock\tA private broker's socket (the default without --socket or AETHER_SOCKET), and aetherd.log next to it when a client auto-started the daemon.",
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            "AETHER_CONFIG\tConfiguration file, when --config is not given (otherwise none is read).",
            "AETHER_SOCKET\tControl socket, when --socket is not given.",
            "AETHER_LOG\tLog level (else RUST_LOG when it is a bare level).",
            "AETHER_DRAIN_TIMEOUT\tSeconds SIGTERM/SIGINT give subscribers to read what is left.",
        ],
    ),
    (
        "EXIT STATUS",
        &[
            "0\tClean shutdown (and, with --detach, another daemon already serves the socket).",
            "1\tCannot start: the socket is in use, or cannot be bound, chmodded or chowned.",
            "2\tA bad flag, environment variable or configuration file; the message names the source and the key.",
        ],
    ),
    ("SEE ALSO", &["aether-cli(1), systemctl(1); /usr/share/doc/aether/OPERATIONS.md"]),
];

const AETHER_CLI_EXTRA: Extra = &[
    (
        "ENVIRONMENT",
        &[
            "AETHER_SOCKET\tControl socket, when neither --socket nor --system is given; else the user's private broker's ($XDG_RUNTIME_DIR/aether/aetherd.sock, else /tmp/aether-UID/aetherd.sock). The system broker's is /run/aether/aetherd.sock (--system).",
            "AETHER_NO_AUTOSTART\tWhen 1, pub and sub do not start a private daemon when none listens (none is ever started on the system broker's socket).",
        ],
    ),
    (
        "EXIT STATUS",
        &[
            "0\tSuccess.",
            "1\tAn error, reported on one line starting with aether-cli: and, where one helps, a hint.",
            "2\tsub --count N --timeout S received fewer than N messages.",
        ],
    ),
    ("SEE ALSO", &["aetherd(8); /usr/share/doc/aether/CLI.md"]),
];

fn main() {
    let out: PathBuf = match std::env::args_os().nth(1) {
        Some(dir) if std::env::args_os().len() == 2 => dir.into(),
        _ => {
            eprintln!("usage: aether-mangen OUT_DIR");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&out) {
        eprintln!("aether-mangen: {}: {e}", out.display());
        std::process::exit(1);
    }
}

fn run(out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    write_page(out, aetherd_cli::Args::command(), "8", AETHERD_EXTRA)?;

    // One page for aether-cli, one per subcommand (clap names them
    // aether-cli-SUB once built); the implicit `help` subcommand gets none.
    let mut cli = aether_cli_cli::Cli::command().disable_help_subcommand(true);
    cli.build();
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let see_also: &'static [(&str, &[&str])] = &[("SEE ALSO", &["aether-cli(1), aetherd(8)"])];
        write_page(out, sub.clone(), "1", see_also)?;
    }
    write_page(out, cli, "1", AETHER_CLI_EXTRA)
}

fn write_page(out: &Path, cmd: clap::Command, section: &str, extra: Extra) -> std::io::Result<()> {
    let man = Man::new(cmd).section(section).manual(MANUAL).source(SOURCE);
    let path = out.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    // clap_mangen heads the after_help text "EXTRA"; man-pages(7) calls it NOTES.
    let mut page = String::from_utf8_lossy(&page)
        .replace("\n.SH EXTRA\n", "\n.SH NOTES\n")
        .into_bytes();
    let mut roff = Roff::new();
    for (heading, paragraphs) in extra {
        roff.control("SH", [*heading]);
        for p in *paragraphs {
            match p.split_once('\t') {
                Some((term, text)) => {
                    roff.control("TP", []).text([bold(term)]).text([roman(text)]);
                }
                None => {
                    roff.text([roman(*p)]);
                }
            }
        }
    }
    // Rendered text starts with a preamble (the apostrophe string) that the
    // page already has: append what follows it.
    let preamble = Roff::new().render();
    let extra = roff.render();
    page.extend_from_slice(extra.strip_prefix(preamble.as_str()).unwrap_or(&extra).as_bytes());
    let mut file = std::fs::File::create(&path)?;
    file.write_all(&page)?;
    println!("{}", path.display());
    Ok(())
}
