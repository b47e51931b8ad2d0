//! Hugging Face hub ids → local folders, through the standard HF cache.
//!
//! `deepseek-ai/Janus-Pro-1B` is looked up in the cache that `huggingface_hub` uses
//! (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub` or
//! `~/.cache/huggingface/hub`; layout `models--owner--name/{refs,snapshots,blobs}`). A snapshot
//! that already holds every file the model needs is used as it is, without any network access.
//! Otherwise the files are downloaded with the `hf-hub` crate into that same cache, unless
//! `HF_HUB_OFFLINE` is set or the caller asked for local files only: then the error says what
//! to download and where it looked.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};

/// What a model repository must provide, in the order the loader looks for it.
#[derive(Debug, Clone, Copy)]
pub struct RepoFiles {
    /// What the folder is, for messages ("model folder").
    pub what: &'static str,
    /// Files that must be present (besides the weights).
    pub required: &'static [&'static str],
    /// Weight layouts in order of preference; an `*.index.json` brings the shards it lists.
    pub weights: &'static [&'static str],
}

/// A Janus / Janus-Pro / JanusFlow checkpoint (either layout).
pub const JANUS_FILES: RepoFiles = RepoFiles {
    what: "model folder",
    required: &["config.json", "tokenizer.json"],
    weights: &[
        "model.safetensors.index.json",
        "model.safetensors",
        "pytorch_model.bin.index.json",
        "pytorch_model.bin",
    ],
};

/// A diffusers VAE folder (`stabilityai/sdxl-vae`).
pub const DIFFUSERS_VAE_FILES: RepoFiles = RepoFiles {
    what: "VAE folder",
    required: &["config.json"],
    weights: &[
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.bin",
    ],
};

/// How to resolve a hub id.
#[derive(Debug, Clone, Default)]
pub struct HubOptions {
    /// Branch, tag or commit hash; `None` is `main`.
    pub revision: Option<String>,
    /// Never touch the network (like `HF_HUB_OFFLINE=1`).
    pub local_files_only: bool,
    /// Overrides the cache folder (the `hub` folder, as `HF_HUB_CACHE`).
    pub cache_dir: Option<PathBuf>,
    /// Access token for gated/private repos; default `HF_TOKEN` or the saved login token.
    pub token: Option<String>,
    /// Show download progress bars on stderr.
    pub progress: bool,
}

/// "; did you mean deepseek-ai/NAME?" when `name` is an official model's bare name.
fn official_repo_hint(name: &str) -> String {
    const OFFICIAL: [&str; 5] = [
        "Janus-Pro-1B",
        "Janus-Pro-7B",
        "Janus-1.3B",
        "JanusFlow-1.3B",
        "sdxl-vae",
    ];
    match OFFICIAL
        .iter()
        .find(|m| m.eq_ignore_ascii_case(name.trim()))
    {
        Some(&"sdxl-vae") => "; did you mean stabilityai/sdxl-vae?".into(),
        Some(m) => format!("; did you mean deepseek-ai/{m}?"),
        None => String::new(),
    }
}

/// A local folder as it is, or a hub id resolved to a folder of the HF cache.
pub fn resolve(name_or_path: &str, files: &RepoFiles, opts: &HubOptions) -> Result<PathBuf> {
    let path = Path::new(name_or_path);
    if path.is_dir() {
        if opts.revision.is_some() {
            return Err(Error::input(format!(
                "revision= applies to hub ids, but {name_or_path:?} is a local folder"
            )));
        }
        return Ok(path.to_path_buf());
    }
    if !is_repo_id(name_or_path) {
        return Err(Error::Unavailable(format!(
            "{} not found: {} (nor is it a Hugging Face hub id of the form owner/name{})",
            files.what,
            path.display(),
            official_repo_hint(name_or_path)
        )));
    }
    let cache_dir = opts.cache_dir.clone().unwrap_or_else(hub_cache_dir);
    let revision = opts.revision.clone().unwrap_or_else(|| "main".into());
    let repo_dir = cache_dir.join(format!("models--{}", name_or_path.replace('/', "--")));
    let snapshot = cached_snapshot(&repo_dir, &revision);
    if let Some(dir) = &snapshot {
        if missing_files(dir, files).is_empty() {
            return Ok(dir.clone());
        }
    }
    if opts.local_files_only || env_flag("HF_HUB_OFFLINE") {
        return Err(offline_error(
            name_or_path,
            &revision,
            &repo_dir,
            snapshot.as_deref(),
            files,
            opts.local_files_only,
        ));
    }
    download(name_or_path, &revision, &cache_dir, files, opts)
}

