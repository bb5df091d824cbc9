//! Writing the CLI's output. `println!` panics when stdout is a pipe whose reader has gone
//! (`berth history --app shop | head -1`): Rust ignores SIGPIPE, so the write fails with
//! `BrokenPipe` and the macro turns that into a panic with a backtrace and exit status 101.
//!
//! Every line the CLI prints goes through `outln!`, `err!` or `errln!`
//! (defined here, in scope for every module declared after this one in `lib.rs`) instead. A reader that has gone away means
//! nobody wants the rest: the process ends at once, quietly, with status 0 (as `git log | head`
//! and ripgrep do). Any other write error ends it with one `error:` line (when stderr still
//! works) and status 1. Nothing here panics.

use std::io::{self, Write};

/// Which stream to write to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Write formatted text to `stream` and flush it; never returns on a write error (see the
/// module docs).
pub(crate) fn write(stream: Stream, args: std::fmt::Arguments<'_>) {
    let result = match stream {
        Stream::Stdout => {
            let mut out = io::stdout().lock();
            out.write_fmt(args).and_then(|()| out.flush())
        }
        Stream::Stderr => {
            let mut err = io::stderr().lock();
            err.write_fmt(args).and_then(|()| err.flush())
        }
    };
    exit_on_error(stream, result);
}

/// Write raw bytes (a log stream) to stdout and flush them; never returns on a write error.
pub(crate) fn write_bytes(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    let result = out.write_all(bytes).and_then(|()| out.flush());
    exit_on_error(Stream::Stdout, result);
}

fn exit_on_error(stream: Stream, result: io::Result<()>) {
    let Err(e) = result else { return };
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    if matches!(stream, Stream::Stdout) {
        let _ = writeln!(io::stderr(), "error: cannot write to stdout: {e}");
    }
    std::process::exit(1);
}

/// `println!` that ends the process quietly when stdout's reader has gone.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write($crate::output::Stream::Stdout, format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that ends the process quietly when stderr's reader has gone.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::output::write($crate::output::Stream::Stderr, format_args!($($arg)*))
    };
}

/// `eprintln!` that ends the process quietly when stderr's reader has gone.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::write($crate::output::Stream::Stderr, format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `text` as it may reach a terminal: control characters (escape sequences, carriage returns,
/// backspaces) and bidirectional overrides of other people's text (notes, reasons, READMEs,
/// contracts, test names) each become `?`, so they cannot move the cursor, retitle the window,
/// or hide what is shown. Newlines and tabs stay.
pub(crate) fn plain(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if (c.is_control() && c != '\n' && c != '\t') || bidi {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// [`plain`], on one line (newlines and tabs are spaces): a table's cell.
pub(crate) fn one_line(text: &str) -> String {
    plain(text).replace(['\n', '\t'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_peoples_text_cannot_steer_the_terminal() {
        assert_eq!(
            plain("ok\x1b]0;pwned\x07\x1b[2J\r\x08 fine\n\tnext\u{202e}txt"),
            "ok?]0;pwned??[2J?? fine\n\tnext?txt"
        );
        assert_eq!(one_line("a\nb\tc\x1b[1m"), "a b c?[1m");
        assert_eq!(plain("Grüße — 日本"), "Grüße — 日本");
    }
}
