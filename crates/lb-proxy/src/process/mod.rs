//! Running as a server process, as nginx does: the command line ([`Args`]), from it to a
//! serving proxy and back to an exit ([`run`], [`Exit`], [`RunError`]), the signal loop
//! (reload, graceful stop, binary upgrade), logging to stderr or a file as text or JSON
//! ([`logging`]), the pid file ([`PidFile`]) and detaching into the background
//! ([`daemon`]). The `lb-proxy` binary parses the command line, calls [`run`] and reports
//! how it ended; a library user who only builds a [`Proxy`](crate::Proxy) never forks or
//! writes these files.

mod args;
pub mod daemon;
mod error;
pub mod logging;
mod notice;
mod pid_file;
mod run;
mod start;
mod supervise;

pub use args::Args;
pub use error::RunError;
pub use pid_file::PidFile;
pub use run::{run, Exit};
