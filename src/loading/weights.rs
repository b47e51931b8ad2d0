//! Weight files as the real checkpoints ship them: `model.safetensors`, sharded safetensors
//! with `model.safetensors.index.json`, a single `pytorch_model.bin` (torch zip pickle) or
//! sharded `.bin` files with `pytorch_model.bin.index.json`.
//!
//! [`Checkpoint`] is a lazy [`SimpleBackend`] for candle's `VarBuilder`: a tensor is read only
//! when a module asks for it, its shape is checked against what the config implies before any
//! data is read, and it is converted to the requested dtype and device on the way in.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::pickle::PthTensors;
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use memmap2::{Mmap, UncheckedAdvice};
use rayon::prelude::*;
use safetensors::tensor::{Metadata, TensorView};

use super::layout::{transformers_source, Source, WeightLayout};
use crate::error::{Error, Result};

enum Shard {
    Safetensors(MappedSafetensors),
    Pth(PthTensors),
}

/// A memory-mapped `.safetensors` file whose header has been validated (offsets inside the
/// file, no overlaps). Each tensor is copied out and its pages are then released (`MADV_DONTNEED`),
/// so loading a bf16 checkpoint into f32 peaks at the f32 model plus one tensor instead of
/// keeping the whole mapped file resident until the load ends.
struct MappedSafetensors {
    mmap: Mmap,
    data_start: usize,
    metadata: Metadata,
}

impl MappedSafetensors {
    fn open(file: &Path) -> candle_core::Result<Self> {
        let f = std::fs::File::open(file)?;
        // SAFETY: the file is mapped read-only; like every mmap-based loader (safetensors,
        // candle) we rely on the file not being truncated while the model is loading.
        let mmap = unsafe { Mmap::map(&f)? };
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&mmap)
            .map_err(|e| candle_core::Error::Msg(format!("invalid safetensors file: {e}")))?;
        Ok(Self {
            mmap,
            data_start: 8 + header_len,
            metadata,
        })
    }

    /// The tensor in `dtype` on the CPU. 16/32-bit floats to f32 are converted straight from the
    /// mapped bytes on all threads (candle's `to_dtype` runs on one and needs a copy first).
    fn load(&self, name: &str, dtype: DType) -> candle_core::Result<Tensor> {
        let info = self
            .metadata
            .info(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no tensor `{name}`")))?;
        let (start, end) = info.data_offsets;
        // read_metadata checked that every range lies inside the file.
        let range = self.data_start + start..self.data_start + end;
        let bytes = &self.mmap[range.clone()];
        let widened = match (info.dtype, dtype) {
            (safetensors::Dtype::BF16, DType::F32) => Some(widen(bytes, &info.shape, name, |b| {
                half::bf16::from_le_bytes(b).to_f32()
            })?),
            (safetensors::Dtype::F16, DType::F32) => Some(widen(bytes, &info.shape, name, |b| {
                half::f16::from_le_bytes(b).to_f32()
            })?),
            (safetensors::Dtype::F32, DType::F32) => {
                Some(widen(bytes, &info.shape, name, f32::from_le_bytes)?)
            }
            _ => None,
        };
        let tensor = match widened {
            Some(data) => Tensor::from_vec(data, info.shape.as_slice(), &Device::Cpu)?,
            None => {
                let view = TensorView::new(info.dtype, info.shape.clone(), bytes)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                view.load(&Device::Cpu)?.to_dtype(dtype)?
            }
        };
        // SAFETY: the bytes were copied into `tensor` and nothing borrows the range any more;
        // for a read-only file mapping DONTNEED only drops the cached pages (a later read of
        // the range faults them back in from the file).
        let _ = unsafe {
            self.mmap
                .unchecked_advise_range(UncheckedAdvice::DontNeed, range.start, range.len())
        };
        Ok(tensor)
    }
}

/// A tensor's little-endian `W`-byte elements as f32, converted by all threads. `f` is inlined
/// into the loop (through a function pointer, one call per element, converting was a third of a
/// float32 load's CPU time).
fn widen<const W: usize>(
    bytes: &[u8],
    shape: &[usize],
    name: &str,
    f: impl Fn([u8; W]) -> f32 + Sync,
) -> candle_core::Result<Vec<f32>> {
    let n: usize = shape.iter().product();
    if bytes.len() != n * W {
        candle_core::bail!("tensor `{name}`: {} bytes for shape {shape:?}", bytes.len())
    }
    let mut data: Vec<f32> = Vec::with_capacity(n);
    data.spare_capacity_mut()
        .par_chunks_mut(1 << 16)
        .zip(bytes.par_chunks(W << 16))
        .for_each(|(dst, src)| {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(W)) {
                d.write(f(s.try_into().expect("chunks of W bytes")));
            }
        });
    // SAFETY: the chunks above wrote all n elements (n · W bytes, checked).
    unsafe { data.set_len(n) };
    Ok(data)
}

