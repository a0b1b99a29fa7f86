//! The apps of a worker and which one a request goes to: the positional APP, `--mount
//! PREFIX=APP` and `--scripts PREFIX=DIR` (issue 18). A request is routed on its decoded path
//! after `--root-path`, to the longest mount prefix on a segment boundary
//! ([`wizgy_core::cgi::longest_mount`]), else to the positional APP, else wizgy answers 404.
//! Routing runs on the app thread, before the environ is built: a few byte comparisons per
//! mount, and nothing at all without mounts.

use pyo3::prelude::*;
use pyo3::types::PyString;
use wizgy_core::cgi::longest_mount;
use wizgy_core::config::Config;

use crate::entry::{load_app, StartupError};

/// An app at a URL prefix.
pub struct Mount {
    /// `SCRIPT_NAME` for it: `--root-path` + the prefix.
    pub script_name: Py<PyString>,
    /// How much of the path after `--root-path` the prefix takes.
    pub prefix_len: usize,
    pub app: Py<PyAny>,
}

/// Every app of a worker.
pub struct Apps {
    prefixes: Vec<Box<[u8]>>,
    mounts: Vec<Mount>,
    default: Option<Py<PyAny>>,
}

impl Apps {
    /// The app for a path (after `--root-path`), with its mount (`None`: the positional APP);
    /// `None` when no app serves it.
    pub fn route(&self, path: &[u8]) -> Option<(&Py<PyAny>, Option<&Mount>)> {
        if !self.prefixes.is_empty() {
            if let Some(index) = longest_mount(&self.prefixes, path) {
                let mount = &self.mounts[index];
                return Some((&mount.app, Some(mount)));
            }
        }
        self.default.as_ref().map(|app| (app, None))
    }

    pub fn clone_ref(&self, py: Python<'_>) -> Apps {
        Apps {
            prefixes: self.prefixes.clone(),
            mounts: self
                .mounts
                .iter()
                .map(|m| Mount {
                    script_name: m.script_name.clone_ref(py),
                    prefix_len: m.prefix_len,
                    app: m.app.clone_ref(py),
                })
                .collect(),
            default: self.default.as_ref().map(|app| app.clone_ref(py)),
        }
    }
}

/// Imports every app the configuration names (`given` stands for the positional APP when the
/// app object came from `serve()`): the first that fails is the error.
pub fn load(
    py: Python<'_>,
    config: &Config,
    given: Option<Py<PyAny>>,
) -> Result<Apps, StartupError> {
    let default = match given {
        Some(app) => Some(app),
        None => config
            .app
            .as_deref()
            .map(|spec| load_app(py, spec))
            .transpose()?,
    };
    let mut apps = Apps {
        prefixes: Vec::new(),
        mounts: Vec::new(),
        default,
    };
    let mut add = |py: Python<'_>, prefix: String, app: Py<PyAny>| -> Result<(), StartupError> {
        if apps.prefixes.iter().any(|p| **p == *prefix.as_bytes()) {
            return Err(StartupError(format!("{prefix} is routed twice")));
        }
        let script_name = format!("{}{prefix}", config.root_path);
        apps.mounts.push(Mount {
            script_name: PyString::new(py, &script_name).unbind(),
            prefix_len: prefix.len(),
            app,
        });
        apps.prefixes.push(prefix.into_bytes().into_boxed_slice());
        Ok(())
    };
    for mount in &config.mounts {
        add(py, mount.prefix.clone(), load_app(py, &mount.spec)?)?;
    }
    let loader = py.import("wizgy._app")?;
    let mut index = 0usize;
    for dir in &config.scripts {
        let scripts = dir
            .scripts()
            .map_err(|e| StartupError(format!("cannot list {}: {e}", dir.dir.display())))?;
        for (name, path) in scripts {
            index += 1;
            let loaded = loader.call_method1("load_script", (path.to_string_lossy(), index));
            let app = match loaded {
                Ok(app) if app.is_none() => {
                    tracing::debug!("{}: no `application`, not a script", path.display());
                    continue;
                }
                Ok(app) => app.unbind(),
                Err(err) => return Err(crate::entry::load_error(py, &loader, err, &name)),
            };
            add(py, format!("{}/{name}", dir.prefix), app)?;
        }
    }
    Ok(apps)
}

/// The routing table's app lines, for the start-up log.
pub fn routes(config: &Config) -> Vec<String> {
    let mut lines: Vec<String> = config
        .mounts
        .iter()
        .map(|m| format!("{} -> app {}", m.prefix, m.spec))
        .collect();
    for dir in &config.scripts {
        match dir.scripts() {
            Ok(scripts) => {
                lines.extend(scripts.iter().map(|(name, path)| {
                    format!("{}/{name} -> script {}", dir.prefix, path.display())
                }))
            }
            Err(e) => lines.push(format!(
                "{}/ -> cannot list {}: {e}",
                dir.prefix,
                dir.dir.display()
            )),
        }
    }
    lines
}
