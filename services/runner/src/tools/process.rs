//! Running one shell command as a child process, with limits: the primitive
//! under the [`exec`](super::exec) tool.
//!
//! [`run`] starts `/bin/sh -c <command>` and returns when the command is over,
//! with its exit status and its output (stdout and stderr interleaved in the
//! order they arrived).
//!
//! Invariants:
//! - The child's environment is scrubbed: only `PATH`, `HOME` (the working
//!   directory), `LANG` and the spec's own variables; nothing of the runner's
//!   environment (API keys, database URLs) reaches it. Its stdin is null.
//! - The child leads its own process group, and nothing of that group outlives
//!   the call: the whole group is killed (`SIGKILL`) on timeout, when the shell
//!   exits (background jobs it left behind), and when the future is dropped (an
//!   aborted run), by a guard that also covers early returns. A process that
//!   leaves the group on purpose (`setsid`) escapes this: the group kill bounds
//!   a command's lifetime, it is not a sandbox.
//! - Memory is bounded: at most `max_output_bytes` of output are kept. Past
//!   that, output is read and discarded, so the command runs to its end (or its
//!   timeout) and its exit status stays meaningful; `truncated` says so.
//! - After the shell has exited or the group was killed, the pipes are drained
//!   for at most [`DRAIN_GRACE`], so a process that escaped the group holding
//!   a pipe open cannot hold the call.

use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The `PATH` a command runs with.
pub const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How long the pipes are still read once the command is over.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

const READ_CHUNK: usize = 8 * 1024;

/// One command to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Run as `/bin/sh -c <command>`.
    pub command: String,
    /// The working directory; also the child's `HOME`.
    pub cwd: PathBuf,
    /// Variables added to the scrubbed base environment (after it, so they
    /// may replace its values).
    pub env: Vec<(String, String)>,
}

/// The limits of one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Wall-clock time before the process group is killed.
    pub timeout: Duration,
    /// Output kept (bytes, stdout and stderr together).
    pub max_output_bytes: usize,
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessOutcome {
    /// The shell's exit code; `None` when a signal ended it.
    pub exit_code: Option<i32>,
    /// The signal that ended the shell, if one did.
    pub signal: Option<i32>,
    /// stdout and stderr interleaved in arrival order, lossy UTF-8, at most
    /// `max_output_bytes` bytes.
    pub output: String,
    /// Output was cut at `max_output_bytes`.
    pub truncated: bool,
    /// The timeout killed the command.
    pub timed_out: bool,
    pub duration: Duration,
}

/// The child and its process group; dropping it kills the group unless the
/// child was reaped (after which the group was killed already, see [`run`]).
struct Group {
    child: Child,
    pgid: Option<Pid>,
    reaped: bool,
}

impl Group {
    /// Sends `SIGKILL` to every process of the group.
    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH (nobody left) is the usual, harmless answer.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // While the shell is not reaped its pid, hence the group id, cannot be
        // reused, so this reaches only the command's own processes. The child
        // itself is then dropped with `kill_on_drop` and reaped by tokio.
        if !self.reaped {
            self.kill();
        }
    }
}

