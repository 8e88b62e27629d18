//! A real `tollgate serve` process on a port of its own, for the tests that kill, stop
//! or run several instances of the binary as an operator would.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::app::{ADMIN_TOKEN, APPCODE, SHOP_TOKEN};

/// A running `tollgate serve`. Dropping it kills the process.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Starts `tollgate serve --config CONFIG --listen 127.0.0.1:PORT` with the test
    /// secrets in its environment.
    pub fn start(config: &Path, port: u16) -> Server {
        Self::start_with_env(config, port, &[])
    }

    /// [`Server::start`] with more environment variables.
    pub fn start_with_env(config: &Path, port: u16, env: &[(&str, &str)]) -> Server {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_tollgate")),
            config,
            port,
            env,
        )
    }

    /// [`Server::start`] under `wrapper` (such as `faketime -f +1d`), which runs the
    /// binary with the arguments that follow its own.
    pub fn start_wrapped(
        wrapper: &Path,
        wrapper_args: &[&str],
        config: &Path,
        port: u16,
        env: &[(&str, &str)],
    ) -> Server {
        let mut command = Command::new(wrapper);
        command
            .args(wrapper_args)
            .arg(env!("CARGO_BIN_EXE_tollgate"));
        Self::spawn(command, config, port, env)
    }

    fn spawn(mut command: Command, config: &Path, port: u16, env: &[(&str, &str)]) -> Server {
        // A group of its own, signalled as a whole: a wrapper such as `faketime` runs
        // tollgate as its child, which must not outlive the test.
        command
            .process_group(0)
            .args(["serve", "--config"])
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("TEST_APPCODE", APPCODE)
            .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("TEST_SHOP_TOKEN", SHOP_TOKEN)
            .env("TEST_WEBHOOK_SECRET", crate::notifiers::WEBHOOK_SECRET)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        for (name, value) in env {
            command.env(name, value);
        }
        Server {
            child: command.spawn().unwrap(),
            port,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub async fn ready(&mut self) {
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tollgate exited: {status}");
            }
            if let Ok(r) = http.get(self.url("/readyz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tollgate did not become ready");
    }

    /// Registers a `voice_notice` package of `units` for `price` through the API, as
    /// the admin client (the channel every real-binary test configures).
    pub async fn add_voice_notice_package(&self, units: i64, price: &str) {
        let response = reqwest::Client::new()
            .post(self.url("/v1/packages"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "channel": "voice_notice", "units": units, "price": price }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "the package is registered");
    }

    /// SIGKILL: nothing is settled, nothing is flushed.
    pub fn kill(&mut self) {
        self.signal("-KILL");
        self.child.wait().unwrap();
    }

    /// SIGSTOP: the process stands still, holding whatever it holds (sockets, database
    /// sessions, row locks), as a process stalled by the machine would.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: the stalled process carries on.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Sends `signal` to the server's process group (a wrapper and tollgate alike).
    fn signal(&self, signal: &str) {
        let status = self.signal_group(signal);
        assert!(status.is_ok_and(|s| s.success()), "kill {signal} failed");
    }

    fn signal_group(&self, signal: &str) -> std::io::Result<std::process::ExitStatus> {
        Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too, and the whole group with it.
        let _ = self.signal_group("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
