//! The `#[diagnostic::on_unimplemented]` notes of runtime traits that name hooks. That
//! attribute takes only string literals, so `__hook_note` writes the note from the catalogue
//! and adds it to the trait, whose own attribute keeps the message and label (rustc merges
//! the two attributes: RFC 3368 keeps the first of each option and every note).

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use crate::catalogue::{self, Hook, HOOKS, UNIT};

/// `item` (a trait) with the note that `which` names added.
pub fn attach(which: &Ident, item: TokenStream) -> TokenStream {
    let note = match which.to_string().as_str() {
        "is_callback" => is_callback(),
        "hook_return" => hook_return(),
        "fit_data" => fit_data(),
        _ => {
            let err =
                syn::Error::new(which.span(), "unknown note; expected `is_callback`, `hook_return` or `fit_data`");
            return err.to_compile_error();
        }
    };
    quote! {
        #[diagnostic::on_unimplemented(note = #note)]
        #item
    }
}

/// `IsCallback`'s note: how to write a callback impl, with an example hook in it.
fn is_callback() -> String {
    format!(
        "a callback's hook methods go in an inherent impl marked `#[callback]`: \
         `#[callback] impl {{Self}} {{{{ fn {}(&mut self) {{{{ .. }}}} }}}}`",
        catalogue::example_callback_hook()
    )
}

/// `HookReturn`'s note: the callback hooks whose result the trainer uses.
fn hook_return() -> String {
    let used: Vec<String> = HOOKS
        .iter()
        .filter(|h| h.side.callback() && h.callback_ret != UNIT)
        .map(|h| format!("`{}` ({})", h.name, described(h)))
        .collect();
    format!("callback hooks return nothing (Lightning ignores their results), except {}", and_list(&used))
}

/// `FitData`'s note: the ways to give `fit` data, `Data::module()` with the module's loader hook.
fn fit_data() -> String {
    format!(
        "pass `Data::module()` (the module's `{}`), `Data::loader(train)`, \
         `Data::loader(train).val(val)` or `Data::datamodule(&mut dm)`",
        fit_loader_hook().name
    )
}

/// The hook `fit` needs unless it is given a loader: the module's training loader.
fn fit_loader_hook() -> &'static Hook {
    let hook = HOOKS.iter().find(|h| h.needs.is_some_and(|n| n.entry == "fit" && n.unless_given));
    hook.expect("catalogue: `fit` needs a loader hook without a given loader")
}

/// What a callback hook returns, in words; a new return type needs its words here.
fn described(hook: &Hook) -> &'static str {
    match hook.callback_ret {
        "$Batch" => "the batch",
        "::lightning::serde_json::Value" => "a JSON value",
        other => panic!("catalogue: `{}` returns `{other}`, which the HookReturn note cannot name", hook.name),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The ui-tests' .stderr files show these notes; the text must not change by accident.
    #[test]
    fn notes_text() {
        assert_eq!(
            is_callback(),
            "a callback's hook methods go in an inherent impl marked `#[callback]`: \
             `#[callback] impl {Self} {{ fn on_train_epoch_end(&mut self) {{ .. }} }}`"
        );
        assert_eq!(
            hook_return(),
            "callback hooks return nothing (Lightning ignores their results), \
             except `on_batch_begin` (the batch) and `state_dict` (a JSON value)"
        );
        assert_eq!(
            fit_data(),
            "pass `Data::module()` (the module's `train_dataloader`), `Data::loader(train)`, \
             `Data::loader(train).val(val)` or `Data::datamodule(&mut dm)`"
        );
    }

    #[test]
    fn and_lists() {
        let s = |v: &[&str]| and_list(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&["a"]), "a");
        assert_eq!(s(&["a", "b", "c"]), "a, b and c");
    }
}
