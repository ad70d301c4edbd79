//! Running as a server process, as nginx does: logging to stderr or a file as text or JSON
//! ([`logging`]), the pid file ([`PidFile`]) and detaching into the background
//! ([`daemon`]). The binary wires these together; the library itself never forks or
//! writes these files on its own.

pub mod daemon;
pub mod logging;
mod pid_file;

pub use pid_file::PidFile;
