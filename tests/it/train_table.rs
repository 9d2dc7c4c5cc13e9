//! The training settings table (src/train/table.rs): every recorded setting survives its checkpoint key, every
//! key is documented, and `resolve` names what a resume would change.

use diffuse::diffusion::process::Objective;
use diffuse::model::Preset;
use diffuse::train::table::{self, OnResume, SETTINGS};
use diffuse::train::TrainSettings;

/// A value other than the default for each setting, as its flag spells it. A row missing here fails the tests
/// below, so a new setting is tested the day it is added.
const OTHER: &[(&str, &str)] = &[
    ("batch", "7"),
    ("grad-accum", "3"),
    ("micro-batch", "1"),
    ("memory-budget", "2.5"),
    ("lr", "0.00125"),
    ("warmup", "17"),
    ("ema", "0.75"),
    ("clip", "0"),
    ("schedule", "cosine"),
    ("timesteps", "250"),
    ("flip", "true"),
    ("data-on", "host"),
    ("seed", "18446744073709551615"),
    ("prediction", "v"),
    ("min-snr-gamma", "5"),
    ("zero-terminal-snr", "true"),
    ("ema-warmup", "0.75"),
    ("ema-inv-gamma", "2.5"),
    ("objective", "vp"),
    ("sigma-min", "0.02"),
    ("sigma-max", "30"),
    ("levels", "11"),
    ("beta-min", "0.2"),
    ("beta-max", "15"),
    ("weighting", "likelihood"),
    ("t-min", "0.001"),
    ("sigma-data", "0.25"),
    ("p-mean", "-1"),
    ("p-std", "1.5"),
];

/// The objective each parameter of `--objective` is tried on: one that has it.
fn owner(name: &str) -> Option<Objective> {
    let objective = match name {
        "sigma-min" | "sigma-max" | "levels" => "ncsn",
        "beta-min" | "beta-max" | "weighting" | "t-min" => "vp",
        "sigma-data" | "p-mean" | "p-std" => "edm",
        _ => return None,
    };
    Some(objective.parse().unwrap())
}

fn defaults() -> TrainSettings {
    TrainSettings::new(Preset::Tiny.config())
}

fn other(name: &str) -> &'static str {
    OTHER
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no other value for --{name}: add one to OTHER"))
        .1
}

#[test]
fn every_setting_takes_another_value_than_its_default_and_refuses_nonsense() {
    assert_eq!(OTHER.len(), SETTINGS.len(), "OTHER and the table differ");
    for row in SETTINGS {
        let mut s = defaults();
        s.ema_warmup = diffuse::optim::EmaWarmup::Power {
            power: 1.0,
            inv_gamma: 1.0,
        };
        // Every row's value as its flag spells it (--ema-inv-gamma shows through --ema-warmup's).
        let shown = |s: &TrainSettings| SETTINGS.iter().map(|r| (r.get)(s)).collect::<Vec<_>>();
        if let Some(objective) = owner(row.name) {
            s.objective = objective;
        }
        let before = shown(&s);
        (row.set)(&mut s, other(row.name)).unwrap_or_else(|e| panic!("--{}: {e}", row.name));
        assert_ne!(
            shown(&s),
            before,
            "--{} {} changed nothing",
            row.name,
            other(row.name)
        );
        assert!(
            row.check("nonsense").is_err(),
            "--{} nonsense was accepted",
            row.name
        );
    }
}