/// `owner/name` with the characters the hub allows (no path tricks).
pub fn is_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with(['.', '-'])
            && !p.contains("..")
            && !p.contains("--")
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    ok(owner) && ok(name)
}

/// The cache folder `huggingface_hub` uses.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(p) = env_path("HF_HUB_CACHE") {
        return p;
    }
    hf_home().join("hub")
}

fn hf_home() -> PathBuf {
    if let Some(p) = env_path("HF_HOME") {
        return p;
    }
    let cache = env_path("XDG_CACHE_HOME")
        .or_else(|| env_path("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface")
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(|v| expand_home(PathBuf::from(v)))
}

fn expand_home(p: PathBuf) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p,
    }
}

/// `huggingface_hub`'s truthy values for boolean environment variables.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_uppercase().as_str(),
            "1" | "ON" | "YES" | "TRUE"
        )
    })
}

/// `snapshots/<commit>` for a revision: the commit itself if it is a hash, else `refs/<rev>`.
fn cached_snapshot(repo_dir: &Path, revision: &str) -> Option<PathBuf> {
    let is_commit = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    let commit = if is_commit {
        revision.to_string()
    } else {
        if revision.split('/').any(|p| p.is_empty() || p == "..") {
            return None;
        }
        let text = std::fs::read_to_string(repo_dir.join("refs").join(revision)).ok()?;
        let commit = text.trim().to_string();
        if commit.is_empty() || commit.contains(['/', '\\']) || commit.contains("..") {
            return None;
        }
        commit
    };
    let dir = repo_dir.join("snapshots").join(commit);
    dir.is_dir().then_some(dir)
}

/// Files a folder still lacks: the required ones, and the weights of the first layout present
/// (with the shards its index lists), or every weight layout if none is present.
pub fn missing_files(dir: &Path, files: &RepoFiles) -> Vec<String> {
    let mut missing: Vec<String> = files
        .required
        .iter()
        .filter(|f| !dir.join(f).is_file())
        .map(|f| f.to_string())
        .collect();
    match files.weights.iter().find(|w| dir.join(w).is_file()) {
        Some(w) if w.ends_with(".index.json") => match shard_names(&dir.join(w)) {
            Ok(shards) => missing.extend(shards.into_iter().filter(|s| !dir.join(s).is_file())),
            Err(_) => missing.push(w.to_string()),
        },
        Some(_) => {}
        None => missing.push(format!("weights (one of {})", files.weights.join(", "))),
    }
    missing
}

fn shard_names(index: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let idx: Index = super::config::read_json(index)?;
    let mut names: Vec<String> = idx.weight_map.into_values().collect();
    names.sort();
    names.dedup();
    Ok(names)
}

fn offline_error(
    repo_id: &str,
    revision: &str,
    repo_dir: &Path,
    snapshot: Option<&Path>,
    files: &RepoFiles,
    local_files_only: bool,
) -> Error {
    let why = if local_files_only {
        "local_files_only=True"
    } else {
        "HF_HUB_OFFLINE is set"
    };
    let found = match snapshot {
        Some(dir) => format!(
            "the cached snapshot {} lacks {}",
            dir.display(),
            missing_files(dir, files).join(", ")
        ),
        None => format!(
            "no snapshot for revision {revision:?} under {}",
            repo_dir.display()
        ),
    };
    let rev = if revision == "main" {
        String::new()
    } else {
        format!(" --revision {revision}")
    };
    Error::Unavailable(format!(
        "{repo_id} is not in the Hugging Face cache and downloads are off ({why}): {found}. \
         Download it where there is network with `hf download {repo_id}{rev}` (or \
         `huggingface-cli download {repo_id}{rev}`) into this cache (HF_HUB_CACHE={}), or pass \
         the path of a local folder",
        repo_dir.parent().unwrap_or(repo_dir).display()
    ))
}

