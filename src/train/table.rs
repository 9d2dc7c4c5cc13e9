//! The training settings, each named once: its flag, its checkpoint key, its default (from
//! [`TrainSettings::new`]) and whether a resume may change it. The command line builds its flags from [`SETTINGS`],
//! the checkpoint writes and reads its `extra.*` keys (and `seed`) through it, and [`resolve`] makes the `--resume`
//! comparison with it. Adding a setting means a field of [`TrainSettings`], a row here and the code that uses it.

use crate::diffusion::process::Objective;
use crate::diffusion::{NamedSchedule, Prediction};
use crate::error::{Error, Result};
use crate::optim::EmaWarmup;
use crate::values::{at_least_one, gigabytes, non_negative, positive, unit_interval};

use super::{Placement, TrainSettings};

/// How `--resume` treats a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnResume {
    /// Recorded: a resume keeps the checkpoint's value; a flag that differs is refused unless `--override` names
    /// it (the change is then recorded).
    Override,
    /// Recorded, and never changed by a resume: the trained network means something else under another value.
    Fixed,
    /// Not recorded: each invocation sets it anew (how this machine runs the step, not what it trains).
    Free,
}

/// A setting's value from its text, or what the text may be.
type Set = fn(&mut TrainSettings, &str) -> std::result::Result<(), String>;
/// A setting's value as text.
type Get = fn(&TrainSettings) -> String;

/// One training setting.
pub struct Setting {
    /// The flag (`--name`), the `--override` name and the docs' name.
    pub name: &'static str,
    pub value_name: &'static str,
    pub help: &'static str,
    /// Closed choices, (name, what it means); empty where any value `set` accepts will do.
    pub choices: &'static [(&'static str, &'static str)],
    /// A switch: the bare flag means `true`.
    pub switch: bool,
    /// A setting this one's flag only makes sense with.
    pub requires: Option<&'static str>,
    /// The checkpoint metadata key; None: not recorded.
    pub key: Option<&'static str>,
    /// The value of checkpoints written before the key existed; None: every checkpoint has it.
    pub before_key: Option<&'static str>,
    pub on_resume: OnResume,
    /// The value as the flag spells it (empty: unset, no default to show).
    pub get: Get,
    pub set: Set,
    /// The checkpoint's spelling, where it is not the flag's.
    pub stored: Option<(Get, Set)>,
}

impl Setting {
    /// The value as the checkpoint spells it.
    pub fn store(&self, s: &TrainSettings) -> String {
        self.stored.map_or(self.get, |(get, _)| get)(s)
    }

    /// Sets the value from the checkpoint's spelling.
    pub fn load(&self, s: &mut TrainSettings, text: &str) -> std::result::Result<(), String> {
        self.stored.map_or(self.set, |(_, set)| set)(s, text)
    }

    /// The default, as the flag spells it ("" where the default is "unset").
    pub fn default_text(&self) -> String {
        (self.get)(&TrainSettings::new(crate::model::Preset::Small.config()))
    }

    /// Whether `text` is a value of this setting (what a flag parser checks before any work): set on settings in
    /// which every row can be set (a power EMA warm-up, which `--ema-inv-gamma` shapes).
    pub fn check(&self, text: &str) -> std::result::Result<(), String> {
        let mut probe = TrainSettings::new(crate::model::Preset::Small.config());
        probe.ema_warmup = EmaWarmup::Power {
            power: 1.0,
            inv_gamma: 1.0,
        };
        if self.requires != Some("objective") {
            return (self.set)(&mut probe, text);
        }
        // A parameter of --objective: whether the objective given beside it has it is checked once both are read
        // (`resolve`); here, whether the text is a value of any objective that has it.
        let mut why = String::new();
        for (name, _) in Objective::NAMES {
            probe.objective = Objective::from_name(name).expect("a named objective");
            match (self.set)(&mut probe, text) {
                Ok(()) => return Ok(()),
                Err(e) if !e.starts_with("--objective") => why = e,
                Err(_) => {}
            }
        }
        Err(why)
    }

