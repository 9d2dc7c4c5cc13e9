//! The presets describe the same networks as the PyTorch twin in shared/bench/torch_baseline.py: the parameter
//! counts below are the ones it prints (small: 1,112,801; medium: 6,469,889).

use diffuse::model::{Architecture, Block, ParamLayout, UNetConfig};

#[test]
fn preset_parameter_counts_match_the_pytorch_twin() {
    assert_eq!(
        ParamLayout::new(&UNetConfig::preset("small").unwrap()).count(),
        1_112_801
    );
    assert_eq!(
        ParamLayout::new(&UNetConfig::preset("medium").unwrap()).count(),
        6_469_889
    );
}

#[test]
fn parameters_are_aligned_disjoint_and_named_like_pytorch() {
    let layout = ParamLayout::new(&UNetConfig::preset("small").unwrap());
    let mut end = 0;
    for p in &layout.params {
        assert_eq!(p.offset % 64, 0, "{} is not 256-byte aligned", p.name);
        assert!(p.offset >= end, "{} overlaps its predecessor", p.name);
        end = p.offset + p.len();
    }
    assert!(end <= layout.padded_len);
    assert_eq!(layout.get("conv_in.weight").unwrap().shape, [32, 1, 3, 3]);
    assert_eq!(layout.get("temb.0.weight").unwrap().shape, [128, 32]);
    assert_eq!(
        layout.get("down.1.0.weight").unwrap().shape,
        [32, 32, 3, 3],
        "the first downsample conv"
    );
    assert_eq!(
        layout.get("mid.1.qkv.weight").unwrap().shape,
        [192, 64, 1, 1]
    );
    assert_eq!(layout.get("out.2.weight").unwrap().shape, [1, 32, 3, 3]);
}

#[test]
fn up_path_consumes_every_skip_and_mirrors_the_resolutions() {
    let config = UNetConfig::preset("small").unwrap();
    let arch = Architecture::new(&config);
    let up_res = arch
        .up
        .iter()
        .filter(|b| matches!(b, Block::Res { .. }))
        .count();
    assert_eq!(
        up_res,
        arch.skip_channels.len(),
        "one skip per up-path residual block"
    );
    let attention_at: Vec<usize> = arch
        .down
        .iter()
        .chain(&arch.middle)
        .chain(&arch.up)
        .filter_map(|b| match b {
            Block::Attention { resolution, .. } => Some(*resolution),
            _ => None,
        })
        .collect();
    assert!(attention_at.iter().all(|&r| r == 7), "{attention_at:?}");
    assert_eq!(arch.out_channels, 32);
}

#[test]
fn bad_configurations_say_what_to_change() {
    let err = UNetConfig::preset("huge").unwrap_err().to_string();
    assert!(err.contains("small") && err.contains("medium"), "{err}");
    let mut config = UNetConfig::preset("small").unwrap();
    config.image_size = 30;
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("divisible by 4"));
    let mut config = UNetConfig::preset("small").unwrap();
    config.groups = 5;
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("groups (5)"));
}

#[test]
fn forward_flops_match_the_pytorch_twins_count() {
    // shared/bench/torch_baseline.py prints small: 380.1 MFLOP, medium: 2,208.4 MFLOP per image forward.
    let small = diffuse::model::forward_flops(&UNetConfig::preset("small").unwrap()) / 1e6;
    let medium = diffuse::model::forward_flops(&UNetConfig::preset("medium").unwrap()) / 1e6;
    assert!((small - 380.1).abs() < 0.05, "small: {small} MFLOP");
    assert!((medium - 2208.4).abs() < 0.05, "medium: {medium} MFLOP");
}