#[test]
fn every_recorded_setting_round_trips_through_its_checkpoint_key() {
    // Every row, but of --objective's parameters only those of the objective OTHER gives it (vp): the others'
    // round trips are the objective's own (tests/it/process.rs).
    let given: Vec<_> = SETTINGS
        .iter()
        .filter(|row| owner(row.name).is_none_or(|o| o.name() == other("objective")))
        .map(|row| (row, other(row.name).to_string()))
        .collect();
    let (changed, _) = table::resolve(&defaults(), &given, false).unwrap();
    let recorded = table::recorded(&changed);
    for row in SETTINGS {
        let mut read = defaults();
        if row.recorded() {
            row.load(&mut read, &row.store(&changed)).unwrap();
            assert_eq!((row.get)(&read), (row.get)(&changed), "{:?}", row.key);
            assert_eq!((row.get)(&recorded), (row.get)(&changed), "{:?}", row.key);
        } else if row.name != "ema-inv-gamma" && owner(row.name).is_none() {
            // Not recorded: a record keeps the default (ema-inv-gamma travels inside ema-warmup's key, an
            // objective's parameters inside its key).
            assert_eq!(
                (row.get)(&recorded),
                (row.get)(&defaults()),
                "--{}",
                row.name
            );
        }
    }
    assert_eq!(
        recorded,
        table::recorded(&recorded),
        "recording is idempotent"
    );
}

#[test]
fn names_and_keys_are_unique_and_every_key_is_documented() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/checkpoint.md"))
        .unwrap();
    let mut names: Vec<&str> = SETTINGS.iter().map(|r| r.name).collect();
    let mut keys: Vec<&str> = SETTINGS.iter().filter_map(|r| r.key).collect();
    let counts = (names.len(), keys.len());
    names.sort();
    names.dedup();
    keys.sort();
    keys.dedup();
    assert_eq!(
        (names.len(), keys.len()),
        counts,
        "a name or a key appears twice"
    );
    for row in SETTINGS {
        if let Some(key) = row.key {
            assert!(
                docs.contains(&format!("`{key}`")),
                "docs/checkpoint.md does not explain {key}"
            );
        }
        // A key without a default for older files must be one every checkpoint had.
        if let Some(older) = row.before_key {
            row.load(&mut defaults(), older).unwrap();
        }
        assert!(
            row.key.is_some() || row.on_resume == OnResume::Free,
            "--{} is compared on --resume but not recorded",
            row.name
        );
    }
}

#[test]
fn resolve_applies_flags_over_the_record_and_names_each_difference() {
    let mut record = defaults();
    record.lr = 1e-3;
    record.seed = 3;
    let flag = |name: &str, text: &str| (table::setting(name).unwrap(), text.to_string());
    // The same values as the record, and settings nobody records: no difference.
    let same = [
        flag("lr", "0.001"),
        flag("micro-batch", "2"),
        flag("data-on", "host"),
    ];
    let (s, differences) = table::resolve(&record, &same, true).unwrap();
    assert!(differences.is_empty());
    assert_eq!((s.lr, s.micro_batch, s.seed), (1e-3, Some(2), 3));
    // Changed: named in table order, as the flag and the record spell them.
    let changed = [
        flag("seed", "5"),
        flag("timesteps", "10"),
        flag("lr", "0.002"),
    ];
    let (s, differences) = table::resolve(&record, &changed, true).unwrap();
    let lines: Vec<&str> = differences.iter().map(|d| d.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "--lr 0.002 (checkpoint: 0.001)",
            "--timesteps 10 (checkpoint: 1000)",
            "--seed 5 (checkpoint: 3)"
        ]
    );
    assert_eq!(differences[1].setting.on_resume, OnResume::Fixed);
    assert_eq!((s.lr, s.timesteps, s.seed), (0.002, 10, 5));
    // A new run compares nothing; --ema-inv-gamma shapes the warm-up --ema-warmup asked for, and only that.
    let warmup = [flag("ema-warmup", "0.5"), flag("ema-inv-gamma", "4")];
    let (s, differences) = table::resolve(&record, &warmup, false).unwrap();
    assert!(differences.is_empty());
    assert_eq!(
        (table::setting("ema-warmup").unwrap().get)(&s),
        "0.5 --ema-inv-gamma 4"
    );
    let err = table::resolve(&defaults(), &[flag("ema-inv-gamma", "4")], false).unwrap_err();
    assert!(err.to_string().contains("--ema-warmup"), "{err}");
}