fn token(opts: &HubOptions) -> Option<String> {
    if opts.token.is_some() {
        return opts.token.clone();
    }
    if let Ok(t) = std::env::var("HF_TOKEN") {
        if !t.trim().is_empty() {
            return Some(t.trim().to_string());
        }
    }
    let path = env_path("HF_TOKEN_PATH").unwrap_or_else(|| hf_home().join("token"));
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn download(
    repo_id: &str,
    revision: &str,
    cache_dir: &Path,
    files: &RepoFiles,
    opts: &HubOptions,
) -> Result<PathBuf> {
    let net = |e: hf_hub::api::sync::ApiError| {
        Error::Unavailable(format!(
            "{repo_id} (revision {revision}) could not be fetched from the Hugging Face hub: {e}. \
             Check the name, the network and HF_TOKEN (for gated models); with no network, put \
             the model in the cache at {} or pass a local folder",
            cache_dir.display()
        ))
    };
    let mut builder = ApiBuilder::from_cache(Cache::new(cache_dir.to_path_buf()))
        .with_progress(opts.progress)
        .with_token(token(opts));
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    let api = builder.build().map_err(net)?;
    let repo = api.repo(Repo::with_revision(
        repo_id.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let info = repo.info().map_err(net)?;
    let remote: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let weights = files
        .weights
        .iter()
        .find(|w| remote.contains(w))
        .ok_or_else(|| {
            Error::Weights(format!(
                "{repo_id} has none of the weight files {} (files: {})",
                files.weights.join(", "),
                remote.join(", ")
            ))
        })?;
    // The small top-level files (configs, tokenizer, chat template), then the weights.
    let mut wanted: Vec<String> = remote
        .iter()
        .filter(|f| !f.contains('/') && (f.ends_with(".json") || f.ends_with(".jinja")))
        .filter(|f| !f.ends_with(".index.json") || *f == weights)
        .map(|f| f.to_string())
        .collect();
    for f in files.required {
        if !remote.contains(f) {
            return Err(Error::Unavailable(format!(
                "the hub repository {repo_id} (revision {revision}) has no {f}; is it a Janus checkpoint?"
            )));
        }
    }
    let mut dir = None;
    for f in &wanted {
        let p = repo.get(f).map_err(net)?;
        dir = p.parent().map(Path::to_path_buf);
    }
    let dir = dir.ok_or_else(|| {
        Error::Unavailable(format!(
            "the hub repository {repo_id} lists no usable files"
        ))
    })?;
    wanted.clear();
    if weights.ends_with(".index.json") {
        wanted.extend(shard_names(&dir.join(weights))?);
    } else {
        wanted.push(weights.to_string());
    }
    for f in &wanted {
        repo.get(f).map_err(net)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        for ok in [
            "deepseek-ai/Janus-Pro-1B",
            "stabilityai/sdxl-vae",
            "a/b.c_d",
        ] {
            assert!(is_repo_id(ok), "{ok}");
        }
        for bad in [
            "Janus-Pro-1B",
            "/abs/path",
            "./rel/dir",
            "a/b/c",
            "../x",
            "a/..",
            "a/b--c",
            "",
            "a/",
            "a b/c",
        ] {
            assert!(!is_repo_id(bad), "{bad}");
        }
    }

    #[test]
    fn missing_files_follow_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(missing_files(d, &JANUS_FILES).len(), 3);
        std::fs::write(d.join("config.json"), "{}").unwrap();
        std::fs::write(d.join("tokenizer.json"), "{}").unwrap();
        std::fs::write(
            d.join("pytorch_model.bin.index.json"),
            r#"{"weight_map": {"a": "p-1.bin", "b": "p-2.bin", "c": "p-1.bin"}}"#,
        )
        .unwrap();
        std::fs::write(d.join("p-1.bin"), "").unwrap();
        assert_eq!(missing_files(d, &JANUS_FILES), vec!["p-2.bin".to_string()]);
        std::fs::write(d.join("p-2.bin"), "").unwrap();
        assert!(missing_files(d, &JANUS_FILES).is_empty());
    }

    #[test]
    fn snapshots_resolve_through_refs_or_commits() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
        assert_eq!(cached_snapshot(repo, "main"), None);
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), format!("{commit}\n")).unwrap();
        let want = Some(repo.join("snapshots").join(commit));
        assert_eq!(cached_snapshot(repo, "main"), want);
        assert_eq!(cached_snapshot(repo, commit), want);
        assert_eq!(cached_snapshot(repo, "../refs/main"), None);
        std::fs::write(repo.join("refs/evil"), "../../etc").unwrap();
        assert_eq!(cached_snapshot(repo, "evil"), None);
    }
}
