//! Where settings come from besides the command line: `WIZGY_<NAME>` variables and a TOML file
//! (`--config FILE`, else `./wizgy.toml` when present), layered command line > environment >
//! file > default; and `--print-config`, each effective setting with its origin.
//!
//! Nothing here declares an option. Names, parsers and defaults are the clap declarations in
//! `config.rs`: a variable's name (`WIZGY_MAX_REQUESTS`) and a key (`max-requests` or
//! `max_requests`) are derived from the long name, and every value from the environment or the
//! file goes through that option's own parser, as if it had been typed on the command line.
//!
//! The invariant, which the hostile-input tests hold it to: every variable named `WIZGY_*` and
//! every key of the file either sets exactly one option to a value that option's parser accepts,
//! or the start stops with one `wizgy: error:` line naming it (and the file and line); nothing
//! is ignored, nothing is guessed, and the file is read only up to a bound.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use super::{Config, Parsed};

/// The file read when `--config` is not given, if it exists where wizgy starts.
pub const DEFAULT_FILE: &str = "wizgy.toml";
/// A config file is refused past this size: real ones are a few hundred bytes, and the bound
/// keeps `--config /dev/zero` (or a huge file by mistake) from eating memory.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// The prefix of wizgy's variables; an unknown one is an error, not ignored.
const ENV_PREFIX: &str = "WIZGY_";
/// The variable that names the config file (as `--config` does).
const CONFIG_VARIABLE: &str = "WIZGY_CONFIG";
/// Variables other servers read that wizgy honours below its own: (variable, option id).
const FOREIGN_VARIABLES: [(&str, &str); 2] = [
    ("WEB_CONCURRENCY", "workers"),
    ("FORWARDED_ALLOW_IPS", "forwarded_allow_ips"),
];
/// Options about reading options, which neither a variable nor a key sets.
const NOT_SETTINGS: [&str; 4] = ["help", "version", "config", "print_config"];
/// The positional APP: a key in the file (`app = "mysite.wsgi:application"`), no variable.
const APP: &str = "app";

/// Where an effective setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: usize },
    Environment(String),
    CommandLine,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File { path, line } => write!(f, "file {}:{line}", path.display()),
            Origin::Environment(name) => write!(f, "environment {name}"),
            Origin::CommandLine => write!(f, "command line"),
        }
    }
}

/// How an option takes its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A switch: `true`/`false` in the file and the environment.
    Flag,
    Single,
    /// Repeatable: a TOML array, or comma-separated in a variable.
    List,
}

/// One option as the layers see it, derived from its clap declaration.
#[derive(Debug)]
struct Setting {
    /// clap's id (the field name).
    id: String,
    /// The long name without `--`: the key, `-` spelled.
    long: String,
    env: String,
    kind: Kind,
    /// The value is never printed (`--keyfile-password`).
    secret: bool,
}

/// A value from one layer.
#[derive(Debug, Clone)]
enum Value {
    Flag(bool),
    Values(Vec<OsString>),
}

/// What one layer sets: option id -> value and where it was written.
type Layer = BTreeMap<String, (Value, Origin)>;

/// The variable for a long name: `max-requests` -> `WIZGY_MAX_REQUESTS`.
fn env_name(long: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        long.replace('-', "_").to_ascii_uppercase()
    )
}

fn settings(command: &clap::Command) -> Vec<Setting> {
    command
        .get_arguments()
        .filter(|arg| !arg.is_positional() && !NOT_SETTINGS.contains(&arg.get_id().as_str()))
        .filter_map(|arg| {
            let long = arg.get_long()?.to_owned();
            let kind = match arg.get_action() {
                ArgAction::SetTrue => Kind::Flag,
                ArgAction::Append => Kind::List,
                _ => Kind::Single,
            };
            Some(Setting {
                id: arg.get_id().to_string(),
                env: env_name(&long),
                long,
                kind,
                secret: arg.is_hide_env_values_set(),
            })
        })
        .collect()
}