/// Runs `spec` within `limits`. Errors only when the command cannot be
/// started (or waited for); everything the command itself does is in the
/// outcome.
pub async fn run(spec: &CommandSpec, limits: &ProcessLimits) -> io::Result<ProcessOutcome> {
    let started = Instant::now();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.cwd)
        .env_clear()
        .env("PATH", CHILD_PATH)
        .env("HOME", &spec.cwd)
        .env("LANG", "C.UTF-8")
        .envs(spec.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let mut group = Group {
        child,
        pgid,
        reaped: false,
    };

    // A timeout too far out to represent is a year: never in practice.
    let deadline = started
        .checked_add(limits.timeout)
        .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3600));
    let mut output = Output::new(limits.max_output_bytes);
    let mut status: Option<ExitStatus> = None;
    let mut timed_out = false;
    // Set once the shell exited or the group was killed: reading stops then.
    let mut drain_until: Option<Instant> = None;
    let mut out_buf = vec![0u8; READ_CHUNK];
    let mut err_buf = vec![0u8; READ_CHUNK];

    while status.is_none() || stdout.is_some() || stderr.is_some() {
        let until = drain_until.unwrap_or(deadline);
        tokio::select! {
            read = read_some(&mut stdout, &mut out_buf), if stdout.is_some() => {
                match read {
                    Some(n) => output.push(&out_buf[..n]),
                    None => stdout = None,
                }
            }
            read = read_some(&mut stderr, &mut err_buf), if stderr.is_some() => {
                match read {
                    Some(n) => output.push(&err_buf[..n]),
                    None => stderr = None,
                }
            }
            exited = group.child.wait(), if status.is_none() => {
                status = Some(exited?);
                group.reaped = true;
                // Background jobs the shell left behind; see the guard for why
                // this is safe right after reaping (a live member keeps the
                // group id from being reused).
                group.kill();
                drain_until.get_or_insert_with(|| Instant::now() + DRAIN_GRACE);
            }
            () = tokio::time::sleep_until(until) => {
                if drain_until.is_some() {
                    break;
                }
                timed_out = true;
                group.kill();
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
        }
    }

    if status.is_none() {
        // The grace ran out before the killed shell could be reaped (stuck in
        // the kernel): leave it to the guard and tokio's reaper.
        if let Ok(Ok(exited)) = tokio::time::timeout(DRAIN_GRACE, group.child.wait()).await {
            status = Some(exited);
            group.reaped = true;
        }
    }

    let (output, truncated) = output.finish();
    Ok(ProcessOutcome {
        exit_code: status.and_then(|status| status.code()),
        signal: status.and_then(|status| status.signal()),
        output,
        truncated,
        timed_out,
        duration: started.elapsed(),
    })
}

/// The next chunk of `pipe`: `None` at its end (a read error counts as one).
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    let pipe = pipe.as_mut()?;
    match pipe.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// The output kept so far, bounded.
struct Output {
    bytes: Vec<u8>,
    max: usize,
    truncated: bool,
}

