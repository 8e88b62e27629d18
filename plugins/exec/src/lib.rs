//! The `exec` notifier: runs a program with the event JSON on its standard input. Exit
//! status 0 means delivered; anything else, or running past `timeout` (the program is
//! then killed), means failed and the outbox retries.
//!
//! The program starts with a cleared environment: tollgate's own holds the AppCode, every
//! client token and the database URL, none of which a notification program needs. It
//! gets the variables of its `env` table, plus tollgate's `PATH` (which holds no secret,
//! and without which scripts cannot find the commands they call) unless `env` sets one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_notify::{
    BoxFuture, BuildNotifier, ConfigProblem, DeliveryError, Env, Event, Notifier, NotifierConfig,
    Problems,
};

/// At most this much of the program's stderr is kept in the attempt's error.
const STDERR_KEPT: usize = 500;

/// `[[notifiers]] type = "exec"` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// The program: an absolute path, or a name looked up in `PATH`.
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// The program's environment variables: the only ones it gets besides `PATH`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Default 30s; the program is killed after it.
    pub timeout: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CheckedExec {
    command: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    timeout: Duration,
}

impl NotifierConfig for ExecConfig {
    const TYPE: &'static str = "exec";
    type Checked = CheckedExec;

    fn validate(&self, problems: &mut Problems) -> Option<CheckedExec> {
        let before = problems.len();
        let command = self.command.trim();
        if command.is_empty() {
            problems.add("command", "is required");
        } else if command.contains('/') && !command.starts_with('/') {
            problems.add(
                "command",
                "must be an absolute path or a program name found in PATH",
            );
        }
        for name in self.env.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                problems.add(&format!("env.{name}"), "is not a valid variable name");
            }
        }
        let timeout =
            problems.duration("timeout", self.timeout.as_deref(), Duration::from_secs(30));
        (problems.len() == before).then(|| CheckedExec {
            command: PathBuf::from(command),
            args: self.args.clone(),
            env: self.env.clone(),
            timeout,
        })
    }
}

impl BuildNotifier for CheckedExec {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn build(&self, env: Env<'_>) -> Result<Arc<dyn Notifier>, ConfigProblem> {
        if self.command.is_absolute() && !self.command.is_file() {
            return Err(ConfigProblem::new(
                "command",
                format!("{} does not exist", self.command.display()),
            ));
        }
        let mut environment = self.env.clone();
        if !environment.contains_key("PATH") {
            if let Some(path) = env("PATH") {
                environment.insert("PATH".to_owned(), path);
            }
        }
        Ok(Arc::new(ExecNotifier {
            config: self.clone(),
            environment,
        }))
    }
}

pub struct ExecNotifier {
    config: CheckedExec,
    /// Everything the program's environment holds: `env`, and `PATH`.
    environment: BTreeMap<String, String>,
}

impl ExecNotifier {
    async fn run(&self, event: &Event) -> Result<(), DeliveryError> {
        let program = self.config.command.display().to_string();
        let mut child = tokio::process::Command::new(&self.config.command)
            .args(&self.config.args)
            .env_clear()
            .envs(&self.environment)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DeliveryError::new(format!("cannot start {program}: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let body = event.to_json();
        let work = async {
            // A program that exits without reading its input closes the pipe: that is
            // its business, and its exit status still decides.
            let _ = stdin.write_all(body.as_bytes()).await;
            drop(stdin);
            let mut errors = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut errors).await;
            let status = child.wait().await;
            (status, errors)
        };
        let (status, errors) = match tokio::time::timeout(self.config.timeout, work).await {
            Ok(done) => done,
            // `child` is dropped with the future and killed (`kill_on_drop`).
            Err(_) => {
                return Err(DeliveryError::new(format!(
                    "{program} did not finish within {:?} and was killed",
                    self.config.timeout
                )))
            }
        };
        let status =
            status.map_err(|e| DeliveryError::new(format!("waiting for {program}: {e}")))?;
        if status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&errors);
        let stderr: String = stderr.trim().chars().take(STDERR_KEPT).collect();
        Err(DeliveryError::new(format!(
            "{program} exited with {status}{}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        )))
    }
}

impl Notifier for ExecNotifier {
    fn kind(&self) -> &'static str {
        ExecConfig::TYPE
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(self.run(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(command: &str, args: &[&str], timeout: Option<&str>) -> ExecConfig {
        ExecConfig {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::new(),
            timeout: timeout.map(str::to_owned),
        }
    }

    /// The checked configuration, or the keys of every problem found.
    fn validate(config: &ExecConfig) -> Result<CheckedExec, Vec<String>> {
        config
            .validate_alone()
            .map_err(|problems| problems.into_iter().map(|p| p.key).collect())
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(validate(&config("", &[], None)).unwrap_err(), ["command"]);
        let mut bad = config("bin/notify", &[], Some("later"));
        bad.env.insert("A=B".into(), "x".into());
        assert_eq!(
            validate(&bad).unwrap_err(),
            ["command", "env.A=B", "timeout"]
        );
        let missing = validate(&config("/no/such/program", &[], None)).unwrap();
        assert_eq!(missing.build(&|_| None).err().unwrap().key, "command");
    }

    #[tokio::test]
    async fn the_exit_status_decides_and_stderr_is_reported() {
        let event = Event::test("evt_1".into(), chrono::Utc::now(), "UTC");
        let ok = validate(&config("sh", &["-c", "cat >/dev/null"], None)).unwrap();
        ok.build(&|_| None).unwrap().deliver(&event).await.unwrap();
        let failing = validate(&config("sh", &["-c", "echo no route >&2; exit 3"], None)).unwrap();
        let err = failing
            .build(&|_| None)
            .unwrap()
            .deliver(&event)
            .await
            .unwrap_err();
        assert!(err.0.contains("no route"), "{err}");
    }

    #[tokio::test]
    async fn the_program_sees_only_its_configured_variables_and_path() {
        let dir = std::env::temp_dir().join(format!("tollgate-exec-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("env.txt");
        let mut config = config(
            "/bin/sh",
            // dash exports PWD itself; everything else must come from the notifier.
            &[
                "-c",
                &format!(
                    "cat >/dev/null; env | grep -v '^PWD=' | sort > {}",
                    out.display()
                ),
            ],
            None,
        );
        config.env.insert("REPORT_TO".into(), "ops".into());
        let tollgate_env = |name: &str| match name {
            "PATH" => Some("/usr/bin:/bin".to_owned()),
            "ALIYUN_APPCODE" => Some("s3cret-appcode".to_owned()),
            _ => None,
        };
        let event = Event::test("evt_1".into(), chrono::Utc::now(), "UTC");
        validate(&config)
            .unwrap()
            .build(&tollgate_env)
            .unwrap()
            .deliver(&event)
            .await
            .unwrap();
        let seen = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(seen, "PATH=/usr/bin:/bin\nREPORT_TO=ops\n");
    }

    #[tokio::test]
    async fn a_program_past_its_timeout_is_killed_and_fails() {
        let event = Event::test("evt_1".into(), chrono::Utc::now(), "UTC");
        let slow = validate(&config("sh", &["-c", "sleep 30"], Some("200ms"))).unwrap();
        let err = slow
            .build(&|_| None)
            .unwrap()
            .deliver(&event)
            .await
            .unwrap_err();
        assert!(err.0.contains("killed"), "{err}");
    }
}
