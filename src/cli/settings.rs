//! The training settings' flags, made from the library's table (`diffuse::train::table::SETTINGS`): one flag per
//! row, with its help, its default, its choices and its check, so that a setting added there is a flag here.

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Arg, ArgMatches, Command};

use diffuse::train::table::{OnResume, Setting, SETTINGS};

/// The setting flags given on the command line, in table order, as typed (each checked by its row).
#[derive(Clone, Default)]
pub struct SettingFlags(pub Vec<(&'static Setting, String)>);

impl clap::FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = SETTINGS
            .iter()
            .filter_map(|row| {
                let text = matches.get_one::<String>(row.name)?;
                Some((row, text.clone()))
            })
            .collect();
        Ok(SettingFlags(given))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for SettingFlags {
    fn augment_args(cmd: Command) -> Command {
        SETTINGS.iter().fold(cmd, |cmd, row| cmd.arg(flag(row)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// The help line: the row's, with its default and what `--resume` does with it.
fn help(row: &Setting) -> String {
    let default = row.default_text();
    let on_resume = match row.on_resume {
        OnResume::Override => "; on --resume, the checkpoint's",
        OnResume::Fixed => "; on --resume, the checkpoint's, which no resume changes",
        OnResume::Free => "",
    };
    match default.is_empty() {
        true => row.help.to_string(),
        false => format!("{} [default: {default}{on_resume}]", row.help),
    }
}

fn flag(row: &'static Setting) -> Arg {
    let mut arg = Arg::new(row.name)
        .long(row.name)
        .value_name(row.value_name)
        .help(help(row));
    if row.switch {
        arg = arg.num_args(0..=1).default_missing_value("true");
    } else {
        // `--p-mean -1.2` is a value (EDM's default), and `--lr -1` is refused by the flag's own check, naming it.
        arg = arg.allow_negative_numbers(true);
    }
    if let Some(other) = row.requires {
        arg = arg.requires(other);
    }
    if row.choices.is_empty() {
        return arg.value_parser(move |text: &str| row.check(text).map(|()| text.to_string()));
    }
    let values = row
        .choices
        .iter()
        .map(|&(name, help)| PossibleValue::new(name).help(help));
    arg.value_parser(PossibleValuesParser::new(values))
}
