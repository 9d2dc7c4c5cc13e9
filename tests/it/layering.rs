//! The layering rule: src/reference/ (the CPU references) and src/diffusion/ (the diffusion math) are plain Rust and
//! depend on no GPU code. Their files may not name `wgpu`, `crate::gpu` or `crate::kernels`, nor any other module of
//! the library that does (e.g. `model::unet`, the GPU graph builder), whether directly, through a `use crate::{…}`
//! group or through `super::`/`self::`. Comments and string literals are ignored ("No wgpu here." is fine).
//! Limitation: only paths rooted at `crate`, `super` or `self` are followed, so a GPU item re-exported under a
//! non-GPU module's name (`pub use unet::Net` in model/mod.rs) would pass; the rule is to import from the defining
//! module. The check counts the files it read and fails on none, and a second test proves that it can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The folders (relative to the crate root) whose files must not depend on GPU code.
const GPU_FREE: [&str; 2] = ["src/reference", "src/diffusion"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The code of a Rust source with comments removed and string and char literals emptied (`""`, `' '`), so that only
/// what the compiler resolves can match. Block comments nest, as in Rust. Line breaks are kept, so that line n of
/// the code is line n of the source.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        let (end, replacement) = if c[i] == '/' && next == Some('/') {
            (i + c[i..].iter().take_while(|&&ch| ch != '\n').count(), "")
        } else if c[i] == '/' && next == Some('*') {
            (block_comment_end(&c, i), " ")
        } else if let Some(end) = raw_string_end(&c, i) {
            (end, "\"\"")
        } else if c[i] == '"' {
            (string_end(&c, i), "\"\"")
        } else if c[i] == '\'' && next == Some('\\') {
            // An escaped char literal ('\n', '\'', '\u{…}').
            (
                i + 2 + c[i + 2..].iter().take_while(|&&ch| ch != '\'').count() + 1,
                "' '",
            )
        } else if c[i] == '\'' && c.get(i + 2) == Some(&'\'') {
            (i + 3, "' '")
        } else {
            // Anything else, lifetimes included.
            out.push(c[i]);
            i += 1;
            continue;
        };
        // What was skipped leaves its replacement and the line breaks it spanned.
        out.push_str(replacement);
        out.extend(line_breaks(&c[i..end.min(c.len())]));
        i = end;
    }
    out
}

/// Where the block comment opening at `i` ends (after its `*/`); block comments nest, as in Rust.
fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                break;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Where the raw string r"…" or r#"…"# opening at `i` ends: after a quote followed by as many #s as opened it.
/// None where no raw string opens there (an `r` of an identifier, or `r#ident`).
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let next = c.get(i + 1).copied();
    if c[i] != 'r' || !(next == Some('"') || next == Some('#')) || (i > 0 && is_ident(c[i - 1])) {
        return None;
    }
    let mut j = i + 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() && !(c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#'))) {
        j += 1;
    }
    Some(j + 1 + hashes)
}