impl Output {
    fn new(max: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(max.min(READ_CHUNK * 2)),
            max,
            truncated: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let room = self.max.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// The text, at most `max` bytes; a character cut by the limit is left out.
    fn finish(mut self) -> (String, bool) {
        if self.truncated
            && let Err(err) = std::str::from_utf8(&self.bytes)
            && err.error_len().is_none()
        {
            self.bytes.truncate(err.valid_up_to());
        }
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if text.len() > self.max {
            // Replacement characters are longer than the bytes they replace.
            let mut end = self.max;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            self.truncated = true;
        }
        (text, self.truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, command: &str) -> CommandSpec {
        CommandSpec {
            command: command.to_owned(),
            cwd: dir.to_path_buf(),
            env: Vec::new(),
        }
    }

    fn limits(timeout: Duration) -> ProcessLimits {
        ProcessLimits {
            timeout,
            max_output_bytes: 64 * 1024,
        }
    }

    /// Whether `pid` is a live process (zombies are dead: they only wait for
    /// a reaper, which in a container may never come).
    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
                !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
            }
            Err(_) => false,
        }
    }

    /// Waits (a little) for `pid` to be gone.
    async fn gone(pid: u32) -> bool {
        for _ in 0..100 {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    async fn read_pid(path: &std::path::Path) -> u32 {
        for _ in 0..250 {
            if let Ok(text) = std::fs::read_to_string(path)
                && let Ok(pid) = text.trim().parse()
            {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no pid in {}", path.display())
    }

    #[tokio::test]
    async fn exit_code_and_both_streams() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outcome = run(
            &spec(dir.path(), "echo out; echo err >&2; exit 3"),
            &limits(Duration::from_secs(10)),
        )
        .await
        .expect("ran");
        assert_eq!(outcome.exit_code, Some(3));
        assert_eq!(outcome.signal, None);
        assert!(outcome.output.contains("out\n"), "{outcome:?}");
        assert!(outcome.output.contains("err\n"), "{outcome:?}");
        assert!(!outcome.timed_out && !outcome.truncated);
    }

    #[tokio::test]
    async fn the_environment_is_scrubbed() {
        // cargo sets these for the test process; the child must not see them.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = spec(dir.path(), "env");
        spec.env.push(("EXTRA".to_owned(), "yes".to_owned()));
        let outcome = run(&spec, &limits(Duration::from_secs(10)))
            .await
            .expect("ran");
        let vars: Vec<&str> = outcome.output.lines().collect();
        assert!(!outcome.output.contains("CARGO"), "{vars:?}");
        assert!(
            vars.contains(&"PATH=/usr/local/bin:/usr/bin:/bin"),
            "{vars:?}"
        );
        assert!(vars.contains(&"LANG=C.UTF-8"), "{vars:?}");
        assert!(vars.contains(&"EXTRA=yes"), "{vars:?}");
        let home = format!("HOME={}", dir.path().display());
        assert!(vars.contains(&home.as_str()), "{vars:?}");
    }

    #[tokio::test]
    async fn stdin_is_null() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outcome = run(
            &spec(dir.path(), "cat; echo done"),
            &limits(Duration::from_secs(5)),
        )
        .await
        .expect("ran");
        assert_eq!(outcome.output, "done\n");
        assert!(!outcome.timed_out);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outcome = run(
            &spec(dir.path(), "echo started; sleep 30 & echo $! > pid; wait"),
            &limits(Duration::from_millis(500)),
        )
        .await
        .expect("ran");
        assert!(outcome.timed_out, "{outcome:?}");
        assert_eq!(outcome.signal, Some(9), "{outcome:?}");
        assert_eq!(outcome.exit_code, None);
        assert_eq!(outcome.output, "started\n");
        assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");
        let pid = read_pid(&dir.path().join("pid")).await;
        assert!(gone(pid).await, "background sleep {pid} survived");
    }

    #[tokio::test]
    async fn background_jobs_do_not_outlive_the_shell() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outcome = run(
            &spec(dir.path(), "sleep 30 & echo $! > pid; echo done"),
            &limits(Duration::from_secs(20)),
        )
        .await
        .expect("ran");
        assert_eq!(outcome.exit_code, Some(0));
        assert!(!outcome.timed_out);
        assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");
        let pid = read_pid(&dir.path().join("pid")).await;
        assert!(gone(pid).await, "background sleep {pid} survived");
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let spec = spec(dir.path(), "sleep 30 & echo $! > pid; sleep 30 & wait");
        let limits = limits(Duration::from_secs(60));
        let pid = tokio::select! {
            outcome = run(&spec, &limits) => panic!("ended: {outcome:?}"),
            pid = read_pid(&pid_file) => pid,
        };
        // The run future is dropped here.
        assert!(gone(pid).await, "background sleep {pid} survived");
    }

    #[tokio::test]
    async fn output_is_capped_and_the_command_runs_to_its_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outcome = run(
            &spec(
                dir.path(),
                "head -c 200000 /dev/zero | tr '\\0' a; echo tail >&2",
            ),
            &ProcessLimits {
                timeout: Duration::from_secs(10),
                max_output_bytes: 1000,
            },
        )
        .await
        .expect("ran");
        assert!(outcome.truncated);
        assert_eq!(outcome.exit_code, Some(0));
        assert!(outcome.output.len() <= 1000);
        assert!(outcome.output.starts_with("aaaa"));
    }

    #[tokio::test]
    async fn a_signal_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outcome = run(
            &spec(dir.path(), "kill -TERM $$"),
            &limits(Duration::from_secs(5)),
        )
        .await
        .expect("ran");
        assert_eq!(outcome.signal, Some(15));
        assert_eq!(outcome.exit_code, None);
        assert!(!outcome.timed_out);
    }

    #[tokio::test]
    async fn a_missing_cwd_is_a_spawn_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let result = run(
            &spec(&dir.path().join("missing"), "true"),
            &limits(Duration::from_secs(5)),
        )
        .await;
        assert!(result.is_err(), "{result:?}");
    }

    #[test]
    fn a_character_cut_by_the_limit_is_left_out() {
        let mut output = Output::new(5);
        output.push("abcdé".as_bytes()); // 6 bytes: é is cut in half
        assert_eq!(output.finish(), ("abcd".to_owned(), true));
        let mut output = Output::new(3);
        output.push(&[0xff, 0xff]); // invalid bytes become U+FFFD (3 bytes each)
        assert_eq!(output.finish(), ("\u{fffd}".to_owned(), true));
        let mut output = Output::new(10);
        output.push(b"ok");
        assert_eq!(output.finish(), ("ok".to_owned(), false));
    }
}
