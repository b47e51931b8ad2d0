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
            let done = match stack.read(&mut reader) {
                Ok(done) => done,
                Err(e) => {
                    let deep = stack.stack().iter().any(|o| depth_exceeds(o, MAX_DEPTH));
                    discard(stack, deep);
                    return Err(weights_err(format!(
                        "{name} is not a plain state-dict pickle: {e}"
                    )));
                }
            };
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
        let object = match stack.finalize() {
            Ok(object) => object,
            Err(e) => {
                return Err(weights_err(format!(
                    "{name} is not a plain state-dict pickle: {e}"
                )))
            }
        };
        if let Err(problem) = check_tensor_calls(&object) {
            let deep = depth_exceeds(&object, MAX_DEPTH);
            discard(object, deep);
            return Err(weights_err(format!(
                "{name} is not a plain state-dict pickle: {problem}"
            )));
        }
    }
    Ok(())
}

/// Nesting a state dict never needs (dict → rebuild call → args → storage tuple → class).
const MAX_DEPTH: usize = 32;

/// Drops `value`, unless it holds objects nested deeper than a state dict's: dropping those
/// recurses once per level and a hostile pickle can nest millions deep, so they are leaked
/// instead (bounded by the pickle's size). Fuzzing builds drop them (inputs are small there,
/// and the leak checker would report it).
fn discard<T>(value: T, deep: bool) {
    if deep && !cfg!(fuzzing) {
        std::mem::forget(value);
    }
}

/// Whether `root` nests deeper than `limit`.
fn depth_exceeds(root: &Object, limit: usize) -> bool {
    walk(root, limit, |_| Ok(())).is_err()
}

/// Every tensor-rebuild call has the arguments torch writes — `(storage, offset, size, stride,
/// ...)` with `storage = persistent_load(("storage", StorageClass, key, location, numel))` —
/// so the tensor reader, which takes them apart by position, never meets a malformed one.
fn check_tensor_calls(root: &Object) -> std::result::Result<(), String> {
    walk(root, MAX_DEPTH, |obj| match obj {
        Object::Reduce { callable, args } => match callable.as_ref() {
            Object::Class {
                module_name,
                class_name,
            } if module_name == "torch._utils" && class_name.starts_with("_rebuild_tensor") => {
                check_rebuild_args(args)
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    })
}

/// Calls `visit` on every object under `root`, iteratively (a hostile pickle can nest deeper
/// than the stack allows recursion), failing once nesting passes `limit`.
fn walk(
    root: &Object,
    limit: usize,
    mut visit: impl FnMut(&Object) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let mut todo = vec![(root, 0usize)];
    while let Some((obj, depth)) = todo.pop() {
        if depth > limit {
            return Err(format!("objects nested more than {limit} deep"));
        }
        visit(obj)?;
        match obj {
            Object::Reduce { callable, args } | Object::Build { callable, args } => {
                todo.push((callable, depth + 1));
                todo.push((args, depth + 1));
            }
            Object::Tuple(items) | Object::List(items) => {
                todo.extend(items.iter().map(|o| (o, depth + 1)));
            }
            Object::Dict(items) => {
                for (k, v) in items {
                    todo.push((k, depth + 1));
                    todo.push((v, depth + 1));
                }
            }
            Object::PersistentLoad(inner) => todo.push((inner, depth + 1)),
            _ => {}
        }
    }
    Ok(())
}

fn check_rebuild_args(args: &Object) -> std::result::Result<(), String> {
    let bad = |what: &str| Err(format!("a tensor-rebuild call with {what}"));
    let is_int = |o: &Object| {
        matches!(o, Object::Int(i) if *i >= 0) || matches!(o, Object::Long(l) if *l >= 0)
    };
    let is_int_seq = |o: &Object| match o {
        Object::Tuple(v) | Object::List(v) => v.iter().all(is_int),
        _ => false,
    };
    let Object::Tuple(args) = args else {
        return bad("arguments that are not a tuple");
    };
    if args.len() < 4 {
        return bad("fewer than 4 arguments");
    }
    if !is_int(&args[1]) || !is_int_seq(&args[2]) || !is_int_seq(&args[3]) {
        return bad("a bad offset, size or stride");
    }
    let Object::PersistentLoad(storage) = &args[0] else {
        return bad("no storage");
    };
    match storage.as_ref() {
        Object::Tuple(s)
            if s.len() >= 5
                && matches!(s[1], Object::Class { .. })
                && matches!(s[2], Object::Unicode(_))
                && is_int(&s[4]) =>
        {
            Ok(())
        }
        _ => bad("a malformed storage reference"),
    }
}