/// Where the string literal opening at `i` ends (after its closing quote; escapes skipped).
fn string_end(c: &[char], mut i: usize) -> usize {
    i += 1;
    while i < c.len() && c[i] != '"' {
        i += if c[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// The line breaks among `skipped` characters, to keep in their place.
fn line_breaks(skipped: &[char]) -> impl Iterator<Item = char> + '_ {
    skipped.iter().copied().filter(|&ch| ch == '\n')
}

/// Whitespace removed wherever it does not separate two identifiers, so that `use crate::{ a,\n b };` reads
/// `use crate::{a,b};` and paths can be followed character by character.
fn squeeze(code: &str) -> String {
    let c: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < c.len() {
        if c[i].is_whitespace() {
            let start = i;
            while i < c.len() && c[i].is_whitespace() {
                i += 1;
            }
            let before = start.checked_sub(1).map(|k| c[k]);
            let after = c.get(i).copied();
            if before.is_some_and(is_ident) && after.is_some_and(is_ident) {
                out.push(' ');
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Whether the identifier `word` occurs in `code` as a whole token.
fn names_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        !code[..at].chars().next_back().is_some_and(is_ident)
            && !code[at + word.len()..].chars().next().is_some_and(is_ident)
    })
}

fn read_ident(c: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    while i < c.len() && is_ident(c[i]) {
        i += 1;
    }
    (c[start..i].iter().collect(), i)
}

/// Expands the path or use tree starting at `i` (just after a `::`) below `prefix` into full paths: `a::{b, c::d}`
/// under `crate` gives `crate::a::b` and `crate::a::c::d`. Returns the paths and the index after the tree.
fn expand(c: &[char], mut i: usize, prefix: &[String], out: &mut Vec<String>) -> usize {
    let mut path = prefix.to_vec();
    loop {
        if c.get(i) == Some(&'{') {
            i += 1;
            loop {
                match c.get(i) {
                    None => return i,
                    Some('}') => return i + 1,
                    Some(',') => i += 1,
                    Some(_) => {
                        i = expand(c, i, &path, out);
                        // Skip a rename (`as x`) up to the next item.
                        while i < c.len() && c[i] != ',' && c[i] != '}' {
                            i += 1;
                        }
                    }
                }
            }
        }
        if c.get(i) == Some(&'*') {
            out.push(path.join("::"));
            return i + 1;
        }
        let (segment, after) = read_ident(c, i);
        if segment.is_empty() {
            out.push(path.join("::"));
            return i;
        }
        if segment != "self" {
            path.push(segment);
        }
        i = after;
        if c.get(i) == Some(&':') && c.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            out.push(path.join("::"));
            return i;
        }
    }
}

/// Every crate path that `code` (already [`code_only`]) names, resolved to `crate::…`: paths rooted at `crate` (or
/// `$crate`), `self` and chains of `super`, with `use` groups expanded. `module` is the file's own module path.
fn crate_paths(code: &str, module: &[String]) -> Vec<String> {
    let c: Vec<char> = squeeze(code).chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let starts_token = i == 0 || !(is_ident(c[i - 1]) || c[i - 1] == ':');
        let (word, after) = read_ident(&c, i);
        if word.is_empty() {
            i += 1;
            continue;
        }
        let rooted = starts_token
            && matches!(word.as_str(), "crate" | "self" | "super")
            && c.get(after) == Some(&':')
            && c.get(after + 1) == Some(&':');
        if !rooted {
            i = after;
            continue;
        }
        let mut base: Vec<String> = match word.as_str() {
            "crate" => vec!["crate".to_string()],
            "self" => module.to_vec(),
            _ => module[..module.len().saturating_sub(1).max(1)].to_vec(),
        };
        let mut j = after + 2;
        loop {
            let (next, next_after) = read_ident(&c, j);
            let more = c.get(next_after) == Some(&':') && c.get(next_after + 1) == Some(&':');
            if next == "super" && more {
                base.truncate(base.len().saturating_sub(1).max(1));
                j = next_after + 2;
            } else {
                break;
            }
        }
        i = expand(&c, j, &base, &mut out);
    }
    out
}

/// The module path of a library file: src/model/unet.rs → crate::model::unet, src/model/mod.rs → crate::model.
fn module_of(relative: &Path) -> Vec<String> {
    let mut path = vec!["crate".to_string()];
    let parts: Vec<String> = relative
        .strip_prefix("src")
        .expect("a file under src/")
        .with_extension("")
        .components()
        .map(|p| p.as_os_str().to_string_lossy().into_owned())
        .collect();
    for (k, part) in parts.iter().enumerate() {
        let last = k + 1 == parts.len();
        if !(last && (part == "mod" || part == "lib")) {
            path.push(part.clone());
        }
    }
    path
}

/// Every file of the library's module tree (from src/lib.rs, following `mod name;`), relative to the crate root.
fn library_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![PathBuf::from("src/lib.rs")];
    while let Some(file) = todo.pop() {
        let code = squeeze(&code_only(&read(&root().join(&file))));
        // A file's submodules live beside it (lib.rs, mod.rs) or in the folder named after it.
        let name = file.file_stem().expect("file name").to_string_lossy();
        let dir = if name == "lib" || name == "mod" {
            file.parent().expect("parent").to_path_buf()
        } else {
            file.with_extension("")
        };
        let c: Vec<char> = code.chars().collect();
        for (at, _) in code.match_indices("mod ") {
            let head = code[..at].trim_end();
            let head = head.strip_suffix("pub").unwrap_or(head).trim_end();
            if head.chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let start = code[..at + 4].chars().count();
            let (sub, after) = read_ident(&c, start);
            if sub.is_empty() || c.get(after) != Some(&';') {
                continue; // An inline `mod x { … }` stays in this file.
            }
            let flat = dir.join(format!("{sub}.rs"));
            let nested = dir.join(&sub).join("mod.rs");
            todo.push(if root().join(&flat).exists() {
                flat
            } else {
                nested
            });
        }
        files.push(file);
    }
    files.sort();
    files
}

