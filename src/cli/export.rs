//! `diffuse export`: a checkpoint written as another tool's model folder.

use std::path::PathBuf;

use diffuse::interop::diffusers::export;
use diffuse::Result;

use super::open_model;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// A checkpoint written by `diffuse train` [default: the model bundled in assets/].
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Write a diffusers folder here (model_index.json, unet/, scheduler/) that DDPMPipeline.from_pretrained and
    /// UNet2DModel.from_pretrained load; the folder must be new or empty.
    #[arg(long, value_name = "FOLDER")]
    pub diffusers: PathBuf,
    /// Export the raw weights instead of their exponential moving average (what sampling uses).
    #[arg(long)]
    pub raw_weights: bool,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let ckpt = open_model(args.checkpoint.as_ref(), true)?;
    let exported = export::export(&ckpt, args.raw_weights, &args.diffusers)?;
    for note in &exported.notes {
        println!("note: {note}");
    }
    println!(
        "wrote {} ({} weights, step {}): load it with DDPMPipeline.from_pretrained or UNet2DModel.from_pretrained \
         (subfolder=\"unet\")",
        args.diffusers.display(),
        if args.raw_weights { "raw" } else { "EMA" },
        ckpt.step
    );
    Ok(())
}
