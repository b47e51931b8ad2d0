//! Torch `.bin` checkpoints are Python pickles. Unpickled by Python they can run any code (a
//! `__reduce__` naming `os.system` is enough); candle's reader never calls anything, but a file
//! that names such callables is not a plain state dict and must not load as if it were.
//!
//! Before a `.bin` shard is opened, every `data.pkl` in its zip is stepped through with candle's
//! pickle machine (which only builds data) and every global the pickle pushes is checked against
//! the callables `torch.save` writes for a state dict — the same idea as PyTorch's
//! `weights_only=True` unpickler. Anything else is refused with a `WeightsError` naming the global.
//! Opcodes candle's machine does not know (protocol > 2 framing, `INST`, `OBJ`, ...) are refused
//! too, so nothing can reach a callable without passing through `GLOBAL`.

use std::io::{BufReader, Read};
use std::path::Path;

use candle_core::pickle::{Object, Stack};

use crate::error::{Error, Result};

/// (module, name) pairs a state-dict pickle written by `torch.save` may reference.
const ALLOWED_GLOBALS: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "FloatStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "DoubleStorage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "ShortStorage"),
    ("torch", "CharStorage"),
    ("torch", "ByteStorage"),
    ("torch", "BoolStorage"),
    ("torch", "device"),
];

/// A `data.pkl` larger than this is not a state dict's index (real ones are well under 1 MB).
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// Refuse `file` unless every pickle in it references only [`ALLOWED_GLOBALS`].
pub fn check_torch_pickle(file: &Path) -> Result<()> {
    let weights_err = |msg: String| Error::Weights(format!("{}: {msg}", file.display()));
    let read_err =
        |msg: String| Error::Weights(format!("cannot read weight file {}: {msg}", file.display()));
    let f = std::fs::File::open(file).map_err(|e| read_err(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(f)).map_err(|e| {
        read_err(format!(
            "{e} (a truncated download, or not a PyTorch zip checkpoint: only torch.save's zip \
             format, PyTorch ≥ 1.6, is supported)"
        ))
    })?;
    let pickles: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok())
        .filter(|n| n.ends_with("data.pkl"))
        .map(|n| n.into_owned())
        .collect();
    if pickles.is_empty() {
        return Err(weights_err(
            "no data.pkl inside: not a torch.save checkpoint".into(),
        ));
    }
    for name in pickles {
        let entry = zip
            .by_name(&name)
            .map_err(|e| weights_err(format!("cannot read {name}: {e}")))?;
        if entry.size() > MAX_PICKLE_BYTES {
            return Err(weights_err(format!(
                "{name} is {} bytes, more than a state dict's pickle can be",
                entry.size()
            )));
        }
        let mut reader = BufReader::new(entry.take(MAX_PICKLE_BYTES));
        let mut stack = Stack::empty();
        loop {
            let done = stack.read(&mut reader).map_err(|e| {
                weights_err(format!("{name} is not a plain state-dict pickle: {e}"))
            })?;
            if let Some(Object::Class {
                module_name,
                class_name,
            }) = stack.stack().last()
            {
                let allowed = ALLOWED_GLOBALS
                    .iter()
                    .any(|(m, c)| m == module_name && c == class_name);
                if !allowed {
                    return Err(weights_err(format!(
                        "refusing to load: {name} references `{module_name}.{class_name}`, which is not \
                         one of the tensor-rebuild functions a state dict uses. Pickled checkpoints can \
                         run code when Python loads them; get this model from a trusted source, \
                         preferably as safetensors"
                    )));
                }
            }
            if done {
                break;
            }
        }
    }
    Ok(())
}
