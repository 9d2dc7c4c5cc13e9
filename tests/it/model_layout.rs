//! The presets describe the same networks as the PyTorch twin, tests/twin/torch_baseline.py (a copy of
//! shared/bench/torch_baseline.py with the RGB presets added): the parameter and forward FLOP counts below are the
//! ones `python3 tests/twin/torch_baseline.py --counts --presets small,medium,rgb32,rgb64,rgb128` prints.

use diffuse::model::params::forward_flops;
use diffuse::model::{Architecture, Block, ParamLayout, Preset, UNetConfig};

#[test]
fn preset_parameter_and_flop_counts_match_the_pytorch_twin() {
    // (preset, parameters, forward FLOPs of one image)
    for (preset, params, flops) in [
        (Preset::Small, 1_112_801, 380_079_104u64),
        (Preset::Medium, 6_469_889, 2_208_406_528),
        (Preset::Rgb32, 8_952_067, 3_198_418_944),
        (Preset::Rgb64, 35_746_307, 46_740_799_488),
        (Preset::Rgb128, 109_733_379, 124_431_237_120),
    ] {
        let config = preset.config();
        config.validate().unwrap();
        assert_eq!(ParamLayout::new(&config).count(), params, "{preset}");
        assert_eq!(forward_flops(&config), flops as f64, "{preset}");
    }
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
        .contains("--groups 5 must divide"));
}

#[test]
fn forward_flops_match_the_pytorch_twins_count() {
    // shared/bench/torch_baseline.py prints small: 380.1 MFLOP, medium: 2,208.4 MFLOP per image forward.
    let small = diffuse::model::forward_flops(&UNetConfig::preset("small").unwrap()) / 1e6;
    let medium = diffuse::model::forward_flops(&UNetConfig::preset("medium").unwrap()) / 1e6;
    assert!((small - 380.1).abs() < 0.05, "small: {small} MFLOP");
    assert!((medium - 2208.4).abs() < 0.05, "medium: {medium} MFLOP");
}

#[test]
fn parameters_are_cut_into_shards_between_tensors_and_within_the_limit() {
    let layout = ParamLayout::new(&UNetConfig::preset("rgb64").unwrap());
    // 128 MiB of f32, lavapipe's binding limit: rgb64's 143 MB of weights need two shards.
    for max in [(128 << 20) / 4, 1 << 21, 1_200_000] {
        let ranges = layout.shard_ranges(max).unwrap();
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges.last().unwrap().end, layout.padded_len);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "contiguous");
        }
        for r in &ranges {
            assert!(r.len() <= max && !r.is_empty(), "{r:?} within {max}");
            assert!(
                layout.params.iter().any(|p| p.offset == r.start),
                "shards start at a parameter"
            );
        }
        // Every parameter lies inside exactly one shard.
        for p in &layout.params {
            let holders = ranges
                .iter()
                .filter(|r| r.start <= p.offset && p.offset + p.len() <= r.end)
                .count();
            assert_eq!(holders, 1, "{}", p.name);
        }
        if max == (128 << 20) / 4 {
            assert_eq!(ranges.len(), 2);
        }
    }
    let err = layout.shard_ranges(1000).unwrap_err().to_string();
    assert!(
        err.contains("more than one buffer binding") && err.contains("--base-channels"),
        "{err}"
    );
}

/// Every bounded size of a model: at its limit it validates (so it trains, and the checkpoint reader, which checks
/// the same LIMITS, reads it back), one past its limit it is refused by name.
#[test]
fn every_model_size_is_valid_at_its_limit_and_refused_past_it() {
    use diffuse::model::config::LIMITS;
    let tiny = || diffuse::model::Preset::Tiny.config();
    let at = |f: &dyn Fn(&mut diffuse::model::UNetConfig, usize), limit: usize| {
        let (mut ok, mut past) = (tiny(), tiny());
        f(&mut ok, limit);
        f(&mut past, limit + 1);
        (ok.validate(), past.validate())
    };
    type Set<'a> = &'a dyn Fn(&mut diffuse::model::UNetConfig, usize);
    let cases: [(&str, Set, usize); 4] = [
        (
            "image channels",
            &|c, v| c.in_channels = v,
            LIMITS.in_channels,
        ),
        (
            "blocks per level",
            &|c, v| c.blocks_per_level = v,
            LIMITS.blocks_per_level,
        ),
        (
            "channel multiplier",
            &|c, v| c.channel_mults = vec![1, v],
            LIMITS.channel_mult,
        ),
        (
            "levels",
            &|c, v| {
                c.channel_mults = vec![1; v];
                c.image_size = 1 << (v - 1);
                c.attention_resolutions.clear();
            },
            LIMITS.levels,
        ),
    ];
    for (what, set, limit) in cases {
        let (ok, past) = at(set, limit);
        assert!(ok.is_ok(), "{what} at {limit}: {ok:?}");
        let err = past.unwrap_err().to_string();
        assert!(
            err.contains(what) && err.contains(&limit.to_string()),
            "{what}: {err}"
        );
    }
}