    /// Whether a checkpoint records it.
    pub fn recorded(&self) -> bool {
        self.key.is_some()
    }
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}", self.name)
    }
}

/// The row named `name`.
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

const NO_CHOICES: &[(&str, &str)] = &[];

/// The training targets as `--prediction` names them (the score is not one).
const TARGETS: &[(&str, &str)] = &[
    ("eps", "The noise ε"),
    ("x0", "The clean image x₀"),
    ("v", "The velocity v = √ᾱ·ε − √(1−ᾱ)·x₀"),
];

/// The predictions as checkpoints name them (`extra.prediction`).
const PREDICTIONS: [(Prediction, &str); 4] = [
    (Prediction::Epsilon, "epsilon"),
    (Prediction::Sample, "sample"),
    (Prediction::Velocity, "velocity"),
    (Prediction::Score, "score"),
];

const PLACEMENTS: &[(&str, &str)] = &[
    (
        "auto",
        "On the GPU if the images fit one buffer binding (and --memory-budget), else streamed",
    ),
    ("gpu", "Gathered on the GPU each step"),
    (
        "host",
        "Each step's images uploaded while the GPU works on the previous step",
    ),
];

/// The most timesteps, and the largest batch, a run may name: bounds far above any real run, checked before a
/// schedule or a buffer is sized by them.
pub const MAX_TIMESTEPS: usize = 1 << 20;
pub const MAX_BATCH: usize = 1 << 20;

fn one_of<T: Copy>(text: &str, names: &[(T, &str)]) -> std::result::Result<T, String> {
    match names.iter().find(|(_, name)| *name == text.trim()) {
        Some((value, _)) => Ok(*value),
        None => {
            let all: Vec<&str> = names.iter().map(|(_, n)| *n).collect();
            Err(format!("not one of {}", all.join(", ")))
        }
    }
}

fn name_of<T: PartialEq>(value: T, names: &[(T, &'static str)]) -> String {
    let found = names.iter().find(|(v, _)| *v == value);
    found.map_or("", |(_, name)| name).to_string()
}

fn boolean(text: &str) -> std::result::Result<bool, String> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("not true or false".into()),
    }
}

/// A whole number in `1..=max`.
fn count(text: &str, max: usize) -> std::result::Result<usize, String> {
    if text.trim().parse::<usize>().is_err() {
        return Err("not a number (a whole number ≥ 1)".into());
    }
    let value = at_least_one(text)?;
    if value > max {
        return Err(format!(
            "{value} is outside the bounds 1..={max} this diffuse reads"
        ));
    }
    Ok(value)
}

fn whole(text: &str) -> std::result::Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| "not a number (a whole number ≥ 0)".into())
}

/// A positive number, or `off` (the flags) / `none` (the checkpoint).
fn gamma(text: &str) -> std::result::Result<Option<f64>, String> {
    match text.trim() {
        "off" | "none" => Ok(None),
        text => positive(text).map(Some),
    }
}

fn schedule_names() -> Vec<(NamedSchedule, &'static str)> {
    NamedSchedule::ALL.map(|s| (s, s.name())).to_vec()
}

