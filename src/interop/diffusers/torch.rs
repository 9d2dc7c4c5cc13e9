//! `diffusion_pytorch_model.bin`: a state dict saved by `torch.save`, read with `pytorch-reader`, which interprets
//! the pickle (it never executes it). Only a plain state dict is accepted: a mapping of names to tensors, with
//! torch's `_metadata` (module versions, numbers only) beside them. Any other value (a Python object of some other
//! class, a number, a nested dict) is refused by name and type: a diffusers weights file holds nothing else, so
//! anything else means the file is not what it claims.

use std::collections::HashMap;
use std::path::Path;

use pytorch_reader::{DType, PickleValue, PytorchReader};

use super::{Element, Stored};
use crate::error::{Error, Result};

pub const WEIGHTS: &str = "diffusion_pytorch_model.bin";

/// The Python type a state dict's values have.
const TENSOR: &str = "torch.Tensor";

pub fn read(path: &Path) -> Result<HashMap<String, Stored>> {
    let bad = |e: pytorch_reader::PytorchError| {
        Error::data(
            path,
            format!("not a readable torch state dict (truncated or corrupt?): {e}"),
        )
    };
    check_plain_state_dict(
        path,
        PytorchReader::read_pickle_data(path, None).map_err(bad)?,
    )?;
    let reader = PytorchReader::new(path).map_err(bad)?;
    reader
        .into_tensors()
        .into_iter()
        .map(|(name, tensor)| {
            let data = tensor
                .read()
                .map_err(|e| Error::data(path, format!("{name}: {e}")))?;
            let dtype = match tensor.dtype() {
                DType::F32 => Element::F32,
                DType::F16 => Element::F16,
                DType::BF16 => Element::BF16,
                other => Element::Other(format!("{other:?}")),
            };
            let stored = Stored {
                shape: tensor.shape().to_vec(),
                dtype,
                data,
            };
            Ok((name, stored))
        })
        .collect()
}

/// Refuses a pickle that is not a mapping of names to tensors, naming the first entry that is not one.
fn check_plain_state_dict(path: &Path, root: PickleValue) -> Result<()> {
    let PickleValue::Dict(entries) = root else {
        return Err(Error::data(
            path,
            format!(
                "holds {}, not a state dict (a mapping of names to tensors)",
                describe(&root)
            ),
        ));
    };
    let mut names: Vec<&String> = entries.keys().collect();
    names.sort();
    for name in names {
        let value = &entries[name];
        // torch.save keeps the state dict's `_metadata` (each module's version number) beside the tensors.
        if name == "_metadata" && plain_data(value) {
            continue;
        }
        if !matches!(value, PickleValue::Unsupported(t) if t == TENSOR) {
            return Err(Error::data(
                path,
                format!(
                    "its entry {name:?} is {}, not a tensor: diffuse reads plain state dicts \
                     (torch.save(model.state_dict())), whose every value is a tensor",
                    describe(value)
                ),
            ));
        }
    }
    Ok(())
}

/// Numbers, strings and containers of them: no object of any class.
fn plain_data(value: &PickleValue) -> bool {
    match value {
        PickleValue::Unsupported(_) => false,
        PickleValue::Dict(entries) => entries.values().all(plain_data),
        PickleValue::List(items) => items.iter().all(plain_data),
        _ => true,
    }
}

fn describe(value: &PickleValue) -> String {
    match value {
        PickleValue::Unsupported(t) => format!("a Python {t}"),
        PickleValue::Dict(_) => "a nested dict".into(),
        PickleValue::List(_) => "a list".into(),
        PickleValue::String(_) => "a string".into(),
        PickleValue::None => "None".into(),
        PickleValue::Bool(_) | PickleValue::Int(_) | PickleValue::Float(_) => "a number".into(),
        PickleValue::Bytes(_) => "bytes".into(),
    }
}
