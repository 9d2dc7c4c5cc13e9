//! Rust values to JavaScript ones and back: errors, event payloads, option objects.

use wasm_bindgen::prelude::*;

/// A JavaScript `Error` with `message`.
pub fn error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}

/// The library's error as a JavaScript `Error` (its message is what the desktop binary would print).
pub fn from(e: diffuse::Error) -> JsValue {
    error(&e.to_string())
}

/// A plain object `{ key: value, … }`.
pub fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let obj = js_sys::Object::new();
    for (key, value) in fields {
        // Setting a property of a fresh plain object cannot fail.
        let _ = js_sys::Reflect::set(&obj, &(*key).into(), value);
    }
    obj.into()
}

/// Bytes as a `Uint8Array` (a copy the page owns).
pub fn bytes(data: &[u8]) -> JsValue {
    js_sys::Uint8Array::from(data).into()
}

/// The page's options object: each field read by name, with its default where absent.
pub struct Options(pub JsValue);

impl Options {
    fn get(&self, key: &str) -> Option<JsValue> {
        js_sys::Reflect::get(&self.0, &key.into())
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    }

    /// A number option; an option given as something else is refused, naming it.
    pub fn number(&self, key: &str, default: f64) -> Result<f64, JsValue> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| error(&format!("option {key}: expected a number, got {v:?}"))),
        }
    }

    /// A whole-number option of at least `min`.
    pub fn count(&self, key: &str, default: usize, min: usize) -> Result<usize, JsValue> {
        let x = self.number(key, default as f64)?;
        if x.fract() != 0.0 || x < min as f64 || x > u32::MAX as f64 {
            return Err(error(&format!(
                "option {key}: expected a whole number of at least {min}, got {x}"
            )));
        }
        Ok(x as usize)
    }

    pub fn text(&self, key: &str, default: &str) -> String {
        self.get(key)
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| default.to_string())
    }

    pub fn flag(&self, key: &str) -> bool {
        self.get(key).and_then(|v| v.as_bool()).unwrap_or(false)
    }
}

/// Calls the page's `on(event, data)`; an exception there is the page's, logged and not fatal to the run.
pub fn emit(on: &js_sys::Function, event: &str, data: JsValue) {
    if let Err(e) = on.call2(&JsValue::NULL, &event.into(), &data) {
        web_sys::console::error_2(
            &format!("the page's handler of {event:?} threw:").into(),
            &e,
        );
    }
}