fn target_names() -> [(Prediction, &'static str); 3] {
    [
        (Prediction::Epsilon, TARGETS[0].0),
        (Prediction::Sample, TARGETS[1].0),
        (Prediction::Velocity, TARGETS[2].0),
    ]
}

fn placement_names() -> [(Placement, &'static str); 3] {
    [
        (Placement::Auto, PLACEMENTS[0].0),
        (Placement::Gpu, PLACEMENTS[1].0),
        (Placement::Host, PLACEMENTS[2].0),
    ]
}

/// `--ema-warmup` as the flags give it: `off`, or the power with its inv_gamma.
fn ema_warmup_flags(s: &TrainSettings) -> String {
    match s.ema_warmup {
        EmaWarmup::Ddpm => "off".into(),
        EmaWarmup::Power { power, inv_gamma } => format!("{power} --ema-inv-gamma {inv_gamma}"),
    }
}

fn set_ema_warmup(s: &mut TrainSettings, text: &str) -> std::result::Result<(), String> {
    s.ema_warmup = match gamma(text)? {
        Some(power) => EmaWarmup::Power {
            power,
            inv_gamma: 1.0,
        },
        None => EmaWarmup::Ddpm,
    };
    Ok(())
}

fn set_ema_inv_gamma(s: &mut TrainSettings, text: &str) -> std::result::Result<(), String> {
    let value = positive(text)?;
    match &mut s.ema_warmup {
        EmaWarmup::Power { inv_gamma, .. } => *inv_gamma = value,
        EmaWarmup::Ddpm => return Err("needs --ema-warmup POWER (the warm-up it shapes)".into()),
    }
    Ok(())
}

fn set_prediction_stored(s: &mut TrainSettings, text: &str) -> std::result::Result<(), String> {
    s.target = one_of(text, &PREDICTIONS)?;
    Ok(())
}

/// A parameter of `--objective`: recorded as part of its value, so not a row of its own in the checkpoint.
const fn parameter(
    name: &'static str,
    value_name: &'static str,
    help: &'static str,
    set: Set,
) -> Setting {
    Setting {
        name,
        value_name,
        help,
        choices: NO_CHOICES,
        switch: false,
        requires: Some("objective"),
        key: None,
        before_key: None,
        on_resume: OnResume::Free,
        get: |_| String::new(),
        set,
        stored: None,
    }
}

/// `--sigma-max`: a number, or `data` (kept as a flag beside the objective's current σ_max until the run measures
/// it); either way, an objective without σ_max refuses it.
fn set_sigma_max(s: &mut TrainSettings, text: &str) -> std::result::Result<(), String> {
    let data = text.trim() == "data";
    let number = match (data, s.objective.sigma_max()) {
        (true, Some(current)) => current.to_string(),
        _ => text.to_string(),
    };
    s.objective.set("sigma_max", &number)?;
    s.sigma_max_from_data = data;
    Ok(())
}

/// Every training setting, in the order the flags are applied (`--ema-inv-gamma` after `--ema-warmup`).
pub static SETTINGS: &[Setting] = &[
    Setting {
        name: "batch",
        value_name: "N",
        help: "Images per batch",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: Some("extra.batch"),
        before_key: None,
        on_resume: OnResume::Override,
        get: |s| s.batch.to_string(),
        set: |s, t| {
            s.batch = count(t, MAX_BATCH)?;
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "grad-accum",
        value_name: "N",
        help: "Sum the gradients of this many batches before each optimizer step (a larger effective batch in the \
               same memory: each step sees --batch × --grad-accum images)",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: Some("extra.grad_accum"),
        before_key: Some("1"),
        on_resume: OnResume::Override,
        get: |s| s.grad_accum.to_string(),
        set: |s, t| {
            s.grad_accum = count(t, MAX_BATCH)?;
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "micro-batch",
        value_name: "N",
        help: "Images per forward/backward pass; must divide --batch (default: the whole batch if it fits the \
               adapter and --memory-budget, else the largest divisor that does)",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: None,
        before_key: None,
        on_resume: OnResume::Free,
        get: |s| s.micro_batch.map_or(String::new(), |m| m.to_string()),
        set: |s, t| {
            s.micro_batch = Some(count(t, MAX_BATCH)?);
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "memory-budget",
        value_name: "GB",
        help: "GPU memory the run may use, in GB (default: only the adapter's per-buffer limit is checked)",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: None,
        before_key: None,
        on_resume: OnResume::Free,
        get: |s| s.memory_budget.map_or(String::new(), |b| (b as f64 / 1e9).to_string()),
        set: |s, t| {
            s.memory_budget = Some(gigabytes(positive(t)?));
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "lr",
        value_name: "LR",
        help: "Peak learning rate (Adam), reached after --warmup steps",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: Some("extra.lr"),
        before_key: None,
        on_resume: OnResume::Override,
        get: |s| s.lr.to_string(),
        set: |s, t| {
            s.lr = non_negative(t)?;
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "warmup",
        value_name: "STEPS",
        help: "Steps of linear learning-rate warm-up",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: Some("extra.warmup"),
        before_key: Some("500"),
        on_resume: OnResume::Override,
        get: |s| s.warmup.to_string(),
        set: |s, t| {
            s.warmup = whole(t)?;
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "ema",
        value_name: "DECAY",
        help: "EMA decay of the weights used for sampling, in [0, 1]",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: Some("extra.ema"),
        before_key: Some("0.999"),
        on_resume: OnResume::Override,
        get: |s| s.ema_decay.to_string(),
        set: |s, t| {
            s.ema_decay = unit_interval(t)?;
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "clip",
        value_name: "NORM",
        help: "Global gradient-norm clip (0 turns it off)",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: Some("extra.clip"),
        before_key: Some("1"),
        on_resume: OnResume::Override,
        get: |s| s.grad_clip.unwrap_or(0.0).to_string(),
        set: |s, t| {
            let clip = non_negative(t)?;
            s.grad_clip = (clip > 0.0).then_some(clip);
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "schedule",
        value_name: "SCHEDULE",
        help: "Noise schedule",
        choices: NamedSchedule::NAMES,
        switch: false,
        requires: None,
        key: Some("extra.schedule"),
        before_key: None,
        on_resume: OnResume::Override,
        get: |s| name_of(s.schedule, &schedule_names()),
        set: |s, t| {
            s.schedule = one_of(t, &schedule_names())?;
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "timesteps",
        value_name: "T",
        help: "Training timesteps T of the discrete schedule",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: Some("extra.timesteps"),
        before_key: None,
        on_resume: OnResume::Fixed,
        get: |s| s.timesteps.to_string(),
        set: |s, t| {
            s.timesteps = count(t, MAX_TIMESTEPS)?;
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "objective",
        value_name: "OBJECTIVE",
        help: "What is trained: DDPM, or a score-based model with its own noise process, target and loss weighting \
               (docs/diffusion.md). The flags after it set its parameters; a checkpoint records them all, and a \
               resume keeps them",
        choices: Objective::NAMES,
        switch: false,
        requires: None,
        key: Some("extra.objective"),
        before_key: Some("ddpm"),
        on_resume: OnResume::Fixed,
        get: |s| s.objective.to_string(),
        set: |s, t| {
            s.objective = t.parse()?;
            Ok(())
        },
        stored: None,
    },
    parameter(
        "sigma-min",
        "SIGMA",
        "ncsn, ve: the smallest noise level σ_min [default: 0.01]",
        |s, t| s.objective.set("sigma_min", t),
    ),
    parameter(
        "sigma-max",
        "SIGMA",
        "ncsn, ve: the largest noise level σ_max, at least the largest distance between two training images \
         (Song & Ermon 2020), or `data`: that distance, measured on the GPU before a new run starts (NCSNv2's \
         rule; a resumed run keeps its checkpoint's) [default: 50]",
        set_sigma_max,
    ),
    parameter(
        "levels",
        "L",
        "ncsn: the number of noise levels, geometric from σ_max to σ_min [default: 232, NCSNv2's CIFAR-10]",
        |s, t| s.objective.set("levels", t),
    ),
    parameter(
        "beta-min",
        "BETA",
        "vp, subvp: β(0) [default: 0.1]",
        |s, t| s.objective.set("beta_min", t),
    ),
    parameter(
        "beta-max",
        "BETA",
        "vp, subvp: β(1) [default: 20]",
        |s, t| s.objective.set("beta_max", t),
    ),
    parameter(
        "weighting",
        "WEIGHTING",
        "ve, vp, subvp: the loss weight λ(t), sigma2 (σ(t)², the plain ε-MSE) or likelihood (g(t)², which makes \
         the loss a bound on the negative log-likelihood) [default: sigma2]",
        |s, t| s.objective.set("weighting", t),
    ),
    parameter(
        "t-min",
        "T",
        "ve, vp, subvp: training draws t uniformly on [T, 1] [default: 1e-5, score_sde's]",
        |s, t| s.objective.set("t_min", t),
    ),
    parameter(
        "sigma-data",
        "SIGMA",
        "edm: the data's standard deviation σ_d in the preconditioning [default: 0.5]",
        |s, t| s.objective.set("sigma_data", t),
    ),
    parameter(
        "p-mean",
        "P",
        "edm: the mean of ln σ during training [default: -1.2]",
        |s, t| s.objective.set("p_mean", t),
    ),
    parameter(
        "p-std",
        "P",
        "edm: the standard deviation of ln σ during training [default: 1.2]",
        |s, t| s.objective.set("p_std", t),
    ),
    Setting {
        name: "flip",
        value_name: "BOOL",
        help: "Mirror each training image left–right at random (augmentation for photos and faces; not for digits \
               or text, whose mirror images are not examples of the data). `--flip false` turns it off",
        choices: NO_CHOICES,
        switch: true,
        requires: None,
        key: Some("extra.flip"),
        before_key: Some("false"),
        on_resume: OnResume::Override,
        get: |s| s.flip.to_string(),
        set: |s, t| {
            s.flip = boolean(t)?;
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "data-on",
        value_name: "WHERE",
        help: "Where the training images live",
        choices: PLACEMENTS,
        switch: false,
        requires: None,
        key: None,
        before_key: None,
        on_resume: OnResume::Free,
        get: |s| name_of(s.placement, &placement_names()),
        set: |s, t| {
            s.placement = one_of(t, &placement_names())?;
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "seed",
        value_name: "SEED",
        help: "Seed of every random draw of the run",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: Some("seed"),
        before_key: None,
        on_resume: OnResume::Override,
        get: |s| s.seed.to_string(),
        set: |s, t| {
            s.seed = whole(t)?;
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "prediction",
        value_name: "PREDICTION",
        help: "What the network learns to predict: eps (the noise ε, Ho et al. 2020), x0 (the clean image) or v = \
               √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022). Every sampler and `diffuse eval` read it from the checkpoint",
        choices: TARGETS,
        switch: false,
        requires: None,
        key: Some("extra.prediction"),
        before_key: None,
        on_resume: OnResume::Override,
        get: |s| name_of(s.target, &target_names()),
        set: |s, t| {
            s.target = one_of(t, &target_names())?;
            Ok(())
        },
        stored: Some((|s| name_of(s.target, &PREDICTIONS), set_prediction_stored)),
    },
    Setting {
        name: "min-snr-gamma",
        value_name: "GAMMA",
        help: "Min-SNR-γ loss weighting (Hang et al. 2023): weight each image's loss so that it equals min(SNR_t, \
               γ)·‖x̂₀ − x₀‖², SNR_t = ᾱ_t/(1 − ᾱ_t); the paper uses γ = 5. `off`: the plain MSE",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: Some("extra.min_snr_gamma"),
        before_key: Some("none"),
        on_resume: OnResume::Override,
        get: |s| s.min_snr_gamma.map_or("off".into(), |g| g.to_string()),
        set: |s, t| {
            s.min_snr_gamma = gamma(t)?;
            Ok(())
        },
        stored: Some((
            |s| s.min_snr_gamma.map_or("none".into(), |g| g.to_string()),
            |s, t| {
                let g = gamma(t).map_err(|_| "not \"none\" or a positive number".to_string())?;
                s.min_snr_gamma = g;
                Ok(())
            },
        )),
    },
    Setting {
        name: "zero-terminal-snr",
        value_name: "BOOL",
        help: "Rescale the schedule to zero terminal SNR (Lin et al. 2024, algorithm 1: √ᾱ shifted and scaled so \
               that ᾱ = 0 at the last timestep, ᾱ at the first unchanged), so that training sees the pure noise \
               sampling starts from. Needs --prediction v (or x0). `--zero-terminal-snr false` turns it off",
        choices: NO_CHOICES,
        switch: true,
        requires: None,
        key: Some("extra.zero_terminal_snr"),
        before_key: Some("false"),
        on_resume: OnResume::Override,
        get: |s| s.zero_terminal_snr.to_string(),
        set: |s, t| {
            s.zero_terminal_snr = boolean(t)?;
            Ok(())
        },
        stored: None,
    },
    Setting {
        name: "ema-warmup",
        value_name: "POWER",
        help: "EMA warm-up as diffusers' EMAModel (use_ema_warmup): the decay at step k is 1 − (1 + \
               k/inv_gamma)^(−POWER), capped at --ema (2/3 suits runs of a million steps, 3/4 shorter ones). `off`: \
               min(--ema, (1 + k)/(10 + k))",
        choices: NO_CHOICES,
        switch: false,
        requires: None,
        key: Some("extra.ema_warmup"),
        before_key: Some("ddpm"),
        on_resume: OnResume::Override,
        get: ema_warmup_flags,
        set: set_ema_warmup,
        stored: Some((
            |s| s.ema_warmup.to_string(),
            |s, t| {
                s.ema_warmup = t.parse().map_err(|_| {
                    "not \"ddpm\" or \"power=P,inv_gamma=G\" (P, G > 0)".to_string()
                })?;
                Ok(())
            },
        )),
    },
    Setting {
        name: "ema-inv-gamma",
        value_name: "G",
        help: "inv_gamma of --ema-warmup (recorded and compared on --resume as part of it) [default: 1]",
        choices: NO_CHOICES,
        switch: false,
        requires: Some("ema-warmup"),
        key: None,
        before_key: None,
        on_resume: OnResume::Free,
        get: |_| String::new(),
        set: set_ema_inv_gamma,
        stored: None,
    },
];

/// `settings` as a checkpoint records them: the recorded rows' values, the others as [`TrainSettings::new`]
/// makes them (so that a record compares equal to the same record read back).
pub fn recorded(settings: &TrainSettings) -> TrainSettings {
    let mut kept = TrainSettings::new(settings.model.clone());
    for row in SETTINGS.iter().filter(|row| row.recorded()) {
        row.load(&mut kept, &row.store(settings))
            .expect("a stored value reads back");
    }
    kept
}

/// A flag whose value differs from the checkpoint's record.
#[derive(Clone, Debug)]
pub struct Difference {
    pub setting: &'static Setting,
    /// "--lr 0.001 (checkpoint: 0.0002)".
    pub line: String,
}

/// The settings of a run: `base` (the defaults, or on `--resume` the checkpoint's record) with the `given` flags
/// applied in table order, and the recorded settings the flags changed from `base`.
pub fn resolve(
    base: &TrainSettings,
    given: &[(&'static Setting, String)],
    resuming: bool,
) -> Result<(TrainSettings, Vec<Difference>)> {
    let mut settings = base.clone();
    for row in SETTINGS {
        for (_, text) in given.iter().filter(|(s, _)| std::ptr::eq(*s, row)) {
            (row.set)(&mut settings, text)
                .map_err(|e| Error::Usage(format!("--{} {text}: {e}", row.name)))?;
        }
    }
    let differences = match resuming {
        true => SETTINGS
            .iter()
            .filter(|row| row.recorded() && (row.get)(&settings) != (row.get)(base))
            .map(|row| Difference {
                setting: row,
                line: format!(
                    "--{} {} (checkpoint: {})",
                    row.name,
                    (row.get)(&settings),
                    (row.get)(base)
                ),
            })
            .collect(),
        false => Vec::new(),
    };
    Ok((settings, differences))
}
