//! The quantized-weights cache: quantizing an LLM takes seconds to minutes, so the quantized
//! matrices are written once to a GGUF file and read back on later loads.
//!
//! The file is `<cache dir>/<fingerprint>-<format>-v<FORMAT_VERSION>.gguf`: the fingerprint
//! hashes every weight file's name, size, modification time and first and last MiB, so a changed
//! checkpoint gets a new file. The cache dir is `JANUS_RS_CACHE_DIR`, else
//! `~/.cache/janus-rs/quantized`; `JANUS_RS_QUANT_CACHE=0` turns the cache off. The checkpoint
//! itself is never modified, and only the quantized matrices are cached.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::Device;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Bumped whenever what is cached, or how it is named, changes.
pub const FORMAT_VERSION: u32 = 1;
const KEY_VERSION: &str = "janus_rs.quant_cache_version";
const KEY_FORMAT: &str = "janus_rs.format";

/// Quantized matrices by checkpoint tensor name (`language_model.model.layers.0....weight`).
pub struct QuantizedWeights {
    tensors: HashMap<String, Arc<QTensor>>,
}

impl QuantizedWeights {
    pub fn get(&self, name: &str) -> Option<Arc<QTensor>> {
        self.tensors.get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Read every tensor of a cache file onto `device`, checking that it holds `format`.
    pub fn read(path: &Path, format: &str, device: &Device) -> Result<Self> {
        let err = |msg: String| Error::Weights(format!("{}: {msg}", path.display()));
        let mut reader = BufReader::new(File::open(path).map_err(|e| err(e.to_string()))?);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| err(e.to_string()))?;
        let version = content
            .metadata
            .get(KEY_VERSION)
            .and_then(|v| v.to_u32().ok());
        let stored = content
            .metadata
            .get(KEY_FORMAT)
            .and_then(|v| v.to_string().ok().cloned());
        if version != Some(FORMAT_VERSION) || stored.as_deref() != Some(format) {
            return Err(err(format!(
                "not a janus-rs v{FORMAT_VERSION} {format} cache (version {version:?}, format {stored:?})"
            )));
        }
        let mut tensors = HashMap::new();
        for name in content.tensor_infos.keys() {
            let t = content
                .tensor(&mut reader, name, device)
                .map_err(|e| err(format!("{name}: {e}")))?;
            tensors.insert(name.clone(), Arc::new(t));
        }
        Ok(Self { tensors })
    }

    /// Write `tensors` as a cache file for `format` (to a temporary name, then renamed, so a
    /// reader never sees half a file).
    pub fn write(path: &Path, format: &str, tensors: &[(String, Arc<QTensor>)]) -> Result<()> {
        let err = |msg: String| Error::Weights(format!("{}: {msg}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let result = (|| {
            let mut w = BufWriter::new(File::create(&tmp).map_err(|e| err(e.to_string()))?);
            let version = gguf_file::Value::U32(FORMAT_VERSION);
            let fmt = gguf_file::Value::String(format.to_string());
            let metadata = [(KEY_VERSION, &version), (KEY_FORMAT, &fmt)];
            let refs: Vec<(&str, &QTensor)> = tensors
                .iter()
                .map(|(n, t)| (n.as_str(), t.as_ref()))
                .collect();
            gguf_file::write(&mut w, &metadata, &refs).map_err(|e| err(e.to_string()))?;
            w.into_inner()
                .map_err(|e| err(e.to_string()))?
                .sync_all()
                .map_err(|e| err(e.to_string()))?;
            std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// The cache folder, or `None` when `JANUS_RS_QUANT_CACHE=0`.
pub fn cache_dir() -> Option<PathBuf> {
    if std::env::var("JANUS_RS_QUANT_CACHE").is_ok_and(|v| v.trim() == "0") {
        return None;
    }
    if let Some(dir) = std::env::var_os("JANUS_RS_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".cache/janus-rs/quantized"))
}

/// Where the cache file of `weight_files` quantized to `format` lives (in `dir`).
pub fn cache_file(dir: &Path, weight_files: &[PathBuf], format: &str) -> Result<PathBuf> {
    let fingerprint = fingerprint(weight_files)?;
    Ok(dir.join(format!("{fingerprint}-{format}-v{FORMAT_VERSION}.gguf")))
}

fn fingerprint(files: &[PathBuf]) -> Result<String> {
    const EDGE: u64 = 1 << 20;
    let mut h = Sha256::new();
    for f in files {
        let err = |e: std::io::Error| Error::Weights(format!("{}: {e}", f.display()));
        let meta = std::fs::metadata(f).map_err(err)?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        h.update(format!("{name:?} {} {modified}\n", meta.len()).as_bytes());
        let mut file = File::open(f).map_err(err)?;
        let mut buf = Vec::new();
        (&mut file).take(EDGE).read_to_end(&mut buf).map_err(err)?;
        if meta.len() > EDGE {
            file.seek(SeekFrom::Start(meta.len().saturating_sub(EDGE).max(EDGE)))
                .map_err(err)?;
            file.read_to_end(&mut buf).map_err(err)?;
        }
        h.update(&buf);
    }
    Ok(h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use candle_core::Tensor;

    #[test]
    fn round_trip_and_fingerprints() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("janus-quant-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let weights = dir.join("model.safetensors");
        std::fs::write(&weights, vec![7u8; 3 << 20]).unwrap();
        let path = cache_file(&dir, std::slice::from_ref(&weights), "q8_0")?;
        assert_eq!(
            path,
            cache_file(&dir, std::slice::from_ref(&weights), "q8_0")?
        );
        assert_ne!(
            path,
            cache_file(&dir, std::slice::from_ref(&weights), "q4_k")?
        );

        let w = Tensor::randn(0f32, 1.0, (8, 64), &Device::Cpu)?;
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0)?);
        QuantizedWeights::write(&path, "q8_0", &[("a.weight".into(), q.clone())])?;
        let back = QuantizedWeights::read(&path, "q8_0", &Device::Cpu)?;
        assert_eq!(back.len(), 1);
        let (d1, d2) = (
            q.dequantize(&Device::Cpu)?,
            back.get("a.weight").unwrap().dequantize(&Device::Cpu)?,
        );
        assert_eq!(d1.to_vec2::<f32>()?, d2.to_vec2::<f32>()?);
        assert!(QuantizedWeights::read(&path, "q4_k", &Device::Cpu).is_err());

        // Changing the checkpoint changes the fingerprint.
        std::fs::write(&weights, vec![8u8; 3 << 20]).unwrap();
        assert_ne!(path, cache_file(&dir, &[weights], "q8_0")?);
        std::fs::remove_dir_all(&dir).unwrap();
        Ok(())
    }
}
