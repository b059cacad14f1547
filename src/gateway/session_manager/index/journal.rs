//! The session index on disk: `sessions.jsonl` in the state directory, so
//! the per-user session limit holds across restarts.
//!
//! Each line is one subject's whole list after a change
//! (`{"sub":…,"sessions":[…]}`), written while the change is made; the last
//! line of a subject wins, so replaying the file is order-safe and a line
//! is never a delta that depends on a lost one. The file is compacted (one
//! line per subject with live sessions, written with `write_atomic`) when
//! the gateway starts and whenever appended lines outnumber live subjects
//! by [`COMPACT_RATIO`] (and [`COMPACT_MIN_LINES`]).
//!
//! Appends are not fsync'd: a line reaches the page cache before the
//! login or refresh answers, which survives a crash or kill of the
//! process; an OS crash or power loss may lose the last seconds. Losing a
//! line only makes the limit count fewer sessions after such a crash; the
//! tokens themselves stay as valid or revoked as before.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::LiveSession;
use crate::gateway::session_manager::random_id::RandomId;
use crate::secret_file::{self, SECRET_MODE};

/// The journal file, open for appending.
pub(in crate::gateway::session_manager) struct IndexJournal {
    dir: PathBuf,
    path: PathBuf,
    file: Option<File>,
    /// Lines appended since the last compaction.
    appended: usize,
    /// The last write error, until a write succeeds again.
    issue: Option<String>,
}

/// What loading found: each subject's last list, and how many lines could
/// not be read (a torn last line after a crash, or damage).
pub(in crate::gateway::session_manager) struct Loaded {
    pub(in crate::gateway::session_manager) subjects: HashMap<String, Vec<LiveSession>>,
    pub(in crate::gateway::session_manager) bad_lines: usize,
}

impl IndexJournal {
    /// Reads `dir/sessions.jsonl` (a missing file is an empty index).
    /// `Err` when it exists but cannot be read: the caller then keeps the
    /// index in memory only rather than overwrite what it could not read.
    pub(in crate::gateway::session_manager) fn load(dir: &Path) -> Result<(Self, Loaded), String> {
        let path = dir.join(JOURNAL_FILE);
        let loaded = read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let journal = Self {
            dir: dir.to_path_buf(),
            path,
            file: None,
            appended: 0,
            issue: None,
        };
        Ok((journal, loaded))
    }

    /// Records `sub`'s list after a change (empty: no sessions left).
    pub(in crate::gateway::session_manager) fn record(
        &mut self,
        sub: &str,
        sessions: &[LiveSession],
    ) {
        let mut line = match serde_json::to_vec(&Line::new(sub, sessions)) {
            Ok(line) => line,
            Err(e) => return self.failed(&io::Error::other(e)),
        };
        line.push(b'\n');
        // One write of a whole line (O_APPEND): a crash leaves at most a
        // torn last line, which loading skips.
        match self.handle().and_then(|f| f.write_all(&line)) {
            Ok(()) => {
                self.appended += 1;
                self.recovered();
            }
            Err(e) => {
                // The next append reopens and starts on a fresh line.
                self.file = None;
                self.failed(&e);
            }
        }
    }

    /// Whether appended lines outnumber the live subjects (counted only
    /// once enough lines were appended) enough to compact.
    pub(in crate::gateway::session_manager) fn wants_compaction(
        &self,
        live_subjects: impl FnOnce() -> u64,
    ) -> bool {
        if self.appended < COMPACT_MIN_LINES {
            return false;
        }
        let live = usize::try_from(live_subjects()).unwrap_or(usize::MAX);
        self.appended / COMPACT_RATIO >= live
    }

    /// Replaces the file with one line per subject of `snapshot`.
    pub(in crate::gateway::session_manager) fn compact(
        &mut self,
        snapshot: &[(String, Vec<LiveSession>)],
    ) {
        let mut out = Vec::new();
        for (sub, sessions) in snapshot.iter().filter(|(_, s)| !s.is_empty()) {
            if let Err(e) = serde_json::to_writer(&mut out, &Line::new(sub, sessions)) {
                return self.failed(&io::Error::other(e));
            }
            out.push(b'\n');
        }
        // The old handle points at the replaced file: drop it first.
        self.file = None;
        match secret_file::write_atomic(&self.path, &out, SECRET_MODE) {
            Ok(()) => {
                self.appended = 0;
                self.recovered();
            }
            Err(e) => {
                // Retry after as many lines again, not on every change.
                self.appended = 0;
                self.failed(&e);
            }
        }
    }

