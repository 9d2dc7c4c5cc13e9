//! The objectives' names and their text: what `--objective` and its parameter flags take, and the form a
//! checkpoint records (`name:key=value,…`).

use super::{Objective, Sde, Weighting};

impl Objective {
    /// Each objective's name (what `--objective` takes and checkpoints record before the ':') and what it is, in
    /// the order of [`Objective::from_name`]'s defaults.
    pub const NAMES: &'static [(&'static str, &'static str)] = &[
        ("ddpm", "Discrete-time DDPM (Ho et al. 2020): --schedule, --timesteps, --prediction"),
        (
            "ncsn",
            "Noise-conditional score network (Song & Ermon 2019/2020): --levels geometric σ from --sigma-max to \
             --sigma-min, σ²-weighted denoising score matching",
        ),
        (
            "ve",
            "The VE SDE in continuous time (Song et al. 2021): σ(t) from --sigma-min to --sigma-max, --weighting",
        ),
        ("vp", "The VP SDE in continuous time (Song et al. 2021): β(t) from --beta-min to --beta-max, --weighting"),
        ("subvp", "The sub-VP SDE in continuous time (Song et al. 2021): as vp, with a smaller variance"),
        (
            "edm",
            "EDM (Karras et al. 2022): the preconditioned denoiser, ln σ ~ N(--p-mean, --p-std²), --sigma-data",
        ),
    ];

    /// The objective called `name`, with its papers' defaults.
    pub fn from_name(name: &str) -> Option<Objective> {
        Some(match name {
            "ddpm" => Objective::Ddpm,
            "ncsn" => Objective::NCSN,
            "ve" => Objective::sde(Sde::VE),
            "vp" => Objective::sde(Sde::VP),
            "subvp" => Objective::sde(Sde::SUB_VP),
            "edm" => Objective::EDM,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Objective::Ddpm => "ddpm",
            Objective::Ncsn { .. } => "ncsn",
            Objective::Sde { sde, .. } => match sde {
                Sde::Ve { .. } => "ve",
                Sde::Vp { .. } => "vp",
                Sde::SubVp { .. } => "subvp",
            },
            Objective::Edm { .. } => "edm",
        }
    }

    /// The parameters, as (name, value) in the order [`std::fmt::Display`] writes them.
    fn parameters(&self) -> Vec<(&'static str, String)> {
        let weighting = |w: &Weighting| match w {
            Weighting::Sigma2 => "sigma2".to_string(),
            Weighting::Likelihood => "likelihood".to_string(),
        };
        match self {
            Objective::Ddpm => vec![],
            Objective::Ncsn {
                sigma_min,
                sigma_max,
                levels,
            } => vec![
                ("sigma_min", sigma_min.to_string()),
                ("sigma_max", sigma_max.to_string()),
                ("levels", levels.to_string()),
            ],
            Objective::Sde {
                sde,
                weighting: w,
                t_min,
            } => {
                let mut all = match sde {
                    Sde::Ve {
                        sigma_min,
                        sigma_max,
                    } => vec![
                        ("sigma_min", sigma_min.to_string()),
                        ("sigma_max", sigma_max.to_string()),
                    ],
                    Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => vec![
                        ("beta_min", beta_min.to_string()),
                        ("beta_max", beta_max.to_string()),
                    ],
                };
                all.push(("weighting", weighting(w)));
                all.push(("t_min", t_min.to_string()));
                all
            }
            Objective::Edm {
                sigma_data,
                p_mean,
                p_std,
            } => vec![
                ("sigma_data", sigma_data.to_string()),
                ("p_mean", p_mean.to_string()),
                ("p_std", p_std.to_string()),
            ],
        }
    }

    /// Sets the parameter `key` (as [`std::fmt::Display`] names it) from `text`; an error says what the text may
    /// be, or which objectives have the parameter.
    pub fn set(&mut self, key: &str, text: &str) -> std::result::Result<(), String> {
        let number = || {
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| "not a number".to_string())
        };
        let name = self.name();
        let slot: &mut f64 = match (self, key) {
            (Objective::Ncsn { levels, .. }, "levels") => {
                *levels = text
                    .trim()
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LEVELS).contains(l))
                    .ok_or_else(|| format!("not a whole number in 1..={MAX_LEVELS}"))?;
                return Ok(());
            }
            (Objective::Sde { weighting, .. }, "weighting") => {
                *weighting = match text.trim() {
                    "sigma2" => Weighting::Sigma2,
                    "likelihood" => Weighting::Likelihood,
                    _ => return Err("not sigma2 or likelihood".into()),
                };
                return Ok(());
            }
            (Objective::Sde { t_min, .. }, "t_min") => t_min,
            (Objective::Ncsn { sigma_min, .. }, "sigma_min")
            | (
                Objective::Sde {
                    sde: Sde::Ve { sigma_min, .. },
                    ..
                },
                "sigma_min",
            ) => sigma_min,
            (Objective::Ncsn { sigma_max, .. }, "sigma_max")
            | (
                Objective::Sde {
                    sde: Sde::Ve { sigma_max, .. },
                    ..
                },
                "sigma_max",
            ) => sigma_max,
            (
                Objective::Sde {
                    sde: Sde::Vp { beta_min, .. } | Sde::SubVp { beta_min, .. },
                    ..
                },
                "beta_min",
            ) => beta_min,
            (
                Objective::Sde {
                    sde: Sde::Vp { beta_max, .. } | Sde::SubVp { beta_max, .. },
                    ..
                },
                "beta_max",
            ) => beta_max,
            (Objective::Edm { sigma_data, .. }, "sigma_data") => sigma_data,
            (Objective::Edm { p_mean, .. }, "p_mean") => p_mean,
            (Objective::Edm { p_std, .. }, "p_std") => p_std,
            _ => {
                let takers: Vec<&str> = Self::NAMES
                    .iter()
                    .filter_map(|(n, _)| Self::from_name(n))
                    .filter(|o| o.parameters().iter().any(|(k, _)| *k == key))
                    .map(|o| o.name())
                    .collect();
                return Err(format!(
                    "--objective {name} has no {}; it belongs to --objective {}",
                    key.replace('_', "-"),
                    takers.join(" or ")
                ));
            }
        };
        *slot = number()?;
        Ok(())
    }
}

/// The most NCSN levels a run may name (NCSNv2 used up to 2,311 for 256 px images).
pub const MAX_LEVELS: usize = 100_000;

/// `name:key=value,…`, the form checkpoints record (`ddpm` alone has no parameters); f64 values print exactly.
impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())?;
        let parameters: Vec<String> = self
            .parameters()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !parameters.is_empty() {
            write!(f, ":{}", parameters.join(","))?;
        }
        Ok(())
    }
}

/// Reads [`std::fmt::Display`]'s form; a bare name takes its defaults, and parameters left out keep theirs.
impl std::str::FromStr for Objective {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Objective, String> {
        let (name, parameters) = text.trim().split_once(':').unwrap_or((text.trim(), ""));
        let mut objective = Objective::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Objective::NAMES.iter().map(|(n, _)| *n).collect();
            format!("not one of {}", names.join(", "))
        })?;
        for pair in parameters.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            objective
                .set(key, value)
                .map_err(|e| format!("{key}: {e}"))?;
        }
        Ok(objective)
    }
}