/// The command as `--help` shows it: each option with its variable.
pub fn annotated_command() -> clap::Command {
    Config::command().mut_args(|arg| {
        let id = arg.get_id().as_str();
        if arg.is_positional() || NOT_SETTINGS.contains(&id) {
            return arg;
        }
        match arg.get_long() {
            Some(long) => {
                let name = env_name(long);
                arg.env(name)
            }
            None => arg,
        }
    })
}

/// The closest of `candidates` to `name`, if one is close enough to be what was meant.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A name from the input, fit for a one-line message: escaped and cut short.
fn shown(name: &str) -> String {
    let mut text: String = name.chars().take(64).collect();
    if text.len() < name.len() {
        text.push('…');
    }
    format!("{text:?}")
}

/// The first line of a clap error, without clap's `error: `.
fn clap_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid value");
    escape_controls(first.strip_prefix("error: ").unwrap_or(first))
}

/// `text` with control characters escaped: a value echoed in a message must not drive the
/// terminal or split the line.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Runs `value` through the option's own parser, as `--long=value` on a command line.
fn check(command: &clap::Command, setting: &Setting, value: &OsStr) -> Result<(), String> {
    let mut arg = OsString::from(format!("--{}=", setting.long));
    arg.push(value);
    match command
        .clone()
        .try_get_matches_from([OsString::from("wizgy"), arg])
    {
        Ok(_) => Ok(()),
        Err(error) => Err(clap_line(&error)),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The `WIZGY_*` variables (and the foreign ones wizgy honours), checked.
fn environment(
    command: &clap::Command,
    settings: &[Setting],
    env: &[(OsString, OsString)],
) -> Result<Layer, String> {
    let mut layer = Layer::new();
    let mut sorted: Vec<&(OsString, OsString)> = env.iter().collect();
    sorted.sort();
    let known = || {
        settings
            .iter()
            .map(|s| s.env.as_str())
            .chain([CONFIG_VARIABLE])
    };
    for (name, value) in sorted {
        if !name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
            continue;
        }
        let Some(name) = name.to_str() else {
            return Err(format!(
                "wizgy: error: environment variable {}: not a wizgy variable (its name is not \
                 UTF-8)",
                shown(&name.to_string_lossy())
            ));
        };
        if name == CONFIG_VARIABLE {
            continue;
        }
        let Some(setting) = settings.iter().find(|s| s.env == name) else {
            let hint = match closest(name, known()) {
                Some(near) => format!("; did you mean {near}?"),
                None => " (wizgy --help names each option's variable)".to_owned(),
            };
            return Err(format!(
                "wizgy: error: environment variable {name}: no such wizgy setting{hint}"
            ));
        };
        let value = env_value(command, setting, name, value)?;
        layer.insert(
            setting.id.clone(),
            (value, Origin::Environment(name.to_owned())),
        );
    }
    for (name, id) in FOREIGN_VARIABLES {
        let Some(setting) = settings.iter().find(|s| s.id == id) else {
            continue;
        };
        if layer.contains_key(id) {
            continue; // WIZGY_WORKERS wins over WEB_CONCURRENCY
        }
        if let Some((_, value)) = env.iter().find(|(n, _)| n == name) {
            let value = env_value(command, setting, name, value)?;
            layer.insert(id.to_owned(), (value, Origin::Environment(name.to_owned())));
        }
    }
    Ok(layer)
}

/// One variable's value: a switch's `true`/`false`, one value, or a comma-separated list.
fn env_value(
    command: &clap::Command,
    setting: &Setting,
    name: &str,
    value: &OsStr,
) -> Result<Value, String> {
    let fail = |why: String| format!("wizgy: error: environment variable {name}: {why}");
    let Some(text) = value.to_str() else {
        return Err(fail("the value is not valid UTF-8".to_owned()));
    };
    match setting.kind {
        Kind::Flag => parse_bool(text)
            .map(Value::Flag)
            .ok_or_else(|| fail(format!("{} is not true or false", shown(text)))),
        Kind::Single => {
            check(command, setting, value).map_err(fail)?;
            Ok(Value::Values(vec![value.to_owned()]))
        }
        Kind::List => {
            let items: Vec<OsString> = text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(OsString::from)
                .collect();
            for item in &items {
                check(command, setting, item).map_err(fail)?;
            }
            Ok(Value::Values(items))
        }
    }
}

/// Reads the file, at most [`MAX_FILE_BYTES`], refusing what is not a regular file.
fn read_bounded(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: opening a FIFO would otherwise wait for a writer; it is refused below.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {} KiB", MAX_FILE_BYTES >> 10));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = line_of(e.as_bytes(), at);
        format!("line {line}: not UTF-8 text")
    })
}

