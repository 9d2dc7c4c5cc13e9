# Sourced by web/build, web/test and .ci/run: Debian's rustc-web toolchain for the web crate on wasm32, in one
# place. rustup's proxies would shadow /usr/bin/cargo (and cargo would find rustup's cargo-clippy), so Debian's
# binaries are named outright, with a target folder of their own; -Zbuild-std compiles std for wasm32.
web_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
web_tools="$web_root/target/tools"

# wasm_cargo SUBCOMMAND [ARGS…]: cargo SUBCOMMAND on diffuse-web, release, for wasm32; ARGS come last (so `--`
# and what follows it reach the tool).
wasm_cargo() {
    local sub=$1
    shift
    local cargo=(/usr/bin/cargo "$sub")
    if [ "$sub" = clippy ]; then cargo=(/usr/bin/cargo-clippy clippy); fi
    env PATH="$web_tools/bin:/usr/bin:/bin:/usr/sbin:/sbin" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
        CARGO=/usr/bin/cargo RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$web_root/target/web" \
        "${cargo[@]}" --release --target wasm32-unknown-unknown -p diffuse-web -Zbuild-std=std,panic_abort "$@"
}