/// Where a tensor lives and what the file says about it.
struct Entry {
    shard: usize,
    shape: Vec<usize>,
    dtype: DType,
}

pub struct Checkpoint {
    files: Vec<PathBuf>,
    shards: Vec<Shard>,
    entries: HashMap<String, Entry>,
    layout: WeightLayout,
}

/// The weight layouts we look for, in order of preference.
const LAYOUTS: [&str; 4] = [
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
];

impl Checkpoint {
    /// Find and open the weights of a checkpoint folder.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        for name in LAYOUTS {
            let path = dir.join(name);
            if path.is_file() {
                return Self::open(&path);
            }
        }
        Err(Error::not_found(
            format!("model weights (one of {})", LAYOUTS.join(", ")),
            dir,
        ))
    }

    /// Open one weight file or an `*.index.json` that lists shards.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let files = if name.ends_with(".index.json") {
            shard_files(path)?
        } else {
            vec![path.to_path_buf()]
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut entries = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            if !file.is_file() {
                let what = if files.len() > 1 || file.as_path() != path {
                    format!("weight shard listed in {name}")
                } else {
                    "weight file".to_string()
                };
                return Err(Error::not_found(what, file));
            }
            let shard = open_shard(file)?;
            match &shard {
                Shard::Safetensors(st) => {
                    for (key, info) in st.metadata.tensors() {
                        let dtype = DType::try_from(info.dtype).map_err(|e| {
                            Error::Weights(format!(
                                "{}: tensor `{key}` has an unsupported dtype: {e}",
                                file.display()
                            ))
                        })?;
                        entries.insert(
                            key,
                            Entry {
                                shard: i,
                                shape: info.shape.clone(),
                                dtype,
                            },
                        );
                    }
                }
                Shard::Pth(pth) => {
                    for (key, info) in pth.tensor_infos() {
                        let entry = Entry {
                            shard: i,
                            shape: info.layout.dims().to_vec(),
                            dtype: info.dtype,
                        };
                        entries.insert(key.clone(), entry);
                    }
                }
            }
            shards.push(shard);
        }
        if entries.is_empty() {
            return Err(Error::Weights(format!(
                "{}: no tensors found",
                path.display()
            )));
        }
        Ok(Self {
            files,
            shards,
            entries,
            layout: WeightLayout::Official,
        })
    }

    /// Read tensors named in the official layout from a checkpoint stored in `layout`.
    pub fn with_layout(mut self, layout: WeightLayout) -> Self {
        self.layout = layout;
        self
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|k| k.as_str())
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Elements in all tensors of the checkpoint.
    pub fn num_parameters(&self) -> usize {
        self.entries
            .values()
            .map(|e| e.shape.iter().product::<usize>())
            .sum()
    }

    /// The floating-point dtype most of the checkpoint's parameters are stored in.
    pub fn stored_float_dtype(&self) -> Option<DType> {
        let mut counts: Vec<(DType, usize)> = Vec::new();
        for e in self.entries.values().filter(|e| e.dtype.is_float()) {
            let n = e.shape.iter().product::<usize>();
            match counts.iter_mut().find(|(d, _)| *d == e.dtype) {
                Some((_, c)) => *c += n,
                None => counts.push((e.dtype, n)),
            }
        }
        counts.into_iter().max_by_key(|&(_, n)| n).map(|(d, _)| d)
    }

    /// A `VarBuilder` over this checkpoint.
    pub fn var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    fn describe_files(&self) -> String {
        match self.files.as_slice() {
            [one] => one.display().to_string(),
            many => format!(
                "{} shards in {}",
                many.len(),
                many[0].parent().unwrap_or(Path::new("")).display()
            ),
        }
    }

    fn load(&self, name: &str, dtype: DType) -> candle_core::Result<Tensor> {
        let entry = self.entries.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "missing tensor `{name}` in {}",
                self.describe_files()
            ))
        })?;
        let file = &self.files[entry.shard];
        let loaded = match &self.shards[entry.shard] {
            Shard::Safetensors(st) => st.load(name, dtype),
            Shard::Pth(pth) => pth
                .get(name)
                .and_then(|t| {
                    t.ok_or_else(|| {
                        candle_core::Error::Msg(format!(
                            "tensor `{name}` vanished from {}",
                            file.display()
                        ))
                    })
                })
                .and_then(|t| t.to_dtype(dtype)),
        };
        loaded.map_err(|e| {
            candle_core::Error::Msg(format!(
                "cannot read tensor `{name}` from {}: {e}",
                file.display()
            ))
        })
    }
}