    /// The current write problem, if any (paths included: for the log).
    pub(in crate::gateway::session_manager) fn issue(&self) -> Option<&str> {
        self.issue.as_deref()
    }

    fn handle(&mut self) -> io::Result<&mut File> {
        match &mut self.file {
            Some(file) => Ok(file),
            slot @ None => {
                secret_file::ensure_private_dir(&self.dir)?;
                let mut options = OpenOptions::new();
                options.append(true).create(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(SECRET_MODE);
                }
                let mut file = options.open(&self.path)?;
                // A torn tail from a crash: end it, so the next line is whole.
                file.write_all(b"\n")?;
                Ok(slot.insert(file))
            }
        }
    }

    fn failed(&mut self, error: &io::Error) {
        let reason = format!("cannot write {}: {error}", self.path.display());
        if self.issue.is_none() {
            tracing::error!(
                alert = ALERT,
                reason = %reason,
                "session index not persisted: the per-user session limit may undercount after a restart"
            );
        }
        self.issue = Some(reason);
    }

    fn recovered(&mut self) {
        if self.issue.take().is_some() {
            tracing::info!(alert = ALERT, "session index journal writes succeed again");
        }
    }
}

/// One journal line: a subject's whole list.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    sub: String,
    sessions: Vec<Entry>,
}

/// One session, times in Unix seconds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    sid: String,
    jti: String,
    created: u64,
    expires: u64,
}

impl Line {
    fn new(sub: &str, sessions: &[LiveSession]) -> Self {
        Self {
            sub: sub.to_owned(),
            sessions: sessions
                .iter()
                .map(|s| Entry {
                    sid: s.sid.to_string(),
                    jti: s.jti.to_string(),
                    created: unix(s.created()),
                    expires: unix(s.expires()),
                })
                .collect(),
        }
    }
}

fn read(path: &Path) -> io::Result<Loaded> {
    let mut loaded = Loaded {
        subjects: HashMap::new(),
        bad_lines: 0,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(loaded),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Bounded read: a damaged file cannot make one line take all memory.
        let n = Read::by_ref(&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Line>(text) {
            Ok(line) => {
                // Ids are written from verified claims, so they parse; a
                // line with one that does not (damage, a hand edit) is
                // skipped whole, like any unreadable line.
                let sessions: Option<Vec<LiveSession>> =
                    line.sessions.into_iter().map(Entry::into_live).collect();
                match sessions {
                    Some(sessions) => {
                        loaded.subjects.insert(line.sub, sessions);
                    }
                    None => loaded.bad_lines += 1,
                }
            }
            Err(_) => {
                loaded.bad_lines += 1;
                // An over-long line: skip the rest of it.
                if buf.last() != Some(&b'\n') && n as u64 == MAX_LINE_BYTES {
                    skip_line(&mut reader)?;
                }
            }
        }
    }
    Ok(loaded)
}

fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    let mut sink = Vec::new();
    loop {
        sink.clear();
        let n = Read::by_ref(reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut sink)?;
        if n == 0 || sink.last() == Some(&b'\n') {
            return Ok(());
        }
    }
}

impl Entry {
    /// The in-memory session (binary ids); `None` if an id is not a
    /// canonical 256-bit id.
    fn into_live(self) -> Option<LiveSession> {
        Some(LiveSession::new(
            RandomId::parse(&self.sid)?,
            RandomId::parse(&self.jti)?,
            UNIX_EPOCH + Duration::from_secs(self.created),
            UNIX_EPOCH + Duration::from_secs(self.expires),
        ))
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// File name of the index journal inside the state directory.
pub(in crate::gateway::session_manager) const JOURNAL_FILE: &str = "sessions.jsonl";
/// Stable `alert` field value for monitoring.
const ALERT: &str = "session_index_not_persisted";
/// Longest line read: a subject's list at ≈ 150 bytes a session; 1 MiB
/// holds ≈ 7,000 sessions, beyond any sane `max_sessions_per_user`.
const MAX_LINE_BYTES: u64 = 1024 * 1024;
/// Compact once appended lines reach this many times the live subjects…
const COMPACT_RATIO: usize = 4;
/// …and at least this many (≈ 1–2 MB): rewrites stay rare.
const COMPACT_MIN_LINES: usize = 10_000;
