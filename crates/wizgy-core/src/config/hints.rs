//! What to say about an option wizgy does not have: users arrive with gunicorn's and uWSGI's
//! spellings, and `unexpected argument` alone sends them to the docs (issue 23).

/// wizgy's equivalent of another server's option, or why there is none. `arg` is the
/// unknown argument as typed (`--name`, `--name=value` or `-x`).
pub fn other_server_option(arg: &str) -> Option<&'static str> {
    let name = arg.split_once('=').map_or(arg, |(name, _)| name);
    Some(match name {
        // gunicorn
        "-c" | "--ini" | "--yaml" | "--json" => {
            "wizgy's config file is TOML: --config FILE (or ./wizgy.toml); each option is also a \
             WIZGY_* variable"
        }
        "--access-logformat" => {
            "wizgy's name is --access-log-format FORMAT (gunicorn's atoms, or json), with \
             --access-log PATH"
        }
        "--access-logfile" => "wizgy's name is --access-log PATH",
        "--error-logfile" | "--log-file" | "--logto" => "wizgy's name is --error-log PATH",
        "-k" | "--worker-class" => {
            "wizgy has one kind of worker (a Rust event loop with --threads app threads): there is \
             no worker class to choose"
        }
        "--worker-connections" => "wizgy's name is --max-connections N",
        "-D" | "--daemon" | "--daemonize" => {
            "wizgy runs in the foreground: let systemd, a container or a process manager run it \
             (--pid FILE writes its PID)"
        }
        "--statsd-host" | "--statsd-prefix" | "--stats" => {
            "wizgy sends no statsd metrics: it serves Prometheus metrics with --metrics-bind ADDRESS"
        }
        "-u" | "--user" | "-g" | "--group" | "--uid" | "--gid" => {
            "wizgy does not change user: start it as the user it runs as (systemd's User=); \
             --socket-mode and --socket-group say who may connect to a unix socket"
        }
        "--https" => "give --certfile PEM and --keyfile PEM: every TCP listener then speaks TLS",
        "--reload-extra-file" | "--reload-engine" | "--py-autoreload" | "--touch-reload" => {
            "--reload watches the .py files under the working directory and --pythonpath; SIGHUP \
             reloads at any time"
        }
        "--paste" => "give the app as MODULE:NAME; load a PasteDeploy app in a module of yours",
        // uWSGI
        "--static-map" => "wizgy's equivalent is --static PREFIX=DIR",
        "--http" | "--http-socket" | "--socket" | "-s" => {
            "wizgy's equivalent is --bind ADDRESS (every listener speaks HTTP)"
        }
        "--module" | "--wsgi-file" | "--wsgi" | "--callable" => {
            "give the app as the last argument: MODULE:NAME"
        }
        "--processes" | "-p" => "wizgy's name is --workers N",
        "--master" | "-M" => "wizgy always runs a supervisor over its workers",
        "--harakiri" => "wizgy's equivalent is --request-timeout DURATION",
        "--reload-on-rss" => "wizgy's equivalent is --max-worker-memory SIZE",
        "--enable-threads" => "app threads are always on: --threads N",
        "--chmod-socket" => "wizgy's equivalent is --socket-mode OCTAL",
        "--chown-socket" => "wizgy's equivalent is --socket-group GROUP",
        "--listen" | "-l" => "wizgy's equivalent is --backlog N",
        "--buffer-size" => {
            "wizgy's equivalents are --limit-request-line and --limit-request-field-size"
        }
        "--vacuum" => "wizgy removes the unix sockets and pid file it made when it exits",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_after_equals_is_ignored() {
        assert_eq!(
            other_server_option("--static-map=/s=./s"),
            other_server_option("--static-map")
        );
        assert!(other_server_option("--no-such-thing").is_none());
    }
}