/// The 1-based line of byte `at`.
fn line_of(text: &[u8], at: usize) -> usize {
    text[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// What a TOML value is, for "wrong type" messages.
fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// One scalar as the command line would spell it; `None` for a type no option takes.
fn scalar(value: &toml::Value) -> Option<OsString> {
    match value {
        toml::Value::String(s) => Some(s.into()),
        toml::Value::Integer(n) => Some(n.to_string().into()),
        // `inf` and `nan` too: the option's parser refuses them with its own words.
        toml::Value::Float(x) => Some(x.to_string().into()),
        _ => None,
    }
}

/// The file's settings, checked; and the APP, if it names one.
fn file(
    command: &clap::Command,
    settings: &[Setting],
    path: &Path,
) -> Result<(Layer, Option<(OsString, Origin)>), String> {
    let name = path.display();
    let text = read_bounded(path)
        .map_err(|why| format!("wizgy: error: config file {name}: cannot be read: {why}"))?;
    type Table = BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;
    let table: Table = toml::from_str(&text).map_err(|error| {
        let line = error
            .span()
            .map_or(1, |span| line_of(text.as_bytes(), span.start));
        let message = error.message().lines().next().unwrap_or("invalid TOML");
        format!("wizgy: error: {name}:{line}: {}", escape_controls(message))
    })?;
    let mut layer = Layer::new();
    let mut app = None;
    // Which key set each option (both spellings may appear, but only one of them).
    let mut spelled: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in &table {
        let line = line_of(text.as_bytes(), key.span().start);
        let origin = Origin::File {
            path: path.to_owned(),
            line,
        };
        let key = key.get_ref();
        let at = |why: String| format!("wizgy: error: {name}:{line}: key {}: {why}", shown(key));
        let normal = key.replace('_', "-");
        if let Some(first) = spelled.insert(normal.clone(), key.clone()) {
            return Err(at(format!("sets the same option as {}", shown(&first))));
        }
        let value = value.get_ref();
        if normal == APP {
            match value {
                toml::Value::String(spec) => app = Some((OsString::from(spec), origin)),
                other => return Err(at(format!("expected a string, got {}", type_name(other)))),
            }
            continue;
        }
        let Some(setting) = settings.iter().find(|s| s.long == normal) else {
            let candidates = settings.iter().map(|s| s.long.as_str()).chain([APP]);
            let why = if NOT_SETTINGS.iter().any(|n| n.replace('_', "-") == normal) {
                "is a command-line option, not a setting".to_owned()
            } else {
                match closest(&normal, candidates) {
                    Some(near) => format!("no such setting; did you mean {near}?"),
                    None => "no such setting (wizgy --print-config lists them)".to_owned(),
                }
            };
            return Err(at(why));
        };
        let parsed = match (setting.kind, value) {
            (Kind::Flag, toml::Value::Boolean(b)) => Value::Flag(*b),
            (Kind::Flag, other) => {
                return Err(at(format!(
                    "expected true or false, got {}",
                    type_name(other)
                )))
            }
            (Kind::List, toml::Value::Array(items)) => {
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    let Some(text) = scalar(item) else {
                        return Err(at(format!(
                            "expected an array of strings, got {} in it",
                            type_name(item)
                        )));
                    };
                    check(command, setting, &text).map_err(at)?;
                    values.push(text);
                }
                Value::Values(values)
            }
            (kind, other) => {
                let Some(text) = scalar(other) else {
                    let expected = if kind == Kind::List {
                        "an array of strings"
                    } else {
                        "a string or a number"
                    };
                    return Err(at(format!("expected {expected}, got {}", type_name(other))));
                };
                check(command, setting, &text).map_err(at)?;
                Value::Values(vec![text])
            }
        };
        layer.insert(setting.id.clone(), (parsed, origin));
    }
    Ok((layer, app))
}

/// Parses `argv` over the environment `env` and the config file: `--config FILE` (or
/// `WIZGY_CONFIG`), else with `discover` `./wizgy.toml` when present.
pub(super) fn load(argv: Vec<OsString>, env: &[(OsString, OsString)], discover: bool) -> Parsed {
    let command = Config::command();
    let cli = match command.clone().try_get_matches_from(&argv) {
        Ok(matches) => matches,
        Err(error) => {
            use clap::error::ErrorKind;
            return match error.kind() {
                ErrorKind::DisplayVersion => Parsed::Version,
                ErrorKind::DisplayHelp => {
                    // Rendered again by the command that names each option's variable.
                    match annotated_command().try_get_matches_from(&argv) {
                        Err(help) => Parsed::Print(help.render().to_string()),
                        Ok(_) => Parsed::Print(error.render().to_string()),
                    }
                }
                _ => Parsed::UsageError(super::usage_error(&error)),
            };
        }
    };
    let settings = settings(&command);
    let environment = match environment(&command, &settings, env) {
        Ok(layer) => layer,
        Err(line) => return Parsed::UsageError(line),
    };
    let explicit = cli.get_one::<PathBuf>("config").cloned().or_else(|| {
        env.iter()
            .find(|(name, _)| name == CONFIG_VARIABLE)
            .map(|(_, value)| PathBuf::from(value))
    });
    let path = explicit.or_else(|| {
        let found = Path::new(".").join(DEFAULT_FILE);
        (discover && found.exists()).then_some(found)
    });
    let (from_file, file_app) = match &path {
        Some(path) => match file(&command, &settings, path) {
            Ok(read) => read,
            Err(line) => return Parsed::UsageError(line),
        },
        None => (Layer::new(), None),
    };
    // Command line > environment > file > default, option by option.
    let mut merged: Vec<(&Setting, Option<Value>, Origin)> = Vec::with_capacity(settings.len());
    for setting in &settings {
        let id = setting.id.as_str();
        let (value, origin) = if cli.value_source(id) == Some(ValueSource::CommandLine) {
            let value = match setting.kind {
                Kind::Flag => Value::Flag(true),
                _ => Value::Values(
                    cli.get_raw(id)
                        .map(|raw| raw.map(OsStr::to_owned).collect())
                        .unwrap_or_default(),
                ),
            };
            (Some(value), Origin::CommandLine)
        } else if let Some((value, origin)) = environment.get(id).or_else(|| from_file.get(id)) {
            (Some(value.clone()), origin.clone())
        } else {
            (None, Origin::Default)
        };
        merged.push((setting, value, origin));
    }
    let app = match cli.get_raw(APP).and_then(|mut raw| raw.next()) {
        Some(spec) => Some((spec.to_owned(), Origin::CommandLine)),
        None => file_app,
    };
    let mut final_argv = vec![OsString::from("wizgy")];
    for (setting, value, _) in &merged {
        match value {
            Some(Value::Flag(true)) => final_argv.push(format!("--{}", setting.long).into()),
            Some(Value::Flag(false)) | None => {}
            Some(Value::Values(values)) => {
                for value in values {
                    let mut arg = OsString::from(format!("--{}=", setting.long));
                    arg.push(value);
                    final_argv.push(arg);
                }
            }
        }
    }
    if let Some((spec, _)) = &app {
        final_argv.push("--".into());
        final_argv.push(spec.clone());
    }
    let matches = match command.clone().try_get_matches_from(&final_argv) {
        Ok(matches) => matches,
        Err(error) => return Parsed::UsageError(super::usage_error(&error)),
    };
    let mut config = match Config::from_arg_matches(&matches) {
        Ok(config) => config,
        Err(error) => return Parsed::UsageError(super::usage_error(&error)),
    };
    config.config_file = path;
    if cli.get_flag("print_config") {
        return Parsed::Print(print(&command, &merged, app.as_ref()));
    }
    Parsed::Run(Box::new(config))
}

/// `--print-config`: every setting as a TOML line (a valid config file), with its origin.
fn print(
    command: &clap::Command,
    merged: &[(&Setting, Option<Value>, Origin)],
    app: Option<&(OsString, Origin)>,
) -> String {
    let quote = |text: &OsStr| toml::Value::String(text.to_string_lossy().into_owned()).to_string();
    let default = Origin::Default;
    let mut lines = vec![(
        "# wizgy --print-config: each effective setting and where it comes from".to_owned(),
        None,
    )];
    match app {
        Some((spec, origin)) => lines.push((format!("{APP} = {}", quote(spec)), Some(origin))),
        None => lines.push((format!("# {APP}: not set"), Some(&default))),
    }
    for (setting, value, origin) in merged {
        let arg = command
            .get_arguments()
            .find(|a| a.get_id() == setting.id.as_str());
        let defaults: Vec<OsString> = arg
            .map(|a| a.get_default_values().iter().map(OsString::from).collect())
            .unwrap_or_default();
        let text = match (value, setting.kind) {
            (Some(Value::Flag(b)), _) => Some(b.to_string()),
            (None, Kind::Flag) => Some("false".to_owned()),
            (Some(Value::Values(values)), kind) => Some(render_values(values, kind, setting)),
            (None, kind) if !defaults.is_empty() => Some(render_values(&defaults, kind, setting)),
            (None, _) => None,
        };
        let line = match text {
            Some(text) => format!("{} = {text}", setting.long),
            None => format!("# {}: not set", setting.long),
        };
        lines.push((line, Some(origin)));
    }
    let width = lines
        .iter()
        .filter(|(_, o)| o.is_some())
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    let mut out = String::new();
    for (line, origin) in lines {
        match origin {
            Some(origin) => out.push_str(&format!("{line:<width$}  # {origin}\n")),
            None => out.push_str(&format!("{line}\n")),
        }
    }
    out
}

fn render_values(values: &[OsString], kind: Kind, setting: &Setting) -> String {
    let one = |text: &OsStr| -> String {
        if setting.secret {
            return "\"(hidden)\"".to_owned();
        }
        let text = text.to_string_lossy();
        match text.parse::<i64>() {
            Ok(n) if !text.starts_with('+') && !text.starts_with('0') || text == "0" => {
                n.to_string()
            }
            _ => toml::Value::String(text.into_owned()).to_string(),
        }
    };
    match kind {
        Kind::List => {
            let items: Vec<String> = values.iter().map(|v| one(v)).collect();
            format!("[{}]", items.join(", "))
        }
        _ => values.first().map_or_else(|| "\"\"".to_owned(), |v| one(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("wizgy")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn run(args: &[&str], vars: &[(&str, &str)]) -> Config {
        match load(argv(args), &env(vars), false) {
            Parsed::Run(config) => *config,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    fn error(args: &[&str], vars: &[(&str, &str)]) -> String {
        match load(argv(args), &env(vars), false) {
            Parsed::UsageError(line) => line,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// A config file with `text`, unique to the test.
    fn file_with(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wizgy-layers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("the config file is written");
        path
    }

    #[test]
    fn variable_names_come_from_the_long_names() {
        assert_eq!(env_name("max-requests"), "WIZGY_MAX_REQUESTS");
        let command = Config::command();
        let all = settings(&command);
        assert!(all
            .iter()
            .any(|s| s.env == "WIZGY_BIND" && s.kind == Kind::List));
        assert!(all
            .iter()
            .any(|s| s.env == "WIZGY_PRELOAD" && s.kind == Kind::Flag));
        assert!(all
            .iter()
            .any(|s| s.env == "WIZGY_STATIC" && s.id == "statics"));
        assert!(!all.iter().any(|s| s.long == "config" || s.long == "help"));
    }

    #[test]
    fn the_command_line_beats_the_environment_which_beats_the_file() {
        let path = file_with(
            "precedence.toml",
            "threads = 3\nworkers = 2\nmax-requests = 7\n",
        );
        let config_arg = format!("--config={}", path.display());
        let config = run(
            &[&config_arg, "--threads", "5", "a:app"],
            &[("WIZGY_THREADS", "4"), ("WIZGY_WORKERS", "6")],
        );
        assert_eq!(config.threads, 5);
        assert_eq!(config.workers, 6);
        assert_eq!(config.max_requests, 7);
        assert_eq!(config.backlog, 2048, "untouched: the default");
    }

    #[test]
    fn wizgy_workers_wins_over_web_concurrency_which_still_works() {
        let config = run(&["a"], &[("WEB_CONCURRENCY", "3")]);
        assert_eq!(config.workers, 3);
        let config = run(&["a"], &[("WEB_CONCURRENCY", "3"), ("WIZGY_WORKERS", "2")]);
        assert_eq!(config.workers, 2);
    }

    #[test]
    fn lists_are_comma_separated_in_variables_and_arrays_in_files() {
        let config = run(&["a"], &[("WIZGY_BIND", "127.0.0.1:1, unix:/tmp/x.sock")]);
        assert_eq!(config.bind.len(), 2);
        let path = file_with(
            "lists.toml",
            "bind = [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]\n",
        );
        let config = run(&[&format!("--config={}", path.display()), "a"], &[]);
        assert_eq!(config.bind.len(), 3);
    }

    #[test]
    fn the_app_may_come_from_the_file_and_the_command_line_overrides_it() {
        let path = file_with("app.toml", "app = \"mysite.wsgi:application\"\n");
        let arg = format!("--config={}", path.display());
        assert_eq!(
            run(&[&arg], &[]).app.as_deref(),
            Some("mysite.wsgi:application")
        );
        assert_eq!(
            run(&[&arg, "other:app"], &[]).app.as_deref(),
            Some("other:app")
        );
    }

    #[test]
    fn switches_take_booleans() {
        let config = run(
            &["a"],
            &[("WIZGY_PRELOAD", "true"), ("WIZGY_REUSE_PORT", "0")],
        );
        assert!(config.preload);
        assert!(!config.reuse_port);
        let line = error(&["a"], &[("WIZGY_PRELOAD", "maybe")]);
        assert!(line.contains("WIZGY_PRELOAD"), "{line}");
    }

    #[test]
    fn an_unknown_variable_is_an_error_with_the_nearest_name() {
        let line = error(&["a"], &[("WIZGY_THREDS", "4")]);
        assert_eq!(
            line,
            "wizgy: error: environment variable WIZGY_THREDS: no such wizgy setting; did you \
             mean WIZGY_THREADS?"
        );
    }

    #[test]
    fn a_bad_value_names_the_variable_or_the_file_line_and_key() {
        let line = error(&["a"], &[("WIZGY_THREADS", "lots")]);
        assert!(
            line.starts_with("wizgy: error: environment variable WIZGY_THREADS: "),
            "{line}"
        );
        let path = file_with("bad.toml", "# a comment\n\nthreads = \"lots\"\n");
        let line = error(&[&format!("--config={}", path.display()), "a"], &[]);
        let expected = format!("wizgy: error: {}:3: key \"threads\": ", path.display());
        assert!(line.starts_with(&expected), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn print_config_names_every_origin() {
        let path = file_with("print.toml", "threads = 3\n");
        let arg = format!("--config={}", path.display());
        let text = match load(
            argv(&[&arg, "--print-config", "--max-requests", "9", "a:app"]),
            &env(&[("WIZGY_WORKERS", "2")]),
            false,
        ) {
            Parsed::Print(text) => text,
            other => panic!("expected the settings, got {other:?}"),
        };
        let line = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("{key} missing from\n{text}"))
                .to_owned()
        };
        assert!(line("threads").ends_with(&format!("# file {}:1", path.display())));
        assert!(line("workers").ends_with("# environment WIZGY_WORKERS"));
        assert!(line("max-requests").ends_with("# command line"));
        assert!(line("backlog").ends_with("# default"));
        assert!(line("app").contains("\"a:app\""));
        // The output is itself a valid config file.
        let body: String = text.lines().map(|l| format!("{l}\n")).collect();
        assert!(toml::from_str::<toml::Table>(&body).is_ok(), "{text}");
    }
}