impl Checkpoint {
    /// The stored tensor `name` (a key of the files), its shape checked against `dims`.
    fn get_stored(
        &self,
        dims: Option<&[usize]>,
        name: &str,
        dtype: DType,
    ) -> candle_core::Result<Tensor> {
        if let (Some(entry), Some(dims)) = (self.entries.get(name), dims) {
            if entry.shape != dims {
                candle_core::bail!(
                    "tensor `{name}` has shape {:?} in {} but the config implies {dims:?}",
                    entry.shape,
                    self.files[entry.shard].display(),
                );
            }
        }
        let entry_dtype = self.entries.get(name).map(|e| e.dtype);
        if let Some(src) = entry_dtype {
            if !matches!(src, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
                && dtype.is_float()
            {
                candle_core::bail!(
                    "tensor `{name}` is stored as {src:?}, expected a floating point tensor"
                );
            }
        }
        self.load(name, dtype)
    }

    /// The official-layout tensor `name`, wherever this checkpoint's layout keeps it.
    fn get_official(
        &self,
        dims: Option<&[usize]>,
        name: &str,
        dtype: DType,
    ) -> candle_core::Result<Tensor> {
        if self.layout == WeightLayout::Official {
            return self.get_stored(dims, name, dtype);
        }
        match transformers_source(name) {
            Source::Renamed(n) => self.get_stored(dims, &n, dtype),
            Source::Unsqueezed(n) => {
                let inner = dims.map(|d| d.get(1..).unwrap_or_default());
                self.get_stored(inner, &n, dtype)?.unsqueeze(0)
            }
            Source::Concat(parts) => {
                let k = parts.len();
                let part_dims = dims.map(|d| {
                    let mut p = d.to_vec();
                    if let Some(first) = p.first_mut() {
                        *first /= k;
                    }
                    p
                });
                let tensors = parts
                    .iter()
                    .map(|n| self.get_stored(part_dims.as_deref(), n, dtype))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::cat(&tensors, 0)
            }
        }
    }
}

impl SimpleBackend for Checkpoint {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.get_official(Some(s.dims()), name, dtype)?
            .to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.get_official(None, name, dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        match (self.layout, transformers_source(name)) {
            (WeightLayout::Official, _) => self.entries.contains_key(name),
            (_, Source::Renamed(n) | Source::Unsqueezed(n)) => self.entries.contains_key(&n),
            (_, Source::Concat(parts)) => parts.iter().all(|n| self.entries.contains_key(n)),
        }
    }
}

fn open_shard(file: &Path) -> Result<Shard> {
    let is_safetensors = file.extension().is_some_and(|e| e == "safetensors");
    let wrap = |e: candle_core::Error| {
        Error::Weights(format!(
            "cannot read weight file {}: {}",
            file.display(),
            crate::error::candle_message(&e)
        ))
    };
    if is_safetensors {
        let st = MappedSafetensors::open(file).map_err(wrap)?;
        Ok(Shard::Safetensors(st))
    } else {
        super::pickle_guard::check_torch_pickle(file)?;
        let pth = PthTensors::new(file, None).map_err(wrap)?;
        Ok(Shard::Pth(pth))
    }
}

/// The shard files named by an HF `*.index.json` (`{"weight_map": {key: file}}`).
fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let idx: Index = super::config::read_json(index)?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let names: BTreeSet<&String> = idx.weight_map.values().collect();
    if names.is_empty() {
        return Err(Error::config(index, "weight_map is empty"));
    }
    names
        .into_iter()
        .map(|n| {
            let p = Path::new(n);
            if p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                Err(Error::config(
                    index,
                    format!("shard name {n:?} must be a file name inside the checkpoint folder"),
                ))
            } else {
                Ok(dir.join(p))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bf16, f16 and f32 bytes (special values included, more than one parallel chunk) widen to
    /// what `half` and `f32::from_le_bytes` give, bit for bit; a wrong byte count is an error.
    #[test]
    fn widening_matches_the_element_conversions() {
        let n = (1 << 16) + 37;
        let values: Vec<f32> = (0..n)
            .map(|i| match i % 7 {
                0 => f32::INFINITY,
                1 => -0.0,
                2 => f32::NAN,
                3 => 1e-40,
                _ => (i as f32 - 3000.0) * 0.37,
            })
            .collect();
        let bf16: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        let f16: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let f32b: Vec<u8> = values.iter().flat_map(|&v| v.to_le_bytes()).collect();
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        let got = widen(&bf16, &[n], "t", |b| half::bf16::from_le_bytes(b).to_f32()).unwrap();
        let want = bf16
            .chunks(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32());
        assert_eq!(bits(got), bits(want.collect()));
        let got = widen(&f16, &[n], "t", |b| half::f16::from_le_bytes(b).to_f32()).unwrap();
        let want = f16
            .chunks(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32());
        assert_eq!(bits(got), bits(want.collect()));
        let got = widen(&f32b, &[n], "t", f32::from_le_bytes).unwrap();
        assert_eq!(bits(got), bits(values));
        let err = widen(&f32b[..8], &[3], "t", f32::from_le_bytes).unwrap_err();
        assert!(
            err.to_string()
                .contains("tensor `t`: 8 bytes for shape [3]"),
            "{err}"
        );
    }
}