/// Every `.rs` file under `dir` (relative to the crate root), recursively.
fn rs_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(root().join(&d))
            .unwrap_or_else(|e| panic!("reading {}: {e}", d.display()));
        for entry in entries {
            let name = entry.expect("directory entry").file_name();
            let path = d.join(&name);
            if root().join(&path).is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Whether `path` is `module` or lies inside it (segment-wise: crate::gpu_x is not inside crate::gpu).
fn inside(path: &str, module: &str) -> bool {
    path == module || path.starts_with(&format!("{module}::"))
}

/// Why the source `text` of module `module` breaks the rule, given the library's GPU modules; empty if it does not.
fn offences(text: &str, module: &[String], gpu_modules: &BTreeSet<String>) -> Vec<String> {
    let code = code_only(text);
    let mut found = Vec::new();
    if names_word(&code, "wgpu") {
        found.push("names wgpu".to_string());
    }
    for path in crate_paths(&code, module) {
        if let Some(gpu) = gpu_modules.iter().find(|m| inside(&path, m)) {
            found.push(format!("names {path} (GPU module {gpu})"));
        }
    }
    found
}

/// crate::gpu, crate::kernels, and every library module whose code names wgpu or another GPU module (to a fixed
/// point, so a module that builds on a GPU module counts too).
fn gpu_modules(library: &[PathBuf]) -> BTreeSet<String> {
    let mut gpu: BTreeSet<String> = ["crate::gpu", "crate::kernels"].map(String::from).into();
    let sources: BTreeMap<String, String> = library
        .iter()
        .map(|f| (module_of(f).join("::"), read(&root().join(f))))
        .collect();
    loop {
        let before = gpu.len();
        for (module, text) in &sources {
            let path: Vec<String> = module.split("::").map(String::from).collect();
            // The crate root holds every module, so it is never one of them (lib.rs only lists modules).
            let root = module == "crate";
            if !root && !gpu.contains(module) && !offences(text, &path, &gpu).is_empty() {
                gpu.insert(module.clone());
            }
        }
        if gpu.len() == before {
            return gpu;
        }
    }
}

#[test]
fn reference_and_diffusion_import_no_gpu_code() {
    let library = library_files();
    let modules: BTreeSet<String> = library.iter().map(|f| module_of(f).join("::")).collect();
    for needed in [
        "crate::gpu",
        "crate::kernels",
        "crate::reference",
        "crate::diffusion",
    ] {
        assert!(
            modules.contains(needed),
            "the walk of src/lib.rs's module tree missed {needed}: the check would be vacuous"
        );
    }
    let gpu = gpu_modules(&library);
    let mut checked = 0;
    let mut broken = Vec::new();
    for dir in GPU_FREE {
        let files = rs_files_under(Path::new(dir));
        assert!(
            !files.is_empty(),
            "no .rs files under {dir}: the check would be vacuous"
        );
        for file in files {
            assert!(
                library.contains(&file),
                "{} is not in the library's module tree",
                file.display()
            );
            let found = offences(&read(&root().join(&file)), &module_of(&file), &gpu);
            broken.extend(found.iter().map(|o| format!("{}: {o}", file.display())));
            checked += 1;
        }
    }
    assert!(checked > 0, "checked no files");
    assert!(
        broken.is_empty(),
        "{} of {checked} files in {GPU_FREE:?} depend on GPU code (GPU modules: {gpu:?}); move the shared \
         definition to a module without wgpu that both sides import:\n{}",
        broken.len(),
        broken.join("\n")
    );
    // The derived list must include the GPU graph builder, or the fixed point did not run.
    assert!(gpu.contains("crate::model::unet"), "GPU modules: {gpu:?}");
    eprintln!(
        "layering: {checked} files in {GPU_FREE:?} checked against {} GPU modules",
        gpu.len()
    );
}

#[test]
fn layering_check_catches_each_way_in() {
    let gpu: BTreeSet<String> = ["crate::gpu", "crate::kernels", "crate::model::unet"]
        .map(String::from)
        .into();
    let leaf: Vec<String> = ["crate", "reference", "noise"].map(String::from).into();
    let folder: Vec<String> = ["crate", "reference"].map(String::from).into();
    let caught = [
        (&leaf, "use crate::kernels::noise::Target;"),
        (&leaf, "use crate::{error::Result, gpu::Tensor};"),
        (
            &leaf,
            "use crate::{\n    error::Result,\n    kernels::{noise, random as rng},\n};",
        ),
        (
            &leaf,
            "let n = super::super::kernels::random::dropout_threshold(p);",
        ),
        (&folder, "use super::kernels;"),
        (&folder, "pub use self::super::gpu::Tensor;"),
        (&leaf, "fn f(b: &wgpu::Buffer) {}"),
        (&leaf, "let s = crate::model::unet::DROPOUT_STREAM;"),
        (&leaf, "use crate::model::{unet::Net, UNetConfig};"),
    ];
    for (module, text) in caught {
        assert!(
            !offences(text, module, &gpu).is_empty(),
            "not caught: {text:?}"
        );
    }
    let allowed = [
        "//! No wgpu here; shaders/noise.wgsl computes the same.",
        "/* crate::kernels /* nested */ wgpu */ fn f() {}",
        "let s = \"crate::gpu and wgpu\"; let r = r#\"crate::kernels\"#; let q = '\"';",
        "use crate::model::{Architecture, UNetConfig};",
        "use crate::diffusion::samplers::{NoiseLevel, Prediction};",
        "use crate::gpu_free::x; let wgpu_count = 0;",
        "use super::conv2d::Conv2dShape;",
    ];
    for text in allowed {
        let found = offences(text, &leaf, &gpu);
        assert!(found.is_empty(), "false alarm on {text:?}: {found:?}");
    }
}

/// The files that may block: the async edges' one `block_on` (src/gpu/future.rs), the one place that waits on a
/// device poll (src/gpu/context.rs, `Gpu::drive`), and what runs natively only (the benchmark's timer and cases,
/// MPI, the decode pool, which takes one thread on wasm32).
const MAY_BLOCK: [&str; 6] = [
    "src/gpu/future.rs",
    "src/gpu/context.rs",
    "src/gpu/timer.rs",
    "src/bench/",
    "src/distributed/mpi.rs",
    "src/data.rs",
];

/// The calls that block a thread (or, on wasm32, panic or spin): `block_on` is allowed anywhere in a function
/// compiled for native targets only; the others only in [`MAY_BLOCK`].
const BLOCKING: [&str; 7] = [
    "pollster::",
    ".recv()",
    "recv_timeout(",
    "PollType::Wait",
    "wait_indefinitely",
    "std::time::Instant",
    "thread::",
];

const NATIVE_ONLY: &str = "#[cfg(not(target_arch = \"wasm32\"))]";

/// Why `text` (the source of `file`) blocks where it may not: a blocking primitive outside [`MAY_BLOCK`], or a
/// `block_on` in a function not marked [`NATIVE_ONLY`].
fn blocking_offences(file: &str, text: &str) -> Vec<String> {
    let code = code_only(text);
    let lines: Vec<&str> = code.lines().collect();
    let raw: Vec<&str> = text.lines().collect();
    let may_block = MAY_BLOCK.iter().any(|allowed| file.starts_with(allowed));
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !may_block {
            found.extend(
                BLOCKING
                    .iter()
                    .filter(|call| line.contains(*call))
                    .map(|call| format!("line {}: {call}", i + 1)),
            );
        }
        if names_word(line, "block_on") && line.contains("block_on(") && !native_fn(&lines, &raw, i)
        {
            found.push(format!(
                "line {}: block_on in a function wasm32 compiles",
                i + 1
            ));
        }
    }
    found
}

