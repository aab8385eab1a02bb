//! The project README, compiled and run as doc-tests so its examples stay true.
#![doc = include_str!("../../README.md")]

/// Command-line parsing shared by the example programs, on top of `pico-args`.
pub mod cli {
    pub use pico_args::Arguments;

    /// This process's arguments; `Err(usage)` when `-h` / `--help` was given.
    pub fn args(usage: &str) -> Result<Arguments, String> {
        let mut p = Arguments::from_env();
        if p.contains(["-h", "--help"]) {
            return Err(usage.to_string());
        }
        Ok(p)
    }

    /// Turns a `pico-args` error into a message ending with the usage line.
    pub fn bad(usage: &str) -> impl Fn(pico_args::Error) -> String + '_ {
        move |e| format!("{e}\n{usage}")
    }

    /// Fails if anything is left over (an unknown flag or a stray value).
    pub fn finish(p: Arguments, usage: &str) -> Result<(), String> {
        let rest = p.finish();
        if rest.is_empty() {
            Ok(())
        } else {
            Err(format!("unexpected arguments {rest:?}\n{usage}"))
        }
    }

    /// `--addr HOST:PORT`, where `server` listens and `client` dials (default
    /// 127.0.0.1:5031, so the two meet without flags).
    pub fn addr(p: &mut Arguments, usage: &str) -> Result<String, String> {
        Ok(p.opt_value_from_str("--addr")
            .map_err(bad(usage))?
            .unwrap_or_else(|| "127.0.0.1:5031".into()))
    }

    /// `--format bigendian|buffstreams`: whether Go BuffStreams headers were asked for
    /// (default: tokio-util's 4-byte big-endian header).
    pub fn buffstreams_format(p: &mut Arguments, usage: &str) -> Result<bool, String> {
        match p
            .opt_value_from_str::<_, String>("--format")
            .map_err(bad(usage))?
        {
            None => Ok(false),
            Some(f) if f == "bigendian" => Ok(false),
            Some(f) if f == "buffstreams" => Ok(true),
            Some(other) => Err(format!("unknown format {other}\n{usage}")),
        }
    }
}