/// Whether line `at` is compiled for native targets only: the statement on it is marked (the attribute lines
/// right above it), or the nearest `fn` line above it (its own, when it is one) is.
fn native_fn(code: &[&str], raw: &[&str], at: usize) -> bool {
    let marked = |line: usize| {
        raw[..line]
            .iter()
            .rev()
            .map(|l| l.trim())
            .take_while(|l| l.starts_with("#[") || l.starts_with("///"))
            .any(|l| l == NATIVE_ONLY)
    };
    marked(at)
        || (0..=at)
            .rev()
            .find(|&i| names_word(code[i], "fn"))
            .is_some_and(marked)
}

#[test]
fn blocking_calls_stay_in_native_only_code() {
    let library = library_files();
    let mut broken = Vec::new();
    let mut calls = 0;
    for file in &library {
        let text = read(&root().join(file));
        calls += text.matches("block_on(").count();
        let name = file.to_string_lossy().replace('\\', "/");
        broken.extend(
            blocking_offences(&name, &text)
                .into_iter()
                .map(|o| format!("{name}: {o}")),
        );
    }
    assert!(
        library.len() > 50 && calls > 10,
        "read {} files, {calls} block_on calls: vacuous",
        library.len()
    );
    assert!(
        broken.is_empty(),
        "blocking calls where wasm32 compiles them; give the function an async twin and mark the blocking one \
         {NATIVE_ONLY}, or move the wait into src/gpu/future.rs:\n{}",
        broken.join("\n")
    );
    eprintln!(
        "blocking: {} files, {calls} block_on calls, all native-only",
        library.len()
    );
}

/// The browser crate (web/src) runs on a page's one thread, where a blocking wait hangs the tab: each of its files
/// is held to the library's check, with none allowed to block.
#[test]
fn the_browser_crate_never_blocks() {
    let mut files = 0;
    let mut broken = Vec::new();
    for entry in std::fs::read_dir(root().join("web/src")).expect("web/src") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            files += 1;
            let name = format!("web/src/{}", path.file_name().unwrap().to_string_lossy());
            let offences = blocking_offences(&name, &read(&path));
            broken.extend(offences.into_iter().map(|o| format!("{name}: {o}")));
        }
    }
    assert!(files >= 5, "read {files} files of web/src: vacuous");
    assert!(
        broken.is_empty(),
        "blocking calls in the browser crate; await the library's async twin instead:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_blocking_check_catches_each_kind() {
    let caught = [
        ("src/train/run.rs", "fn f(rx: R) { rx.recv().unwrap(); }"),
        (
            "src/sample/mod.rs",
            "fn f() { let t = std::time::Instant::now(); }",
        ),
        (
            "src/eval.rs",
            "fn f(g: &Gpu) { g.device.poll(wgpu::PollType::wait_indefinitely()); }",
        ),
        ("src/model/x.rs", "fn f() { pollster::block_on(g()); }"),
        (
            "src/train/x.rs",
            "pub fn f(&self) -> R {\n    block_on(self.f_async())\n}",
        ),
        (
            "src/train/x.rs",
            "#[cfg(not(target_arch = \"wasm32\"))]\nfn g() {}\n\nfn f() {\n    block_on(h());\n}",
        ),
    ];
    for (file, text) in caught {
        assert!(
            !blocking_offences(file, text).is_empty(),
            "not caught in {file}: {text:?}"
        );
    }
    let allowed = [
        (
            "src/train/x.rs",
            "/// Waits.\n#[cfg(not(target_arch = \"wasm32\"))]\npub fn f(&self) -> R {\n    block_on(self.f_async())\n}",
        ),
        (
            "src/gpu/future.rs",
            "#[cfg(not(target_arch = \"wasm32\"))]\npub fn block_on<F>(f: F) { pollster::block_on(f) }",
        ),
        (
            "src/gpu/x.rs",
            "fn f() {\n    #[cfg(not(target_arch = \"wasm32\"))]\n    let e = block_on(scope.pop());\n}",
        ),
        ("src/train/x.rs", "// rx.recv() would spin on wasm32\nlet s = \"pollster::\";"),
        ("src/bench/cases.rs", "let start = std::time::Instant::now();"),
    ];
    for (file, text) in allowed {
        let found = blocking_offences(file, text);
        assert!(
            found.is_empty(),
            "false alarm in {file} on {text:?}: {found:?}"
        );
    }
}
